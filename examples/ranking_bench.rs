//! The ranking benchmark of issue 14 (run by `benches/ranking.sh`): how well does a score
//! computed before evaluation predict a candidate's held-out accuracy after BatchNorm
//! recalibration?
//!
//! On the full Fashion-MNIST (`apt-get install dataset-fashion-mnist`), two networks are
//! trained one epoch by the benchmark itself and cached in `target/ranking_bench/`: VGG-8
//! and the zoo's ResNet-20 with `input = [1, 28, 28]`. For each, four candidate sets: the
//! per-stage space (levels 0, 0.2, .., 0.8, every feasible point) and the per-layer space
//! (levels 0, 0.1, .., 0.9, 200 feasible points sampled), at 50% and 75% of the MACs
//! removed (tolerance 0.05). Every candidate is evaluated once (L1 channel order within
//! groups, 20 recalibration batches as a search's default, 20 held-out batches of 64) and
//! cached, so a rerun only recomputes the rankings. Printed per set: Spearman(score, accuracy) of every ranking
//! (the predictor's prior sums log kept-energy shares over layers; "per group" is the same
//! sum over channel groups, each once, measured as an alternative),
//! and the regret at m = 4, 8, 16 evaluations (best of all minus best found) for the
//! rankings and for random m-subsets. `--cached` analyses only what is cached already;
//! `--dump FILE` also writes every candidate's per-group kept shares (energy, L1) and
//! accuracy as JSON lines, one per candidate set, for analysis outside the benchmark.

use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use sacp::channels::{self, keep_widths};
use sacp::deps::Dependencies;
use sacp::gcn::{Encoder, GcnConfig, Predictor, PredictorConfig, mask_of};
use sacp::ir::Network;
use sacp::pipeline::{CandidateEvaluator, Workbench};
use sacp::search::candidates::{Candidate, Layout, Target};
use sacp::search::clusters::{self, RateGroup};
use sacp::search::space::Clustering;
use sacp::train::{self, TrainConfig};
use sacp::weights::{self, Weights};
use sacp::{data, spec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Candidates sampled from each per-layer space.
const PER_LAYER_SAMPLES: usize = 200;
/// Held-out images scored per candidate (batches of 64).
const HELDOUT_BATCHES: usize = 20;
/// BatchNorm recalibration batches per candidate (a search's default,
/// `[evaluate] recalibration_batches`).
const RECALIBRATION_BATCHES: usize = 20;

/// One evaluated candidate, as cached.
#[derive(Serialize, Deserialize, Clone)]
struct Evaluated {
    rates: Vec<f64>,
    widths: Vec<usize>,
    macs_reduction: f64,
    params_reduction: f64,
    accuracy: f64,
}

/// A network of the benchmark with its trained weights.
struct Trained {
    name: &'static str,
    net: Network,
    weights: Weights,
    deps: Dependencies,
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ranking_bench")
}

fn fashion_mnist() -> anyhow::Result<data::DataSet> {
    Ok(data::open("fashion-mnist:/usr/share/datasets/fashion-mnist", [1, 28, 28])?)
}

fn trained(name: &'static str, set: &data::DataSet, device: &Device) -> anyhow::Result<Trained> {
    let spec_file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/{name}_fashion_mnist.toml"));
    let net = spec::load(&spec_file)?.network;
    let file = cache_dir().join(format!("{name}.safetensors"));
    let weights = if file.is_file() {
        weights::load(&file)?
    } else {
        let started = Instant::now();
        eprintln!("{name}: training one epoch on the full Fashion-MNIST ...");
        let trained = train::train(
            &net,
            &weights::initialise(&net, 0),
            set,
            &TrainConfig::default(),
            None,
            device,
            None,
            &mut |_| ControlFlow::Continue(()),
        )?;
        eprintln!(
            "{name}: trained in {:.0} s, held-out {:.2}%",
            started.elapsed().as_secs_f64(),
            100.0 * trained.heldout_accuracy
        );
        std::fs::create_dir_all(cache_dir())?;
        weights::save(&trained.weights, &file)?;
        trained.weights
    };
    let deps = Dependencies::analyse(&net);
    Ok(Trained { name, net, weights, deps })
}

/// One rate group per resolution (what `clustering = "per_stage"` builds).
fn per_stage(net: &Network, deps: &Dependencies) -> Vec<RateGroup> {
    let prunable: Vec<_> = deps.groups.iter().filter(|g| g.prunable()).collect();
    clusters::clustered(net, &prunable, Clustering::PerStage)
}

/// One rate group per prunable channel group.
fn per_layer(net: &Network, deps: &Dependencies) -> Vec<RateGroup> {
    let prunable: Vec<_> = deps.groups.iter().filter(|g| g.prunable()).collect();
    clusters::clustered(net, &prunable, Clustering::PerLayer)
}

/// `count` distinct feasible per-layer candidates: random offsets around a common rate
/// found by bisection, snapped to the levels.
fn sample_per_layer(layout: &Layout, target: &Target, count: usize, seed: u64) -> Vec<Candidate> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (lo, hi) = (layout.levels[0], *layout.levels.last().expect("levels"));
    let snap = |r: f64| {
        *layout
            .levels
            .iter()
            .min_by(|a, b| (*a - r).abs().total_cmp(&(*b - r).abs()))
            .expect("levels")
    };
    let goal = target.macs.expect("a MAC target");
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..count * 50 {
        if out.len() == count {
            break;
        }
        let spread = rng.random_range(0.1..0.5);
        let offsets: Vec<f64> = (0..layout.rate_groups.len()).map(|_| rng.random_range(-spread..spread)).collect();
        let at = |t: f64| -> Vec<f64> { offsets.iter().map(|o| snap((t + o).clamp(lo, hi))).collect() };
        let (mut a, mut b) = (-0.5, 1.5);
        for _ in 0..20 {
            let mid = (a + b) / 2.0;
            if layout.candidate(&at(mid)).macs_reduction < goal {
                a = mid
            } else {
                b = mid
            }
        }
        let c = layout.candidate(&at((a + b) / 2.0));
        if target.admits(&c) && seen.insert(c.widths.clone()) {
            out.push(c);
        }
    }
    out
}

