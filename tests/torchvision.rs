//! torchvision's CNN families as PyTorch exports them, with both exporters (the legacy
//! TorchScript one and the default dynamo one with external data), generated here by
//! tests/common/export_torchvision.py (random weights, non-trivial BatchNorm statistics):
//! each imports with the file's parameter count, matches ONNX Runtime on the same file,
//! re-exports to an equal model, prunes as masking does, and prunes to half its MACs into
//! an ONNX file that ONNX Runtime runs with sacp's output.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{half_macs_l1, masked_weights, max_abs_diff, onnx_runtime, random_input, random_keep, root};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sacp::deps::Dependencies;
use sacp::exec::{Executable, to_vec};
use sacp::ir::Network;
use sacp::onnx::proto::{ModelProto, data_type};
use sacp::onnx::{from_file, to_bytes};
use sacp::weights::Weights;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Input side for every model but VGG (exported at 224).
const SIZE: usize = 64;

/// Parameters the ONNX file's layers use: the float initializers each node reads (an
/// initializer the exporter shares between layers, such as one all-zero bias, counts once
/// per layer, as it is one per layer in the network), BatchNorm running statistics excepted;
/// counted from the dimensions, so external data need not be read.
fn file_parameters(path: &Path) -> u64 {
    let model = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let sizes: HashMap<&String, u64> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == data_type::FLOAT && !t.dims.is_empty())
        .map(|t| (&t.name, t.dims.iter().product::<i64>() as u64))
        .collect();
    graph
        .node
        .iter()
        .flat_map(|n| {
            let statistics = if n.op_type == "BatchNormalization" { 3 } else { usize::MAX };
            n.input.iter().take(statistics)
        })
        .filter_map(|input| sizes.get(input))
        .sum()
}

/// The largest absolute difference over the largest absolute reference value (NaN-aware).
fn relative(ours: &[f32], reference: &[f32]) -> f32 {
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "an all-zero reference proves nothing");
    max_abs_diff(ours, reference) / scale
}

fn forward(net: &Network, w: &Weights, x: &Tensor<4>) -> Vec<f32> {
    to_vec(Executable::new(net, w, &Device::flex()).forward(x.clone()))
}

/// Everything the module doc promises, for one exported file; returns the report line.
fn check_file(path: &Path) -> String {
    let label = path.file_stem().unwrap().to_string_lossy().into_owned();
    let device = Device::flex();
    let (net, w) = from_file(path).unwrap_or_else(|e| panic!("{label}: {e}"));
    w.check(&net, &label).unwrap();
    let params = net.total_cost().params;
    assert_eq!(params, file_parameters(path), "{label}: parameters of sacp's network vs the file's");

    let (input, shape) = random_input(&net, 1, 3);
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &device);
    let ours = forward(&net, &w, &x);
    let runtime = relative(&ours, &onnx_runtime(path, &input, shape));
    assert!(runtime <= 1e-4, "{label}: sacp vs ONNX Runtime on the file, {runtime:.2e}");
    let dir = tempfile::tempdir().unwrap();
    let reexport = dir.path().join("reexport.onnx");
    std::fs::write(&reexport, to_bytes(&net, &w)).unwrap();
    let roundtrip = relative(&onnx_runtime(&reexport, &input, shape), &ours);
    assert!(roundtrip <= 1e-4, "{label}: sacp's re-export in ONNX Runtime, {roundtrip:.2e}");

    let deps = Dependencies::analyse(&net);
    let keep = random_keep(&deps, &mut StdRng::seed_from_u64(1));
    let (pruned, pw) = sacp::surgery::prune(&net, &w, &deps, &keep).unwrap();
    let masked = forward(&net, &masked_weights(&net, &deps, &keep, &w), &x);
    let masking = relative(&forward(&pruned, &pw, &x), &masked);
    assert!(masking <= 1e-4, "{label}: pruned vs masked, {masking:.2e}");

    let half = half_macs_l1(&net, &w, &device);
    assert!(
        (half.macs_reduction - 0.5).abs() <= 0.02,
        "{label}: {:.1}% of MACs removed",
        100.0 * half.macs_reduction
    );
    let file = dir.path().join("pruned.onnx");
    std::fs::write(&file, to_bytes(&half.network, &half.weights)).unwrap();
    let pruned_runtime = onnx_runtime(&file, &input, shape);
    let half_diff = relative(&pruned_runtime, &forward(&half.network, &half.weights, &x));
    assert!(half_diff <= 1e-4, "{label}: pruned, ONNX Runtime vs sacp, {half_diff:.2e}");
    format!(
        "{label}: {} layers, {params} parameters (= the file's), {} MACs; vs ONNX Runtime {runtime:.1e}, re-export {roundtrip:.1e}, pruned vs masked {masking:.1e}; {:.1}% of MACs removed, pruned ONNX vs sacp {half_diff:.1e}",
        net.len(),
        net.total_cost().macs,
        100.0 * half.macs_reduction
    )
}

