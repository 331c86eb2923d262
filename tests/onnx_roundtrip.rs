//! ONNX export checked by a real runtime: every zoo model and pruned ones are exported,
//! validated by `onnx.checker` and run by ONNX Runtime (Python, installed by .ci/run); the
//! outputs must match sacp's own forward within 1e-4.

use burn::tensor::{Device, Distribution, Tensor};
use common::root;
use sacp::deps::Dependencies;
use sacp::exec::{Executable, NormMode, to_vec};
use sacp::ir::Network;
use sacp::weights::{self, Weights};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// Seeded weights whose BatchNorm statistics come from a random batch (so deep nets stay
/// O(1)); the batch is large enough that no channel's variance is near zero.
fn calibrated(net: &Network, device: &Device) -> Weights {
    let w = weights::initialise(net, 1);
    let dims = net.shape(net.input()).dims();
    let batch = if dims[1] > 64 { 4 } else { 16 };
    let x = Tensor::<4>::random([batch, dims[0], dims[1], dims[2]], Distribution::Normal(0.0, 1.0), device);
    let exec = Executable::new(net, &w, device);
    exec.forward_with(x, NormMode::Train { momentum: 1.0 });
    exec.weights()
}

/// Exports, runs in ONNX Runtime, returns the max abs difference to sacp's forward.
fn compare(net: &Network, w: &Weights, x: &Tensor<4>, device: &Device, dir: &Path, tag: &str) -> f32 {
    let model = dir.join(format!("{tag}.onnx"));
    std::fs::write(&model, sacp::onnx::to_bytes(net, w)).unwrap();
    let input: Vec<f32> = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let theirs = common::onnx_runtime(&model, &input, x.dims());
    let ours = to_vec(Executable::new(net, w, device).forward(x.clone()));
    let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "{tag}: a vanishing output compares nothing");
    common::max_abs_diff(&ours, &theirs)
}

#[test]
fn every_zoo_model_and_pruned_ones_match_onnx_runtime() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    specs.sort();
    for path in specs {
        let tag = path.file_stem().unwrap().to_string_lossy().to_string();
        let net = sacp::spec::load(&path).unwrap().network;
        let dims = net.shape(net.input()).dims();
        let x = Tensor::<4>::random([2, dims[0], dims[1], dims[2]], Distribution::Normal(0.0, 1.0), &device);
        let w = calibrated(&net, &device);
        let diff = compare(&net, &w, &x, &device, dir.path(), &tag);
        println!("{tag}: max abs difference {diff:.2e}");
        assert!(diff <= 1e-4, "{tag}: {diff}");

        // The same network pruned to half its MACs (l1, uniform).
        let pruned = common::half_macs_l1(&net, &w, &device);
        assert!(Dependencies::analyse(&pruned.network).groups.len() > 1);
        let diff = compare(&pruned.network, &pruned.weights, &x, &device, dir.path(), &format!("{tag}-pruned"));
        println!("{tag} pruned: max abs difference {diff:.2e}");
        assert!(diff <= 1e-4, "{tag} pruned: {diff}");
    }
}

#[test]
fn sacp_export_writes_onnx_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let sacp = env!("CARGO_BIN_EXE_sacp");
    let model = root().join("models/resnet20_cifar10.toml");
    let w = dir.path().join("w.safetensors");
    let ok = |args: &[&std::ffi::OsStr]| assert!(Command::new(sacp).args(args).status().unwrap().success(), "{args:?}");
    ok(&["init".as_ref(), model.as_os_str(), "--out".as_ref(), w.as_os_str()]);
    let onnx = dir.path().join("m.onnx");
    ok(&[
        "export".as_ref(),
        model.as_os_str(),
        "--weights".as_ref(),
        w.as_os_str(),
        "--out".as_ref(),
        onnx.as_os_str(),
    ]);
    let copy = dir.path().join("copy.safetensors");
    let args = [
        "export".as_ref(),
        model.as_os_str(),
        "--weights".as_ref(),
        w.as_os_str(),
        "--format".as_ref(),
        "safetensors".as_ref(),
        "--out".as_ref(),
        copy.as_os_str(),
    ];
    ok(&args);
    assert_eq!(weights::load(&copy).unwrap().tensors, weights::load(&w).unwrap().tensors);
    let net = sacp::spec::load(&model).unwrap().network;
    assert_eq!(
        std::fs::read(&onnx).unwrap(),
        sacp::onnx::to_bytes(&net, &weights::load(&w).unwrap())
    );
}
