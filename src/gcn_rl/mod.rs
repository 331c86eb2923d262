//! The second seed's method (Jiang, Cao, Yang, IJCAI 2022), importance `gcn-rl`: one graph
//! per prunable channel group (nodes = channels, edges = similarity of their
//! global-average-pooled activations over a batch of samples, see [`ChannelGraph`]), one
//! GCN agent per group giving every channel a keep probability, and REINFORCE with a
//! baseline training all agents together. An episode samples `actions` keep decisions from
//! the agents' Bernoulli policies; a decision's reward is the held-out accuracy of the
//! network cut to it (after BatchNorm recalibration, supplied by the caller) minus
//! `penalty` × the share of MACs by which it misses the target. A channel's importance is
//! its trained keep probability, comparable across groups. Seeded: the same seed gives the
//! same agents, decisions and scores.

mod agent;
mod graph;

pub use agent::{Agents, GraphTensors};
pub use graph::{ChannelGraph, NODE_FEATURES};

use crate::channels::{Scores, channel_activations, l1_scores, macs_reduction};
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::spec::SpecError;
use crate::tomlpos::{line_of_key, toml_error};
use crate::weights::Weights;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// `[importance.gcn_rl]`: the agents and their training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcnRlConfig {
    /// Training episodes (one policy update each).
    pub episodes: usize,
    /// Images whose pooled activations make the channel graphs.
    pub samples: usize,
    /// Adam learning rate of the agents.
    pub lr: f64,
    /// Pruning decisions sampled and evaluated per episode (at least 2: each one's
    /// baseline is the mean reward of the others).
    pub actions: usize,
    /// Hidden units of each agent.
    pub hidden: usize,
    /// How strongly the agents' starting policy prefers filters of larger magnitude (keep
    /// logit per standard deviation of L1 norm within the group; 0: no preference).
    pub magnitude_prior: f64,
    /// Reward lost per unit of MAC reduction short of the target.
    pub penalty: f64,
    /// Training batches that recalibrate BatchNorm before a decision is scored.
    pub recalibration_batches: usize,
    /// Held-out batches a decision is scored on.
    pub heldout_batches: usize,
}

impl Default for GcnRlConfig {
    fn default() -> Self {
        GcnRlConfig {
            episodes: 24,
            samples: 64,
            lr: 0.05,
            actions: 4,
            hidden: 16,
            magnitude_prior: 1.0,
            penalty: 2.0,
            recalibration_batches: 4,
            heldout_batches: 4,
        }
    }
}

impl GcnRlConfig {
    /// The first setting out of range, as (key, what would be valid).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        for (key, value, least) in [
            ("episodes", self.episodes, 1),
            ("samples", self.samples, 1),
            ("actions", self.actions, 2),
            ("hidden", self.hidden, 1),
            ("heldout_batches", self.heldout_batches, 1),
        ] {
            if value < least {
                return Some((key, format!("must be at least {least}")));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Some(("lr", "must be a positive number".into()));
        }
        if !(self.magnitude_prior >= 0.0 && self.magnitude_prior.is_finite()) {
            return Some(("magnitude_prior", "must be zero or positive".into()));
        }
        if !(self.penalty >= 0.0 && self.penalty.is_finite()) {
            return Some(("penalty", "must be zero or positive".into()));
        }
        None
    }

    /// Reads `[importance.gcn_rl]` from a TOML file (a search space or a file of its own;
    /// other tables are ignored); defaults where the table or a key is absent. The values
    /// are checked ([`GcnRlConfig::problem`]).
    pub fn load(path: &Path) -> Result<GcnRlConfig, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
        })?;
        let config = GcnRlConfig::parse(&text, path)?;
        match config.problem() {
            Some((key, message)) => {
                let key = format!("importance.gcn_rl.{key}");
                Err(SpecError {
                    file: path.display().to_string(),
                    line: line_of_key(&text, &key),
                    message: format!("`{key}`: {message}"),
                })
            }
            None => Ok(config),
        }
    }

    /// Parses `[importance.gcn_rl]` of a TOML text (`path` names it in errors); defaults
    /// where the table or a key is absent, an unknown key is an error. The values are not
    /// checked.
    pub fn parse(text: &str, path: &Path) -> Result<GcnRlConfig, SpecError> {
        #[derive(serde::Deserialize, Default)]
        struct Importance {
            #[serde(default)]
            gcn_rl: GcnRlConfig,
        }
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            importance: Importance,
        }
        let file: File = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        Ok(file.importance.gcn_rl)
    }
}

/// Held-out accuracy of the network cut to a keep-set (one list of kept channels per group).
pub type KeepAccuracy<'a> = &'a (dyn Fn(&[Vec<usize>]) -> Result<f64, String> + Sync);

/// What the agents' training needs besides the network.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// Settings.
    pub config: &'a GcnRlConfig,
    /// Share of MACs to remove.
    pub target: f64,
    /// The reward's accuracy term.
    pub accuracy: KeepAccuracy<'a>,
    /// Called after every episode with its index and mean reward (progress bars).
    pub progress: Option<&'a (dyn Fn(usize, f64) + Sync)>,
}

/// Trained agents' verdict.
pub struct Trained {
    /// Keep probability of every channel (empty for pinned groups): the importance.
    pub scores: Scores,
    /// Mean reward of every episode.
    pub mean_rewards: Vec<f64>,
    /// Mean MAC reduction of every episode's decisions.
    pub mean_reductions: Vec<f64>,
}

