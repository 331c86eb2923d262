//! Helpers shared by the integration tests: zoo networks, random weights and inputs, ONNX
//! Runtime runs, and the one NaN-aware comparison every test uses.
#![allow(dead_code)] // each test file uses some of them

use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sacp::channels::Allocation;
use sacp::deps::Dependencies;
use sacp::importance::Method;
use sacp::ir::{Network, Op};
use sacp::models::{ZooConfig, build};
use sacp::prune::{Pruned, Request, one_shot};
use sacp::weights::{self, Weights};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of an installed Python package (`.ci/run` installs what the tests use).
pub fn python_package(name: &str) -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", &format!("import {name}, os; print(os.path.dirname({name}.__file__))")])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python package {name} is missing (.ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A float tensor stored as an ONNX `TensorProto` file: dims and values.
pub fn tensor_file(path: &Path) -> (Vec<usize>, Vec<f32>) {
    use prost::Message;
    let t = sacp::onnx::proto::TensorProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let values: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    (t.dims.iter().map(|&d| d as usize).collect(), values)
}

/// A zoo network from its spec under `models/`, optionally with a smaller input.
pub fn zoo(file: &str, input: Option<[usize; 3]>) -> Network {
    let spec = sacp::spec::load(&root().join("models").join(file)).unwrap();
    match input {
        None => spec.network,
        Some(input) => build(&ZooConfig {
            input,
            ..spec.zoo.unwrap()
        })
        .unwrap(),
    }
}

/// Random weights whose BatchNorm statistics and affine terms are random too, so that a
/// wrongly placed channel shows in the output.
pub fn random_weights(net: &Network, seed: u64) -> Weights {
    let mut w = weights::initialise(net, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for (name, t) in w.tensors.iter_mut() {
        let range = if name.ends_with(".running_var") || (name.ends_with(".weight") && t.shape.len() == 1) {
            0.5..1.5
        } else if t.shape.len() == 1 {
            -0.5..0.5
        } else {
            continue;
        };
        t.data.iter_mut().for_each(|v| *v = rng.random_range(range.clone()));
    }
    w
}

/// A random keep-set: each prunable group keeps a random non-empty subset.
pub fn random_keep(deps: &Dependencies, rng: &mut StdRng) -> Vec<Vec<usize>> {
    deps.groups
        .iter()
        .map(|g| {
            if !g.prunable() {
                return (0..g.size()).collect();
            }
            let count = rng.random_range(1..=g.size());
            let mut all: Vec<usize> = (0..g.size()).collect();
            for i in 0..count {
                let j = rng.random_range(i..g.size());
                all.swap(i, j);
            }
            let mut keep = all[..count].to_vec();
            keep.sort_unstable();
            keep
        })
        .collect()
}

/// The original weights with every unit a keep-set removes forced to zero where it is made:
/// the rows and biases of conv and linear layers and the affine terms of BatchNorm layers.
/// A removed unit then carries zeros through every other layer (activations, pooling,
/// adds and concats of zeros, the zero-pad shortcut), so running the original network with
/// these weights must equal running the pruned network.
pub fn masked_weights(net: &Network, deps: &Dependencies, keep: &[Vec<usize>], weights: &Weights) -> Weights {
    let kept = deps.kept_units(net, keep);
    let mut masked = weights.clone();
    for node in net.nodes() {
        if !matches!(net.node(node).op, Op::Conv2d { .. } | Op::Linear { .. } | Op::BatchNorm { .. }) {
            continue;
        }
        let removed: Vec<usize> = (0..sacp::deps::units(net, node))
            .filter(|u| !kept[node.index()].contains(u))
            .collect();
        for kind in ["weight", "bias"] {
            if let Some(t) = masked.tensors.get_mut(&format!("{}.{kind}", net.node(node).name)) {
                let row = t.data.len() / t.shape[0];
                for &u in &removed {
                    t.data[u * row..(u + 1) * row].fill(0.0);
                }
            }
        }
    }
    masked
}

/// Deterministic pseudo-random input images `[batch, C, H, W]` as a flat vector.
pub fn random_input(net: &Network, batch: usize, seed: u64) -> (Vec<f32>, [usize; 4]) {
    let dims = net.shape(net.input()).dims();
    let shape = [batch, dims[0], dims[1], dims[2]];
    let mut rng = StdRng::seed_from_u64(seed);
    ((0..shape.iter().product()).map(|_| rng.random_range(-1.0..1.0)).collect(), shape)
}

/// Largest absolute difference of two equally long slices. Panics (failing the test) when
/// either side holds a NaN or an infinity: a comparison with a non-finite value proves
/// nothing, whichever way the test reads the difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    for (side, values) in [("left", a), ("right", b)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            panic!(
                "the {side} side holds {} at index {i}: non-finite values never compare equal",
                values[i]
            );
        }
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `model` on `input` (`dims` = N, C, H, W) in ONNX Runtime after `onnx.checker`,
/// through `tests/common/onnx_run.py`; returns the first output.
pub fn onnx_runtime(model: &Path, input: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = (dir.path().join("x.bin"), dir.path().join("y.bin"));
    std::fs::write(&x, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let run = Command::new("python3")
        .arg(root().join("tests/common/onnx_run.py"))
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
        round_to: 1,
        seed: 0,
        device,
        probe: None,
        gcn: Default::default(),
        gcn_cache: None,
        gcn_rl: None,
    })
    .unwrap()
}

