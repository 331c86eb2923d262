//! The search-space file (TOML): which network to prune, on which data, which pruning-rate
//! combinations to consider, under which constraints, how to search, evaluate, fine-tune,
//! and where to write. Every field is checked before any work; errors name the file, the
//! line and the key. The fields are documented in README.md and `search_spaces/`.
//!
//! The settings of the other stages (the backend, the importance method and its options,
//! the GCN's training steps, the data set's kind) are plain data here: the stages that use
//! them interpret and check them (`pipeline::settings`), so the search depends on none of
//! those stages.

use crate::spec::SpecError;
use crate::tomlpos::{line_of_key, toml_error};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A parsed and checked search-space file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    /// `[model]`: the network and its weights.
    pub model: ModelSection,
    /// `[train]`: how the base network is trained when `model.weights` is absent.
    #[serde(default)]
    pub train: TrainSection,
    /// `[data]`: the data set.
    pub data: DataSection,
    /// `[space]`: rate groups and rate levels.
    pub space: SpaceSection,
    /// `[constraints]`: reduction targets.
    pub constraints: Constraints,
    /// `[search]`: strategy and budget.
    #[serde(default)]
    pub search: SearchSection,
    /// `[evaluate]`: how a candidate is scored.
    #[serde(default)]
    pub evaluate: EvaluateSection,
    /// `[importance]`: settings of the importance methods.
    #[serde(default)]
    pub importance: ImportanceSection,
    /// `[finetune]`: how the winner is fine-tuned.
    #[serde(default)]
    pub finetune: FinetuneSection,
    /// `[output]`: where results go.
    pub output: OutputSection,
    /// The file this was read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// The file's text (for locating keys in later errors).
    #[serde(skip)]
    pub text: String,
}

/// `[model]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model spec file, relative to the search-space file.
    pub spec: String,
    /// Trained weights (safetensors), relative to the search-space file. Absent: the base
    /// network is trained first with `[train]` and cached in the output folder.
    pub weights: Option<String>,
}

/// `[train]`: training of the base network when no weights are given.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Passes over the training split.
    pub epochs: usize,
    /// Base learning rate (cosine schedule).
    pub lr: f64,
    /// Images per step.
    pub batch_size: usize,
    /// Stop every epoch after this many steps.
    pub max_steps: Option<usize>,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 2,
            lr: 0.05,
            batch_size: 64,
            max_steps: None,
            seed: 0,
        }
    }
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `KIND:PATH`; a relative PATH is relative to the search-space file.
    pub dataset: String,
    /// Images of the training set kept out as the held-out split (never trained on).
    #[serde(default = "default_heldout")]
    pub heldout: usize,
    /// Images per batch for recalibration and evaluation.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_heldout() -> usize {
    5000
}

fn default_batch() -> usize {
    64
}

/// How the prunable channel groups are clustered into rate groups: each rate group takes
/// one pruning rate per candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clustering {
    /// One rate per resolution (the feature-map size where the group's channels are made).
    PerStage,
    /// One rate per (stage, layer name without its numeric block indices), e.g. all
    /// `layer2.B.conv1` of a ResNet.
    PerBlockPosition,
    /// One rate per channel group.
    PerLayer,
    /// The `[[space.clusters]]` lists; unlisted groups are not pruned.
    Explicit,
}

/// The rate levels: a list, or an inclusive range with a step.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Rates {
    /// Explicit levels.
    Levels(Vec<f64>),
    /// `{ min, max, step }`.
    Range {
        /// Smallest rate.
        min: f64,
        /// Largest rate (included when on the step grid).
        max: f64,
        /// Distance between levels.
        step: f64,
    },
}

/// Most rate levels a space may have: a range with a tiny step is refused before any
/// level is made.
pub const MAX_LEVELS: usize = 1000;

impl Rates {
    /// How many levels a `{ min, max, step }` range makes (as a float: it may be huge).
    fn range_count(min: f64, max: f64, step: f64) -> f64 {
        ((max - min) / step + 1e-9).floor() + 1.0
    }

