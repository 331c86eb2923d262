//! Inputs a real user produces by mistake, each through the binary: the command fails with
//! a message that names what is wrong, never panics, and leaves every input byte-for-byte
//! as it was.

mod common;

use common::max_abs_diff;
use prost::Message;
use sacp::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small graph network for 1×28×28 images with `classes` outputs.
fn spec_text(classes: usize) -> String {
    let fc = format!("out_features = {classes}\n");
    let layers = [
        ("conv", "conv2d", "input", "out_channels = 8\nkernel = [3, 3]\npadding = [1, 1]\n"),
        ("bn", "batchnorm", "conv", ""),
        ("relu", "relu", "bn", ""),
        ("pool", "global_avgpool", "relu", ""),
        ("flatten", "flatten", "pool", ""),
        ("fc", "linear", "flatten", fc.as_str()),
        ("output", "output", "fc", ""),
    ];
    let mut text = String::from("arch = \"graph\"\ninput = [1, 28, 28]\n");
    for (name, op, input, extra) in layers {
        text += &format!("\n[[layers]]\nname = \"{name}\"\nop = \"{op}\"\ninputs = [\"{input}\"]\n{extra}");
    }
    text
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` in the fixture folder.
    fn file(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A spec with `classes` outputs and seeded weights beside it.
    fn model(&self, name: &str, classes: usize) -> (PathBuf, PathBuf) {
        let spec = self.file(&format!("{name}.toml"), spec_text(classes));
        let weights = self.path(&format!("{name}.safetensors"));
        sacp_ok(&["init", s(&spec), "--out", s(&weights)]);
        (spec, weights)
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn sacp_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sacp")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sacp {args:?} failed: {stderr}");
    stderr
}

/// Runs `sacp args`, which must fail cleanly: non-zero exit, no panic, and `inputs` (files
/// or folders) byte-for-byte unchanged. Returns stderr for the caller's checks.
fn refused(args: &[&str], inputs: &[&Path]) -> String {
    let snapshot = |paths: &[&Path]| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                for entry in std::fs::read_dir(p).unwrap() {
                    let entry = entry.unwrap().path();
                    if entry.is_file() {
                        files.push((entry.clone(), std::fs::read(&entry).unwrap()));
                    }
                }
            } else {
                files.push((p.to_path_buf(), std::fs::read(p).unwrap()));
            }
        }
        files.sort();
        files
    };
    let before = snapshot(inputs);
    let out = Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "sacp {args:?} succeeded; stderr: {stderr}");
    assert_eq!(out.status.code(), Some(1), "sacp {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "sacp {args:?} panicked: {stderr}");
    assert!(stderr.starts_with("error: "), "sacp {args:?}: {stderr}");
    assert!(before == snapshot(inputs), "sacp {args:?} changed its inputs");
    stderr
}

/// `sacp prune SPEC --weights W --importance l1 --macs-reduction 0.3` and `extra`.
fn prune_l1<'a>(spec: &'a Path, weights: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "prune",
        s(spec),
        "--weights",
        s(weights),
        "--importance",
        "l1",
        "--macs-reduction",
        "0.3",
    ];
    args.extend_from_slice(extra);
    args
}

fn contains_all(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected `{part}` in: {text}");
    }
}

#[test]
fn the_shared_comparison_fails_on_nan_and_infinity() {
    let cases: [(f32, f32); 5] = [
        (f32::NAN, 0.0),
        (0.0, f32::NAN),
        (f32::NAN, f32::NAN),
        (f32::INFINITY, f32::INFINITY),
        (1.0, f32::NEG_INFINITY),
    ];
    for (a, b) in cases {
        let caught = std::panic::catch_unwind(|| max_abs_diff(&[0.5, a], &[0.5, b]));
        assert!(caught.is_err(), "max_abs_diff({a}, {b}) did not fail");
    }
    assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
}

#[test]
fn a_nan_weight_is_refused_naming_the_tensor_and_index() {
    let f = Fixture::new();
    let (spec, weights) = f.model("net", 10);
    let mut w = sacp::weights::load(&weights).unwrap();
    w.tensors.get_mut("conv.weight").unwrap().data[2 * 9 + 4] = f32::NAN;
    let poisoned = f.path("nan.safetensors");
    sacp::weights::save(&w, &poisoned).unwrap();
    let err = refused(
        &["eval", s(&spec), "--weights", s(&poisoned), "--data", "synthetic:200"],
        &[&spec, &poisoned],
    );
    contains_all(&err, &["nan.safetensors", "`conv.weight`", "NaN", "[2, 0, 1, 1]", "finite"]);
    let err = refused(&prune_l1(&spec, &poisoned, &["--out", s(&f.path("out"))]), &[&spec, &poisoned]);
    contains_all(&err, &["`conv.weight`", "NaN"]);
    assert!(!f.path("out").exists(), "nothing is written");
}

#[test]
fn nan_logits_never_count_as_correct_and_ties_go_to_the_lowest_class() {
    use sacp::train::rank_of_true_class;
    assert_eq!(rank_of_true_class(&[1.0, 1.0, 0.0], 0), Some(0));
    assert_eq!(rank_of_true_class(&[1.0, 1.0, 0.0], 1), Some(1), "a tie goes to the lower index");
    assert_eq!(rank_of_true_class(&[0.0, 2.0, 1.0], 2), Some(1));
    assert_eq!(rank_of_true_class(&[f32::NAN, 0.0, 0.0], 1), None);
    assert_eq!(rank_of_true_class(&[0.0, f32::INFINITY, 0.0], 1), None);

    // Through the evaluator: a NaN in the classifier's bias makes every image wrong.
    let f = Fixture::new();
    let spec = sacp::spec::load(&f.file("net.toml", spec_text(10))).unwrap();
    let net = &spec.network;
    let device = burn::tensor::Device::flex();
    let data = sacp::data::open("synthetic:200", [1, 28, 28]).unwrap();
    let evaluate = |w: &sacp::weights::Weights| {
        let exec = sacp::exec::Executable::new(net, w, &device);
        sacp::train::evaluate(&exec, &data.test_split(), &data.batcher(), 16, 10, &device).unwrap()
    };
    let mut w = sacp::weights::initialise(net, 0);
    w.tensors.get_mut("fc.bias").unwrap().data[3] = f32::NAN;
    let broken = evaluate(&w);
    assert_eq!((broken.top1, broken.top5, broken.non_finite), (0.0, 0.0, 50));
    assert!(broken.per_class.iter().all(|&a| a == 0.0), "{:?}", broken.per_class);
    // All-equal logits: every prediction is class 0 (a tenth of the synthetic images).
    for t in w.tensors.values_mut() {
        t.data.iter_mut().for_each(|v| *v = 0.0);
    }
    let tied = evaluate(&w);
    assert_eq!(tied.non_finite, 0);
    assert!((tied.top1 - 0.1).abs() < 1e-12, "top-1 {}", tied.top1);
    assert_eq!(tied.per_class[0], 1.0);
}

#[test]
fn empty_and_too_small_data_sets_are_refused() {
    let f = Fixture::new();
    let (spec, weights) = f.model("net", 10);
    let out = f.path("out");
    let err = refused(&["train", s(&spec), "--data", "synthetic:0", "--out", s(&out)], &[&spec]);
    contains_all(&err, &["synthetic:0", "no images"]);
    let err = refused(
        &[
            "train",
            s(&spec),
            "--data",
            "synthetic:40",
            "--batch-size",
            "64",
            "--heldout",
            "8",
            "--out",
            s(&out),
        ],
        &[&spec],
    );
    contains_all(
        &err,
        &["training split holds 32 images", "fewer than one batch of 64", "batch size"],
    );
    let err = refused(
        &prune_l1(&spec, &weights, &["--data", "synthetic:200", "--heldout", "0", "--out", s(&out)]),
        &[&spec, &weights],
    );
    contains_all(&err, &["--heldout 0", "held-out split of synthetic:200 is empty"]);

    // IDX files whose header promises no image.
    let idx = f.path("idx");
    for prefix in ["train", "t10k"] {
        let mut images = vec![0, 0, 8, 3];
        images.extend([0u32, 28, 28].iter().flat_map(|d| d.to_be_bytes()));
        f.file(&format!("idx/{prefix}-images-idx3-ubyte"), &images);
        f.file(&format!("idx/{prefix}-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 0]);
    }
    let data = format!("mnist:{}", idx.display());
    let err = refused(
        &["eval", s(&spec), "--weights", s(&weights), "--data", &data],
        &[&spec, &weights, &idx],
    );
    contains_all(&err, &["train-images-idx3-ubyte", "holds no images"]);

    // IDX dimensions whose product overflows.
    let huge = f.path("huge");
    let mut images = vec![0, 0, 8, 3];
    images.extend([u32::MAX, u32::MAX, u32::MAX].iter().flat_map(|d| d.to_be_bytes()));
    f.file("huge/train-images-idx3-ubyte", &images);
    f.file("huge/train-labels-idx1-ubyte", [0, 0, 8, 1, 0, 0, 0, 0]);
    let data = format!("mnist:{}", huge.display());
    let err = refused(
        &["eval", s(&spec), "--weights", s(&weights), "--data", &data],
        &[&spec, &weights, &huge],
    );
    contains_all(&err, &["train-images-idx3-ubyte", "overflow"]);
}

#[test]
fn data_whose_classes_do_not_match_the_network_is_refused() {
    let f = Fixture::new();
    let (spec, weights) = f.model("five", 5);
    let err = refused(
        &["eval", s(&spec), "--weights", s(&weights), "--data", "synthetic:200"],
        &[&spec, &weights],
    );
    contains_all(&err, &["synthetic:200", "10 classes", "five.toml", "5 outputs"]);
    let err = refused(
        &prune_l1(&spec, &weights, &["--data", "synthetic:400", "--out", s(&f.path("out"))]),
        &[&spec, &weights],
    );
    contains_all(&err, &["10 classes", "5 outputs"]);

    // A teacher that predicts other classes than the student.
    let (student, _) = f.model("student", 10);
    let err = refused(
        &[
            "train",
            s(&student),
            "--data",
            "synthetic:200",
            "--teacher",
            s(&spec),
            "--teacher-weights",
            s(&weights),
            "--out",
            s(&f.path("t")),
        ],
        &[&student, &spec, &weights],
    );
    contains_all(&err, &["--teacher", "five.toml", "5 outputs", "gives 10"]);
}

#[test]
fn no_command_writes_over_its_own_inputs() {
    let f = Fixture::new();
    let (spec, weights) = f.model("net", 10);
    let out = f.path("out");
    sacp_ok(&prune_l1(&spec, &weights, &["--out", s(&out)]));
    // Pruning the pruned network again into its own folder would overwrite it.
    let (pruned, pruned_weights) = (out.join("pruned.toml"), out.join("pruned.safetensors"));
    let err = refused(&prune_l1(&pruned, &pruned_weights, &["--out", s(&out)]), &[&out]);
    contains_all(&err, &["refusing to write", "pruned.toml", "choose another output folder"]);
    // The same folder spelled another way.
    let dotted = f.path("out/../out");
    refused(&prune_l1(&pruned, &pruned_weights, &["--out", s(&dotted)]), &[&out]);

    // Exporting an ONNX spec onto the ONNX file it reads.
    let onnx = f.path("model.onnx");
    sacp_ok(&["export", s(&spec), "--weights", s(&weights), "--out", s(&onnx)]);
    let onnx_spec = f.file("onnx.toml", "arch = \"onnx\"\nonnx = \"model.onnx\"\n");
    let err = refused(&["export", s(&onnx_spec), "--out", s(&onnx)], &[&onnx, &onnx_spec]);
    contains_all(&err, &["refusing to write", "model.onnx", "it is the model ONNX file"]);
    // Onto the weights it reads, and `init` onto its spec.
    refused(
        &[
            "export",
            s(&spec),
            "--weights",
            s(&weights),
            "--format",
            "safetensors",
            "--out",
            s(&weights),
        ],
        &[&spec, &weights],
    );
    refused(&["init", s(&spec), "--out", s(&spec)], &[&spec]);
    // Training into the folder that holds its starting weights.
    refused(&["train", s(&pruned), "--data", "synthetic:200", "--out", s(&out)], &[&out]);
}

/// A search space over the small network, on synthetic data, with `data` and `rates` given.
fn space_text(spec: &Path, weights: Option<&Path>, data: &str, heldout: usize, rates: &str) -> String {
    let weights = weights.map(|w| format!("weights = \"{}\"", w.display())).unwrap_or_default();
    format!(
        r#"[model]
spec = "{spec}"
{weights}

[data]
dataset = "{data}"
heldout = {heldout}
batch_size = 16

[train]
epochs = 1
max_steps = 2

[space]
clustering = "per_layer"
rates = {rates}

[constraints]
macs_reduction = 0.3
tolerance = 0.3

[search]
budget = 2
ranking = "none"
importance = "l1"

[evaluate]
backend = "cpu"
recalibration_batches = 1

[finetune]
epochs = 0

[output]
folder = "out"
"#,
        spec = spec.display()
    )
}

#[test]
fn search_spaces_with_unusable_rates_or_held_out_splits_are_refused() {
    let f = Fixture::new();
    let (spec, weights) = f.model("net", 10);
    let tiny_step = f.file(
        "step.toml",
        space_text(&spec, Some(&weights), "synthetic:400", 64, "{ min = 0.0, max = 0.5, step = 1e-12 }"),
    );
    let err = refused(&["search", s(&tiny_step), "--check"], &[&tiny_step]);
    contains_all(&err, &["step.toml:", "`space.rates.step`", "at most 1000"]);
    refused(&["search", s(&tiny_step)], &[&tiny_step]);

    let no_heldout = f.file("heldout.toml", space_text(&spec, Some(&weights), "synthetic:400", 0, "[0.0, 0.25]"));
    let err = refused(&["search", s(&no_heldout), "--check"], &[&no_heldout]);
    contains_all(&err, &["heldout.toml:", "`data.heldout`", "fewer than one batch"]);

    // 64 held-out images asked for, but a fifth of 60 training images is all there is.
    let small = f.file("small.toml", space_text(&spec, Some(&weights), "synthetic:60", 64, "[0.0, 0.25]"));
    let err = refused(&["search", s(&small)], &[&small, &spec, &weights]);
    contains_all(
        &err,
        &["small.toml:", "`data.heldout`", "holds 12 images", "fewer than one batch of 16"],
    );
    assert!(!f.path("out").exists(), "refused before any work");
}

#[test]
fn a_cached_base_network_for_another_spec_is_refused() {
    let f = Fixture::new();
    let spec = f.file("net.toml", spec_text(10));
    let space = f.file("space.toml", space_text(&spec, None, "synthetic:400", 64, "[0.0, 0.25]"));
    // A base network cached by an earlier run of another network (the spec was edited since).
    let other = f.file("other.toml", spec_text(10).replace("out_channels = 8", "out_channels = 12"));
    let cached = f.path("out/base.safetensors");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    sacp_ok(&["init", s(&other), "--out", s(&cached)]);
    let err = refused(&["search", s(&space), "--quiet"], &[&space, &spec, &cached]);
    contains_all(&err, &["base.safetensors", "another network", "no fingerprint"]);

    // A run trains and caches the base; editing the spec afterwards makes the cache stale.
    std::fs::remove_file(&cached).unwrap();
    sacp_ok(&["search", s(&space), "--quiet"]);
    assert!(cached.is_file());
    std::fs::write(&spec, spec_text(10).replace("out_channels = 8", "out_channels = 6")).unwrap();
    let again = f.path("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::copy(&cached, again.join("base.safetensors")).unwrap();
    let err = refused(&["search", s(&space), "--quiet", "--out", s(&again)], &[&space, &spec, &again]);
    contains_all(&err, &["base.safetensors", "another network", "records `network"]);
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_files() {
    let f = Fixture::new();
    let (spec, _) = f.model("net", 10);
    let out = f.path("run");
    sacp_ok(&["train", s(&spec), "--data", "synthetic:400", "--epochs", "1", "--out", s(&out)]);
    let checkpoint = out.join("checkpoint.safetensors");
    let trained = out.join("weights.safetensors");
    assert!(checkpoint.is_file() && trained.is_file());
    let err = refused(
        &[
            "train",
            s(&spec),
            "--data",
            "synthetic:400",
            "--epochs",
            "2",
            "--lr",
            "1e30",
            "--out",
            s(&out),
        ],
        &[&spec, &out],
    );
    contains_all(&err, &["diverged", "epoch 1", "checkpoint of the last finished epoch", "is kept"]);
}

/// The small network exported to ONNX, for editing into malformed models.
fn onnx_model(f: &Fixture) -> sacp::onnx::proto::ModelProto {
    let (spec, weights) = f.model("net", 10);
    let spec = sacp::spec::load(&spec).unwrap();
    let w = sacp::weights::load(&weights).unwrap();
    sacp::onnx::to_model(&spec.network, &w)
}

/// Writes `model` and a spec reading it; returns (spec, model file).
fn onnx_spec(f: &Fixture, name: &str, model: &sacp::onnx::proto::ModelProto) -> (PathBuf, PathBuf) {
    let file = f.file(&format!("{name}.onnx"), model.encode_to_vec());
    let spec = f.file(&format!("{name}.toml"), format!("arch = \"onnx\"\nonnx = \"{name}.onnx\"\n"));
    (spec, file)
}

#[test]
fn malformed_onnx_models_are_errors_not_panics() {
    let f = Fixture::new();
    // A NaN in an initializer.
    let mut model = onnx_model(&f);
    let graph = model.graph.as_mut().unwrap();
    let conv_weight = graph.initializer.iter_mut().find(|t| t.name.contains("conv")).unwrap();
    let name = conv_weight.name.clone();
    if conv_weight.raw_data.is_empty() {
        conv_weight.float_data[5] = f32::NAN;
    } else {
        conv_weight.raw_data[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    }
    let (spec, file) = onnx_spec(&f, "nan", &model);
    let err = refused(&["inspect", s(&spec)], &[&spec, &file]);
    contains_all(&err, &[&format!("initializer `{name}`"), "NaN", "finite"]);

    // Padding so large that the padded size overflows.
    let mut model = onnx_model(&f);
    let conv = model.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
    conv.attribute.retain(|a| a.name != "pads");
    conv.attribute.push(AttributeProto {
        name: "pads".into(),
        r#type: 7,
        ints: vec![i64::MAX; 4],
        ..Default::default()
    });
    let (spec, file) = onnx_spec(&f, "pads", &model);
    let err = refused(&["inspect", s(&spec)], &[&spec, &file]);
    contains_all(&err, &["conv", "does not fit"]);

    // A reshape of a constant whose target dimensions overflow when multiplied.
    let mut model = onnx_model(&f);
    let graph = model.graph.as_mut().unwrap();
    graph.initializer.push(TensorProto {
        name: "huge_shape".into(),
        dims: vec![3],
        data_type: 7,
        int64_data: vec![1 << 40, 1 << 40, -1],
        ..Default::default()
    });
    let source = graph.initializer[0].name.clone();
    graph.node.insert(
        0,
        NodeProto {
            input: vec![source, "huge_shape".into()],
            output: vec!["reshaped".into()],
            name: "reshape".into(),
            op_type: "Reshape".into(),
            ..Default::default()
        },
    );
    let (spec, file) = onnx_spec(&f, "reshape", &model);
    let err = refused(&["inspect", s(&spec)], &[&spec, &file]);
    contains_all(&err, &["reshape", "cannot reshape"]);
}
