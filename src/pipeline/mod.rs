//! `sacp search`: the whole job of a search-space file. Check the space (before any work) →
//! train the base network if no weights are given → score channels → search the rate
//! combinations (GCN-ranked, evaluated in parallel, logged) → recalibrate and fine-tune the
//! winner → export `pruned.safetensors`, `pruned.toml`, `pruned.onnx`, `report.json`,
//! `report.md` and its SVG plots beside the log.

mod evaluate;
mod measure;
mod settings;

pub use evaluate::{CandidateEvaluator, KeepEvaluator};
pub use measure::latency_ms;
pub use settings::{StageSettings, fingerprint, interpret};

use crate::report::{RateGroupReport, Report, Side, layer_widths};

use crate::channels::keep_widths;
use crate::data::{self, DataError, DataSet};
use crate::deps::Dependencies;
use crate::exec::{BackendError, Executable};
use crate::gcn::{self, Encoder, GcnError};
use crate::importance::{self, Context, ImportanceError};
use crate::ir::Network;
use crate::search::candidates::{Candidate, Layout, Target, check_space};
use crate::search::log::{Header, Log, LogError, Record};
use crate::search::space::{Ranking, SearchSpace};
use crate::search::{self, SearchError, Space, clusters};
use crate::spec::{self, SpecError};
use crate::train::{self, Checkpointing, Distill, Schedule, TrainConfig, TrainError};
use crate::weights::{self, WeightError, Weights};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Errors of a search run, each with its cause.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The search space or the model spec is malformed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The data set could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Weights could not be read or written.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Channel scoring failed.
    #[error(transparent)]
    Importance(#[from] ImportanceError),
    /// The GCN encoder failed.
    #[error(transparent)]
    Gcn(#[from] GcnError),
    /// The search failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The candidate log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The backend could not start.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The output folder is, or holds, one of the run's inputs.
    #[error(transparent)]
    Overwrite(#[from] crate::outputs::OverwriteError),
    /// A file cached in the output folder belongs to another network or other settings.
    #[error(
        "{path} was made for another network, data set or [train] settings than this search's ({reason}); remove it, or write to another output folder"
    )]
    Stale {
        /// The cached file.
        path: String,
        /// What differs.
        reason: String,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Run-time options that are not part of the search space.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Continue the search logged in the output folder.
    pub resume: bool,
    /// Output folder instead of `[output] folder`.
    pub out: Option<PathBuf>,
    /// Worker threads instead of `[search] threads`.
    pub threads: Option<usize>,
    /// No progress bars or messages.
    pub quiet: bool,
}

/// Everything checked before any work: the space, the network, its rate groups and the
/// feasible grid.
pub struct Checked {
    /// The search space.
    pub space: SearchSpace,
    /// The network to prune.
    pub network: Network,
    /// Weights the model spec carries (an ONNX spec's), used when `[model] weights` is absent.
    pub embedded: Option<Weights>,
    /// Its channel groups.
    pub deps: Dependencies,
    /// Its rate groups.
    pub rate_groups: Vec<clusters::RateGroup>,
    /// The targets.
    pub target: Target,
    /// The feasible points of the coarse grid.
    pub grid: Vec<Candidate>,
    /// The files and folders the run reads, which its outputs must not overwrite.
    pub inputs: crate::outputs::Inputs,
    /// The settings of the stages around the search, interpreted.
    pub settings: StageSettings,
}

/// Reads a search space and checks everything that can be checked without data or
/// weights: keys and types, ranges, paths, the model spec, the rate groups, the size of
/// the space and whether the targets are reachable.
pub fn check(path: &Path) -> Result<Checked, PipelineError> {
    let space = SearchSpace::load(path)?;
    let settings = interpret(&space)?;
    space.check_files()?;
    let model = spec::load(&space.resolve(&space.model.spec))?;
    let inputs = crate::outputs::Inputs::new()
        .add("search space", path)
        .model("model", &model)
        .add_some("base weights", space.model.weights.as_ref().map(|w| space.resolve(w)).as_deref())
        .data(&space.dataset());
    let embedded = model.embedded_weights().cloned();
    let network = model.network;
    let deps = Dependencies::analyse(&network);
    let rate_groups = clusters::rate_groups(&space, &network, &deps)?;
    let target = Target {
        macs: space.constraints.macs_reduction,
        params: space.constraints.params_reduction,
        tolerance: space.constraints.tolerance,
    };
    let grid = {
        let layout = Layout::new(&network, &deps, rate_groups.clone(), space.levels());
        check_space(&space, &layout, &target)?
    };
    Ok(Checked {
        space,
        network,
        embedded,
        deps,
        rate_groups,
        target,
        grid,
        inputs,
        settings,
    })
}

fn bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

#[allow(clippy::too_many_arguments)] // train()'s arguments plus the bar switch
fn train_with_bar(
    net: &Network,
    initial: &Weights,
    data: &DataSet,
    config: &TrainConfig,
    distill: Option<&Distill>,
    device: &Device,
    checkpoint: &Checkpointing,
    quiet: bool,
) -> Result<train::TrainSummary, TrainError> {
    let progress = bar(quiet, 0, "  epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}");
    let summary = train::train(net, initial, data, config, distill, device, Some(checkpoint), &mut |r| {
        progress.set_length(r.steps_per_epoch as u64);
        progress.set_prefix(format!("{}/{}", r.epoch, config.epochs));
        progress.set_position(r.step as u64);
        progress.set_message(format!("loss {:.4} acc {:.2}%", r.loss, 100.0 * r.accuracy));
        std::ops::ControlFlow::Continue(())
    })?;
    progress.finish_and_clear();
    Ok(summary)
}

fn training_config(epochs: usize, batch_size: usize, lr: f64, max_steps: Option<usize>, space: &SearchSpace) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size,
        lr,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        schedule: Schedule::Cosine,
        label_smoothing: 0.0,
        seed: space.search.seed,
        heldout: space.data.heldout,
        max_steps_per_epoch: max_steps,
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The metadata key of the cached base network's fingerprint.
const BASE_KEY: &str = "sacp_base";

/// What the cached base network was trained for: the network, the training settings, the
/// initialisation seed and the data set.
fn base_key(net: &Network, config: &TrainConfig, seed: u64, dataset: &str) -> String {
    format!(
        "network {}; train {}; init seed {seed}; data {dataset}",
        spec::fingerprint(net),
        serde_json::to_string(config).expect("a config serialises")
    )
}

/// Loads `OUT/base.safetensors` when it was trained for `key`; refuses it otherwise.
fn load_cached_base(path: &Path, net: &Network, key: &str) -> Result<Weights, PipelineError> {
    let (w, metadata) = weights::load_with_metadata(path)?;
    let stale = |reason: String| PipelineError::Stale {
        path: path.display().to_string(),
        reason,
    };
    match metadata.get(BASE_KEY) {
        Some(found) if found == key => {}
        Some(found) => return Err(stale(format!("it records `{found}`, this search needs `{key}`"))),
        None => return Err(stale("it carries no fingerprint".into())),
    }
    w.check(net, &path.display().to_string()).map_err(|e| stale(e.to_string()))?;
    Ok(w)
}

/// Every split the run uses holds at least one of its batches, checked before any work.
fn check_split_sizes(space: &SearchSpace, data: &DataSet, trains_base: bool) -> Result<(), PipelineError> {
    let (train_split, heldout) = data.split(space.data.heldout, space.search.seed);
    let field = |key: &str, message: String| PipelineError::Spec(space.error(key, message));
    if heldout.len() < space.data.batch_size {
        return Err(field(
            "data.heldout",
            format!(
                "the held-out split of {} holds {} images (at most a fifth of its {} training images), fewer than one batch of {} (`data.batch_size`)",
                data.name,
                heldout.len(),
                data.train.len(),
                space.data.batch_size
            ),
        ));
    }
    let needs = [
        ("train.batch_size", space.train.batch_size, trains_base),
        ("finetune.batch_size", space.finetune.batch_size, space.finetune.epochs > 0),
    ];
    for (key, batch, used) in needs {
        if used && train_split.len() < batch {
            return Err(field(
                key,
                format!(
                    "the training split of {} holds {} images, fewer than one batch of {batch}",
                    data.name,
                    train_split.len()
                ),
            ));
        }
    }
    Ok(())
}

/// gcn-rl's reward accuracy of an evaluated keep-set: a keep-set whose network gives
/// non-finite outputs earns none.
pub fn reward_accuracy(score: search::Score) -> f64 {
    match score {
        search::Score::Accuracy(a) => a,
        search::Score::Failed(_) => 0.0,
    }
}

/// Runs the search-space file at `path` to the end and returns the report it wrote.
pub fn run(path: &Path, options: &Options) -> Result<Report, PipelineError> {
    let started = Instant::now();
    let Checked {
        mut space,
        network: net,
        embedded,
        deps,
        rate_groups,
        target,
        grid,
        inputs,
        settings,
    } = check(path)?;
    if let Some(t) = options.threads {
        space.search.threads = t;
    }
    let say = |message: String| {
        if !options.quiet {
            eprintln!("{message}");
        }
    };
    let out = options.out.clone().unwrap_or_else(|| space.output_folder());
    inputs.check_folder(&out)?;
    let log_path = out.join("candidates.jsonl");
    if !options.resume && log_path.exists() {
        return Err(LogError::Exists {
            path: log_path.display().to_string(),
        }
        .into());
    }
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let data = data::open(&space.dataset(), input)?;
    if data.num_classes != net.shape(net.output()).channels() {
        return Err(space
            .error(
                "data.dataset",
                format!(
                    "the data set has {} classes but the network has {} outputs",
                    data.num_classes,
                    net.shape(net.output()).channels()
                ),
            )
            .into());
    }
    check_split_sizes(&space, &data, space.model.weights.is_none() && embedded.is_none())?;
    let device = settings.backend.device()?;
    std::fs::create_dir_all(&out).map_err(io_error(&out))?;
    say(format!(
        "sacp search: {} rate groups × {} levels, {} feasible grid points; device {device:?}",
        rate_groups.len(),
        space.levels().len(),
        grid.len()
    ));

    // The base network.
    let base_weights = match &space.model.weights {
        Some(w) => {
            let w_path = space.resolve(w);
            let w = weights::load(&w_path)?;
            w.check(&net, &w_path.display().to_string())?;
            w
        }
        None if embedded.is_some() => embedded.expect("checked"),
        None => {
            let t = &space.train;
            let config = training_config(t.epochs, t.batch_size, t.lr, t.max_steps, &space);
            let cached = out.join("base.safetensors");
            let key = base_key(&net, &config, t.seed, &space.data.dataset);
            if cached.is_file() {
                say(format!("base network: {}", cached.display()));
                load_cached_base(&cached, &net, &key)?
            } else {
                say(format!("training the base network ({} epochs)", space.train.epochs));
                let initial = weights::initialise(&net, t.seed);
                let checkpoint = Checkpointing {
                    path: out.join("base.checkpoint.safetensors"),
                    resume: true,
                };
                let summary = train_with_bar(&net, &initial, &data, &config, None, &device, &checkpoint, options.quiet)?;
                let metadata = std::collections::HashMap::from([(BASE_KEY.to_string(), key)]);
                weights::save_with_metadata(&summary.weights, Some(metadata), &cached)?;
                summary.weights
            }
        }
    };

    // Channel scores and the GCN encoder.
    let gcn_config = settings.gcn.clone();
    let weights_key = gcn::cache_key(&net, &base_weights, &gcn_config);
    let method = settings.method;
    let needs_encoder = method == importance::Method::Gcn || space.search.ranking == Ranking::Gcn;
    let encoder = if needs_encoder {
        say("GCN encoder: training (or loading from the output folder)".into());
        Some(Encoder::load_or_train(
            &net,
            &base_weights,
            &deps,
            &gcn_config,
            Some(&out.join(format!("gcn-{weights_key}.safetensors"))),
            &device,
        )?)
    } else {
        None
    };
    let (train_split, heldout_full) = data.split(space.data.heldout, space.search.seed);
    let batcher = data.batcher();
    let batch_size = space.data.batch_size;
    let first_batches = |count: usize| {
        let mut h = heldout_full.clone();
        if count > 0 {
            h.indices.truncate(count * batch_size);
        }
        h
    };
    let heldout = first_batches(space.evaluate.heldout_batches);
    let keep_evaluator = |heldout, recalibration_batches| KeepEvaluator {
        net: &net,
        weights: &base_weights,
        deps: &deps,
        train: &train_split,
        heldout,
        batcher: &batcher,
        recalibration_batches,
        batch_size,
        num_classes: data.num_classes,
        seed: space.search.seed,
        device: &device,
    };
    let rl = &settings.gcn_rl;
    let rl_heldout = first_batches(rl.heldout_batches);
    let rl_evaluator = keep_evaluator(&rl_heldout, rl.recalibration_batches);
    let rl_accuracy = |keep: &[Vec<usize>]| rl_evaluator.accuracy(keep).map(reward_accuracy).map_err(|e| e.to_string());
    let rl_bar = bar(
        options.quiet || method != importance::Method::GcnRl,
        rl.episodes as u64,
        "  gcn-rl episodes [{bar:30}] {pos}/{len} {msg} ETA {eta}",
    );
    let rl_progress = |_episode: usize, reward: f64| {
        rl_bar.set_message(format!("mean reward {reward:.4}"));
        rl_bar.inc(1);
    };
    let probe = {
        let positions: Vec<usize> = (0..train_split.len().min(256.max(rl.samples))).collect();
        Some(batcher.batch(&train_split, &positions, None, &device)?.images)
    };
    if method == importance::Method::GcnRl {
        say(format!("gcn-rl: training one agent per channel group ({} episodes)", rl.episodes));
    }
    let scores = importance::score(
        method,
        &Context {
            net: &net,
            weights: &base_weights,
            deps: &deps,
            seed: space.search.seed,
            device: &device,
            probe,
            encoder: encoder.as_ref(),
            gcn_rl: target.macs.map(|macs| crate::gcn_rl::Setup {
                config: rl,
                target: macs,
                accuracy: &rl_accuracy,
                progress: Some(&rl_progress),
            }),
        },
    )?;
    rl_bar.finish_and_clear();
    let evaluator = CandidateEvaluator {
        keep: keep_evaluator(&heldout, space.evaluate.recalibration_batches),
        scores: &scores,
    };

    // The search.
    let layout = Layout::new(&net, &deps, rate_groups.clone(), space.levels());
    let header = Header::new(
        format!("{}-{weights_key}", fingerprint(&space, &settings)),
        rate_groups.iter().map(|g| g.name.clone()).collect(),
    );
    let (log, logged) = Log::open(&log_path, &header, options.resume)?;
    if !logged.is_empty() {
        say(format!("resuming: {} candidates already in {}", logged.len(), log_path.display()));
    }
    say(format!(
        "searching: {:?} strategy, {} ranking, budget {}, top-m {} per round",
        space.search.strategy,
        if space.search.ranking == Ranking::Gcn { "GCN" } else { "no" },
        space.search.budget,
        space.search.gcn_top_m
    ));
    let progress = bar(
        options.quiet,
        space.search.budget as u64,
        "  candidates [{bar:30}] {pos}/{len} {msg} ETA {eta}",
    );
    let best = Mutex::new(None::<(f64, f64)>);
    let observe = |r: &Record, _from_log: bool| {
        let mut b = best.lock().expect("no observer panicked");
        if r.failed.is_none() && b.is_none_or(|(acc, _)| r.heldout_accuracy > acc) {
            *b = Some((r.heldout_accuracy, r.macs_reduction));
        }
        if let Some((acc, macs)) = *b {
            progress.set_message(format!("best {:.2}% held-out at {:.1}% MACs removed", 100.0 * acc, 100.0 * macs));
        }
        progress.inc(1);
    };
    let mut rank = |candidates: &[Candidate]| -> Vec<f32> {
        let encoder = encoder.as_ref().expect("the GCN ranking has an encoder");
        let masks: Vec<Vec<f32>> = candidates
            .iter()
            .map(|c| gcn::mask_of(&deps, &keep_widths(&deps, &scores, &c.widths)))
            .collect();
        encoder.similarity(&masks)
    };
    let evaluate = |c: &Candidate| evaluator.accuracy(&c.widths).map_err(|e| e.to_string());
    let search_space = Space {
        layout: &layout,
        target,
        grid: &grid,
    };
    let outcome = search::run(&search_space, &space.search, &mut rank, &evaluate, log, logged, &observe)?;
    progress.finish_and_clear();
    let winner = outcome.records[outcome.winner].clone();
    say(format!(
        "winner: {:.2}% held-out, {:.1}% MACs and {:.1}% parameters removed ({} candidates, {} from the log)",
        100.0 * winner.heldout_accuracy,
        100.0 * winner.macs_reduction,
        100.0 * winner.params_reduction,
        outcome.records.len(),
        outcome.reused
    ));

    // Fine-tune and export the winner.
    let (pruned_net, recalibrated) = evaluator.pruned(&winner.widths)?;
    let f = &space.finetune;
    let final_weights = if f.epochs > 0 {
        say(format!("fine-tuning the winner ({} epochs)", f.epochs));
        let config = TrainConfig {
            lr: f.lr,
            ..training_config(f.epochs, f.batch_size, f.lr, f.max_steps, &space)
        };
        let distill = f.distillation.then(|| Distill {
            teacher: Executable::new(&net, &base_weights, &device),
            temperature: f.temperature,
            alpha: f.alpha,
        });
        let checkpoint = Checkpointing {
            path: out.join("finetune.checkpoint.safetensors"),
            resume: options.resume,
        };
        let summary = train_with_bar(
            &pruned_net,
            &recalibrated,
            &data,
            &config,
            distill.as_ref(),
            &device,
            &checkpoint,
            options.quiet,
        )?;
        summary.weights
    } else {
        recalibrated
    };
    let test = data.test_split();
    let accuracy = |n: &Network, w: &Weights, split: &data::Split| -> Result<f64, PipelineError> {
        let exec = Executable::new(n, w, &device);
        Ok(train::evaluate(&exec, split, &batcher, batch_size, data.num_classes, &device)?.top1)
    };
    let side = |n: &Network, w: &Weights| -> Result<Side, PipelineError> {
        let cost = n.total_cost();
        Ok(Side {
            macs: cost.macs,
            params: cost.params,
            test_accuracy: accuracy(n, w, &test)?,
            heldout_accuracy: accuracy(n, w, &heldout_full)?,
            latency_ms: latency_ms(n, w, space.evaluate.latency_batch, &device),
        })
    };
    say("measuring the base and the pruned network".into());
    let base_side = side(&net, &base_weights)?;
    let pruned_side = side(&pruned_net, &final_weights)?;
    weights::save(&final_weights, &out.join("pruned.safetensors"))?;
    let pruned_onnx = out.join("pruned.onnx");
    weights::write_atomic(&pruned_onnx, &crate::onnx::to_bytes(&pruned_net, &final_weights)).map_err(io_error(&pruned_onnx))?;
    let pruned_toml = out.join("pruned.toml");
    weights::write_atomic(
        &pruned_toml,
        spec::write_graph_spec(&pruned_net, Some("pruned.safetensors")).as_bytes(),
    )
    .map_err(io_error(&pruned_toml))?;
    let report = Report {
        macs_reduction: 1.0 - pruned_side.macs as f64 / base_side.macs as f64,
        params_reduction: 1.0 - pruned_side.params as f64 / base_side.params as f64,
        speedup: base_side.latency_ms / pruned_side.latency_ms,
        latency_batch: space.evaluate.latency_batch,
        base: base_side,
        pruned: pruned_side,
        rates: rate_groups
            .iter()
            .map(|g| g.name.clone())
            .zip(winner.rates.iter().copied())
            .collect(),
        rate_groups: rate_groups
            .iter()
            .zip(&winner.rates)
            .map(|(g, &rate)| RateGroupReport {
                name: g.name.clone(),
                rate,
                groups: g.groups.iter().map(|&i| deps.groups[i].name.clone()).collect(),
            })
            .collect(),
        widths: layer_widths(&net, &pruned_net),
        candidates_evaluated: outcome.records.len(),
        candidates_reused: outcome.reused,
        candidates_failed: outcome.records.iter().filter(|r| r.failed.is_some()).count(),
        feasible_grid_points: grid.len(),
        winner,
        search: serde_json::json!({
            "strategy": space.search.strategy, "ranking": space.search.ranking,
            "importance": settings.method, "budget": space.search.budget,
            "gcn_top_m": space.search.gcn_top_m, "seed": space.search.seed,
        }),
        constraints: serde_json::to_value(&space.constraints).expect("constraints serialise"),
        device: format!("{device:?}"),
        seconds: started.elapsed().as_secs_f64(),
    };
    let report_path = out.join("report.json");
    weights::write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report).expect("a report serialises").as_bytes(),
    )
    .map_err(io_error(&report_path))?;
    let scored: Vec<_> = outcome.records.iter().filter(|r| r.failed.is_none()).cloned().collect();
    crate::report::write(&out, &report, &scored).map_err(|e| PipelineError::Io {
        path: out.join("report.md").display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    say(format!(
        "test accuracy {:.2}% → {:.2}%, MACs −{:.1}%, params −{:.1}%, {:.2}× faster; wrote {}",
        100.0 * report.base.test_accuracy,
        100.0 * report.pruned.test_accuracy,
        100.0 * report.macs_reduction,
        100.0 * report.params_reduction,
        report.speedup,
        out.display()
    ));
    Ok(report)
}
