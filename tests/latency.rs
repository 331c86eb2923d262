//! Latency targets (issue 17): the lookup table of layer latencies predicts whole pruned
//! networks, a search with a latency target meets it when measured, and a target no
//! candidate can reach is refused before any work. The tests of this file time things, so
//! they run one at a time.

use rand::{RngExt, SeedableRng};
use sacp::deps::Dependencies;
use sacp::ir::Network;
use sacp::pipeline::{Options, build_table, latency_ms, network_at};
use sacp::search::candidates::Layout;
use sacp::search::clusters::RateGroup;
use sacp::weights;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod common;
use common::root;

/// One timing test at a time: a test measuring latency beside another is not measuring.
static TIMING: Mutex<()> = Mutex::new(());

/// Median relative error of the table's prediction over ten networks pruned at random
/// levels (one rate group per prunable channel group).
fn median_error(net: &Network, batch: usize) -> f64 {
    let deps = Dependencies::analyse(net);
    let groups: Vec<RateGroup> = deps
        .prunable()
        .map(|g| RateGroup {
            name: g.name.clone(),
            groups: vec![g.id],
        })
        .collect();
    let layout = Layout::new(net, &deps, groups, vec![0.0, 0.25, 0.5, 0.75]);
    let device = burn::tensor::Device::flex();
    let table = build_table(&layout, batch, &device, None, &indicatif::ProgressBar::hidden());
    let base = sacp::spec::fingerprint(net);
    assert!(table.fits(&format!("{device:?}"), batch, &base));
    println!("  calibration: {:.3} × layer sum + {:.2} ms", table.scale, table.offset_ms);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut errors: Vec<f64> = (0..10)
        .map(|_| {
            let rates: Vec<f64> = (0..layout.rate_groups.len())
                .map(|_| layout.levels[rng.random_range(0..layout.levels.len())])
                .collect();
            let pruned = network_at(&layout, &rates);
            let predicted = table.predict_ms(&pruned);
            // The smaller of two medians: this machine has slow spells of a second or more.
            let w = weights::initialise(&pruned, 1);
            let measured = latency_ms(&pruned, &w, batch, &device).min(latency_ms(&pruned, &w, batch, &device));
            let error = (predicted - measured).abs() / measured;
            assert!(error.is_finite(), "predicted {predicted} measured {measured}");
            println!(
                "  predicted {predicted:8.2} ms, measured {measured:8.2} ms, error {:5.1}%",
                100.0 * error
            );
            error
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    errors[errors.len() / 2]
}

#[test]
fn the_layer_table_predicts_randomly_pruned_vgg16_and_resnet56_within_15_percent() {
    let _one = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["vgg16_cifar10.toml", "resnet56_cifar10.toml"] {
        println!("{name}:");
        let error = median_error(&common::zoo(name, None), 8);
        println!("{name}: median error {:.1}%", 100.0 * error);
        assert!(error <= 0.15, "{name}: median error {:.1}% above 15%", 100.0 * error);
    }
}

/// The quickstart network (VGG-8) with seeded random weights: latency does not depend on
/// what the weights are, and the search's accuracies are not what these tests check.
fn write_space(dir: &Path, constraints: &str) -> PathBuf {
    let net = common::zoo("vgg8_fashion_mnist.toml", None);
    let weights_path = dir.join("vgg8.safetensors");
    weights::save(&weights::initialise(&net, 0), &weights_path).unwrap();
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
{constraints}

[search]
strategy = "evolution"
budget = 8
gcn_top_m = 4
importance = "l1"

[evaluate]
backend = "cpu"
recalibration_batches = 2
heldout_batches = 2

[finetune]
epochs = 0

[output]
folder = "out"
"#,
        root = root().display(),
        weights = weights_path.display()
    );
    let path = dir.join("space.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn quiet() -> Options {
    Options {
        quiet: true,
        ..Default::default()
    }
}

#[test]
fn a_search_with_a_latency_target_meets_it_when_measured() {
    let _one = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let space = write_space(dir.path(), "latency_reduction = 0.5\nlatency_batch = 32\ntolerance = 0.1");
    let report = sacp::pipeline::run(&space, &quiet()).unwrap();
    let latency = report.latency.as_ref().expect("a latency target is reported");
    println!(
        "base {:.2} ms (predicted {:.2}), winner {:.2} ms (predicted {:.2}): {:.1}% removed, target 50% ± 10%; median prediction error {:.1}% over {} candidates",
        latency.base_measured_ms,
        latency.base_predicted_ms,
        latency.winner_measured_ms,
        latency.winner_predicted_ms,
        100.0 * latency.measured_reduction,
        100.0 * latency.median_error(),
        latency.candidates.len()
    );
    assert_eq!(latency.batch, 32);
    assert!(
        latency.met(),
        "measured reduction {:.3} outside 0.5 ± 0.1",
        latency.measured_reduction
    );
    assert_eq!(latency.candidates.len(), report.candidates_evaluated);
    // Every candidate was feasible by prediction and logged with its prediction.
    let log = std::fs::read_to_string(dir.path().join("out/candidates.jsonl")).unwrap();
    for line in log.lines().skip(1) {
        let record: sacp::search::log::Record = serde_json::from_str(line).unwrap();
        let predicted = record.predicted_latency_ms.expect("a predicted latency in the log");
        let reduction = 1.0 - predicted / latency.base_predicted_ms;
        assert!((reduction - 0.5).abs() <= 0.1 + 1e-9, "predicted reduction {reduction}");
    }
    // The table is cached in the output folder; the report shows the check and its plots.
    let out = dir.path().join("out");
    let cached: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("latency-") && n.ends_with("-b32.json"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Latency target") && md.contains("| latency removed |"), "{md}");
    for plot in sacp::report::LATENCY_PLOTS {
        assert!(std::fs::read_to_string(out.join(plot)).unwrap().contains("<svg"), "{plot}");
    }
}

#[test]
fn a_latency_target_no_candidate_reaches_is_refused_naming_the_constraint() {
    let _one = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let space = write_space(dir.path(), "latency_reduction = 0.97\nlatency_batch = 4\ntolerance = 0.01");
    let error = sacp::pipeline::run(&space, &quiet()).expect_err("an unreachable target is refused");
    let message = error.to_string();
    assert!(
        message.contains("space.toml") && message.contains("constraints") && message.contains("predicted latency"),
        "{message}"
    );
    assert!(!dir.path().join("out/candidates.jsonl").exists(), "nothing was searched");
}
