//! Latency targets (issue 17): the lookup table of layer latencies predicts whole pruned
//! networks (on a stand-in clock), a search with a latency target meets it when measured,
//! and a target no candidate can reach is refused before any work. The searches time
//! things, so they run one at a time.

use rand::{RngExt, SeedableRng};
use sacp::deps::Dependencies;
use sacp::ir::{Network, Op};
use sacp::pipeline::{Options, build_table_with, network_at};
use sacp::search::candidates::Layout;
use sacp::search::clusters;
use sacp::search::latency::layer_work;
use sacp::search::space::Clustering;
use sacp::weights;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod common;
use common::root;

/// One timing test at a time: a test measuring latency beside another is not measuring.
static TIMING: Mutex<()> = Mutex::new(());

/// A deterministic stand-in for a device's clock: every computing layer costs a fixed
/// launch time plus a concave power of its work (bigger layers run at a better rate), and a
/// whole network costs 1.2× its layers plus 0.5 ms, so the table has a line to fit. Slices and flattens (what a probe adds around a layer) are free.
fn stand_in_ms(net: &Network) -> f64 {
    let layers: f64 = net
        .nodes()
        .filter(|&n| !matches!(net.node(n).op, Op::Input { .. } | Op::Output | Op::Flatten | Op::Slice { .. }))
        .map(|n| 0.01 + 1e-5 * (layer_work(net, n) as f64).powf(0.9))
        .sum();
    1.2 * layers + 0.5
}

/// The table of `net` (one rate group per prunable channel group, levels 0–75%) built on
/// the stand-in clock, and its relative errors on ten networks pruned at random levels and
/// ten pruned at random rates between them (widths the table interpolates).
fn stand_in_errors(net: &Network) -> (Vec<f64>, Vec<f64>) {
    let deps = Dependencies::analyse(net);
    let groups = clusters::clustered(net, &deps.prunable().collect::<Vec<_>>(), Clustering::PerLayer);
    let layout = Layout::new(net, &deps, groups, vec![0.0, 0.25, 0.5, 0.75]);
    let hidden = indicatif::ProgressBar::hidden();
    let table = build_table_with(&layout, 8, "stand-in".into(), None, &hidden, &stand_in_ms);
    assert!(table.fits("stand-in", 8, &sacp::spec::fingerprint(net)));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let groups = layout.rate_groups.len();
    let error = |rates: Vec<f64>| {
        let pruned = network_at(&layout, &rates);
        let (predicted, measured) = (table.predict_ms(&pruned), stand_in_ms(&pruned));
        let error = (predicted - measured).abs() / measured;
        assert!(error.is_finite(), "predicted {predicted} measured {measured}");
        error
    };
    let on_levels: Vec<f64> = (0..10)
        .map(|_| error((0..groups).map(|_| layout.levels[rng.random_range(0..4)]).collect()))
        .collect();
    let between: Vec<f64> = (0..10)
        .map(|_| error((0..groups).map(|_| rng.random_range(0.0..0.75)).collect()))
        .collect();
    (on_levels, between)
}

/// The table's mechanics, without a clock: every layer shape a network at the levels can
/// have is covered (layers of more than two rate groups are interpolated) and the
/// calibration maps layer sums (each layer timed with a probe network's overhead) onto whole
/// networks, so predictions there are within 0.1%; widths between levels are interpolated
/// within 2%. How well it predicts a real device is
/// `benches/latency.sh`'s to measure (a timed test would measure the CI machine's load).
#[test]
fn the_layer_table_predicts_randomly_pruned_vgg16_and_resnet56_from_their_layers() {
    for name in ["vgg16_cifar10.toml", "resnet56_cifar10.toml"] {
        let (on_levels, between) = stand_in_errors(&common::zoo(name, None));
        let worst = |e: &[f64]| e.iter().copied().fold(0.0, f64::max);
        println!(
            "{name}: worst error {:.2e} on levels, {:.2}% between them",
            worst(&on_levels),
            100.0 * worst(&between)
        );
        assert!(worst(&on_levels) < 1e-3, "{name}: on levels {on_levels:?}");
        assert!(worst(&between) <= 0.02, "{name}: between levels {between:?}");
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