/// The channel graph of every prunable group (`None` for pinned groups).
pub fn channel_graphs(
    net: &Network,
    weights: &Weights,
    deps: &Dependencies,
    images: Tensor<4>,
    device: &Device,
) -> Vec<Option<ChannelGraph>> {
    let activations = channel_activations(net, weights, deps, images, device);
    let magnitude = l1_scores(net, weights, deps);
    deps.groups
        .iter()
        .zip(activations.iter().zip(&magnitude))
        .map(|(g, (a, m))| g.prunable().then(|| ChannelGraph::new(a, m)))
        .collect()
}

fn logit(p: f64) -> f32 {
    let p = p.clamp(0.05, 0.95);
    (p / (1.0 - p)).ln() as f32
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 logits")
}

/// Trains the agents on `images` (the first `config.samples` are used) and returns every
/// channel's keep probability with the training curve.
pub fn train(
    net: &Network,
    weights: &Weights,
    deps: &Dependencies,
    images: Tensor<4>,
    setup: &Setup,
    seed: u64,
    device: &Device,
) -> Result<Trained, String> {
    let config = setup.config;
    if config.actions < 2 {
        return Err(format!("gcn_rl.actions is {}; the baseline needs at least 2", config.actions));
    }
    let batch = images.dims()[0];
    let images = images.narrow(0, 0, config.samples.clamp(1, batch));
    let graphs = channel_graphs(net, weights, deps, images, device);
    let prunable: Vec<usize> = (0..graphs.len()).filter(|&g| graphs[g].is_some()).collect();
    let train_device = device.clone().autodiff();
    // Channels start kept with probability √(1 − target) on average: MACs scale roughly with
    // the product of input and output widths, so the first decisions land near the target.
    let base = logit((1.0 - setup.target).sqrt());
    let tilt = config.magnitude_prior as f32;
    let tensors: Vec<GraphTensors> = graphs
        .iter()
        .flatten()
        .map(|g| GraphTensors::new(g, base, tilt, &train_device))
        .collect();
    let mut agents = Agents::new(prunable.len(), config.hidden, seed, &train_device).train();
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6C_5E_41);
    let (mut mean_rewards, mut mean_reductions) = (Vec::new(), Vec::new());
    for episode in 0..config.episodes {
        let logits = agents.logits(&tensors);
        let probs: Vec<Vec<f32>> = logits.iter().map(|l| host(sigmoid(l.clone()))).collect();
        let decisions: Vec<Vec<Vec<bool>>> = (0..config.actions)
            .map(|_| {
                probs
                    .iter()
                    .map(|p| {
                        let mut keep: Vec<bool> = p.iter().map(|&q| rng.random::<f32>() < q).collect();
                        if !keep.contains(&true) {
                            // A group never disappears: keep its likeliest channel.
                            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
                            keep[best] = true;
                        }
                        keep
                    })
                    .collect()
            })
            .collect();
        let keep_sets: Vec<Vec<Vec<usize>>> = decisions
            .iter()
            .map(|d| {
                let mut next = d.iter();
                deps.groups
                    .iter()
                    .map(|g| match g.prunable() {
                        true => next
                            .next()
                            .expect("one decision per prunable group")
                            .iter()
                            .enumerate()
                            .filter(|(_, k)| **k)
                            .map(|(c, _)| c)
                            .collect(),
                        false => (0..g.size()).collect(),
                    })
                    .collect()
            })
            .collect();
        let outcomes: Vec<(f64, f64)> = keep_sets
            .par_iter()
            .map(|keep| {
                let reduction = macs_reduction(net, deps, keep);
                let accuracy = (setup.accuracy)(keep)?;
                Ok((accuracy - config.penalty * (setup.target - reduction).max(0.0), reduction))
            })
            .collect::<Result<_, String>>()?;
        let k = outcomes.len() as f64;
        let total: f64 = outcomes.iter().map(|o| o.0).sum();
        // REINFORCE; each decision's baseline is the mean reward of the episode's others.
        let advantages: Vec<f32> = outcomes.iter().map(|o| (o.0 - (total - o.0) / (k - 1.0)) as f32).collect();
        let advantage = Tensor::<2>::from_data(TensorData::new(advantages, [config.actions, 1]), &train_device);
        let mut log_prob: Option<Tensor<2>> = None;
        for (logit, g) in logits.into_iter().zip(0..) {
            let n = logit.dims()[0];
            let taken: Vec<f32> = decisions
                .iter()
                .flat_map(|d| d[g].iter().map(|&kept| if kept { 1.0 } else { 0.0 }))
                .collect();
            let taken = Tensor::<2>::from_data(TensorData::new(taken, [config.actions, n]), &train_device);
            let l = logit.unsqueeze::<2>();
            let per_channel = taken.clone() * log_sigmoid(l.clone()) + (taken.neg().add_scalar(1.0)) * log_sigmoid(l.neg());
            let term = per_channel.sum_dim(1);
            log_prob = Some(match log_prob {
                Some(sum) => sum + term,
                None => term,
            });
        }
        if let Some(log_prob) = log_prob {
            let loss = (log_prob * advantage).sum().div_scalar(-k as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &agents);
            agents = optim.step(config.lr, agents, grads);
        }
        let mean = total / k;
        mean_rewards.push(mean);
        mean_reductions.push(outcomes.iter().map(|o| o.1).sum::<f64>() / k);
        if let Some(progress) = setup.progress {
            progress(episode, mean);
        }
    }
    let final_probs: Vec<Vec<f32>> = agents.logits(&tensors).into_iter().map(|l| host(sigmoid(l))).collect();
    let mut next = final_probs.into_iter();
    let scores = graphs
        .iter()
        .map(|g| match g {
            Some(_) => next.next().expect("one agent per prunable group"),
            None => Vec::new(),
        })
        .collect();
    Ok(Trained {
        scores,
        mean_rewards,
        mean_reductions,
    })
}
