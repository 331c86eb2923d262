//! Helpers shared by the integration tests that run ONNX Runtime or prune a network.
#![allow(dead_code)] // each test file uses some of them

use burn::tensor::Device;
use sacp::importance::{Allocation, Method};
use sacp::ir::Network;
use sacp::prune::{Pruned, Request, one_shot};
use sacp::weights::Weights;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `model` on `input` (`dims` = N, C, H, W) in ONNX Runtime after `onnx.checker`,
/// through `tests/support/onnx_run.py`; returns the first output.
pub fn onnx_runtime(model: &Path, input: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x.bin"), dir.path().join("y.bin"));
    std::fs::write(&x, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let run = Command::new("python3")
        .arg(root().join("tests/support/onnx_run.py"))
        .arg(model)
        .arg(&x)
        .args(dims.map(|d| d.to_string()))
        .arg(&y)
        .output()
        .expect("python3 runs (.ci/run installs onnxruntime and onnx)");
    assert!(
        run.status.success(),
        "{}: {}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(&y)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// The network pruned to half its MACs (l1 importance, uniform allocation).
pub fn half_macs_l1(net: &Network, weights: &Weights, device: &Device) -> Pruned {
    one_shot(&Request {
        net,
        weights,
        method: Method::L1,
        target: 0.5,
        allocation: Allocation::Uniform,
        max_ratio: 0.9,
        seed: 0,
        device,
        probe: None,
        gcn: Default::default(),
        gcn_cache: None,
        gcn_rl: None,
    })
    .unwrap()
}

/// Largest absolute difference of two equally long vectors.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