/// Exports torchvision's `name` with `classes` outputs, with both exporters, into `dir`.
fn export(dir: &Path, name: &str, classes: usize) {
    let made = Command::new("python3")
        .arg(root().join("tests/common/export_torchvision.py"))
        .arg(dir)
        .arg(SIZE.to_string())
        .arg(name)
        .arg(classes.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        made.status.success(),
        "{name}: export (pip install torch torchvision; .ci/run does): {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// Exports `name` with both exporters and checks both files.
fn check(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), name, 1000);
    for exporter in ["legacy", "dynamo"] {
        println!("{}", check_file(&dir.path().join(format!("{name}_{exporter}.onnx"))));
    }
}

/// Runs the `sacp` binary; fails the test with its stderr unless it succeeds; returns stdout.
fn sacp(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sacp")).args(args).output().unwrap();
    assert!(out.status.success(), "sacp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn resnet18() {
    check("resnet18");
}

/// The round trip of a user's network through the command line: torchvision's resnet18
/// with 10 classes, legacy export (input `input.1`), as an ONNX spec is pruned by `sacp
/// prune`, and the `pruned.toml` it writes works in every command; its ONNX export keeps
/// the file's input and output names and runs in ONNX Runtime.
#[test]
fn an_imported_network_goes_through_every_command() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path(), "resnet18", 10);
    let file = dir.path().join("resnet18_legacy.onnx");
    let spec = dir.path().join("resnet18.toml");
    std::fs::write(&spec, format!("arch = \"onnx\"\nonnx = \"{}\"\n", file.display())).unwrap();
    let data = "synthetic:64";
    let out = dir.path().join("pruned");
    let os = |s: &str| std::ffi::OsString::from(s);
    let path = |p: &Path| p.as_os_str().to_owned();
    let run = |args: &[std::ffi::OsString]| sacp(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
    run(&[os("inspect"), path(&spec)]);
    run(&[
        os("prune"),
        path(&spec),
        os("--importance"),
        os("l1"),
        os("--macs-reduction"),
        os("0.5"),
        os("--recalibrate"),
        os("2"),
        os("--data"),
        os(data),
        os("--heldout"),
        os("16"),
        os("--out"),
        path(&out),
    ]);
    let pruned_spec = out.join("pruned.toml");
    let (original, _) = from_file(&file).unwrap();
    let pruned = sacp::spec::load(&pruned_spec).unwrap();
    let macs = pruned.network.total_cost().macs as f64 / original.total_cost().macs as f64;
    assert!((macs - 0.5).abs() <= 0.02, "pruned.toml keeps {:.1}% of the MACs", 100.0 * macs);

    let inspected = run(&[os("inspect"), path(&pruned_spec)]);
    assert!(inspected.contains("all shapes match"), "{inspected}");
    let eval: serde_json::Value =
        serde_json::from_str(&run(&[os("eval"), path(&pruned_spec), os("--data"), os(data), os("--json")])).unwrap();
    assert!(eval["top1"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{eval}");
    run(&[
        os("train"),
        path(&pruned_spec),
        os("--data"),
        os(data),
        os("--epochs"),
        os("1"),
        os("--max-steps"),
        os("2"),
        os("--batch-size"),
        os("8"),
        os("--heldout"),
        os("16"),
        os("--out"),
        path(&dir.path().join("trained")),
    ]);
    run(&[
        os("prune"),
        path(&pruned_spec),
        os("--importance"),
        os("l1"),
        os("--macs-reduction"),
        os("0.3"),
        os("--out"),
        path(&dir.path().join("again")),
    ]);
    run(&[os("bench"), path(&pruned_spec), os("--iters"), os("1"), os("--batch"), os("1")]);
    run(&[
        os("init"),
        path(&pruned_spec),
        os("--out"),
        path(&dir.path().join("init.safetensors")),
    ]);
    let exported = dir.path().join("pruned.onnx");
    run(&[os("export"), path(&pruned_spec), os("--out"), path(&exported)]);

    // The exported file: the user's names, and ONNX Runtime computes what sacp does.
    let names = |p: &Path| {
        let graph = ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap().graph.unwrap();
        (graph.input[0].name.clone(), graph.output[0].name.clone())
    };
    assert_eq!(names(&exported), names(&file));
    assert_eq!(names(&exported).0, "input.1");
    let weights = pruned.weights.as_ref().map(|w| sacp::weights::load(w).unwrap()).unwrap();
    let (input, shape) = random_input(&pruned.network, 1, 3);
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &Device::flex());
    let diff = relative(&onnx_runtime(&exported, &input, shape), &forward(&pruned.network, &weights, &x));
    assert!(diff <= 1e-4, "exported pruned.toml: ONNX Runtime vs sacp, {diff:.2e}");
}

#[test]
fn resnet50() {
    check("resnet50");
}

#[test]
fn mobilenet_v2() {
    check("mobilenet_v2");
}

#[test]
fn mobilenet_v3_small() {
    check("mobilenet_v3_small");
}

#[test]
fn efficientnet_b0() {
    check("efficientnet_b0");
}

#[test]
fn densenet121() {
    check("densenet121");
}

#[test]
fn googlenet() {
    check("googlenet");
}

#[test]
fn resnext50_32x4d() {
    check("resnext50_32x4d");
}

#[test]
fn regnet_y_400mf() {
    check("regnet_y_400mf");
}

#[test]
fn shufflenet_v2_x1_0() {
    check("shufflenet_v2_x1_0");
}

#[test]
fn squeezenet1_1() {
    check("squeezenet1_1");
}

#[test]
fn vgg11_bn() {
    check("vgg11_bn");
}

fn floats(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// torchvision's resnet18 and mobilenet_v2 state dicts, as `torch.save` writes them and as
/// safetensors (both with their int64 `num_batches_tracked` buffers), load into the zoo's
/// specs by name and give PyTorch's output; a state dict for another network is refused with
/// the missing and the extra tensors named.
#[test]
fn torchvision_state_dicts_load_into_the_zoo_specs() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in [
        ("resnet18", "resnet18_imagenet.toml"),
        ("mobilenet_v2", "mobilenetv2_imagenet.toml"),
    ] {
        let made = Command::new("python3")
            .arg(root().join("tests/common/save_state_dict.py"))
            .arg(dir.path())
            .arg(name)
            .arg("224")
            .output()
            .expect("python3 runs");
        assert!(made.status.success(), "{name}: {}", String::from_utf8_lossy(&made.stderr));
        let net = sacp::spec::load(&root().join("models").join(spec)).unwrap().network;
        let input = floats(&dir.path().join("input.bin"));
        let expected = floats(&dir.path().join("output.bin"));
        let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, 224, 224]), &device);
        for file in [format!("{name}.pth"), format!("{name}.safetensors")] {
            let w = sacp::weights::load(&dir.path().join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            w.check(&net, &file).unwrap_or_else(|e| panic!("{e}"));
            let diff = relative(&forward(&net, &w, &x), &expected);
            println!("{file} in {spec}: PyTorch's output to a relative {diff:.1e}");
            assert!(diff <= 1e-4, "{file}: {diff:.2e}");
        }
    }
    let net = sacp::spec::load(&root().join("models/mobilenetv2_imagenet.toml")).unwrap().network;
    let error = sacp::weights::load(&dir.path().join("resnet18.pth"))
        .unwrap()
        .check(&net, "resnet18.pth")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing: features.0.0.weight [32, 3, 3, 3]") && error.contains("does not need: bn1.bias"),
        "{error}"
    );
}
