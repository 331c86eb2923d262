//! Search runs: the strategies on a cheap stand-in evaluator, then real runs on the
//! embedded Fashion-MNIST subset: 1 vs 2 threads give the same result, and a search killed
//! with SIGKILL and resumed gives the straight run's winner without evaluating a logged
//! candidate twice.

mod common;

use common::root;
use sacp::deps::Dependencies;
use sacp::search::candidates::{Candidate, Layout, Target};
use sacp::search::clusters::RateGroup;
use sacp::search::log::{Header, Log, Record};
use sacp::search::space::{Parallelism, Ranking, SearchSection, Strategy};
use sacp::search::{self, Ranked, Space};
use sacp::{data, weights};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

// ---------- the search driver on a stand-in evaluator (milliseconds) ----------

fn vgg8() -> sacp::ir::Network {
    sacp::spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vgg8_fashion_mnist.toml"))
        .unwrap()
        .network
}

/// A smooth made-up accuracy: pruning late layers hurts less than early ones.
fn fake_accuracy(c: &Candidate) -> f64 {
    let weights = [3.0, 2.0, 1.0, 0.5];
    1.0 - c.rates.iter().zip(weights).map(|(r, w)| w * r * r).sum::<f64>() / 10.0
}

fn run_fake(strategy: Strategy, ranking: Ranking, budget: usize, threads: usize, dir: &Path) -> search::Outcome {
    run_fake_with(strategy, ranking, budget, (threads, Parallelism::Candidates), dir)
}

fn run_fake_with(
    strategy: Strategy,
    ranking: Ranking,
    budget: usize,
    (threads, parallelism): (usize, Parallelism),
    dir: &Path,
) -> search::Outcome {
    let net = vgg8();
    let deps = Dependencies::analyse(&net);
    let prunable: Vec<usize> = deps.groups.iter().filter(|g| g.prunable()).map(|g| g.id).collect();
    let rate_groups: Vec<RateGroup> = [&prunable[0..2], &prunable[2..4], &prunable[4..6], &prunable[6..7]]
        .iter()
        .enumerate()
        .map(|(i, g)| RateGroup {
            name: format!("g{i}"),
            groups: g.to_vec(),
        })
        .collect();
    let layout = Layout::new(&net, &deps, rate_groups, vec![0.0, 0.25, 0.5, 0.75]);
    let target = Target {
        latency: None,
        macs: Some(0.5),
        params: None,
        tolerance: 0.05,
    };
    let grid = layout.feasible_grid(&target);
    let settings = SearchSection {
        strategy,
        budget,
        gcn_top_m: 4,
        pool: 32,
        ranking,
        threads,
        parallelism,
        seed: 3,
        ..SearchSection::default()
    };
    let path = dir.join(format!("{strategy:?}-{ranking:?}-{threads}-{parallelism:?}.jsonl"));
    let (log, logged) = Log::open(&path, &Header::new("test".into(), vec![]), false).unwrap();
    // A stand-in GCN ranking: prefers candidates that keep more of the early layers, and
    // is unsure about the last rate group once it has seen results.
    let mut rank = |cs: &[Candidate], history: &[search::Scored]| Ranked {
        score: cs.iter().map(|c| -(c.rates[0] as f32)).collect(),
        spread: cs
            .iter()
            .map(|c| if history.is_empty() { 0.0 } else { c.rates[3] as f32 })
            .collect(),
    };
    let evaluate = |c: &Candidate| Ok(search::Score::Accuracy(fake_accuracy(c)));
    let space = Space {
        layout: &layout,
        target,
        grid: &grid,
    };
    search::run(&space, &settings, &mut rank, &evaluate, log, logged, &|_, _| {}).unwrap()
}