/// Evaluates `candidates` (or reads them from `file`).
fn evaluated(t: &Trained, set: &data::DataSet, candidates: &[Candidate], file: &Path, device: &Device) -> anyhow::Result<Vec<Evaluated>> {
    if file.is_file() {
        let text = std::fs::read_to_string(file)?;
        let cached: Vec<Evaluated> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
        if cached.len() == candidates.len() && cached.iter().zip(candidates).all(|(e, c)| e.widths == c.widths) {
            return Ok(cached);
        }
    }
    if std::env::args().any(|a| a == "--cached") {
        return Ok(Vec::new());
    }
    let bench = Workbench::new(&t.net, &t.weights, &t.deps, set, 5000, 64, 0, device);
    let heldout = bench.heldout_batches(HELDOUT_BATCHES);
    let scores = channels::l1_scores(&t.net, &t.weights, &t.deps);
    let evaluator = CandidateEvaluator {
        keep: bench.keep_evaluator(&heldout, RECALIBRATION_BATCHES)?,
        scores: &scores,
    };
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let results: Vec<Evaluated> = candidates
        .par_iter()
        .map(|c| {
            let accuracy = match evaluator.accuracy(&c.widths) {
                sacp::search::Score::Accuracy(a) => a,
                sacp::search::Score::Failed(_) => 0.0,
            };
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(25) {
                eprintln!("  {n}/{} evaluated ({:.0} s)", candidates.len(), started.elapsed().as_secs_f64());
            }
            Evaluated {
                rates: c.rates.clone(),
                widths: c.widths.clone(),
                macs_reduction: c.macs_reduction,
                params_reduction: c.params_reduction,
                accuracy,
            }
        })
        .collect();
    let tmp = file.with_extension("tmp");
    let mut out = std::fs::File::create(&tmp)?;
    for r in &results {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
    }
    std::fs::rename(tmp, file)?;
    Ok(results)
}

