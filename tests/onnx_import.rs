//! ONNX import: sacp's own exports come back as the same network; the ONNX model zoo's
//! MNIST-8 (shipped in PyPI's qonnx) reproduces its stored output, prunes, and its pruned
//! export runs in ONNX Runtime; malformed files are errors, never panics.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use common::{max_abs_diff, root};
use prost::Message;
use sacp::exec::{Executable, NormMode, to_vec};
use sacp::onnx::proto::{GraphProto, ModelProto, NodeProto};
use sacp::onnx::{OnnxError, from_bytes, from_file, to_bytes, to_model};
use sacp::weights;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

#[test]
fn exports_of_every_zoo_model_import_as_the_same_network() {
    let device = Device::flex();
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let net = sacp::spec::load(&path).unwrap().network;
        let dims = net.shape(net.input()).dims();
        let x = Tensor::<4>::random([2, dims[0], dims[1], dims[2]], Distribution::Normal(0.0, 1.0), &device);
        let exec = Executable::new(&net, &weights::initialise(&net, 2), &device);
        exec.forward_with(x.clone(), NormMode::Train { momentum: 1.0 });
        let w = exec.weights();
        let (imported, iw) = from_bytes(&to_bytes(&net, &w)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        iw.check(&imported, "imported").unwrap();
        assert_eq!(imported.total_cost(), net.total_cost(), "{}", path.display());
        let ours = to_vec(Executable::new(&net, &w, &device).forward(x.clone()));
        let theirs = to_vec(Executable::new(&imported, &iw, &device).forward(x));
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff <= 1e-5, "{}: {diff}", path.display());
    }
}

fn qonnx_mnist() -> PathBuf {
    common::python_package("qonnx").join("data/onnx/mnist-conv")
}

#[test]
fn the_model_zoo_mnist_network_imports_prunes_and_exports() {
    let folder = qonnx_mnist();
    let (net, w) = from_bytes(&std::fs::read(folder.join("model.onnx")).unwrap()).unwrap();
    w.check(&net, "model.onnx").unwrap();
    let device = Device::flex();
    let (dims, input) = common::tensor_file(&folder.join("test_data_set_0/input_0.pb"));
    let (_, expected) = common::tensor_file(&folder.join("test_data_set_0/output_0.pb"));
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [dims[0], dims[1], dims[2], dims[3]]), &device);
    let ours = to_vec(Executable::new(&net, &w, &device).forward(x.clone()));
    // Its logits are in the thousands: compare relative to their scale (1 ulp ≈ 1e-7).
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&ours, &expected) / scale;
    println!(
        "MNIST-8: {} params, {} MACs; stored output (largest {scale:.0}) reproduced to a relative {diff:.2e}",
        net.total_cost().params,
        net.total_cost().macs
    );
    assert!(diff <= 1e-6, "{diff}");

    // Prune half its MACs and run the pruned export in ONNX Runtime.
    let pruned = common::half_macs_l1(&net, &w, &device);
    assert!(pruned.macs_reduction >= 0.5);
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("pruned.onnx");
    std::fs::write(&model, to_bytes(&pruned.network, &pruned.weights)).unwrap();
    let theirs = common::onnx_runtime(&model, &input, [dims[0], dims[1], dims[2], dims[3]]);
    let ours = to_vec(Executable::new(&pruned.network, &pruned.weights, &device).forward(x));
    let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&ours, &theirs) / scale;
    println!(
        "MNIST-8 pruned ({:.1}% of MACs removed, largest output {scale:.0}): ONNX Runtime vs sacp, relative {diff:.2e}",
        100.0 * pruned.macs_reduction
    );
    assert!(diff <= 1e-6, "{diff}");
}