#[test]
fn every_strategy_spends_its_budget_on_distinct_feasible_candidates() {
    let dir = tempfile::tempdir().unwrap();
    for strategy in [Strategy::Exhaustive, Strategy::Random, Strategy::Evolution, Strategy::Refine] {
        for ranking in [Ranking::Gcn, Ranking::None] {
            let outcome = run_fake(strategy, ranking, 20, 2, dir.path());
            assert_eq!(outcome.records.len(), 20, "{strategy:?}");
            let distinct: HashSet<&Vec<usize>> = outcome.records.iter().map(|r| &r.widths).collect();
            assert_eq!(distinct.len(), 20, "{strategy:?} evaluated a candidate twice");
            assert!(outcome.records.iter().all(|r| (r.macs_reduction - 0.5).abs() <= 0.05 + 1e-12));
            let best = outcome.records.iter().map(|r| r.heldout_accuracy).fold(0.0, f64::max);
            assert_eq!(outcome.records[outcome.winner].heldout_accuracy, best);
            assert_eq!(outcome.records.iter().all(|r| r.predicted.is_some()), ranking == Ranking::Gcn);
        }
    }
}

#[test]
fn refine_goes_below_the_coarse_grid_and_beats_it() {
    let dir = tempfile::tempdir().unwrap();
    let refine = run_fake(Strategy::Refine, Ranking::None, 40, 2, dir.path());
    let levels = [0.0, 0.25, 0.5, 0.75];
    let off_grid = refine
        .records
        .iter()
        .any(|r| r.rates.iter().any(|x| !levels.iter().any(|l| (l - x).abs() < 1e-9)));
    assert!(off_grid, "refinement never left the coarse grid");
    // The best point of the whole coarse grid, found by evaluating all of it.
    let all = run_fake(Strategy::Exhaustive, Ranking::None, 10_000, 2, dir.path());
    let grid_best = all.records[all.winner].heldout_accuracy;
    assert!(refine.records[refine.winner].heldout_accuracy >= grid_best);
}

#[test]
fn the_driver_does_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    for strategy in [Strategy::Evolution, Strategy::Refine] {
        let one = run_fake(strategy, Ranking::Gcn, 24, 1, dir.path());
        let two = run_fake(strategy, Ranking::Gcn, 24, 2, dir.path());
        let kernels = run_fake_with(strategy, Ranking::Gcn, 24, (2, Parallelism::Kernels), dir.path());
        let key = |o: &search::Outcome| o.records.iter().map(|r| r.widths.clone()).collect::<Vec<_>>();
        assert_eq!(key(&one), key(&two), "{strategy:?}");
        assert_eq!(key(&one), key(&kernels), "{strategy:?}: threads on kernels");
    }
}

// ---------- real runs on the embedded Fashion-MNIST subset ----------

fn base_weights() -> &'static Path {
    common::subset_vgg8_weights()
}

fn write_space(dir: &Path, budget: usize) -> PathBuf {
    write_space_with(dir, budget, "gcn", "")
}

/// The test space with another importance method and extra tables.
fn write_space_with(dir: &Path, budget: usize, importance: &str, extra: &str) -> PathBuf {
    common::subset_search_space(dir, budget, importance, "", extra)
}

