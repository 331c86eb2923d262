//! `sacp search`: the whole job of a search-space file, as stages that hand typed results
//! to each other: [`prepare`] (check the space and the other stages' settings, open the
//! data and the device, before any work) → [`base_network`] (given, or trained and cached)
//! → a [`Workbench`] (network, weights, groups, splits, batcher, device) → [`score_channels`]
//! → [`search_candidates`] (GCN-ranked, evaluated in parallel, logged) →
//! [`finetune_winner`] → [`export`] (`pruned.safetensors`, `pruned.toml`, `pruned.onnx`,
//! `report.json`, `report.md` and its SVG plots beside the log).

mod base;
mod evaluate;
mod export;
mod finetune;
mod latency;
mod measure;
mod prepare;
mod scoring;
mod searching;
mod settings;
mod workbench;
mod workers;

pub use base::base_network;
pub use evaluate::{CandidateEvaluator, KeepEvaluator};
pub use export::export;
pub use finetune::finetune_winner;
pub use latency::{build_table, build_table_with, check_latency, network_at, plan_latency};
pub use measure::latency_ms;
pub use prepare::{Run, prepare};
pub use scoring::{Scored, score_channels};
pub use searching::search_candidates;
pub use settings::{StageSettings, fingerprint, interpret};
pub use workbench::Workbench;
pub use workers::{WorkerSummary, Workers, connect_all};

use crate::report::Report;

use crate::data::{DataError, DataSet};
use crate::deps::Dependencies;
use crate::exec::BackendError;
use crate::gcn::GcnError;
use crate::importance::ImportanceError;
use crate::ir::Network;
use crate::search::candidates::{Candidate, Layout, Target, check_space};
use crate::search::log::LogError;
use crate::search::space::SearchSpace;
use crate::search::{self, SearchError, clusters};
use crate::spec::{self, SpecError};
use crate::train::{self, Checkpointing, Distill, Schedule, TrainConfig, TrainError};
use crate::weights::{WeightError, Weights};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
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
    /// Devices of `[evaluate] devices` could not be reached (each with its reason).
    #[error("[evaluate] devices: {0}")]
    Workers(String),
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
        latency: None,
        tolerance: space.constraints.tolerance,
    };
    let grid = {
        let layout = Layout::new(&network, &deps, rate_groups.clone(), space.levels()).with_round_to(space.space.round_to);
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

/// gcn-rl's reward accuracy of an evaluated keep-set: a keep-set whose network gives
/// non-finite outputs earns none.
pub fn reward_accuracy(score: search::Score) -> f64 {
    match score {
        search::Score::Accuracy(a) => a,
        search::Score::Failed(_) => 0.0,
    }
}

/// Runs the search-space file at `path` to the end and returns the report it wrote: the
/// stages in order, each handing its result to the next.
pub fn run(path: &Path, options: &Options) -> Result<Report, PipelineError> {
    let started = Instant::now();
    let run = prepare(path, options)?;
    let base = base_network(&run)?;
    let (c, space) = (&run.checked, run.space());
    let bench = Workbench::new(
        &c.network,
        &base,
        &c.deps,
        &run.data,
        space.data.heldout,
        space.data.batch_size,
        space.search.seed,
        &run.device,
    );
    let scored = score_channels(&run, &bench)?;
    let mut outcome = search_candidates(&run, &bench, &scored)?;
    let latency = check_latency(&run, &mut outcome);
    let (pruned, pruned_weights) = finetune_winner(&run, &bench, &scored, &outcome.records[outcome.winner])?;
    export(&run, &bench, &outcome, (&pruned, &pruned_weights), latency, started)
}
