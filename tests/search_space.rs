//! Search-space files: every malformed file is refused before any work, with the file, the
//! line and the key; the example files under search_spaces/ are well formed.

use sacp::deps::Dependencies;
use sacp::pipeline;
use sacp::search::candidates::{Layout, Target, check_space};
use sacp::search::clusters::rate_groups;
use sacp::search::space::SearchSpace;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A valid quickstart-like space; `edit` replaces one line (found by its prefix) or adds text.
fn space_text() -> String {
    format!(
        r#"[model]
spec = "{root}/models/vgg8_fashion_mnist.toml"

[data]
dataset = "fashion-mnist:{root}/data/fashion-mnist-subset"
heldout = 1000

[space]
clustering = "per_stage"
rates = [0.0, 0.25, 0.5, 0.75]
max_combinations = 1024

[constraints]
macs_reduction = 0.5
tolerance = 0.05

[search]
budget = 8
gcn_top_m = 4

[output]
folder = "out"
"#,
        root = root().display()
    )
}

fn replace(text: &str, prefix: &str, line: &str) -> String {
    assert!(text.lines().any(|l| l.starts_with(prefix)), "no line starts with {prefix}");
    text.lines()
        .map(|l| if l.starts_with(prefix) { line.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle present") + 1
}

/// Writes `text` to a temporary file, checks it, returns the error message.
fn error_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.toml");
    std::fs::write(&path, text).unwrap();
    let error = match pipeline::check(&path) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    assert!(error.starts_with(&path.display().to_string()), "the file is not named: {error}");
    error
}

fn assert_error(text: &str, needle: &str, key: &str, fragment: &str) {
    let error = error_of(text);
    let line = line_of(text, needle);
    assert!(error.contains(&format!("space.toml:{line}:")), "expected line {line}: {error}");
    assert!(error.contains(key), "expected key {key}: {error}");
    assert!(error.contains(fragment), "expected `{fragment}`: {error}");
}

#[test]
fn the_valid_space_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.toml");
    std::fs::write(&path, space_text()).unwrap();
    let checked = pipeline::check(&path).unwrap();
    assert_eq!(checked.rate_groups.len(), 4);
    assert!(!checked.grid.is_empty());
    assert!(checked.grid.iter().all(|c| (c.macs_reduction - 0.5).abs() <= 0.05));
}

#[test]
fn unknown_key() {
    let text = replace(&space_text(), "budget", "budgett = 8");
    assert_error(&text, "budgett", "budgett", "unknown field");
}

#[test]
fn wrong_type() {
    let text = replace(&space_text(), "budget", "budget = \"many\"");
    assert_error(&text, "budget = ", "`search.budget`", "invalid type");
    let text = replace(&space_text(), "rates", "rates = \"many\"");
    assert_error(&text, "rates = ", "`space.rates`", "expected a list of rates");
    let text = replace(&space_text(), "clustering", "clustering = \"per_galaxy\"");
    assert_error(&text, "clustering", "`space.clustering`", "per_stage");
}

#[test]
fn rates_outside_the_unit_interval() {
    let text = replace(&space_text(), "rates", "rates = [0.0, 0.5, 1.0]");
    assert_error(&text, "rates = ", "`space.rates.2`", "outside [0, 1)");
    let text = replace(&space_text(), "rates", "rates = [-0.1, 0.5]");
    assert_error(&text, "rates = ", "`space.rates.0`", "outside [0, 1)");
    let text = replace(&space_text(), "rates", "rates = { min = 0.0, max = 1.5, step = 0.5 }");
    assert_error(&text, "rates = ", "`space.rates.max`", "outside [0, 1)");
    let text = replace(&space_text(), "rates", "rates = { min = 0.0, max = 0.5, step = 0.0 }");
    assert_error(&text, "rates = ", "`space.rates.step`", "positive");
}

#[test]
fn round_to_zero() {
    let text = replace(&space_text(), "max_combinations", "max_combinations = 1024\nround_to = 0");
    assert_error(&text, "round_to", "`space.round_to`", "at least 1");
}

