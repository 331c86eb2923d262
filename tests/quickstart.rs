//! README's main job end to end: `sacp search search_spaces/quickstart.toml` on the embedded
//! Fashion-MNIST subset trains the base network, searches, fine-tunes and exports a model
//! that loads, meets the MACs target and stays close to the base network's accuracy.

use sacp::exec::Executable;
use sacp::{data, spec, train, weights};
use std::path::PathBuf;

mod common;

/// How far (in accuracy points) the exported network may fall below the base network.
const MARGIN: f64 = 0.03;

#[test]
fn the_quickstart_runs_end_to_end() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(["search", "search_spaces/quickstart.toml", "--quiet", "--json", "--out"])
        .arg(out.path())
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report, written, "--json prints report.json");
    for key in ["macs", "params", "test_accuracy"] {
        assert!(report["base"][key].is_number() && report["pruned"][key].is_number(), "{key}");
    }
    assert!(report["rates"].as_object().is_some_and(|r| r.len() == 4));
    assert_eq!(report["candidates_evaluated"].as_u64(), Some(16));
    assert_eq!(
        std::fs::read_to_string(out.path().join("candidates.jsonl"))
            .unwrap()
            .lines()
            .count(),
        17
    );

    // The exported model loads (spec + weights) and really is half the MACs.
    let base = spec::load(&root.join("models/vgg8_fashion_mnist.toml")).unwrap();
    let pruned = spec::load(&out.path().join("pruned.toml")).unwrap();
    let w = weights::load(pruned.weights.as_ref().expect("pruned.toml names its weights")).unwrap();
    w.check(&pruned.network, "pruned.safetensors").unwrap();
    let reduction = 1.0 - pruned.network.total_cost().macs as f64 / base.network.total_cost().macs as f64;
    assert!((reduction - 0.5).abs() <= 0.05, "MACs reduction {reduction} outside 50% ± 5%");
    assert_eq!(report["pruned"]["macs"].as_u64(), Some(pruned.network.total_cost().macs));

    // Its test accuracy, measured here, is the report's and within the margin of the base's.
    let data = data::open(&format!("fashion-mnist:{}/data/fashion-mnist-subset", root.display()), [1, 28, 28]).unwrap();
    let device = burn::tensor::Device::flex();
    let exec = Executable::new(&pruned.network, &w, &device);
    let test = train::evaluate(&exec, &data.test_split(), &data.batcher(), 64, 10, &device)
        .unwrap()
        .top1;
    let base_accuracy = report["base"]["test_accuracy"].as_f64().unwrap();
    println!(
        "quickstart: base test accuracy {:.2}%, pruned {:.2}% ({:.1}% of MACs removed, {:.2}x faster)",
        100.0 * base_accuracy,
        100.0 * test,
        100.0 * reduction,
        report["speedup"].as_f64().unwrap()
    );
    assert!((test - report["pruned"]["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);
    assert!(test >= base_accuracy - MARGIN, "pruned {test} vs base {base_accuracy}");

    // pruned.onnx is the same network: ONNX Runtime gives the same logits on test images.
    let batch = data
        .batcher()
        .batch(&data.test_split(), &(0..8).collect::<Vec<_>>(), None, &device)
        .unwrap();
    let input: Vec<f32> = batch.images.clone().into_data().try_to_vec::<f32>().unwrap();
    let theirs = common::onnx_runtime(&out.path().join("pruned.onnx"), &input, [8, 1, 28, 28]);
    let ours = sacp::exec::to_vec(exec.forward(batch.images));
    let diff = common::max_abs_diff(&ours, &theirs);
    assert!(diff <= 1e-4, "pruned.onnx differs by {diff}");

    // report.md with its tables, and the three plots as well-formed SVG with drawn content.
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for needle in [
        "## Base vs pruned",
        "| MACs |",
        "## Winning rates",
        "## Channels per layer",
        "accuracy_vs_macs.svg",
        "## Ranking quality",
        sacp::report::RANKING_PLOT,
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}");
    }
    // The quickstart ranks with the GCN predictor: two rounds of 8, each scored.
    let rho = report["ranking_spearman"].as_f64().expect("a ranked search reports its Spearman");
    assert!((-1.0..=1.0).contains(&rho), "ranking_spearman {rho}");
    for plot in sacp::report::PLOTS.into_iter().chain([sacp::report::RANKING_PLOT]) {
        let text = std::fs::read_to_string(out.path().join(plot)).unwrap();
        let svg = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert_eq!(svg.root_element().tag_name().name(), "svg");
        let shapes = svg
            .descendants()
            .filter(|n| ["circle", "rect", "polyline", "polygon", "path"].contains(&n.tag_name().name()))
            .count();
        assert!(shapes >= 10, "{plot}: only {shapes} shapes");
        assert!(svg.descendants().any(|n| n.tag_name().name() == "text"), "{plot}: no labels");
    }
}
