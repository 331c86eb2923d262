//! Safetensors files and atomic writes.

use super::{WeightError, WeightTensor, Weights};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed and
/// renamed over the target, so a crash never leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Saves weights as a safetensors file (little-endian F32), atomically.
pub fn save(weights: &Weights, path: &Path) -> Result<(), WeightError> {
    save_with_metadata(weights, None, path)
}

/// Saves weights with string metadata in the safetensors header, atomically.
pub fn save_with_metadata(weights: &Weights, metadata: Option<HashMap<String, String>>, path: &Path) -> Result<(), WeightError> {
    let file = path.display().to_string();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.as_str(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WeightError::Format {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    let serialized = safetensors::serialize(views, metadata).map_err(|e| WeightError::Format {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &serialized).map_err(|source| WeightError::Io { file, source })
}

/// Loads every tensor of a safetensors file; all must be F32.
pub fn load(path: &Path) -> Result<Weights, WeightError> {
    Ok(load_with_metadata(path)?.0)
}

/// Loads every float tensor of a safetensors file or a PyTorch checkpoint (`.pt`/`.pth`,
/// told apart by their first bytes) and the string metadata of a safetensors header.
pub fn load_with_metadata(path: &Path) -> Result<(Weights, HashMap<String, String>), WeightError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| WeightError::Io {
        file: file.clone(),
        source,
    })?;
    if super::pytorch::is_pytorch(&bytes) {
        return Ok((super::pytorch::load(path)?, HashMap::new()));
    }
    from_bytes(&bytes, &file)
}

/// Parses a safetensors file's bytes (`file` names it in errors): float tensors (F32, and
/// F64, F16, BF16 converted to f32) are read, integer and boolean ones (PyTorch's
/// `num_batches_tracked` buffers) skipped; every value must be finite, and the error names
/// the first tensor and index that is not.
pub fn from_bytes(bytes: &[u8], file: &str) -> Result<(Weights, HashMap<String, String>), WeightError> {
    let format = |e: safetensors::SafeTensorError| WeightError::Format {
        file: file.to_string(),
        reason: e.to_string(),
    };
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(format)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let parsed = safetensors::SafeTensors::deserialize(bytes).map_err(format)?;
    let mut weights = Weights::default();
    for (name, view) in parsed.tensors() {
        let dtype = format!("{:?}", view.dtype());
        let data = match super::pytorch::floats(&dtype, view.data()) {
            Some(data) => data,
            None if dtype.starts_with('I') || dtype.starts_with('U') || dtype == "BOOL" => continue,
            None => {
                return Err(WeightError::Dtype {
                    file: file.to_string(),
                    name,
                    dtype,
                });
            }
        };
        let tensor = WeightTensor {
            shape: view.shape().to_vec(),
            data,
        };
        tensor.check_finite(file, &name)?;
        weights.tensors.insert(name, tensor);
    }
    Ok((weights, metadata))
}
