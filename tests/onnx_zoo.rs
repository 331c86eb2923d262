//! The ONNX model zoo architectures that PyPI's `onnx` package ships
//! (`onnx/backend/test/data/light/`: opset 9, Caffe2 exports, weights as ConstantOfShape
//! nodes, stored outputs for the input `arange(n) / n`): each imports and reproduces its
//! stored output; with random weights (tests/common/randomise_onnx.py) it matches ONNX
//! Runtime, pruning equals masking, and it prunes to half its MACs, the pruned export running
//! in ONNX Runtime with sacp's output.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{masked_weights, max_abs_diff, onnx_runtime, random_keep, root};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sacp::deps::Dependencies;
use sacp::exec::{Executable, to_vec};
use sacp::onnx::{from_file, to_bytes};
use std::path::PathBuf;
use std::process::Command;

fn light_folder() -> PathBuf {
    common::python_package("onnx").join("backend/test/data/light")
}

/// The largest absolute difference over the largest absolute expected value (NaN-aware).
fn relative(ours: &[f32], expected: &[f32]) -> f32 {
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "an all-zero reference proves nothing");
    max_abs_diff(ours, expected) / scale
}

fn forward(net: &sacp::ir::Network, w: &sacp::weights::Weights, x: &Tensor<4>) -> Vec<f32> {
    to_vec(Executable::new(net, w, &Device::flex()).forward(x.clone()))
}

/// One light model: import, stored output, random weights vs ONNX Runtime, pruning ==
/// masking, and (with `prune_to_half`) a 50% prune; returns the report line.
fn check(name: &str, prune_to_half: bool) -> String {
    let device = Device::flex();
    let folder = light_folder();
    let path = folder.join(format!("light_{name}.onnx"));
    let (net, w) = from_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    w.check(&net, name).unwrap();
    let dims = net.shape(net.input()).dims();
    let n: usize = dims.iter().product();
    // The input the onnx backend tests feed these models (`generate_dummy_data`, random=False).
    let input: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
    let shape = [1, dims[0], dims[1], dims[2]];
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &device);
    let stored = relative(
        &forward(&net, &w, &x),
        &common::tensor_file(&folder.join(format!("light_{name}_output_0.pb"))).1,
    );
    assert!(stored <= 1e-4, "{name}: stored output reproduced only to {stored:.2e}");

    // Random weights: the same graph against ONNX Runtime.
    let dir = tempfile::tempdir().unwrap();
    let random_path = dir.path().join(format!("{name}.onnx"));
    let made = Command::new("python3")
        .arg(root().join("tests/common/randomise_onnx.py"))
        .arg(&path)
        .arg(&random_path)
        .arg("5")
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (net, w) = from_file(&random_path).unwrap_or_else(|e| panic!("{name} (random weights): {e}"));
    let ours = forward(&net, &w, &x);
    let runtime = relative(&ours, &onnx_runtime(&random_path, &input, shape));
    assert!(runtime <= 1e-4, "{name}: random weights, sacp vs ONNX Runtime {runtime:.2e}");
    let reexported = dir.path().join(format!("{name}.sacp.onnx"));
    std::fs::write(&reexported, to_bytes(&net, &w)).unwrap();
    let roundtrip = relative(&onnx_runtime(&reexported, &input, shape), &ours);
    assert!(roundtrip <= 1e-4, "{name}: sacp's re-export in ONNX Runtime {roundtrip:.2e}");

    // Pruning equals masking on two random keep-sets.
    let deps = Dependencies::analyse(&net);
    let mut rng = StdRng::seed_from_u64(1);
    let mut masking = 0.0f32;
    for _ in 0..2 {
        let keep = random_keep(&deps, &mut rng);
        let (pruned, pw) = sacp::surgery::prune(&net, &w, &deps, &keep).unwrap();
        let masked = forward(&net, &masked_weights(&net, &deps, &keep, &w), &x);
        masking = masking.max(relative(&forward(&pruned, &pw, &x), &masked));
    }
    assert!(masking <= 1e-4, "{name}: pruned vs masked {masking:.2e}");

    let half = if prune_to_half {
        let pruned = common::half_macs_l1(&net, &w, &device);
        assert!(
            (pruned.macs_reduction - 0.5).abs() <= 0.02,
            "{name}: {:.1}% of MACs removed",
            100.0 * pruned.macs_reduction
        );
        let file = dir.path().join(format!("{name}.pruned.onnx"));
        std::fs::write(&file, to_bytes(&pruned.network, &pruned.weights)).unwrap();
        let ours = forward(&pruned.network, &pruned.weights, &x);
        let diff = relative(&onnx_runtime(&file, &input, shape), &ours);
        assert!(diff <= 1e-4, "{name}: pruned, ONNX Runtime vs sacp {diff:.2e}");
        format!(
            "{:.1}% of MACs removed, pruned ONNX vs sacp {diff:.1e}",
            100.0 * pruned.macs_reduction
        )
    } else {
        "not pruned to 50%".to_string()
    };
    let line = format!(
        "{name}: {} layers, {} MACs; stored output {stored:.1e}, random weights vs ONNX Runtime {runtime:.1e}, re-export {roundtrip:.1e}, pruned vs masked {masking:.1e}; {half}",
        net.len(),
        net.total_cost().macs
    );
    println!("{line}");
    line
}

#[test]
fn resnet50() {
    check("resnet50", true);
}

#[test]
fn vgg19() {
    check("vgg19", true);
}

#[test]
fn densenet121() {
    check("densenet121", true);
}

#[test]
fn inception_v1() {
    check("inception_v1", true);
}

#[test]
fn inception_v2() {
    check("inception_v2", true);
}

#[test]
fn squeezenet() {
    check("squeezenet", true);
}

#[test]
fn shufflenet() {
    // Grouped 1×1 convolutions (4 groups) joined by channel shuffles: every group keeps as
    // many channels as the others, not the same positions.
    check("shufflenet", true);
}

#[test]
fn alexnet_and_zfnet() {
    check("bvlc_alexnet", true);
    check("zfnet512", true);
}