#[test]
fn a_space_larger_than_max_combinations() {
    // per_layer: 7 rate groups × 4 levels = 16384 combinations.
    let text = replace(&space_text(), "clustering", "clustering = \"per_layer\"");
    assert_error(&text, "max_combinations", "`space.max_combinations`", "16384 combinations");
}

#[test]
fn an_unreachable_target() {
    let text = replace(&space_text(), "rates", "rates = [0.0, 0.1, 0.2]");
    assert_error(
        &text,
        "macs_reduction",
        "`constraints.macs_reduction`",
        "no combination of the space removes 50.0%",
    );
    let text = replace(&space_text(), "macs_reduction", "params_reduction = 0.99");
    assert_error(
        &text,
        "params_reduction",
        "`constraints.params_reduction`",
        "removes 99.0% ± 5.0% of the parameters",
    );
    let text = replace(&space_text(), "macs_reduction", "macs_reduction = 1.5");
    assert_error(&text, "macs_reduction", "`constraints.macs_reduction`", "outside [0, 1)");
}

#[test]
fn constraints_and_counts() {
    let text = replace(&space_text(), "macs_reduction", "");
    assert_error(&text, "[constraints]", "`constraints`", "macs_reduction");
    let text = replace(&space_text(), "tolerance", "tolerance = 0.0");
    assert_error(&text, "tolerance", "`constraints.tolerance`", "(0, 1)");
    let text = replace(&space_text(), "gcn_top_m", "gcn_top_m = 0");
    assert_error(&text, "gcn_top_m", "`search.gcn_top_m`", "at least 1");
    for bad in ["1.5", "-0.1", "nan"] {
        let text = replace(&space_text(), "gcn_top_m", &format!("gcn_top_m = 4\nexplore = {bad}"));
        assert_error(&text, "explore", "`search.explore`", "[0, 1]");
    }
}

#[test]
fn latency_constraints() {
    let with = |lines: &str| replace(&space_text(), "tolerance", &format!("{lines}\ntolerance = 0.05"));
    let text = with("latency_reduction = 0.5\nlatency_ms = 10.0");
    assert_error(&text, "latency_ms", "`constraints.latency_ms`", "not both");
    let text = with("latency_ms = -2.0");
    assert_error(&text, "latency_ms", "`constraints.latency_ms`", "positive");
    let text = with("latency_reduction = 1.2");
    assert_error(&text, "latency_reduction", "`constraints.latency_reduction`", "[0, 1)");
    let text = with("latency_reduction = 0.5\nlatency_batch = 0");
    assert_error(&text, "latency_batch", "`constraints.latency_batch`", "at least 1");
    // A latency target alone is a target: the MACs one may go.
    let text = replace(&with("latency_reduction = 0.5"), "macs_reduction", "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.toml");
    std::fs::write(&path, text).unwrap();
    let checked = pipeline::check(&path).unwrap();
    assert!(checked.space.constraints.has_latency() && checked.target.macs.is_none());
}

#[test]
fn gcn_rl_settings() {
    let rl = replace(&space_text(), "gcn_top_m", "gcn_top_m = 4\nimportance = \"gcn-rl\"");
    let with = |table: &str| format!("{rl}\n[importance.gcn_rl]\n{table}\n");
    // Valid: the method's name on the command line and in TOML are the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("space.toml");
    std::fs::write(&path, with("episodes = 3\nlr = 0.05")).unwrap();
    let checked = pipeline::check(&path).unwrap();
    assert_eq!(checked.settings.gcn_rl.episodes, 3);
    assert_eq!(checked.settings.method, sacp::importance::Method::GcnRl);
    // Each bad setting is named with its line.
    assert_error(&with("actions = 1"), "actions = 1", "`importance.gcn_rl.actions`", "at least 2");
    assert_error(&with("lr = -0.1"), "lr = -0.1", "`importance.gcn_rl.lr`", "positive");
    assert_error(&with("episode = 3"), "episode = 3", "episode", "unknown field");
    // The reward needs a MAC target.
    let text = replace(&rl, "macs_reduction", "params_reduction = 0.5");
    assert_error(&text, "importance = ", "`search.importance`", "constraints.macs_reduction");
}