/// A candidate set of one network.
struct Set {
    label: String,
    records: Vec<Evaluated>,
}

fn candidate_sets(t: &Trained, set: &data::DataSet, device: &Device) -> anyhow::Result<Vec<Set>> {
    let mut sets = Vec::new();
    for target_share in [0.5, 0.75] {
        let target = Target {
            latency: None,
            macs: Some(target_share),
            params: None,
            tolerance: 0.05,
        };
        for (space, groups, levels) in [
            ("per-stage", per_stage(&t.net, &t.deps), vec![0.0, 0.2, 0.4, 0.6, 0.8]),
            ("per-layer", per_layer(&t.net, &t.deps), (0..10).map(|i| i as f64 / 10.0).collect()),
        ] {
            let layout = Layout::new(&t.net, &t.deps, groups, levels);
            let candidates = if space == "per-stage" {
                layout.feasible_grid(&target)
            } else {
                sample_per_layer(&layout, &target, PER_LAYER_SAMPLES, 7)
            };
            let label = format!("{} {space} {:.0}% MACs", t.name, 100.0 * target_share);
            eprintln!("{label}: {} candidates", candidates.len());
            let file = cache_dir().join(format!(
                "{}-{space}-{:.0}-recalibrated{RECALIBRATION_BATCHES}.jsonl",
                t.name,
                100.0 * target_share
            ));
            let records = evaluated(t, set, &candidates, &file, device)?;
            if records.is_empty() {
                continue;
            }
            sets.push(Set { label, records });
        }
    }
    Ok(sets)
}

/// Spearman's rank correlation (NaN when undefined).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    sacp::report::spearman(a, b).unwrap_or(f64::NAN)
}

/// Best accuracy of all minus the best among `picked`.
fn regret(accuracy: &[f64], picked: &[usize]) -> f64 {
    let best = accuracy.iter().copied().fold(f64::MIN, f64::max);
    best - picked.iter().map(|&i| accuracy[i]).fold(f64::MIN, f64::max)
}

/// Indices by descending score (ties by index).
fn by_score(score: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    order
}

/// Expected regret of `m` candidates drawn at random (10 000 draws).
fn random_regret(accuracy: &[f64], m: usize, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let draws = 10_000;
    let mut all: Vec<usize> = (0..accuracy.len()).collect();
    (0..draws)
        .map(|_| {
            all.shuffle(&mut rng);
            regret(accuracy, &all[..m.min(all.len())])
        })
        .sum::<f64>()
        / draws as f64
}

/// The online search: rounds of `per_round`, the first ranked by the prior, each later one
/// by the predictor trained on every candidate evaluated so far, a quarter of each round
/// (rounded down) spent on the most uncertain rest. Returns the order of evaluation.
fn online_order(predictor: &mut Predictor, masks: &[Vec<f32>], accuracy: &[f64], budget: usize, per_round: usize) -> Vec<usize> {
    let mut evaluated: Vec<usize> = Vec::new();
    while evaluated.len() < budget.min(masks.len()) {
        let train_masks: Vec<Vec<f32>> = evaluated.iter().map(|&i| masks[i].clone()).collect();
        let train_acc: Vec<f64> = evaluated.iter().map(|&i| accuracy[i]).collect();
        predictor.fit(&train_masks, &train_acc);
        let rest: Vec<usize> = (0..masks.len()).filter(|i| !evaluated.contains(i)).collect();
        let rest_masks: Vec<Vec<f32>> = rest.iter().map(|&i| masks[i].clone()).collect();
        let p = predictor.predict(&rest_masks);
        let score: Vec<f64> = p.score.iter().map(|&v| f64::from(v)).collect();
        let spread: Vec<f64> = p.spread.iter().map(|&v| f64::from(v)).collect();
        let take = per_round.min(budget - evaluated.len()).min(rest.len());
        let explore = if evaluated.is_empty() { 0 } else { take / 4 };
        let mut chosen: Vec<usize> = by_score(&score).into_iter().take(take - explore).collect();
        let uncertain: Vec<usize> = by_score(&spread)
            .into_iter()
            .filter(|i| !chosen.contains(i))
            .take(explore)
            .collect();
        chosen.extend(uncertain);
        evaluated.extend(chosen.into_iter().map(|k| rest[k]));
    }
    evaluated
}

