//! The second seed's method (Jiang, Cao, Yang, IJCAI 2022), importance `gcn-rl`: one graph
//! per prunable channel group (nodes = channels, edges = similarity of their
//! global-average-pooled activations over a batch of samples, see [`ChannelGraph`]), one
//! GCN agent per group giving every channel a logit, and REINFORCE with a baseline training
//! all agents together. An episode samples `actions` keep decisions: in every group, as many
//! channels as uniform allocation to the target keeps, drawn without replacement from the
//! agent's Plackett–Luce policy (Gumbel top-k on its logits), so every decision removes the
//! target's MACs and decisions differ only in *which* channels they keep. A decision's reward
//! is the held-out accuracy of the network cut to it (after BatchNorm recalibration, supplied
//! by the caller). A channel's importance is its probability of being kept by its group's
//! trained policy. Seeded: the same seed gives the same agents, decisions and
//! scores.
//!
//! Keep decisions of free size (one Bernoulli draw per channel, the reward penalised for
//! missing the target) were tried first: their rewards varied with how *many* channels a
//! decision kept more than with which. Agents trained on them without the magnitude prior
//! ranked channels worse than chance (VGG-8 on Fashion-MNIST at 50% of MACs, uniform
//! allocation: 70.2% held-out after recalibration, random channels 85.4%); with draws of
//! fixed size but agents blind to a channel's own features (see [`Agents`]) still 73.5%.

mod agent;
mod graph;

pub use agent::{Agents, GraphTensors};
pub use graph::{ChannelGraph, NODE_FEATURES};

use crate::channels::{Allocation, Scores, channel_activations, l1_scores, macs_reduction, select};
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::spec::SpecError;
use crate::tomlpos::{line_of_key, toml_error};
use crate::weights::Weights;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
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
    /// How strongly the agents' starting policy prefers filters of larger magnitude (logit
    /// per standard deviation of L1 norm within the group; 0: no preference).
    pub magnitude_prior: f64,
    /// Training batches that recalibrate BatchNorm before a decision is scored.
    pub recalibration_batches: usize,
    /// Held-out batches a decision is scored on.
    pub heldout_batches: usize,
}

impl Default for GcnRlConfig {
    fn default() -> Self {
        GcnRlConfig {
            episodes: 96,
            samples: 64,
            lr: 0.05,
            actions: 4,
            hidden: 16,
            magnitude_prior: 1.0,
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
    /// Every channel's probability of being kept by its group's trained policy at the
    /// target (empty for pinned groups): the importance. In `[0, 1]`, summing over a group to
    /// the channels uniform allocation keeps there, in the order of the agent's logits.
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

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 logits")
}

/// The probability that a draw of `k` channels keeps each one, approximated as
/// `sigmoid(logit − τ)` with `τ` set so that the probabilities sum to `k` (the independent-
/// draw model of sampling without replacement): in `[0, 1]`, in the logits' order, and
/// comparable across groups, which a softmax over a group is not.
fn inclusion_probabilities(logits: &[f32], k: usize) -> Vec<f32> {
    let keep = |tau: f64| -> Vec<f64> { logits.iter().map(|&l| 1.0 / (1.0 + (tau - l as f64).exp())).collect() };
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let bottom = logits.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    // Σ keep(τ) falls from n to 0 as τ rises: bisect for Σ = k.
    let (mut low, mut high) = (bottom - 40.0, top + 40.0);
    for _ in 0..100 {
        let mid = 0.5 * (low + high);
        if keep(mid).iter().sum::<f64>() > k as f64 {
            low = mid;
        } else {
            high = mid;
        }
    }
    keep(0.5 * (low + high)).into_iter().map(|p| p as f32).collect()
}

/// `k` channels of `logits.len()` drawn without replacement from the Plackett–Luce policy
/// of `logits`, in the order drawn (Gumbel top-k: perturb every logit by Gumbel noise, take
/// the `k` largest).
fn draw_without_replacement(logits: &[f32], k: usize, rng: &mut StdRng) -> Vec<usize> {
    let keys: Vec<f32> = logits
        .iter()
        .map(|&l| {
            let u = rng.random::<f32>().clamp(f32::MIN_POSITIVE, 1.0 - f32::EPSILON);
            l - (-u.ln()).ln()
        })
        .collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]));
    order.truncate(k);
    order
}

/// Log-probability of every decision's draws under the Plackett–Luce policy of `logit`
/// (`[channels]`): for draw i, its logit minus the log-sum-exp of the logits not yet drawn.
/// `draws[a]` are decision a's channels in the order drawn; returns `[decisions, 1]`.
fn plackett_luce_log_prob(logit: Tensor<1>, draws: &[Vec<usize>], device: &Device) -> Tensor<2> {
    let n = logit.dims()[0];
    let (decisions, k) = (draws.len(), draws.first().map_or(0, Vec::len));
    let mut chosen = vec![0.0f32; decisions * n];
    let mut remaining = vec![1.0f32; decisions * k * n];
    for (a, draw) in draws.iter().enumerate() {
        for (i, &c) in draw.iter().enumerate() {
            chosen[a * n + c] = 1.0;
            // Channel c is no longer available to the draws after the i-th.
            for later in i + 1..k {
                remaining[(a * k + later) * n + c] = 0.0;
            }
        }
    }
    let chosen = Tensor::<2>::from_data(TensorData::new(chosen, [decisions, n]), device);
    let remaining = Tensor::<3>::from_data(TensorData::new(remaining, [decisions, k, n]), device);
    // The shift by the largest logit keeps exp finite; log-sum-exp does not depend on it.
    let shift = host(logit.clone().max()).first().copied().unwrap_or(0.0);
    let weights = logit.clone().sub_scalar(shift).exp().reshape([1, 1, n]);
    let normaliser = (remaining * weights)
        .sum_dim(2)
        .log()
        .add_scalar(shift)
        .sum_dim(1)
        .reshape([decisions, 1]);
    (chosen * logit.unsqueeze::<2>()).sum_dim(1) - normaliser
}