#[test]
fn files_that_do_not_exist() {
    let text = replace(&space_text(), "spec", "spec = \"no/such/model.toml\"");
    assert_error(&text, "spec = ", "`model.spec`", "no model spec");
    let text = replace(&space_text(), "spec", "spec = \"no/such/model.toml\"\nweights = \"w.safetensors\"");
    assert_error(&text, "spec = ", "`model.spec`", "no model spec");
    let text = replace(&space_text(), "dataset", "dataset = \"fashion-mnist:no/such/folder\"");
    assert_error(&text, "dataset", "`data.dataset`", "does not exist");
    let text = replace(&space_text(), "dataset", "dataset = \"imagenette:x\"");
    assert_error(&text, "dataset", "`data.dataset`", "unknown kind");
}

/// The space with its `[space]` section replaced by explicit clusters listing `layers`.
fn explicit_space(clusters: &[(&str, &str)]) -> String {
    let mut section = "[space]\nclustering = \"explicit\"\nrates = [0.0, 0.25, 0.5, 0.75]\n".to_string();
    for (name, layers) in clusters {
        section += &format!("[[space.clusters]]\nname = \"{name}\"\nlayers = {layers}\n");
    }
    let text = space_text();
    let start = text.find("[space]").unwrap();
    let end = text.find("[constraints]").unwrap();
    format!("{}{section}\n{}", &text[..start], &text[end..])
}