fn records(log: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(log).unwrap();
    text.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn one_and_two_threads_find_the_same_winner() {
    let dir = tempfile::tempdir().unwrap();
    let space = write_space(dir.path(), 8);
    let mut outcomes = Vec::new();
    for threads in [1, 2] {
        let out = dir.path().join(format!("threads-{threads}"));
        let options = sacp::pipeline::Options {
            out: Some(out.clone()),
            threads: Some(threads),
            quiet: true,
            ..Default::default()
        };
        let report = sacp::pipeline::run(&space, &options).unwrap();
        let mut logged: Vec<(Vec<usize>, f64)> = records(&out.join("candidates.jsonl"))
            .into_iter()
            .map(|r| (r.widths, r.heldout_accuracy))
            .collect();
        logged.sort_by(|a, b| a.0.cmp(&b.0));
        outcomes.push((report.winner.widths.clone(), report.rates.clone(), logged));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

#[test]
fn a_killed_search_resumes_to_the_same_winner_without_evaluating_twice() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 12;
    let space = write_space(dir.path(), budget);
    let sacp = env!("CARGO_BIN_EXE_sacp");
    let run = |out: &Path, resume: bool| {
        let mut cmd = std::process::Command::new(sacp);
        cmd.args([
            "search",
            space.to_str().unwrap(),
            "--quiet",
            "--threads",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let straight = dir.path().join("straight");
    assert!(run(&straight, false).status().unwrap().success());

    let killed = dir.path().join("killed");
    let log = killed.join("candidates.jsonl");
    let mut child = run(&killed, false).spawn().unwrap();
    let logged_before_kill = loop {
        let n = std::fs::read_to_string(&log)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        if n >= 3 {
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the search ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = records(&log);
    assert!(
        before.len() >= logged_before_kill && before.len() < budget,
        "killed mid-way: {} logged",
        before.len()
    );
    assert!(!killed.join("report.json").exists());

    // Without --resume the folder is refused; with it the search completes.
    let refused = run(&killed, false).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    assert!(run(&killed, true).status().unwrap().success());

    let after = records(&log);
    assert_eq!(after.len(), budget);
    assert_eq!(after[..before.len()], before[..], "logged records were rewritten");
    let distinct: HashSet<&Vec<usize>> = after.iter().map(|r| &r.widths).collect();
    assert_eq!(distinct.len(), budget, "a candidate was evaluated twice");
    let (a, b) = (report(&straight), report(&killed));
    assert_eq!(a["winner"]["widths"], b["winner"]["widths"]);
    assert_eq!(a["rates"], b["rates"]);
    assert_eq!(b["candidates_reused"].as_u64().unwrap() as usize, before.len());
    assert_eq!(b["candidates_evaluated"].as_u64().unwrap() as usize, budget);
    let mut straight_set: Vec<(Vec<usize>, f64)> = records(&straight.join("candidates.jsonl"))
        .into_iter()
        .map(|r| (r.widths, r.heldout_accuracy))
        .collect();
    let mut resumed_set: Vec<(Vec<usize>, f64)> = after.into_iter().map(|r| (r.widths, r.heldout_accuracy)).collect();
    straight_set.sort_by(|x, y| x.0.cmp(&y.0));
    resumed_set.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(straight_set, resumed_set);
}

#[test]
fn a_search_space_can_choose_gcn_rl_importance() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[importance.gcn_rl]\nepisodes = 3\nactions = 2\nheldout_batches = 2\nrecalibration_batches = 2";
    let space = write_space_with(dir.path(), 4, "gcn-rl", extra);
    let out = dir.path().join("out");
    let options = sacp::pipeline::Options {
        out: Some(out.clone()),
        quiet: true,
        ..Default::default()
    };
    let report = sacp::pipeline::run(&space, &options).unwrap();
    assert_eq!(records(&out.join("candidates.jsonl")).len(), 4);
    assert!(
        (report.macs_reduction - 0.5).abs() <= 0.05,
        "MAC reduction {}",
        report.macs_reduction
    );
    let written = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(written.contains("\"gcn-rl\""), "the report names the importance method");
}

#[test]
fn a_candidate_with_non_finite_outputs_is_logged_as_failed_and_never_wins() {
    let net = vgg8();
    let deps = Dependencies::analyse(&net);
    let base = weights::load(base_weights()).unwrap();
    let scores = sacp::channels::l1_scores(&net, &base, &deps);
    // The classifier's hidden layer (256 channels): its least important channel is kept only
    // when the group is not pruned. Poison that channel's column of the last linear layer,
    // so every candidate that keeps it gives NaN logits.
    let hidden = deps.groups.iter().position(|g| g.prunable() && g.size() == 256).unwrap();
    let weakest = (0..256).min_by(|&a, &b| scores[hidden][a].total_cmp(&scores[hidden][b])).unwrap();
    let mut poisoned = base.clone();
    let fc = poisoned.tensors.get_mut("classifier.fc.weight").unwrap();
    for row in 0..10 {
        fc.data[row * 256 + weakest] = f32::NAN;
    }
    let data = data::open(
        &format!("fashion-mnist:{}/data/fashion-mnist-subset", root().display()),
        [1, 28, 28],
    )
    .unwrap();
    let device = burn::tensor::Device::flex();
    let bench = sacp::pipeline::Workbench::new(&net, &poisoned, &deps, &data, 1000, 64, 0, &device);
    let mut heldout = bench.heldout.clone();
    heldout.indices.truncate(128);
    let evaluator = sacp::pipeline::CandidateEvaluator {
        keep: bench.keep_evaluator(&heldout, 2).unwrap(),
        scores: &scores,
    };
    let others: Vec<usize> = deps
        .groups
        .iter()
        .filter(|g| g.prunable() && g.id != hidden)
        .map(|g| g.id)
        .collect();
    let rate_groups = vec![
        RateGroup {
            name: "hidden".into(),
            groups: vec![hidden],
        },
        RateGroup {
            name: "convs".into(),
            groups: others,
        },
    ];
    let layout = Layout::new(&net, &deps, rate_groups, vec![0.0, 0.25, 0.5]);
    let target = Target {
        latency: None,
        macs: Some(0.3),
        params: None,
        tolerance: 0.3,
    };
    let grid = layout.feasible_grid(&target);
    assert!(grid.iter().any(|c| c.rates[0] == 0.0) && grid.iter().any(|c| c.rates[0] > 0.0));
    let settings = SearchSection {
        strategy: Strategy::Exhaustive,
        budget: grid.len(),
        gcn_top_m: grid.len(),
        ranking: Ranking::None,
        threads: 2,
        ..SearchSection::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("candidates.jsonl");
    let (log, logged) = Log::open(&path, &Header::new("poisoned".into(), vec![]), false).unwrap();
    let evaluate = |c: &Candidate| Ok(evaluator.accuracy(&c.widths));
    let space = Space {
        layout: &layout,
        target,
        grid: &grid,
    };
    let outcome = search::run(
        &space,
        &settings,
        &mut |_, _| unreachable!("no ranking"),
        &evaluate,
        log,
        logged,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(outcome.records.len(), grid.len(), "the search completes");
    for r in &outcome.records {
        let keeps_poison = r.rates[0] == 0.0;
        assert_eq!(r.failed.is_some(), keeps_poison, "rates {:?}: failed = {:?}", r.rates, r.failed);
        if let Some(reason) = &r.failed {
            assert!(reason.contains("non-finite"), "{reason}");
        }
    }
    let winner = &outcome.records[outcome.winner];
    assert!(winner.failed.is_none() && winner.rates[0] > 0.0, "winner {:?}", winner.rates);
    assert!(
        winner.heldout_accuracy > 0.3,
        "the winner is a real network: {}",
        winner.heldout_accuracy
    );
    // The log says which candidates failed and why.
    let logged = records(&path);
    assert_eq!(
        logged.iter().filter(|r| r.failed.is_some()).count(),
        grid.iter().filter(|c| c.rates[0] == 0.0).count()
    );
}

/// Spearman's rank correlation; a NaN (undefined) fails the comparison that uses it.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    sacp::report::spearman(a, b).unwrap_or(f64::NAN)
}

#[test]
fn the_predictor_trained_on_a_logged_search_ranks_the_rest_better_than_the_l1_proxy() {
    use rand::{RngExt, SeedableRng};
    use sacp::channels::{channel_energy, keep_widths, kept_share, l1_scores};
    use sacp::gcn::{Predictor, PredictorConfig, mask_of};
    use sacp::pipeline::{CandidateEvaluator, Workbench};
    let device = burn::tensor::Device::flex();
    let net = vgg8();
    let base = weights::load(base_weights()).unwrap();
    let deps = Dependencies::analyse(&net);
    let data = data::open(
        &format!("fashion-mnist:{}/data/fashion-mnist-subset", root().display()),
        [1, 28, 28],
    )
    .unwrap();
    // 32 per-layer candidates at about half the MACs, each scored for real.
    let per_layer = sacp::search::clusters::clustered(
        &net,
        &deps.prunable().collect::<Vec<_>>(),
        sacp::search::space::Clustering::PerLayer,
    );
    let layout = Layout::new(&net, &deps, per_layer, (0..9).map(|i| i as f64 / 10.0).collect());
    let target = Target {
        latency: None,
        macs: Some(0.5),
        params: None,
        tolerance: 0.1,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut candidates: Vec<Candidate> = Vec::new();
    while candidates.len() < 32 {
        let rates: Vec<f64> = (0..layout.rate_groups.len())
            .map(|_| f64::from(rng.random_range(0..9u8)) / 10.0)
            .collect();
        let c = layout.candidate(&rates);
        if target.admits(&c) && !candidates.iter().any(|d| d.widths == c.widths) {
            candidates.push(c);
        }
    }
    let bench = Workbench::new(&net, &base, &deps, &data, 1000, 64, 0, &device);
    let heldout = bench.heldout_batches(8);
    let l1 = l1_scores(&net, &base, &deps);
    let evaluator = CandidateEvaluator {
        keep: bench.keep_evaluator(&heldout, 6).unwrap(),
        scores: &l1,
    };
    let accuracy: Vec<f64> = candidates
        .iter()
        .map(|c| match evaluator.accuracy(&c.widths) {
            search::Score::Accuracy(a) => a,
            search::Score::Failed(why) => panic!("{why}"),
        })
        .collect();
    let keeps: Vec<Vec<Vec<usize>>> = candidates.iter().map(|c| keep_widths(&deps, &l1, &c.widths)).collect();
    let masks: Vec<Vec<f32>> = keeps.iter().map(|k| mask_of(&deps, k)).collect();
    let l1_kept: Vec<f64> = keeps.iter().map(|k| kept_share(&l1, k)).collect();
    // The first half is the "logged search" the predictor learns from; the second half is
    // what it has to rank.
    let energy = channel_energy(&net, &base, &deps, bench.probe(256).unwrap(), &device);
    let mut predictor = Predictor::new(&net, &base, &deps, &energy, &PredictorConfig::default(), &device);
    predictor.fit(&masks[..16], &accuracy[..16]);
    let predicted: Vec<f64> = predictor.predict(&masks[16..]).score.into_iter().map(f64::from).collect();
    let (ours, proxy) = (spearman(&predicted, &accuracy[16..]), spearman(&l1_kept[16..], &accuracy[16..]));
    assert!(ours > proxy, "predictor Spearman {ours:.3} vs L1-kept proxy {proxy:.3}");
    assert!(ours > 0.5, "predictor Spearman {ours:.3}");
}

#[test]
fn round_to_makes_every_searched_and_exported_width_a_multiple() {
    let dir = tempfile::tempdir().unwrap();
    let space = write_space_with(dir.path(), 6, "l1", "");
    // Levels whose widths are not multiples of 8 (32 · 0.7 = 22.4, 64 · 0.4 = 25.6, ...).
    let text = std::fs::read_to_string(&space)
        .unwrap()
        .replace("rates = [0.0, 0.25, 0.5, 0.75]", "rates = [0.0, 0.3, 0.6]\nround_to = 8");
    std::fs::write(&space, text).unwrap();
    let options = sacp::pipeline::Options {
        quiet: true,
        ..Default::default()
    };
    let report = sacp::pipeline::run(&space, &options).unwrap();
    let net = vgg8();
    let deps = Dependencies::analyse(&net);
    let sizes: Vec<usize> = deps.groups.iter().map(|g| g.size()).collect();
    let logged = records(&dir.path().join("out/candidates.jsonl"));
    assert!(!logged.is_empty());
    let mut pruned_some = false;
    for record in &logged {
        for (w, full) in record.widths.iter().zip(&sizes) {
            assert!(w % 8 == 0 || w == full, "width {w} of a group of {full} in {:?}", record.rates);
            pruned_some |= w < full;
        }
    }
    assert!(pruned_some);
    // The exported network: every conv and linear width a multiple of 8 or the original.
    let pruned = sacp::spec::load(&dir.path().join("out/pruned.toml")).unwrap().network;
    let width = |n: &sacp::ir::Network, name: &str| {
        let node = n.nodes().find(|&x| n.node(x).name == name).unwrap();
        n.shape(node).channels()
    };
    for node in net.nodes() {
        if matches!(net.node(node).op, sacp::ir::Op::Conv2d { .. } | sacp::ir::Op::Linear { .. }) {
            let name = &net.node(node).name;
            let (before, after) = (width(&net, name), width(&pruned, name));
            assert!(after % 8 == 0 || after == before, "{name}: {after} of {before}");
        }
    }
    assert!((report.macs_reduction - 0.5).abs() <= 0.05 + 1e-9, "{}", report.macs_reduction);
}
