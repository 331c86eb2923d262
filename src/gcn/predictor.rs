//! The accuracy predictor that ranks search candidates: a GCN over the layer graph gives
//! every layer a sensitivity, and a candidate's score is the sensitivity-weighted sum over
//! layers of the log of the activation energy its kept channels carry:
//!
//! `score(c) = Σ_layers w_l · ln(kept energy share_l(c))`, `w = softplus(GCN(layer graph))`.
//!
//! Energy comes from a probe batch (each channel's mean squared pooled activation), so data
//! enters the score; the GCN sees each layer's kind, kernel, stride, cost share and width
//! and its neighbours, so the weights are structure-aware. Before any candidate is
//! evaluated every weight is 1 (the head starts at softplus⁻¹(1)) and the score is the
//! plain sum of log kept-energy shares: a prior that needs no training. After every round,
//! an ensemble of GCNs is trained on the candidates evaluated so far with a pairwise
//! ranking loss on their measured accuracy (each on a bootstrap sample, pulled towards the
//! prior by an L2 penalty on `w − 1`), so each round ranks with what the search has learnt.
//! The ensemble's spread is the prediction's uncertainty, which exploration uses.

use super::features::{GraphInput, unit_index};
use super::model::Dense;
use crate::channels::Scores;
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::weights::Weights;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Settings of the predictor's training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorConfig {
    /// GCNs in the ensemble.
    pub members: usize,
    /// Adam steps per member and round.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Hidden width of the GCN.
    pub width: usize,
    /// Weight of the penalty that keeps layer sensitivities near 1 (the prior).
    pub prior_weight: f64,
    /// Seed of initialisation and bootstrap samples.
    pub seed: u64,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            members: 4,
            steps: 120,
            lr: 0.01,
            width: 32,
            prior_weight: 0.1,
            seed: 0,
        }
    }
}

/// Predicted scores of candidates (higher = more accurate) and their uncertainty.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The ensemble's mean score per candidate.
    pub score: Vec<f32>,
    /// The ensemble's standard deviation per candidate (zeros before any training).
    pub spread: Vec<f32>,
}

/// softplus⁻¹(1): the head's bias at which every sensitivity starts at 1.
const UNIT_SENSITIVITY: f32 = 0.541_324_85;
/// The least kept-energy share a layer is scored with (an emptied layer is not −∞).
const LEAST_SHARE: f64 = 1e-4;

/// Layer sensitivities from the layer graph: two graph convolutions and a softplus head.
#[derive(Module, Debug)]
struct Sensitivity {
    convs: Vec<Dense>,
    head: Dense,
}

impl Sensitivity {
    fn new(features: usize, width: usize, seed: u64, device: &Device) -> Sensitivity {
        let mut rng = StdRng::seed_from_u64(seed);
        let convs = vec![
            Dense::new(features, width, &mut rng, device),
            Dense::new(width, width, &mut rng, device),
        ];
        let head = Dense::constant(width, 1, UNIT_SENSITIVITY, device);
        Sensitivity { convs, head }
    }

    /// `[nodes]` sensitivities, all positive.
    fn weights(&self, adjacency: &Tensor<2>, nodes: &Tensor<2>) -> Tensor<2> {
        let mut h = nodes.clone();
        for conv in &self.convs {
            h = relu(conv.apply(adjacency.clone().matmul(h)));
        }
        softplus(self.head.apply(h), 1.0)
    }
}

/// The predictor of one network with its weights and probe energies.
pub struct Predictor {
    device: Device,
    adjacency: Tensor<2>,
    nodes: Tensor<2>,
    /// `[total, nodes]`: row `m` holds mask entry `m`'s share of each layer's energy.
    energy_share: Tensor<2>,
    members: Vec<Sensitivity>,
    config: PredictorConfig,
}

impl Predictor {
    /// A predictor for `net` whose channels carry `energy` (see
    /// [`crate::channels::channel_energy`]; pinned groups need none).
    pub fn new(net: &Network, weights: &Weights, deps: &Dependencies, energy: &Scores, config: &PredictorConfig, device: &Device) -> Self {
        let device = device.clone().autodiff();
        let graph = GraphInput::new(net, weights, deps, &device);
        let units = unit_index(net, deps, &graph.offsets);
        // A mask entry's energy: its probe energy in prunable groups (floored so that a dead
        // channel still counts a little), 1 in pinned groups (always kept, share stays 1).
        let mut entry_energy = vec![1f32; graph.total];
        for ((g, &start), values) in deps.groups.iter().zip(&graph.offsets).zip(energy) {
            if g.prunable() && values.len() == g.size() {
                let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
                for (k, &e) in values.iter().enumerate() {
                    entry_energy[start + k] = e.max(1e-3 * mean).max(f32::MIN_POSITIVE);
                }
            }
        }
        let n = graph.nodes;
        let mut share = vec![0f32; graph.total * n];
        let mut width = vec![0f32; n];
        for (layer, entries) in units.iter().enumerate() {
            let sum: f32 = entries.iter().map(|&m| entry_energy[m]).sum();
            entries.iter().for_each(|&m| share[m * n + layer] += entry_energy[m] / sum);
            width[layer] = (entries.len().max(1) as f32).log2() / 10.0;
        }
        let nodes = Tensor::cat(
            vec![graph.descriptors(), Tensor::from_data(TensorData::new(width, [n, 1]), &device)],
            1,
        );
        Predictor {
            adjacency: graph.adjacency.clone(),
            nodes,
            energy_share: Tensor::from_data(TensorData::new(share, [graph.total, n]), &device),
            members: Vec::new(),
            config: config.clone(),
            device,
        }
    }