#[test]
fn explicit_clusters() {
    let ok = explicit_space(&[
        ("early", r#"["features.conv[12]"]"#),
        ("late", r#"["features.conv[3-6]", "classifier.*"]"#),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("space.toml"), &ok).unwrap();
    let checked = pipeline::check(&dir.path().join("space.toml")).unwrap();
    assert_eq!(checked.rate_groups.len(), 2);
    assert_eq!(checked.rate_groups[1].groups.len(), 5);
    let text = explicit_space(&[("early", r#"["features.conv1", "features.conv9*"]"#)]);
    assert_error(&text, "features.conv9*", "`space.clusters.0.layers.1`", "matches no prunable group");
    let text = explicit_space(&[("early", r#"["features.conv1"]"#), ("again", r#"["features.conv[12]"]"#)]);
    assert_error(
        &text,
        "features.conv[12]",
        "`space.clusters.1.layers.0`",
        "already in cluster `early`",
    );
    let text = explicit_space(&[("bad", r#"["features.conv[1"]"#)]);
    assert_error(&text, "features.conv[1", "`space.clusters.0.layers.0`", "");
    let without = replace(&space_text(), "clustering", "clustering = \"explicit\"");
    assert_error(&without, "clustering", "`space.clustering`", "[[space.clusters]]");
}

#[test]
fn the_cli_refuses_a_bad_space_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let text = replace(&space_text(), "rates", "rates = [0.0, 1.2]").replace("folder = \"out\"", "folder = \"results\"");
    let path = dir.path().join("space.toml");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sacp"))
        .args(["search", path.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("space.toml:{}: `space.rates.1`", line_of(&text, "rates = "))),
        "{stderr}"
    );
    assert!(!dir.path().join("results").exists(), "work started: the output folder exists");
}

/// The example files parse, their rate groups resolve on their networks, their spaces are
/// within bounds and their targets reachable (data and weights are not needed for that).
#[test]
fn the_example_spaces_are_well_formed() {
    let folder = root().join("search_spaces");
    let mut seen = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let space = SearchSpace::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let spec = sacp::spec::load(&space.resolve(&space.model.spec)).unwrap();
        let deps = Dependencies::analyse(&spec.network);
        let groups = rate_groups(&space, &spec.network, &deps).unwrap_or_else(|e| panic!("{e}"));
        let layout = Layout::new(&spec.network, &deps, groups, space.levels());
        let target = Target {
            latency: None,
            macs: space.constraints.macs_reduction,
            params: space.constraints.params_reduction,
            tolerance: space.constraints.tolerance,
        };
        let grid = check_space(&space, &layout, &target).unwrap_or_else(|e| panic!("{e}"));
        assert!(!grid.is_empty(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} example spaces");
    assert!(Path::new(&folder.join("quickstart.toml")).is_file());
}

/// The grid walk that skips subtrees out of the targets' reach finds exactly the points
/// that costing every point of the grid finds, in the same order: on a plain chain, a
/// residual network with zero-padded shortcuts and a network of depthwise convolutions,
/// with and without width rounding, for MACs, parameter and joint targets.
#[test]
fn the_grid_walk_finds_every_feasible_point() {
    use sacp::search::clusters::clustered;
    use sacp::search::space::Clustering;
    let mut nonempty = 0;
    for model in ["vgg8_fashion_mnist", "resnet20_fashion_mnist", "mobilenetv2_imagenet"] {
        let net = sacp::spec::load(&root().join(format!("models/{model}.toml"))).unwrap().network;
        let deps = Dependencies::analyse(&net);
        let groups = clustered(&net, &deps.prunable().collect::<Vec<_>>(), Clustering::PerStage);
        assert!(groups.len() >= 3, "{model}: {} rate groups", groups.len());
        for round_to in [1, 8] {
            let layout = Layout::new(&net, &deps, groups.clone(), vec![0.0, 0.3, 0.6, 0.8]).with_round_to(round_to);
            for (macs, params) in [(Some(0.5), None), (None, Some(0.4)), (Some(0.6), Some(0.5)), (Some(0.97), None)] {
                let target = Target {
                    latency: None,
                    macs,
                    params,
                    tolerance: 0.04,
                };
                let every: Vec<Vec<f64>> = (0..layout.combinations())
                    .map(|i| layout.candidate(&layout.grid_point(i)))
                    .filter(|c| target.admits(c))
                    .map(|c| c.rates)
                    .collect();
                let walked: Vec<Vec<f64>> = layout.feasible_grid(&target).into_iter().map(|c| c.rates).collect();
                assert_eq!(walked, every, "{model}, round_to {round_to}, macs {macs:?}, params {params:?}");
                nonempty += usize::from(!every.is_empty());
            }
        }
    }
    assert!(
        nonempty >= 12,
        "only {nonempty} of 24 cases have feasible points: the comparison is too weak"
    );
}

/// Candidates are costed from their widths without building their networks, and that
/// costing agrees with the pruned network's own count on every zoo model, at random rates
/// per channel group, with and without width rounding.
#[test]
fn costing_from_widths_matches_the_pruned_network() {
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    use sacp::search::clusters::clustered;
    use sacp::search::space::Clustering;
    let mut rng = StdRng::seed_from_u64(7);
    let mut models = 0;
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let net = sacp::spec::load(&path).unwrap().network;
        let deps = Dependencies::analyse(&net);
        let groups = clustered(&net, &deps.prunable().collect::<Vec<_>>(), Clustering::PerLayer);
        for round_to in [1, 8] {
            let layout = Layout::new(&net, &deps, groups.clone(), vec![0.0, 0.9]).with_round_to(round_to);
            assert!(layout.costs_from_widths(), "{}: costed by pruning", path.display());
            for _ in 0..20 {
                let rates: Vec<f64> = (0..groups.len()).map(|_| rng.random_range(0.0..0.95)).collect();
                let c = layout.candidate(&rates);
                let keep: Vec<Vec<usize>> = c.widths.iter().map(|&w| (0..w).collect()).collect();
                let pruned = sacp::surgery::prune_network(&net, &deps, &keep).unwrap().total_cost();
                assert_eq!((c.macs, c.params), (pruned.macs, pruned.params), "{} at {rates:?}", path.display());
            }
        }
        models += 1;
    }
    assert!(models >= 10, "only {models} zoo models");
}
