//! Search benchmarks (run by `benches/search.sh`):
//!
//! * `throughput` (part of `benches/speed.sh`, lines `RESULT candidates NETWORK THREADS
//!   PER_MINUTE`): candidates evaluated per minute on 1 and 2 threads (prune, recalibrate
//!   BatchNorm on 10 batches, score 8 held-out batches of 64), for the 28×28 VGG-8 and for
//!   ResNet-56 on CIFAR-shaped synthetic images; 2 threads both ways: one candidate per
//!   thread (`parallelism = "candidates"`) and one candidate at a time with both threads in
//!   its kernels (`"kernels"`).
//!
//! * `grid` (lines `RESULT grid NETWORK LEVELS TARGET FEASIBLE WALK_S EVERY_S PRUNED_S`): the
//!   feasible grid of ResNet-20's per-layer space (3 levels ^ 12 rate groups) at 50% and 75%
//!   of the MACs ± 1%, in one process: walked as `sacp search` walks it, every point costed
//!   from its widths, and every point costed by building its pruned network.
//!
//! How well rankings predict accuracy is `examples/ranking_bench.rs`.
//!
//! `cargo run --example search_bench -- throughput [vgg8|resnet56]` (one network only when
//! it is named, e.g. to profile it).

use burn::tensor::Device;
use sacp::channels;
use sacp::deps::Dependencies;
use sacp::ir::Network;
use sacp::pipeline::{CandidateEvaluator, Workbench};
use sacp::search::candidates::{Candidate, Layout, Target};
use sacp::search::clusters::{self, RateGroup};
use sacp::search::log::{Header, Log};
use sacp::search::space::{Clustering, Parallelism, Ranking, SearchSection, Strategy};
use sacp::search::{self, Space};
use sacp::weights::{self, Weights};
use sacp::{data, spec};
use std::path::Path;
use std::time::Instant;

/// One rate group per resolution (what `clustering = "per_stage"` builds).
fn per_stage(net: &Network, deps: &Dependencies) -> Vec<RateGroup> {
    let prunable: Vec<_> = deps.groups.iter().filter(|g| g.prunable()).collect();
    clusters::clustered(net, &prunable, Clustering::PerStage)
}

struct Bench<'a> {
    net: &'a Network,
    weights: &'a Weights,
    data: &'a data::DataSet,
    heldout: usize,
    heldout_batches: usize,
}