    /// The levels, ascending (for a checked space: at most [`MAX_LEVELS`] of them).
    pub fn levels(&self) -> Vec<f64> {
        let mut levels = match self {
            Rates::Levels(v) => v.clone(),
            Rates::Range { min, max, step } => {
                let n = Rates::range_count(*min, *max, *step).min(MAX_LEVELS as f64) as usize;
                (0..n).map(|i| min + i as f64 * step).collect()
            }
        };
        levels.sort_by(f64::total_cmp);
        levels.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        levels
    }
}

/// One explicit rate group.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitCluster {
    /// Its name in logs and reports.
    pub name: String,
    /// Glob patterns (`*`, `?`, `[...]`) over the names of the layers that produce groups'
    /// channels (the "produced by" column of `sacp inspect`).
    pub layers: Vec<String>,
}

/// `[space]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceSection {
    /// How groups are clustered.
    pub clustering: Clustering,
    /// Rate levels each rate group chooses from.
    pub rates: Rates,
    /// Largest number of combinations (levels ^ rate groups) the space may have.
    #[serde(default = "default_max_combinations")]
    pub max_combinations: u64,
    /// Every pruned width is a multiple of this, or the full width (hardware-friendly
    /// widths: vector units work in multiples of 8 or 16).
    #[serde(default = "default_round_to")]
    pub round_to: usize,
    /// Globs of producing-layer names never pruned.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For `clustering = "explicit"`.
    #[serde(default)]
    pub clusters: Vec<ExplicitCluster>,
}

fn default_max_combinations() -> u64 {
    4096
}

fn default_round_to() -> usize {
    1
}

/// `[constraints]`: a candidate is feasible when each given reduction is within
/// `tolerance` of its target.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Share of MACs to remove.
    pub macs_reduction: Option<f64>,
    /// Share of parameters to remove.
    pub params_reduction: Option<f64>,
    /// Share of the base network's latency to remove, predicted per candidate from a
    /// lookup table of measured layer latencies (on `[evaluate] backend`).
    pub latency_reduction: Option<f64>,
    /// The same target as a latency of one batch in milliseconds (instead of
    /// `latency_reduction`): the reduction is `1 − latency_ms / base latency`.
    pub latency_ms: Option<f64>,
    /// Batch size of the latency target (absent: `[evaluate] latency_batch`).
    pub latency_batch: Option<usize>,
    /// Allowed distance from each target.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

impl Constraints {
    /// Whether a latency target is given.
    pub fn has_latency(&self) -> bool {
        self.latency_reduction.is_some() || self.latency_ms.is_some()
    }
}

fn default_tolerance() -> f64 {
    0.02
}

/// Search strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every feasible combination, in ranked order, until the budget is spent.
    Exhaustive,
    /// Random feasible combinations each round.
    Random,
    /// Crossover and mutation of the best evaluated combinations.
    Evolution,
    /// Coarse to fine: the given levels first, then finer and finer grids around the best.
    Refine,
}

/// How a round's pool is cut down to the candidates evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// The top-m by the GCN accuracy predictor (trained on every earlier round's results),
    /// a share `explore` of them the candidates it is least sure of.
    Gcn,
    /// The top-m by the GCN embedding's cosine similarity to the original network (SACP's
    /// ranking as published).
    Similarity,
    /// m of the pool at random (the baseline of the GCN ranking).
    None,
}

/// `[search]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    /// The strategy.
    pub strategy: Strategy,
    /// Candidates evaluated in all.
    pub budget: usize,
    /// Candidates evaluated per round: the top-m of the round's pool.
    pub gcn_top_m: usize,
    /// Candidates proposed per round (random, evolution, refine).
    pub pool: usize,
    /// How the top-m are picked from the pool.
    pub ranking: Ranking,
    /// Share of each round's top-m given to the candidates the predictor is least sure of
    /// (`ranking = "gcn"`, from the second round on), in [0, 1].
    pub explore: f64,
    /// How channels are chosen inside a group once its width is fixed: an importance
    /// method's name (`gcn`, `l1`, ...), interpreted by the pipeline.
    pub importance: String,
    /// Training steps of the GCN encoder (absent: the encoder's default).
    pub gcn_steps: Option<usize>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Worker threads (0: one per core). Results do not depend on it.
    pub threads: usize,
    /// How the threads are spent: on several candidates at once, or on one candidate's
    /// kernels at a time. Results do not depend on it.
    pub parallelism: Parallelism,
}