#[test]
fn malformed_and_unsupported_files_are_errors() {
    let net = sacp::spec::load(&root().join("models/resnet20_cifar10.toml")).unwrap().network;
    let bytes = to_bytes(&net, &weights::initialise(&net, 0));
    // Every truncation point in the first 4 KiB and a spread over the rest: errors only.
    let cuts = (0..4096).chain((4096..bytes.len()).step_by(997));
    for cut in cuts {
        assert!(from_bytes(&bytes[..cut]).is_err(), "a file cut at {cut} bytes was accepted");
    }
    let mut noise = bytes.clone();
    for i in (0..noise.len()).step_by(7) {
        noise[i] = noise[i].wrapping_mul(31).wrapping_add(17);
    }
    let _ = from_bytes(&noise); // may or may not decode; must not panic
    assert!(matches!(from_bytes(b"definitely not onnx"), Err(OnnxError::Decode(_))));

    // Two unsupported nodes: both are listed by name and op.
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph: &mut GraphProto = model.graph.as_mut().unwrap();
    let last = graph.node.last().unwrap().output[0].clone();
    for (name, op) in [("warp", "GridSample"), ("probabilities", "Hardmax")] {
        let input = graph.node.last().unwrap().output[0].clone();
        graph.node.push(NodeProto {
            input: vec![input],
            output: vec![format!("{name}_out")],
            name: name.into(),
            op_type: op.into(),
            ..Default::default()
        });
    }
    graph.output[0].name = "probabilities_out".into();
    assert_ne!(last, "probabilities_out");
    let error = from_bytes(&model.encode_to_vec()).unwrap_err().to_string();
    assert!(
        error.contains("warp: GridSample") && error.contains("probabilities: Hardmax"),
        "{error}"
    );
}

/// Found by `cargo fuzz`: a MaxPool whose `strides` attribute is lost (stride 1) changes the
/// width that reaches the classifier, whose initializer then no longer fits: an error.
#[test]
fn initializers_that_do_not_fit_the_imported_layers_are_errors() {
    let net = sacp::spec::load(&root().join("models/vgg8_fashion_mnist.toml")).unwrap().network;
    let bytes = to_bytes(&net, &weights::initialise(&net, 0));
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let pool = graph.node.iter_mut().rfind(|n| n.op_type == "MaxPool").unwrap();
    let before = pool.attribute.len();
    pool.attribute.retain(|a| a.name != "strides");
    assert_eq!(pool.attribute.len(), before - 1);
    let error = from_bytes(&model.encode_to_vec()).unwrap_err();
    assert!(matches!(error, OnnxError::Weights(_)), "{error}");
    assert!(error.to_string().contains("1152"), "{error}");
}

#[test]
fn an_onnx_model_spec_is_searched_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let model = qonnx_mnist().join("model.onnx");
    let spec_path = dir.path().join("mnist8.toml");
    std::fs::write(&spec_path, format!("arch = \"onnx\"\nonnx = \"{}\"\n", model.display())).unwrap();
    let spec = sacp::spec::load(&spec_path).unwrap();
    spec.embedded_weights()
        .expect("the ONNX file's weights")
        .check(&spec.network, "mnist8")
        .unwrap();

    // Spec errors name the line and key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "arch = \"onnx\"\n").unwrap();
    let e = sacp::spec::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.toml:1: `onnx`"), "{e}");
    std::fs::write(
        &bad,
        "arch = \"vgg\"\ndepth = 8\nnum_classes = 10\ninput = [1, 28, 28]\nonnx = \"m.onnx\"\n",
    )
    .unwrap();
    let e = sacp::spec::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.toml:5: `onnx`"), "{e}");

    // A search space over the imported network, no weights file and no training needed.
    let space = dir.path().join("space.toml");
    std::fs::write(
        &space,
        format!(
            r#"[model]
spec = "{spec}"
[data]
dataset = "fashion-mnist:{root}/data/fashion-mnist-subset"
heldout = 500
[space]
clustering = "per_stage"
rates = [0.0, 0.25, 0.5, 0.75]
[constraints]
macs_reduction = 0.5
tolerance = 0.1
[search]
strategy = "exhaustive"
budget = 4
gcn_top_m = 4
importance = "l1"
ranking = "none"
[evaluate]
backend = "cpu"
recalibration_batches = 2
heldout_batches = 2
[finetune]
epochs = 0
[output]
folder = "out"
"#,
            spec = spec_path.display(),
            root = root().display()
        ),
    )
    .unwrap();
    let options = sacp::pipeline::Options {
        quiet: true,
        ..Default::default()
    };
    let report = sacp::pipeline::run(&space, &options).unwrap();
    assert!((report.macs_reduction - 0.5).abs() <= 0.1, "{}", report.macs_reduction);
    assert_eq!(report.base.macs, spec.network.total_cost().macs);
    let (net, w) = from_bytes(&std::fs::read(dir.path().join("out/pruned.onnx")).unwrap()).unwrap();
    assert_eq!(net.total_cost().macs, report.pruned.macs);
    w.check(&net, "pruned.onnx").unwrap();
}