/// Runs an exhaustive, unranked search of `budget` candidates; returns records and seconds.
fn evaluate_all(
    b: &Bench,
    scores: &channels::Scores,
    threads: usize,
    parallelism: Parallelism,
    budget: usize,
    target: Target,
) -> (Vec<search::log::Record>, f64) {
    let device = Device::flex();
    let deps = Dependencies::analyse(b.net);
    let layout = Layout::new(b.net, &deps, per_stage(b.net, &deps), vec![0.0, 0.25, 0.5, 0.75]);
    let grid = layout.feasible_grid(&target);
    let mut heldout = b.data.split(b.heldout, 0).1;
    heldout.indices.truncate(b.heldout_batches * 64);
    let bench = Workbench::new(b.net, b.weights, &deps, b.data, b.heldout, 64, 0, &device);
    let evaluator = CandidateEvaluator {
        keep: bench.keep_evaluator(&heldout, 10).expect("the data set reads"),
        scores,
    };
    let settings = SearchSection {
        strategy: Strategy::Exhaustive,
        ranking: Ranking::None,
        budget,
        gcn_top_m: budget,
        threads,
        parallelism,
        ..SearchSection::default()
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (log, _) = Log::open(&dir.path().join("log.jsonl"), &Header::new("bench".into(), vec![]), false).expect("a log");
    let started = Instant::now();
    let outcome = search::run(
        &Space {
            layout: &layout,
            target,
            grid: &grid,
        },
        &settings,
        &mut |_, _| unreachable!("an unranked search ranks nothing"),
        &|c: &Candidate| Ok(evaluator.accuracy(&c.widths)),
        log,
        Vec::new(),
        &|_, _| {},
    )
    .expect("the search runs");
    (outcome.records, started.elapsed().as_secs_f64())
}

fn throughput(only: Option<&str>) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Target {
        latency: None,
        macs: Some(0.5),
        params: None,
        tolerance: 0.05,
    };
    for (name, key, spec_file, data_name, input, budget) in [
        (
            "VGG-8 28x28",
            "vgg8",
            "models/vgg8_fashion_mnist.toml",
            format!("fashion-mnist:{}/data/fashion-mnist-subset", root.display()),
            [1, 28, 28],
            8,
        ),
        (
            "ResNet-56 32x32",
            "resnet56",
            "models/resnet56_cifar10.toml",
            "synthetic:2000".to_string(),
            [3, 32, 32],
            4,
        ),
    ] {
        if only.is_some_and(|only| only != key) {
            continue;
        }
        let net = spec::load(&root.join(spec_file))?.network;
        let w = weights::initialise(&net, 0);
        let deps = Dependencies::analyse(&net);
        let scores = channels::l1_scores(&net, &w, &deps);
        let set = data::open(&data_name, input)?;
        let bench = Bench {
            net: &net,
            weights: &w,
            data: &set,
            heldout: 500,
            heldout_batches: 8,
        };
        let mut rates = Vec::new();
        for (threads, parallelism) in [
            (1, Parallelism::Candidates),
            (2, Parallelism::Candidates),
            (2, Parallelism::Kernels),
        ] {
            let (records, seconds) = evaluate_all(&bench, &scores, threads, parallelism, budget, target);
            let per_minute = 60.0 * records.len() as f64 / seconds;
            println!(
                "{name}: {threads} thread(s), {parallelism:?}: {} candidates in {seconds:.1} s = {per_minute:.1} candidates/min",
                records.len()
            );
            if parallelism == Parallelism::Candidates {
                println!("RESULT candidates {key} {threads} {per_minute:.1}");
            }
            rates.push(per_minute);
        }
        println!(
            "{name}: 2 threads vs 1: {:.2}x on candidates, {:.2}x on kernels",
            rates[1] / rates[0],
            rates[2] / rates[0]
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    sacp::exec::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["throughput"] => throughput(None),
        ["throughput", only @ ("vgg8" | "resnet56")] => throughput(Some(only)),
        ["grid"] => grid(),
        _ => anyhow::bail!("usage: search_bench throughput [vgg8|resnet56] | grid"),
    }
}

/// The feasible grid walked vs every point costed (see the module comment).
fn grid() -> anyhow::Result<()> {
    use rayon::prelude::*;
    let net = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/resnet20_fashion_mnist.toml"))?.network;
    let deps = Dependencies::analyse(&net);
    let groups = clusters::clustered(&net, &deps.prunable().collect::<Vec<_>>(), Clustering::PerLayer);
    let layout = Layout::new(&net, &deps, groups, vec![0.0, 0.5, 0.75]);
    for macs in [0.5, 0.75] {
        let target = Target {
            macs: Some(macs),
            params: None,
            latency: None,
            tolerance: 0.01,
        };
        let started = Instant::now();
        let walked = layout.feasible_grid(&target).len();
        let walk = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let every = (0..layout.combinations())
            .into_par_iter()
            .filter(|&i| target.admits(&layout.candidate(&layout.grid_point(i))))
            .count();
        let every_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let by_pruning = (0..layout.combinations())
            .into_par_iter()
            .filter(|&i| {
                let widths = layout.widths(&layout.grid_point(i));
                let keep: Vec<Vec<usize>> = widths.iter().map(|&w| (0..w).collect()).collect();
                let cost = sacp::surgery::prune_network(&net, &deps, &keep).expect("valid widths").total_cost();
                (1.0 - cost.macs as f64 / layout.base().macs as f64 - macs).abs() <= target.tolerance + 1e-12
            })
            .count();
        let pruned_s = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            every == walked && by_pruning == walked,
            "the walk found {walked} points, costing every point {every}, pruning every point {by_pruning}"
        );
        println!(
            "RESULT grid resnet20 {}^{} {macs} {walked} {walk:.2} {every_s:.2} {pruned_s:.2}",
            layout.levels.len(),
            layout.rate_groups.len()
        );
    }
    Ok(())
}