    /// `[B, nodes]`: the log of each layer's kept-energy share under each mask, on the
    /// device of `energy_share` (the autodiff device for training, its inner one for
    /// inference).
    fn log_shares(masks: &[Vec<f32>], energy_share: Tensor<2>) -> Tensor<2> {
        let [total, _] = energy_share.dims();
        let data: Vec<f32> = masks.concat();
        let masks = Tensor::from_data(TensorData::new(data, [masks.len(), total]), &energy_share.device());
        masks.matmul(energy_share).clamp_min(LEAST_SHARE).log()
    }

    /// Scores of the masks under one member (`[B]`), without autodiff.
    fn member_scores(&self, member: &Sensitivity, shares: Tensor<2>) -> Tensor<1> {
        let [batch, _] = shares.dims();
        shares.matmul(member.weights(&self.adjacency, &self.nodes).inner()).reshape([batch])
    }

    /// Predicts the masks (one per candidate, see [`super::mask_of`]). Inference runs on
    /// the device without autodiff.
    pub fn predict(&self, masks: &[Vec<f32>]) -> Prediction {
        let shares = Self::log_shares(masks, self.energy_share.clone().inner());
        let host = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().expect("f32 scores");
        if self.members.is_empty() {
            let score = host(shares.sum_dim(1).reshape([masks.len()]));
            return Prediction {
                spread: vec![0.0; score.len()],
                score,
            };
        }
        let per_member: Vec<Vec<f32>> = self.members.iter().map(|m| host(self.member_scores(m, shares.clone()))).collect();
        let k = per_member.len() as f32;
        let score: Vec<f32> = (0..masks.len()).map(|i| per_member.iter().map(|s| s[i]).sum::<f32>() / k).collect();
        let spread = (0..masks.len())
            .map(|i| (per_member.iter().map(|s| (s[i] - score[i]).powi(2)).sum::<f32>() / k).sqrt())
            .collect();
        Prediction { score, spread }
    }

    /// Trains the ensemble afresh on evaluated candidates (their masks and measured
    /// accuracies). Fewer than two distinct accuracies leave the prior in place.
    pub fn fit(&mut self, masks: &[Vec<f32>], accuracy: &[f64]) {
        let distinct = accuracy.iter().any(|&a| (a - accuracy[0]).abs() > 1e-12);
        if masks.len() < 2 || !distinct {
            self.members.clear();
            return;
        }
        let shares = Self::log_shares(masks, self.energy_share.clone()).detach();
        let n = masks.len();
        let mut rng = StdRng::seed_from_u64(self.config.seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let features = self.nodes.dims()[1];
        self.members = (0..self.config.members.max(1))
            .map(|k| {
                let sample: Vec<usize> = if k == 0 {
                    (0..n).collect()
                } else {
                    (0..n).map(|_| rng.random_range(0..n)).collect()
                };
                // Pairs (better, worse) within the sample; weight = 1 each.
                let pairs: Vec<(usize, usize)> = sample
                    .iter()
                    .flat_map(|&i| sample.iter().map(move |&j| (i, j)))
                    .filter(|&(i, j)| accuracy[i] > accuracy[j] + 1e-12)
                    .collect();
                let member = Sensitivity::new(features, self.config.width, self.config.seed.wrapping_add(k as u64), &self.device);
                if pairs.is_empty() {
                    return member;
                }
                self.train_member(member, &shares, &pairs)
            })
            .collect();
    }

    fn train_member(&self, mut member: Sensitivity, shares: &Tensor<2>, pairs: &[(usize, usize)]) -> Sensitivity {
        let index = |pick: fn(&(usize, usize)) -> usize| {
            let ids: Vec<i64> = pairs.iter().map(|p| pick(p) as i64).collect();
            Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(ids, [pairs.len()]), &self.device)
        };
        let (better, worse) = (index(|p| p.0), index(|p| p.1));
        let mut optim = AdamConfig::new().init();
        for _ in 0..self.config.steps {
            let w = member.weights(&self.adjacency, &self.nodes);
            let [nodes, _] = w.dims();
            let scores = shares.clone().matmul(w.clone()).reshape([shares.dims()[0]]);
            let margin = scores.clone().select(0, better.clone()) - scores.select(0, worse.clone());
            let ranking = softplus(margin.neg(), 1.0).mean();
            let prior = w.sub_scalar(1.0).powf_scalar(2.0).sum().div_scalar(nodes as f64);
            let loss = ranking + prior.mul_scalar(self.config.prior_weight);
            let grads = GradientsParams::from_grads(loss.backward(), &member);
            member = optim.step(self.config.lr, member, grads);
        }
        member
    }
}