/// How a search spends its threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parallelism {
    /// One candidate per thread; each candidate's kernels mostly run on its own thread
    /// (they may borrow idle ones).
    #[default]
    Candidates,
    /// One candidate at a time, every thread in its kernels.
    Kernels,
}

impl Default for SearchSection {
    fn default() -> Self {
        SearchSection {
            strategy: Strategy::Refine,
            budget: 32,
            gcn_top_m: 8,
            pool: 256,
            ranking: Ranking::Gcn,
            explore: 0.25,
            importance: "gcn".into(),
            gcn_steps: None,
            seed: 0,
            threads: 0,
            parallelism: Parallelism::Candidates,
        }
    }
}

/// `[importance]`: settings of the importance methods that have any, as written (the
/// methods read their own tables).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportanceSection {
    /// `[importance.gcn_rl]`: the agents of `importance = "gcn-rl"`.
    pub gcn_rl: toml::Table,
}

/// `[evaluate]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateSection {
    /// `auto` (wgpu on a hardware GPU, else CPU), `cpu` or `wgpu`; interpreted by the
    /// pipeline.
    pub backend: String,
    /// Training batches that re-estimate BatchNorm statistics before scoring.
    pub recalibration_batches: usize,
    /// Held-out batches a candidate is scored on (0: all of the held-out split).
    pub heldout_batches: usize,
    /// Batch size of the latency measurement in the report.
    pub latency_batch: usize,
    /// The devices candidates are evaluated on, one candidate at a time each (`cpu`,
    /// `wgpu:0`, `ws://HOST:PORT#0`, ...; interpreted by the pipeline). Empty: the
    /// backend's device, `[search] threads` candidates at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// File holding the token of the remote devices' servers, relative to the search-space
    /// file (else the environment variable `SACP_REMOTE_TOKEN`); never the token itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

impl Default for EvaluateSection {
    fn default() -> Self {
        EvaluateSection {
            backend: "auto".into(),
            recalibration_batches: 20,
            heldout_batches: 0,
            latency_batch: 32,
            devices: Vec::new(),
            token_file: None,
        }
    }
}

/// `[finetune]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSection {
    /// Passes over the training split (0: no fine-tuning).
    pub epochs: usize,
    /// Base learning rate (cosine schedule).
    pub lr: f64,
    /// Images per step.
    pub batch_size: usize,
    /// Stop every epoch after this many steps.
    pub max_steps: Option<usize>,
    /// Distil from the unpruned network.
    pub distillation: bool,
    /// Distillation temperature.
    pub temperature: f64,
    /// Weight of the distillation term.
    pub alpha: f64,
}

impl Default for FinetuneSection {
    fn default() -> Self {
        FinetuneSection {
            epochs: 1,
            lr: 0.01,
            batch_size: 64,
            max_steps: None,
            distillation: true,
            temperature: 4.0,
            alpha: 0.5,
        }
    }
}

/// `[output]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Output folder, relative to the search-space file.
    pub folder: String,
}

