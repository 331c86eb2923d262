//! Image folders: `root/train/<class>/*.png|jpg` and `root/val/<class>/...` (or `test/`),
//! as Tiny-ImageNet and ImageNet validation folders are arranged. Images are decoded when
//! a batch asks for them and resized to the model's input.

use super::{DataError, ImageSource, file_error};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// One split of an image folder.
pub struct Folder {
    files: Vec<(PathBuf, u16)>,
    shape: [usize; 3],
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn scan(dir: &Path, classes: &[String], shape: [usize; 3]) -> Result<Folder, DataError> {
    let mut files = Vec::new();
    for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = class_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let label = classes
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| file_error(&class_dir, format!("class `{name}` does not exist in the training folder")))?;
        files.extend(
            sorted_entries(&class_dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .map(|p| (p, label as u16)),
        );
    }
    if files.is_empty() {
        return Err(file_error(dir, "no .png/.jpg images in class sub-folders"));
    }
    Ok(Folder { files, shape })
}

/// Opens `root/train` and `root/val` (or `root/test`); classes are the train sub-folders.
pub(super) fn open(root: &Path, input: [usize; 3]) -> Result<(Folder, Folder, usize), DataError> {
    if input[0] != 3 && input[0] != 1 {
        return Err(file_error(
            root,
            format!("image folders give RGB or grayscale images, the model takes {} channels", input[0]),
        ));
    }
    let train_dir = root.join("train");
    let classes: Vec<String> = sorted_entries(&train_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        return Err(file_error(&train_dir, "no class sub-folders"));
    }
    let test_dir = [root.join("val"), root.join("test")]
        .into_iter()
        .find(|p| p.is_dir())
        .ok_or_else(|| file_error(&root.join("val"), "missing (also looked for test/)"))?;
    let train = scan(&train_dir, &classes, input)?;
    let test = scan(&test_dir, &classes, input)?;
    Ok((train, test, classes.len()))
}

impl ImageSource for Folder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn label(&self, index: usize) -> usize {
        self.files[index].1 as usize
    }
    fn pixels(&self, index: usize, out: &mut [u8]) -> Result<(), DataError> {
        let path = &self.files[index].0;
        let image = image::open(path).map_err(|e| file_error(path, format!("cannot decode image: {e}")))?;
        let [c, h, w] = self.shape;
        let image = image.resize_exact(w as u32, h as u32, FilterType::Triangle);
        let plane = h * w;
        if c == 1 {
            out.copy_from_slice(image.to_luma8().as_raw());
        } else {
            for (i, px) in image.to_rgb8().pixels().enumerate() {
                for ch in 0..3 {
                    out[ch * plane + i] = px.0[ch];
                }
            }
        }
        Ok(())
    }
}