/// Spearman of the predictor trained on `train` random candidates, on the others (mean of
/// three seeded splits), next to the L1 proxy's on the same candidates.
fn trained_spearman(predictor: &mut Predictor, masks: &[Vec<f32>], accuracy: &[f64], l1: &[f64], train: usize) -> (f64, f64) {
    let mut sums = (0.0, 0.0);
    for seed in 0..3 {
        let mut order: Vec<usize> = (0..masks.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let (fit, test) = order.split_at(train.min(masks.len() / 2));
        predictor.fit(
            &fit.iter().map(|&i| masks[i].clone()).collect::<Vec<_>>(),
            &fit.iter().map(|&i| accuracy[i]).collect::<Vec<_>>(),
        );
        let p = predictor.predict(&test.iter().map(|&i| masks[i].clone()).collect::<Vec<_>>());
        let acc: Vec<f64> = test.iter().map(|&i| accuracy[i]).collect();
        sums.0 += spearman(&p.score.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), &acc);
        sums.1 += spearman(&test.iter().map(|&i| l1[i]).collect::<Vec<_>>(), &acc);
    }
    (sums.0 / 3.0, sums.1 / 3.0)
}

/// One candidate set as `--dump` writes it.
#[derive(Serialize)]
struct Dumped<'a> {
    label: &'a str,
    /// Per prunable group: its name, size, member layers and MACs per channel.
    groups: Vec<(String, usize, usize, u64)>,
    /// Per candidate: accuracy, then per prunable group the kept energy and L1 shares.
    candidates: Vec<(f64, Vec<f64>, Vec<f64>)>,
}

/// The `--dump` file, when asked for.
fn dump_file() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--dump")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

/// A group's kept share of `scores` under `keep` (its channels' sum kept over their sum).
fn group_share(scores: &[f32], keep: &[usize]) -> f64 {
    channels::kept_share(&vec![scores.to_vec()], &[keep.to_vec()])
}

