//! PyTorch checkpoints (`torch.save` files, `.pt`/`.pth`) read through the `pytorch-reader`
//! crate: every float tensor of a state dict becomes a weight tensor; integer buffers
//! (`num_batches_tracked`) are skipped; a state dict nested under `state_dict` or
//! `model_state_dict`, or saved from a `DataParallel` wrapper (`module.`), is unwrapped.

use super::{WeightError, WeightTensor, Weights};
use pytorch_reader::{DType, PytorchReader};
use std::path::Path;

/// True when `bytes` begin like a file `torch.save` writes: a ZIP archive (PyTorch 1.6 and
/// later), a pickle stream (older), or a TAR archive (the oldest).
pub fn is_pytorch(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) || bytes.get(257..262) == Some(b"ustar")
}

/// Little-endian (or native, which is little on every platform sacp runs on) elements of a
/// float type as f32; `None` for integer and boolean types.
pub(super) fn floats(dtype: &str, bytes: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "F64" => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    };
    Some(values)
}

/// Loads the float tensors of a PyTorch checkpoint.
pub fn load(path: &Path) -> Result<Weights, WeightError> {
    let file = path.display().to_string();
    let format = |reason: String| WeightError::Format {
        file: file.clone(),
        reason,
    };
    let reader = PytorchReader::new(path).map_err(|e| format(format!("not a readable PyTorch checkpoint: {e}")))?;
    let mut weights = Weights::default();
    for (name, tensor) in reader.tensors() {
        let dtype = match tensor.dtype() {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            _ => continue,
        };
        let bytes = tensor.read().map_err(|e| format(e.to_string()))?;
        let data = floats(dtype, &bytes).expect("a float type");
        let t = WeightTensor {
            shape: tensor.shape().to_vec(),
            data,
        };
        t.check_finite(&file, name)?;
        weights.tensors.insert(name.clone(), t);
    }
    Ok(unwrap_prefixes(weights))
}

/// Strips the prefixes every tensor of a wrapped state dict shares: `state_dict.` or
/// `model_state_dict.` (a training checkpoint's dictionary), `module.` (`DataParallel`).
fn unwrap_prefixes(mut weights: Weights) -> Weights {
    for prefix in ["state_dict.", "model_state_dict.", "module."] {
        if !weights.tensors.is_empty() && weights.tensors.keys().all(|k| k.starts_with(prefix)) {
            weights.tensors = std::mem::take(&mut weights.tensors)
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
    }
    weights
}
