//! No command writes over one of its own inputs. An output file that resolves to an input
//! file, or an output folder that is an input or holds one (the input's parent folder), is
//! refused before any work, naming both. Paths are compared after resolving `.`/`..` and
//! symbolic links, so two spellings of one file are one file.

use crate::spec::ModelSpec;
use std::path::{Path, PathBuf};

/// An output that would overwrite an input.
#[derive(Debug, thiserror::Error)]
#[error("refusing to write {output}: {relation} the {role} {input}, an input of this command; {advice}")]
pub struct OverwriteError {
    /// The output path as given.
    pub output: String,
    /// What the input is (e.g. "model spec").
    pub role: String,
    /// The input path as given.
    pub input: String,
    /// "it is" or "the folder holds".
    relation: &'static str,
    /// What to do instead.
    advice: &'static str,
}

/// The files and folders a command reads, each with its role for error messages.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    paths: Vec<(String, PathBuf)>,
}

/// `path` made absolute with symbolic links and `..` resolved, as far as it exists: a file
/// that does not exist yet resolves through its folder.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            resolve(parent).join(name)
        }
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

impl Inputs {
    /// No inputs yet.
    pub fn new() -> Self {
        Inputs::default()
    }

    /// Adds one input file or folder.
    pub fn add(mut self, role: &str, path: &Path) -> Self {
        self.paths.push((role.to_string(), path.to_path_buf()));
        self
    }

    /// Adds an optional input.
    pub fn add_some(self, role: &str, path: Option<&Path>) -> Self {
        match path {
            Some(p) => self.add(role, p),
            None => self,
        }
    }

    /// Adds a model spec and the files it reads (its weights, its ONNX file).
    pub fn model(self, role: &str, spec: &ModelSpec) -> Self {
        self.add(&format!("{role} spec"), &spec.path)
            .add_some(&format!("{role} weights"), spec.weights.as_deref())
            .add_some(&format!("{role} ONNX file"), spec.onnx.as_ref().map(|(p, _)| p.as_path()))
    }

    /// Adds the folder of a `KIND:PATH` data set (none for `synthetic:`).
    pub fn data(self, name: &str) -> Self {
        match name.split_once(':') {
            Some((kind, path)) if kind != "synthetic" && !path.is_empty() => self.add("data set", Path::new(path)),
            _ => self,
        }
    }

    /// Refuses an output file that is one of the inputs.
    pub fn check_file(&self, output: &Path) -> Result<(), OverwriteError> {
        let out = resolve(output);
        match self.paths.iter().find(|(_, input)| resolve(input) == out) {
            Some((role, input)) => Err(OverwriteError {
                output: output.display().to_string(),
                role: role.clone(),
                input: input.display().to_string(),
                relation: "it is",
                advice: "choose another output file",
            }),
            None => Ok(()),
        }
    }

    /// Refuses an output folder that is one of the inputs or holds one.
    pub fn check_folder(&self, output: &Path) -> Result<(), OverwriteError> {
        let out = resolve(output);
        for (role, input) in &self.paths {
            let resolved = resolve(input);
            let relation = if resolved == out {
                "it is"
            } else if resolved.parent() == Some(out.as_path()) {
                "the folder holds"
            } else {
                continue;
            };
            return Err(OverwriteError {
                output: output.display().to_string(),
                role: role.clone(),
                input: input.display().to_string(),
                relation,
                advice: "choose another output folder",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_that_are_or_hold_an_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let spec = sub.join("model.toml");
        std::fs::write(&spec, "x").unwrap();
        let inputs = Inputs::new().add("model spec", &spec);
        // The same file spelled another way.
        let other_spelling = sub.join("..").join("sub").join("model.toml");
        assert!(inputs.check_file(&other_spelling).is_err());
        assert!(inputs.check_file(&sub.join("new.toml")).is_ok());
        // The folder holding the spec, and a folder below it that does not exist yet.
        let refused = inputs.check_folder(&sub).unwrap_err().to_string();
        assert!(refused.contains("the folder holds the model spec"), "{refused}");
        assert!(inputs.check_folder(&sub.join("out")).is_ok());
        assert!(inputs.check_folder(dir.path()).is_ok());
    }
}