/// Trains the agents on `images` (the first `config.samples` are used) and returns every
/// channel's importance with the training curve.
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
    // Every decision keeps as many channels per group as uniform allocation to the target.
    let uniform = select(
        net,
        deps,
        &l1_scores(net, weights, deps),
        setup.target,
        Allocation::Uniform,
        (0.9, 1),
    )
    .map_err(|e| e.to_string())?;
    let kept: Vec<usize> = prunable.iter().map(|&g| uniform[g].len()).collect();
    let train_device = device.clone().autodiff();
    let tilt = config.magnitude_prior as f32;
    let tensors: Vec<GraphTensors> = graphs.iter().flatten().map(|g| GraphTensors::new(g, tilt, &train_device)).collect();
    let mut agents = Agents::new(prunable.len(), config.hidden, seed, &train_device).train();
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6C_5E_41);
    let (mut mean_rewards, mut mean_reductions) = (Vec::new(), Vec::new());
    for episode in 0..config.episodes {
        let logits = agents.logits(&tensors);
        let host_logits: Vec<Vec<f32>> = logits.iter().map(|l| host(l.clone())).collect();
        // draws[a][p]: decision a's channels of the p-th prunable group, in the order drawn.
        let draws: Vec<Vec<Vec<usize>>> = (0..config.actions)
            .map(|_| {
                host_logits
                    .iter()
                    .zip(&kept)
                    .map(|(l, &k)| draw_without_replacement(l, k, &mut rng))
                    .collect()
            })
            .collect();
        let keep_sets: Vec<Vec<Vec<usize>>> = draws
            .iter()
            .map(|d| {
                let mut next = d.iter();
                deps.groups
                    .iter()
                    .map(|g| match g.prunable() {
                        true => {
                            let mut keep = next.next().expect("one draw per prunable group").clone();
                            keep.sort_unstable();
                            keep
                        }
                        false => (0..g.size()).collect(),
                    })
                    .collect()
            })
            .collect();
        let outcomes: Vec<(f64, f64)> = keep_sets
            .par_iter()
            .map(|keep| Ok(((setup.accuracy)(keep)?, macs_reduction(net, deps, keep))))
            .collect::<Result<_, String>>()?;
        let k = outcomes.len() as f64;
        let total: f64 = outcomes.iter().map(|o| o.0).sum();
        // REINFORCE; each decision's baseline is the mean reward of the episode's others.
        let advantages: Vec<f32> = outcomes.iter().map(|o| (o.0 - (total - o.0) / (k - 1.0)) as f32).collect();
        let advantage = Tensor::<2>::from_data(TensorData::new(advantages, [config.actions, 1]), &train_device);
        let log_prob = logits
            .into_iter()
            .enumerate()
            .map(|(p, logit)| {
                let group_draws: Vec<Vec<usize>> = draws.iter().map(|d| d[p].clone()).collect();
                plackett_luce_log_prob(logit, &group_draws, &train_device)
            })
            .reduce(|sum, term| sum + term);
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
    let final_probs: Vec<Vec<f32>> = agents
        .logits(&tensors)
        .into_iter()
        .zip(&kept)
        .map(|(l, &k)| inclusion_probabilities(&host(l), k))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ordered draw of `k` of `n` items.
    fn ordered_draws(n: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![Vec::new()];
        }
        ordered_draws(n, k - 1)
            .into_iter()
            .flat_map(|d| {
                let free: Vec<usize> = (0..n).filter(|c| !d.contains(c)).collect();
                free.into_iter().map(move |c| [d.clone(), vec![c]].concat())
            })
            .collect()
    }

    #[test]
    fn plackett_luce_probabilities_of_every_ordered_draw_sum_to_one() {
        let device = Device::flex();
        let logits = [0.3f32, -1.2, 2.0, 0.0];
        let draws = ordered_draws(4, 2);
        let logit = Tensor::<1>::from_data(TensorData::new(logits.to_vec(), [4]), &device);
        let log_probs = host(plackett_luce_log_prob(logit, &draws, &device).reshape([draws.len()]));
        let total: f64 = log_probs.iter().map(|&l| (l as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
        // The likeliest ordered draw takes the two largest logits, largest first.
        let best = (0..draws.len()).max_by(|&a, &b| log_probs[a].total_cmp(&log_probs[b])).unwrap();
        assert_eq!(draws[best], vec![2, 0]);
    }

    #[test]
    fn draws_are_distinct_and_follow_the_logits() {
        let mut rng = StdRng::seed_from_u64(7);
        let logits = [4.0f32, 0.0, 0.0, -4.0, 0.0];
        let mut first = [0usize; 5];
        for _ in 0..2000 {
            let draw = draw_without_replacement(&logits, 3, &mut rng);
            assert_eq!(draw.len(), 3);
            let mut sorted = draw.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "a channel drawn twice: {draw:?}");
            first[draw[0]] += 1;
        }
        // P(first = 0) = e^4 / (e^4 + 3 + e^-4) ≈ 0.948.
        let share = first[0] as f64 / 2000.0;
        assert!((share - 0.948).abs() < 0.03, "channel 0 drawn first {share}");
        assert!(first[3] < 10, "the least likely channel came first {} times", first[3]);
    }
}