fn analyse(t: &Trained, set: &data::DataSet, sets: &[Set], device: &Device) -> anyhow::Result<()> {
    let bench = Workbench::new(&t.net, &t.weights, &t.deps, set, 5000, 64, 0, device);
    let l1 = channels::l1_scores(&t.net, &t.weights, &t.deps);
    let started = Instant::now();
    let energy = channels::channel_energy(&t.net, &t.weights, &t.deps, bench.probe(256)?, device);
    let encoder = Encoder::train(&t.net, &t.weights, &t.deps, &GcnConfig::default(), device);
    let mut predictor = Predictor::new(&t.net, &t.weights, &t.deps, &energy, &PredictorConfig::default(), device);
    eprintln!("{}: probe energy and encoder in {:.1} s", t.name, started.elapsed().as_secs_f64());
    println!("\n### {}\n", t.name);
    println!(
        "| candidate set | n | accuracy range | similarity range | SACP similarity | L1 kept | params kept | prior (0 evaluated) | prior per group | predictor (24 evaluated) / L1 kept on the same rest | regret m=4/8/16: random | prior top-m | online rounds of 4 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut dump = dump_file()
        .map(|f| std::fs::OpenOptions::new().create(true).append(true).open(f))
        .transpose()?;
    for s in sets {
        let accuracy: Vec<f64> = s.records.iter().map(|r| r.accuracy).collect();
        let keeps: Vec<Vec<Vec<usize>>> = s.records.iter().map(|r| keep_widths(&t.deps, &l1, &r.widths)).collect();
        if let Some(out) = dump.as_mut() {
            let prunable: Vec<usize> = t.deps.prunable().map(|g| g.id).collect();
            let dumped = Dumped {
                label: &s.label,
                groups: t
                    .deps
                    .prunable()
                    .map(|g| (g.name.clone(), g.size(), g.nodes.len(), g.cost_per_channel.macs))
                    .collect(),
                candidates: keeps
                    .iter()
                    .zip(&accuracy)
                    .map(|(k, &a)| {
                        let shares = |scores: &channels::Scores| prunable.iter().map(|&g| group_share(&scores[g], &k[g])).collect();
                        (a, shares(&energy), shares(&l1))
                    })
                    .collect(),
            };
            writeln!(out, "{}", serde_json::to_string(&dumped)?)?;
        }
        let masks: Vec<Vec<f32>> = keeps.iter().map(|k| mask_of(&t.deps, k)).collect();
        let similarity: Vec<f64> = encoder.similarity(&masks).into_iter().map(f64::from).collect();
        let l1_kept: Vec<f64> = keeps.iter().map(|k| channels::kept_share(&l1, k)).collect();
        let params_kept: Vec<f64> = s.records.iter().map(|r| 1.0 - r.params_reduction).collect();
        let group_prior: Vec<f64> = keeps
            .iter()
            .map(|k| {
                k.iter()
                    .zip(&energy)
                    .filter(|(_, e)| !e.is_empty())
                    .map(|(kept, e)| group_share(e, kept).max(1e-4).ln())
                    .sum()
            })
            .collect();
        predictor.fit(&[], &[]);
        let prior: Vec<f64> = predictor.predict(&masks).score.into_iter().map(f64::from).collect();
        let (trained, l1_rest) = trained_spearman(&mut predictor, &masks, &accuracy, &l1_kept, 24);
        let online = online_order(&mut predictor, &masks, &accuracy, 16, 4);
        let prior_order = by_score(&prior);
        let regrets = |f: &dyn Fn(usize) -> f64| [4, 8, 16].map(|m| format!("{:.2}", 100.0 * f(m))).join(" / ");
        let lo = accuracy.iter().copied().fold(1.0, f64::min);
        let hi = accuracy.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {} | {:.2}–{:.2}% | {:.5}–{:.5} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} / {:.3} | {} | {} | {} |",
            s.label,
            accuracy.len(),
            100.0 * lo,
            100.0 * hi,
            similarity.iter().copied().fold(1.0, f64::min),
            similarity.iter().copied().fold(-1.0, f64::max),
            spearman(&similarity, &accuracy),
            spearman(&l1_kept, &accuracy),
            spearman(&params_kept, &accuracy),
            spearman(&prior, &accuracy),
            spearman(&group_prior, &accuracy),
            trained,
            l1_rest,
            regrets(&|m| random_regret(&accuracy, m, 0)),
            regrets(&|m| regret(&accuracy, &prior_order[..m.min(prior_order.len())])),
            regrets(&|m| regret(&accuracy, &online[..m.min(online.len())])),
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let device = Device::flex();
    if let Some(file) = dump_file().filter(|f| f.exists()) {
        anyhow::bail!(
            "--dump {}: the file exists; give a new one (it is never overwritten)",
            file.display()
        );
    }
    let set = fashion_mnist()?;
    std::fs::create_dir_all(cache_dir())?;
    for name in ["vgg8", "resnet20"] {
        if std::env::args().any(|a| a == "--cached") && !cache_dir().join(format!("{name}.safetensors")).is_file() {
            continue;
        }
        let t = trained(name, &set, &device)?;
        let sets = candidate_sets(&t, &set, &device)?;
        analyse(&t, &set, &sets, &device)?;
    }
    Ok(())
}