/// VGG-8 trained 40 steps on the embedded Fashion-MNIST subset (seeded), made once per test
/// binary and shared by its tests.
pub fn subset_vgg8_weights() -> &'static Path {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}_vgg8.safetensors", env!("CARGO_CRATE_NAME")));
        let net = sacp::spec::load(&root().join("models/vgg8_fashion_mnist.toml")).unwrap().network;
        let data = sacp::data::open(
            &format!("fashion-mnist:{}/data/fashion-mnist-subset", root().display()),
            [1, 28, 28],
        )
        .unwrap();
        let config = sacp::train::TrainConfig {
            epochs: 1,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            schedule: sacp::train::Schedule::Cosine,
            label_smoothing: 0.0,
            seed: 0,
            heldout: 1000,
            max_steps_per_epoch: Some(40),
        };
        let initial = weights::initialise(&net, 0);
        let summary = sacp::train::train(&net, &initial, &data, &config, None, &Device::flex(), None, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        weights::save(&summary.weights, &path).unwrap();
        path
    })
}

/// A small search space on the subset and [`subset_vgg8_weights`] (per-stage, 50% ± 5% MACs,
/// refine, 6 recalibration and 6 held-out batches, 4 fine-tuning steps), written to
/// `dir/space.toml` with `importance`, extra `[evaluate]` keys and extra tables.
pub fn subset_search_space(dir: &Path, budget: usize, importance: &str, evaluate_extra: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"[model]
spec = "{root}/models/vgg8_fashion_mnist.toml"
weights = "{weights}"

[data]
dataset = "fashion-mnist:{root}/data/fashion-mnist-subset"
heldout = 1000

[space]
clustering = "per_stage"
rates = [0.0, 0.25, 0.5, 0.75]

[constraints]
macs_reduction = 0.5
tolerance = 0.05

[search]
strategy = "refine"
budget = {budget}
gcn_top_m = 4
gcn_steps = 40
importance = "{importance}"

[evaluate]
backend = "cpu"
recalibration_batches = 6
heldout_batches = 6
{evaluate_extra}

[finetune]
epochs = 1
max_steps = 4

[output]
folder = "out"
{extra}
"#,
        root = root().display(),
        weights = subset_vgg8_weights().display()
    );
    let path = dir.join("space.toml");
    std::fs::write(&path, text).unwrap();
    path
}
