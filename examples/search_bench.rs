//! Search benchmarks (run by `benches/search.sh`):
//!
//! * `throughput`: candidates evaluated per minute on 1 and 2 threads (prune, recalibrate
//!   BatchNorm on 10 batches, score 8 held-out batches of 64), for the 28×28 VGG-8 and for
//!   ResNet-56 on CIFAR-shaped synthetic images.
//! * `ranking`: does the GCN top-m filter find better candidates than no filter at the same
//!   budget? On the full Fashion-MNIST (VGG-8 trained one epoch, cached in
//!   `target/importance_table/` as by `examples/importance_table.rs`), every feasible point of
//!   the quickstart's space is evaluated once; then the GCN's top-m is compared with random
//!   m-subsets (their expected best and mean, over 10 000 draws) on the same evaluations.
//!
//! `cargo run --release --example search_bench -- throughput|ranking`

use burn::tensor::Device;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use sacp::channels::{self, keep_widths};
use sacp::deps::Dependencies;
use sacp::gcn::{Encoder, GcnConfig, mask_of};
use sacp::importance::{self, Context, Method};
use sacp::ir::Network;
use sacp::pipeline::{CandidateEvaluator, Workbench};
use sacp::search::candidates::{Candidate, Layout, Target};
use sacp::search::clusters::RateGroup;
use sacp::search::log::{Header, Log};
use sacp::search::space::{Ranking, SearchSection, Strategy};
use sacp::search::{self, Space};
use sacp::train::{self, TrainConfig};
use sacp::weights::{self, Weights};
use sacp::{data, spec};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

/// One rate group per resolution (what `clustering = "per_stage"` builds).
fn per_stage(net: &Network, deps: &Dependencies) -> Vec<RateGroup> {
    let mut groups: Vec<RateGroup> = Vec::new();
    for g in deps.groups.iter().filter(|g| g.prunable()) {
        let node = g.nodes.iter().copied().find(|&n| net.node(n).name == g.name).unwrap_or(g.nodes[0]);
        let name = format!("{}", net.shape(node).spatial());
        match groups.iter_mut().find(|r| r.name == name) {
            Some(r) => r.groups.push(g.id),
            None => groups.push(RateGroup { name, groups: vec![g.id] }),
        }
    }
    groups
}

struct Bench<'a> {
    net: &'a Network,
    weights: &'a Weights,
    data: &'a data::DataSet,
    heldout: usize,
    heldout_batches: usize,
}

/// Runs an exhaustive, unranked search of `budget` candidates; returns records and seconds.
fn evaluate_all(b: &Bench, scores: &channels::Scores, threads: usize, budget: usize, target: Target) -> (Vec<search::log::Record>, f64) {
    let device = Device::flex();
    let deps = Dependencies::analyse(b.net);
    let layout = Layout::new(b.net, &deps, per_stage(b.net, &deps), vec![0.0, 0.25, 0.5, 0.75]);
    let grid = layout.feasible_grid(&target);
    let mut heldout = b.data.split(b.heldout, 0).1;
    heldout.indices.truncate(b.heldout_batches * 64);
    let bench = Workbench::new(b.net, b.weights, &deps, b.data, b.heldout, 64, 0, &device);
    let evaluator = CandidateEvaluator {
        keep: bench.keep_evaluator(&heldout, 10),
        scores,
    };
    let settings = SearchSection {
        strategy: Strategy::Exhaustive,
        ranking: Ranking::None,
        budget,
        gcn_top_m: budget,
        threads,
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
        &mut |_| Vec::new(),
        &|c: &Candidate| evaluator.accuracy(&c.widths).map_err(|e| e.to_string()),
        log,
        Vec::new(),
        &|_, _| {},
    )
    .expect("the search runs");
    (outcome.records, started.elapsed().as_secs_f64())
}

fn throughput() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Target {
        macs: Some(0.5),
        params: None,
        tolerance: 0.05,
    };
    for (name, spec_file, data_name, input, budget) in [
        (
            "VGG-8 28x28",
            "models/vgg8_fashion_mnist.toml",
            format!("fashion-mnist:{}/data/fashion-mnist-subset", root.display()),
            [1, 28, 28],
            8,
        ),
        (
            "ResNet-56 32x32",
            "models/resnet56_cifar10.toml",
            "synthetic:2000".to_string(),
            [3, 32, 32],
            4,
        ),
    ] {
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
        for threads in [1, 2] {
            let (records, seconds) = evaluate_all(&bench, &scores, threads, budget, target);
            let per_minute = 60.0 * records.len() as f64 / seconds;
            println!(
                "{name}: {threads} thread(s): {} candidates in {seconds:.1} s = {per_minute:.1} candidates/min",
                records.len()
            );
            rates.push(per_minute);
        }
        println!("{name}: speed-up 2 vs 1 thread = {:.2}x", rates[1] / rates[0]);
    }
    Ok(())
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let rank = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        order.iter().enumerate().for_each(|(k, &i)| r[i] = k as f64);
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let var: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    cov / var
}

