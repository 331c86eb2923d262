//! CIFAR-10 and CIFAR-100 binary files.

use super::{DataError, InMemory, file_error};
use std::path::{Path, PathBuf};

/// Reads the files' records (see [`decode`]) into one split.
fn read(paths: &[PathBuf], label_bytes: usize, classes: usize) -> Result<InMemory, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
        decode_into(path, &bytes, label_bytes, classes, &mut images, &mut labels)?;
    }
    Ok(InMemory::new([3, 32, 32], images, labels))
}

/// Decodes one CIFAR binary file: records of `label_bytes` label bytes followed by a
/// 3×32×32 image, the last label byte being the class (CIFAR-100's fine label). The path
/// names it in errors; an empty file, a partial record or a label outside `0..classes` is
/// an error.
pub(super) fn decode(path: &Path, bytes: &[u8], label_bytes: usize, classes: usize) -> Result<InMemory, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    decode_into(path, bytes, label_bytes, classes, &mut images, &mut labels)?;
    Ok(InMemory::new([3, 32, 32], images, labels))
}

fn decode_into(
    path: &Path,
    bytes: &[u8],
    label_bytes: usize,
    classes: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<(), DataError> {
    const IMAGE: usize = 3 * 32 * 32;
    let record = label_bytes + IMAGE;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(file_error(
            path,
            format!(
                "truncated: {} bytes is not a whole number of {record}-byte records ({label_bytes} label byte(s) + 3×32×32 pixels)",
                bytes.len()
            ),
        ));
    }
    for (i, chunk) in bytes.chunks_exact(record).enumerate() {
        let label = chunk[label_bytes - 1] as usize;
        if label >= classes {
            return Err(file_error(path, format!("record {i}: label {label} is out of range 0..{classes}")));
        }
        labels.push(label as u16);
        images.extend_from_slice(&chunk[label_bytes..]);
    }
    Ok(())
}

fn locate(dir: &Path, names: &[&str]) -> Result<Vec<PathBuf>, DataError> {
    // Accept the folder itself or the folder the official archives unpack into.
    let candidates = [dir.to_path_buf(), dir.join("cifar-10-batches-bin"), dir.join("cifar-100-binary")];
    for base in &candidates {
        let paths: Vec<PathBuf> = names.iter().map(|n| base.join(n)).collect();
        if paths.iter().all(|p| p.is_file()) {
            return Ok(paths);
        }
    }
    let missing = names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| !p.is_file())
        .unwrap_or_else(|| dir.join(names[0]));
    Err(file_error(
        &missing,
        format!("missing; expected {} in this folder", names.join(", ")),
    ))
}

/// Opens CIFAR-10 (`data_batch_1..5.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`,
/// `test.bin`) binaries in `dir`.
pub(super) fn open(dir: &Path, classes: usize) -> Result<(InMemory, InMemory), DataError> {
    if classes == 10 {
        let train = locate(
            dir,
            &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
        )?;
        let test = locate(dir, &["test_batch.bin"])?;
        Ok((read(&train, 1, 10)?, read(&test, 1, 10)?))
    } else {
        Ok((
            read(&locate(dir, &["train.bin"])?, 2, 100)?,
            read(&locate(dir, &["test.bin"])?, 2, 100)?,
        ))
    }
}
