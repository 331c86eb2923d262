//! IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.

use super::{DataError, InMemory, file_error};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads a file whole, decompressing it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| file_error(path, format!("corrupt gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| file_error(&dir.join(stem), "missing (also looked for the .gz file)"))
}

/// Parses an IDX file of unsigned bytes with the given number of dimensions.
fn parse(path: &Path, bytes: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(file_error(
            path,
            format!("truncated: {} bytes, an IDX header needs {header}", bytes.len()),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected = 0x0800 | dims as u32;
    if magic != expected {
        return Err(file_error(
            path,
            format!("wrong magic number {magic:#010x}, expected {expected:#010x} (unsigned bytes, {dims} dimensions)"),
        ));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| file_error(path, format!("header dimensions {shape:?} overflow")))?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(file_error(
            path,
            format!(
                "truncated or oversized: header promises {count} bytes of data ({shape:?}), found {}",
                data.len()
            ),
        ));
    }
    Ok((shape, data.to_vec()))
}

fn split(dir: &Path, prefix: &str) -> Result<InMemory, DataError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    decode(
        &images_path,
        &read_maybe_gz(&images_path)?,
        &labels_path,
        &read_maybe_gz(&labels_path)?,
    )
}

/// Decodes an IDX images file (3 dimensions) and its labels file (1 dimension), both
/// already decompressed; the paths name them in errors. A file with no image is an error.
pub(super) fn decode(images_path: &Path, images: &[u8], labels_path: &Path, labels: &[u8]) -> Result<InMemory, DataError> {
    let (shape, images) = parse(images_path, images, 3)?;
    let (count, labels) = parse(labels_path, labels, 1)?;
    if shape.contains(&0) {
        return Err(file_error(
            images_path,
            format!("holds no images (dimensions {shape:?}); a data set needs at least one"),
        ));
    }
    if count[0] != shape[0] {
        return Err(file_error(
            labels_path,
            format!("{} labels for {} images in {}", count[0], shape[0], images_path.display()),
        ));
    }
    if let Some(position) = labels.iter().position(|&l| l >= 10) {
        return Err(file_error(
            labels_path,
            format!("label {} of image {position} is out of range 0..10", labels[position]),
        ));
    }
    Ok(InMemory::new(
        [1, shape[1], shape[2]],
        images,
        labels.into_iter().map(u16::from).collect(),
    ))
}

/// Opens `train-*` and `t10k-*` IDX files in `dir`.
pub(super) fn open(dir: &Path) -> Result<(InMemory, InMemory), DataError> {
    Ok((split(dir, "train")?, split(dir, "t10k")?))
}