fn ranking() -> anyhow::Result<()> {
    let device = Device::flex();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = spec::load(&root.join("models/vgg8_fashion_mnist.toml"))?.network;
    let set = data::open("fashion-mnist:/usr/share/datasets/fashion-mnist", [1, 28, 28])?;
    let cache = root.join("target/importance_table/base.safetensors");
    let base = if cache.is_file() {
        weights::load(&cache)?
    } else {
        let trained = train::train(
            &net,
            &weights::initialise(&net, 0),
            &set,
            &TrainConfig::default(),
            None,
            &device,
            None,
            &mut |_| ControlFlow::Continue(()),
        )?;
        std::fs::create_dir_all(cache.parent().expect("a folder"))?;
        weights::save(&trained.weights, &cache)?;
        trained.weights
    };
    let deps = Dependencies::analyse(&net);
    let started = Instant::now();
    let encoder = Encoder::train(&net, &base, &deps, &GcnConfig::default(), &device);
    let gcn_seconds = started.elapsed().as_secs_f64();
    let scores = importance::score(
        Method::Gcn,
        &Context {
            net: &net,
            weights: &base,
            deps: &deps,
            seed: 0,
            device: &device,
            probe: None,
            encoder: Some(&encoder),
            gcn_rl: None,
        },
    )?;
    let target = Target {
        macs: Some(0.5),
        params: None,
        tolerance: 0.05,
    };
    let bench = Bench {
        net: &net,
        weights: &base,
        data: &set,
        heldout: 5000,
        heldout_batches: 20,
    };
    let (records, seconds) = evaluate_all(&bench, &scores, 2, usize::MAX, target);
    let accuracy: Vec<f64> = records.iter().map(|r| r.heldout_accuracy).collect();
    let masks: Vec<Vec<f32>> = records
        .iter()
        .map(|r| mask_of(&deps, &keep_widths(&deps, &scores, &r.widths)))
        .collect();
    let similarity: Vec<f64> = encoder.similarity(&masks).into_iter().map(f64::from).collect();
    let n = records.len();
    let best = accuracy.iter().copied().fold(0.0, f64::max);
    println!(
        "{n} feasible candidates evaluated in {seconds:.0} s (encoder {gcn_seconds:.1} s); best held-out {:.2}%, mean {:.2}%",
        100.0 * best,
        100.0 * accuracy.iter().sum::<f64>() / n as f64
    );
    println!(
        "Spearman(GCN similarity, held-out accuracy) = {:.3}",
        spearman(&similarity, &accuracy)
    );
    let mut by_similarity: Vec<usize> = (0..n).collect();
    by_similarity.sort_by(|&a, &b| similarity[b].total_cmp(&similarity[a]));
    let mut rng = StdRng::seed_from_u64(0);
    println!("| m | GCN top-m: best | GCN top-m: mean | random m (expected): best | random m: mean |");
    println!("|---|---|---|---|---|");
    for m in [4, 8, 16] {
        let top: Vec<f64> = by_similarity[..m].iter().map(|&i| accuracy[i]).collect();
        let (mut best_sum, mut mean_sum) = (0.0, 0.0);
        let draws = 10_000;
        for _ in 0..draws {
            let mut all: Vec<usize> = (0..n).collect();
            all.shuffle(&mut rng);
            let pick: Vec<f64> = all[..m].iter().map(|&i| accuracy[i]).collect();
            best_sum += pick.iter().copied().fold(0.0, f64::max);
            mean_sum += pick.iter().sum::<f64>() / m as f64;
        }
        println!(
            "| {m} | {:.2}% | {:.2}% | {:.2}% | {:.2}% |",
            100.0 * top.iter().copied().fold(0.0, f64::max),
            100.0 * top.iter().sum::<f64>() / m as f64,
            100.0 * best_sum / draws as f64,
            100.0 * mean_sum / draws as f64
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("throughput") => throughput(),
        Some("ranking") => ranking(),
        _ => anyhow::bail!("usage: search_bench throughput|ranking"),
    }
}