impl SearchSpace {
    /// Reads and checks a search-space file.
    pub fn load(path: &Path) -> Result<SearchSpace, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
        })?;
        SearchSpace::parse(&text, path)
    }

    /// Parses and checks a search space; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<SearchSpace, SpecError> {
        let mut space: SearchSpace = toml::from_str(text).map_err(|e| {
            let mut error = toml_error(text, path, &e);
            error.message = error.message.replace(
                "data did not match any variant of untagged enum Rates",
                "expected a list of rates like [0.0, 0.25, 0.5] or { min = 0.0, max = 0.5, step = 0.1 }",
            );
            error
        })?;
        space.file = path.to_path_buf();
        space.text = text.to_string();
        space.check()?;
        Ok(space)
    }

    /// An error at the line of `key` (a dotted path).
    pub fn error(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.display().to_string(),
            line: line_of_key(&self.text, key),
            message: format!("`{key}`: {}", message.into()),
        }
    }

    /// A path from the file, resolved relative to the file's folder.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The data set name with a relative path resolved against the file's folder.
    pub fn dataset(&self) -> String {
        match self.data.dataset.split_once(':') {
            Some((kind, path)) if kind != "synthetic" => format!("{kind}:{}", self.resolve(path).display()),
            _ => self.data.dataset.clone(),
        }
    }

    /// The output folder.
    pub fn output_folder(&self) -> PathBuf {
        self.resolve(&self.output.folder)
    }

    /// The rate levels.
    pub fn levels(&self) -> Vec<f64> {
        self.space.rates.levels()
    }

    /// Checks that need no network and no file: ranges, counts, patterns.
    fn check(&self) -> Result<(), SpecError> {
        if !self.data.dataset.contains(':') {
            return Err(self.error(
                "data.dataset",
                "expected KIND:PATH, e.g. \"fashion-mnist:data/fashion-mnist-subset\"",
            ));
        }
        for (key, value) in [
            ("data.batch_size", self.data.batch_size),
            ("train.batch_size", self.train.batch_size),
            ("finetune.batch_size", self.finetune.batch_size),
            ("search.budget", self.search.budget),
            ("search.gcn_top_m", self.search.gcn_top_m),
            ("search.pool", self.search.pool),
            ("evaluate.latency_batch", self.evaluate.latency_batch),
        ] {
            if value == 0 {
                return Err(self.error(key, "must be at least 1"));
            }
        }
        if self.data.heldout < self.data.batch_size {
            return Err(self.error(
                "data.heldout",
                format!(
                    "{} held-out images are fewer than one batch (`data.batch_size` = {}); candidates are scored on the held-out split: give at least {}",
                    self.data.heldout, self.data.batch_size, self.data.batch_size
                ),
            ));
        }
        if self.model.weights.is_none() && self.train.epochs == 0 {
            return Err(self.error(
                "train.epochs",
                "without `model.weights` the base network is trained: give at least 1 epoch",
            ));
        }
        if !(0.0..=1.0).contains(&self.search.explore) {
            return Err(self.error("search.explore", "must be a share in [0, 1]"));
        }
        self.check_rates()?;
        if self.space.max_combinations == 0 {
            return Err(self.error("space.max_combinations", "must be at least 1"));
        }
        if self.space.round_to == 0 {
            return Err(self.error("space.round_to", "must be at least 1 (1: any width)"));
        }
        self.check_constraints()?;
        match (self.space.clustering, self.space.clusters.is_empty()) {
            (Clustering::Explicit, true) => {
                return Err(self.error(
                    "space.clustering",
                    "`explicit` needs [[space.clusters]] tables with `name` and `layers`",
                ));
            }
            (c, false) if c != Clustering::Explicit => {
                return Err(self.error("space.clusters", "[[space.clusters]] are only read with clustering = \"explicit\""));
            }
            _ => {}
        }
        for (i, cluster) in self.space.clusters.iter().enumerate() {
            if cluster.layers.is_empty() {
                return Err(self.error(&format!("space.clusters.{i}.layers"), "list at least one layer pattern"));
            }
            for (j, pattern) in cluster.layers.iter().enumerate() {
                glob::Pattern::new(pattern).map_err(|e| self.error(&format!("space.clusters.{i}.layers.{j}"), e.to_string()))?;
            }
        }
        for (j, pattern) in self.space.exclude.iter().enumerate() {
            glob::Pattern::new(pattern).map_err(|e| self.error(&format!("space.exclude.{j}"), e.to_string()))?;
        }
        for (key, value) in [
            ("train.lr", self.train.lr),
            ("finetune.lr", self.finetune.lr),
            ("finetune.temperature", self.finetune.temperature),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(self.error(key, "must be a positive number"));
            }
        }
        if !(0.0..=1.0).contains(&self.finetune.alpha) {
            return Err(self.error("finetune.alpha", "must be in [0, 1]"));
        }
        Ok(())
    }

    fn check_rates(&self) -> Result<(), SpecError> {
        let out_of_range = |r: f64| !(0.0..1.0).contains(&r);
        match &self.space.rates {
            Rates::Levels(levels) => {
                if levels.is_empty() {
                    return Err(self.error("space.rates", "list at least one rate"));
                }
                if let Some((i, r)) = levels.iter().enumerate().find(|(_, r)| out_of_range(**r)) {
                    return Err(self.error(&format!("space.rates.{i}"), format!("rate {r} is outside [0, 1)")));
                }
                if levels.len() > MAX_LEVELS {
                    return Err(self.error("space.rates", format!("{} levels; at most {MAX_LEVELS} are allowed", levels.len())));
                }
            }
            Rates::Range { min, max, step } => {
                for (key, r) in [("min", *min), ("max", *max)] {
                    if out_of_range(r) {
                        return Err(self.error(&format!("space.rates.{key}"), format!("rate {r} is outside [0, 1)")));
                    }
                }
                if max < min {
                    return Err(self.error("space.rates.max", format!("{max} is below min = {min}")));
                }
                if step.is_nan() || *step <= 0.0 {
                    return Err(self.error("space.rates.step", "must be positive"));
                }
                let count = Rates::range_count(*min, *max, *step);
                if count > MAX_LEVELS as f64 {
                    return Err(self.error(
                        "space.rates.step",
                        format!("{step} makes {count:.3e} levels from {min} to {max}; at most {MAX_LEVELS} are allowed: use a larger step"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_constraints(&self) -> Result<(), SpecError> {
        let c = &self.constraints;
        if c.macs_reduction.is_none() && c.params_reduction.is_none() && !c.has_latency() {
            return Err(self.error(
                "constraints",
                "give `macs_reduction`, `params_reduction`, `latency_reduction` or `latency_ms` (one or more)",
            ));
        }
        if c.latency_reduction.is_some() && c.latency_ms.is_some() {
            return Err(self.error(
                "constraints.latency_ms",
                "give `latency_reduction` or `latency_ms`, not both: they are the same target",
            ));
        }
        if let Some(ms) = c.latency_ms
            && !(ms.is_finite() && ms > 0.0)
        {
            return Err(self.error("constraints.latency_ms", format!("{ms} is not a positive number of milliseconds")));
        }
        if c.latency_batch == Some(0) {
            return Err(self.error("constraints.latency_batch", "must be at least 1"));
        }
        for (key, value) in [
            ("macs_reduction", c.macs_reduction),
            ("params_reduction", c.params_reduction),
            ("latency_reduction", c.latency_reduction),
        ] {
            if let Some(v) = value
                && !(0.0..1.0).contains(&v)
            {
                return Err(self.error(&format!("constraints.{key}"), format!("{v} is outside [0, 1)")));
            }
        }
        if !(c.tolerance > 0.0 && c.tolerance < 1.0) {
            return Err(self.error("constraints.tolerance", "must be in (0, 1)"));
        }
        Ok(())
    }

    /// Batch size of the latency target: `[constraints] latency_batch`, else
    /// `[evaluate] latency_batch`.
    pub fn latency_batch(&self) -> usize {
        self.constraints.latency_batch.unwrap_or(self.evaluate.latency_batch)
    }

    /// Checks that the files the space names exist: the model spec, the weights, the data.
    pub fn check_files(&self) -> Result<(), SpecError> {
        let spec = self.resolve(&self.model.spec);
        if !spec.is_file() {
            return Err(self.error("model.spec", format!("no model spec at {}", spec.display())));
        }
        if let Some(w) = &self.model.weights {
            let w = self.resolve(w);
            if !w.is_file() {
                return Err(self.error("model.weights", format!("no weights file at {}", w.display())));
            }
        }
        if let Some((kind, path)) = self.data.dataset.split_once(':')
            && kind != "synthetic"
            && !self.resolve(path).exists()
        {
            return Err(self.error("data.dataset", format!("{} does not exist", self.resolve(path).display())));
        }
        Ok(())
    }
}