/// `tests/common/make_onnx_ops.py`'s model (see its doc string) at `opset`.
fn operators_model(dir: &Path, opset: u32, external: bool) -> PathBuf {
    let path = dir.join(format!("ops{opset}.onnx"));
    let made = Command::new("python3")
        .arg(root().join("tests/common/make_onnx_ops.py"))
        .arg(&path)
        .arg(opset.to_string())
        .arg(if external { "1" } else { "0" })
        .output()
        .expect("python3 runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    path
}

/// Constant, ConstantOfShape, Mul/Add/Sub/Div by constants (folded into the layers before),
/// ceil-mode and asymmetrically padded pools, padding excluded from an average, LRN,
/// ReduceMean (axes as attribute and as input), Softmax, external data and PyTorch's
/// `input.1`: sacp's forward equals ONNX Runtime's, the names survive a graph spec and an
/// export, and a pruned export runs.
#[test]
fn the_operators_pytorch_exporters_emit_match_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    for (opset, external) in [(13, false), (18, true)] {
        let path = operators_model(dir.path(), opset, external);
        let (net, w) = from_file(&path).unwrap_or_else(|e| panic!("opset {opset}: {e}"));
        let kinds: Vec<&str> = net.nodes().map(|n| net.node(n).op.kind()).collect();
        assert_eq!(
            kinds,
            [
                "input",
                "conv2d",
                "batchnorm",
                "relu",
                "maxpool2d",
                "avgpool2d",
                "lrn",
                "conv2d",
                "global_avgpool",
                "flatten",
                "linear",
                "softmax",
                "output"
            ],
            "opset {opset}: every constant operation folds into the layers"
        );
        assert_eq!(net.node(net.input()).name, "input.1");
        assert_eq!(net.node(net.output()).name, "logits");
        assert_eq!(net.shape(net.nodes().nth(5).unwrap()).dims(), [8, 5, 5], "ceil mode: 18 → 9 → 5");
        let (input, shape) = common::random_input(&net, 1, 9);
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), &device);
        let ours = to_vec(Executable::new(&net, &w, &device).forward(x.clone()));
        let theirs = common::onnx_runtime(&path, &input, shape);
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff <= 1e-6, "opset {opset}: sacp vs ONNX Runtime {diff}");

        // The input and output names survive a graph spec and an export.
        let spec = sacp::spec::write_graph_spec(&net, None);
        let reread = sacp::spec::parse(&spec, Path::new("pruned.toml")).unwrap().network;
        assert_eq!(sacp::spec::fingerprint(&reread), sacp::spec::fingerprint(&net));
        assert_eq!(reread.node(reread.input()).name, "input.1");
        let graph = to_model(&reread, &w).graph.unwrap();
        assert_eq!((graph.input[0].name.as_str(), graph.output[0].name.as_str()), ("input.1", "logits"));

        // The LRN pins the first conv's channels; the second conv's are pruned.
        let deps = sacp::deps::Dependencies::analyse(&net);
        let keep: Vec<Vec<usize>> = deps
            .groups
            .iter()
            .map(|g| (0..g.size()).filter(|&c| !g.prunable() || c % 2 == 0).collect())
            .collect();
        let (pruned, pruned_weights) = sacp::surgery::prune(&net, &w, &deps, &keep).unwrap();
        assert!(pruned.total_cost().macs < net.total_cost().macs);
        let file = dir.path().join(format!("pruned{opset}.onnx"));
        std::fs::write(&file, to_bytes(&pruned, &pruned_weights)).unwrap();
        let ours = to_vec(Executable::new(&pruned, &pruned_weights, &device).forward(x));
        let diff = max_abs_diff(&ours, &common::onnx_runtime(&file, &input, shape));
        assert!(diff <= 1e-6, "opset {opset}: pruned, sacp vs ONNX Runtime {diff}");
    }

    // External data: read only beside the model file; a missing file is named.
    let path = dir.path().join("ops18.onnx");
    let error = from_bytes(&std::fs::read(&path).unwrap()).unwrap_err().to_string();
    assert!(error.contains("ops18.onnx.data") && error.contains("from its file"), "{error}");
    std::fs::remove_file(dir.path().join("ops18.onnx.data")).unwrap();
    let error = from_file(&path).unwrap_err().to_string();
    assert!(error.contains("ops18.onnx.data") && error.contains("cannot be read"), "{error}");
}
