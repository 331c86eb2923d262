//! Weights: named f32 tensors per layer (`<layer>.weight`, `<layer>.bias`,
//! `<layer>.running_mean`, `<layer>.running_var`), laid out as PyTorch lays them out,
//! saved as safetensors with atomic writes, loaded from safetensors or PyTorch checkpoints,
//! and initialised at random (seeded Kaiming) for untrained zoo models.

mod init;
mod io;
mod pytorch;

pub use init::initialise;
pub use io::{from_bytes, load, load_with_metadata, save, save_with_metadata, write_atomic};

use crate::ir::{Network, Op};
use petgraph::graph::NodeIndex;
use std::collections::BTreeMap;

/// Errors about weight tensors and weight files.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A tensor the network needs is not in the file.
    #[error("{file}: tensor `{name}` is missing (expected shape {expected:?})")]
    Missing {
        /// The weight file.
        file: String,
        /// Tensor name.
        name: String,
        /// The shape the network needs.
        expected: Vec<usize>,
    },
    /// Tensors the network needs are not in the file: all of them, with the file's tensors
    /// the network does not need (a prefix or naming mismatch shows at once).
    #[error(
        "{file}: {} tensor(s) the network needs are missing: {}{}",
        missing.len(),
        list(missing),
        if extra.is_empty() { String::new() } else { format!("; the file has {} it does not need: {}", extra.len(), list(extra)) }
    )]
    Keys {
        /// The weight file.
        file: String,
        /// The missing tensors, each with the shape the network needs.
        missing: Vec<String>,
        /// The file's tensors no layer reads.
        extra: Vec<String>,
    },
    /// A tensor has another shape than the network needs.
    #[error("{file}: tensor `{name}` has shape {found:?}, the network needs {expected:?}")]
    ShapeMismatch {
        /// The weight file.
        file: String,
        /// Tensor name.
        name: String,
        /// Shape in the file.
        found: Vec<usize>,
        /// Shape the network needs.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a type that is neither float nor integer (e.g. 8-bit floats).
    #[error("{file}: tensor `{name}` is {dtype}; float tensors (F32, F64, F16, BF16) are read, integer ones skipped")]
    Dtype {
        /// The weight file.
        file: String,
        /// Tensor name.
        name: String,
        /// The stored type.
        dtype: String,
    },
    /// A tensor holds a NaN or an infinity.
    #[error("{file}: tensor `{name}` holds {value} at index {index:?} (shape {shape:?}); weights must be finite")]
    NonFinite {
        /// The weight file.
        file: String,
        /// Tensor name.
        name: String,
        /// The offending value (NaN, inf or -inf).
        value: f32,
        /// Its position, one index per dimension.
        index: Vec<usize>,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// The file is not a valid safetensors file or PyTorch checkpoint.
    #[error("{file}: not a valid weights file: {reason}")]
    Format {
        /// The weight file.
        file: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Up to 12 names, then how many more.
fn list(names: &[String]) -> String {
    let shown = names.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 12 => format!("{shown} … and {} more", n - 12),
        _ => shown,
    }
}

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl WeightTensor {
    /// A tensor of the given shape filled with `value`.
    pub fn full(shape: Vec<usize>, value: f32) -> Self {
        let n = shape.iter().product();
        WeightTensor {
            shape,
            data: vec![value; n],
        }
    }

    /// Fails on the first NaN or infinity, naming `name` in `file` and its index per dimension.
    pub fn check_finite(&self, file: &str, name: &str) -> Result<(), WeightError> {
        let Some(flat) = self.data.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let mut index = vec![0; self.shape.len()];
        let mut rest = flat;
        for (slot, &dim) in index.iter_mut().zip(&self.shape).rev() {
            *slot = rest % dim.max(1);
            rest /= dim.max(1);
        }
        Err(WeightError::NonFinite {
            file: file.to_string(),
            name: name.to_string(),
            value: self.data[flat],
            index,
            shape: self.shape.clone(),
        })
    }

    /// Keeps the entries at `indices` along `axis`, in that order.
    pub fn select(&self, axis: usize, indices: &[usize]) -> WeightTensor {
        let outer: usize = self.shape[..axis].iter().product();
        let len = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                let start = (o * len + i) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape[axis] = indices.len();
        WeightTensor { shape, data }
    }
}

/// All weight tensors of a network, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    /// Tensors keyed by `<layer>.<kind>`.
    pub tensors: BTreeMap<String, WeightTensor>,
}

/// The kinds of tensors a layer owns, with their shapes.
pub fn expected_tensors(net: &Network, node: NodeIndex) -> Vec<(String, Vec<usize>)> {
    let name = &net.node(node).name;
    let out = net.shape(node).channels();
    let named = |kind: &str, shape: Vec<usize>| (format!("{name}.{kind}"), shape);
    match &net.node(node).op {
        Op::Conv2d {
            kernel,
            groups,
            bias,
            out_channels,
            ..
        } => {
            let in_per_group = net.input_shapes(node)[0].channels() / groups;
            let mut list = vec![named("weight", vec![*out_channels, in_per_group, kernel[0], kernel[1]])];
            if *bias {
                list.push(named("bias", vec![*out_channels]));
            }
            list
        }
        Op::Linear { out_features, bias } => {
            let mut list = vec![named("weight", vec![*out_features, net.input_shapes(node)[0].channels()])];
            if *bias {
                list.push(named("bias", vec![*out_features]));
            }
            list
        }
        Op::BatchNorm { .. } => ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|k| named(k, vec![out]))
            .collect(),
        _ => Vec::new(),
    }
}

impl Weights {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&WeightTensor> {
        self.tensors.get(name)
    }

    /// The tensor `<layer>.<kind>`; panics when absent (use after [`Weights::check`]).
    pub fn of(&self, net: &Network, node: NodeIndex, kind: &str) -> &WeightTensor {
        let name = format!("{}.{kind}", net.node(node).name);
        self.tensors
            .get(&name)
            .unwrap_or_else(|| panic!("weights were checked but `{name}` is missing"))
    }

    /// Checks that every tensor the network needs is present with the right shape.
    /// `file` names the source in errors. Extra tensors are ignored.
    pub fn check(&self, net: &Network, file: &str) -> Result<(), WeightError> {
        let needed: Vec<(String, Vec<usize>)> = net.nodes().flat_map(|node| expected_tensors(net, node)).collect();
        let missing: Vec<String> = needed
            .iter()
            .filter(|(name, _)| !self.tensors.contains_key(name))
            .map(|(name, shape)| format!("{name} {shape:?}"))
            .collect();
        if !missing.is_empty() {
            let known: std::collections::HashSet<&String> = needed.iter().map(|(n, _)| n).collect();
            let extra = self.tensors.keys().filter(|k| !known.contains(k)).cloned().collect();
            return Err(WeightError::Keys {
                file: file.into(),
                missing,
                extra,
            });
        }
        for (name, expected) in needed {
            let found = &self.tensors[&name].shape;
            if *found != expected {
                return Err(WeightError::ShapeMismatch {
                    file: file.into(),
                    found: found.clone(),
                    name,
                    expected,
                });
            }
        }
        Ok(())
    }

    /// Number of learnable values (running statistics excluded), to compare with the IR.
    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|(name, _)| !name.ends_with(".running_mean") && !name.ends_with(".running_var"))
            .map(|(_, t)| t.data.len() as u64)
            .sum()
    }
}
