//! Contrastive training of the encoder (InfoNCE against the unpruned network).

use super::{GcnConfig, GcnModel, GraphInput, normalise};
use crate::channels::Scores;
use crate::deps::Dependencies;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// A positive (L1-pruned) and a negative (randomly pruned) mask at the same random rates.
pub(super) fn variant_pair(deps: &Dependencies, l1: &Scores, config: &GcnConfig, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    let (mut positive, mut negative) = (Vec::new(), Vec::new());
    for (g, scores) in deps.groups.iter().zip(l1) {
        let start = positive.len();
        positive.resize(start + g.size(), 1.0);
        negative.resize(start + g.size(), 1.0);
        if !g.prunable() {
            continue;
        }
        let rate = rng.random_range(config.min_rate..config.max_rate);
        let remove = ((rate * g.size() as f64).round() as usize).min(g.size() - 1);
        let mut by_l1: Vec<usize> = (0..g.size()).collect();
        by_l1.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        by_l1[..remove].iter().for_each(|&c| positive[start + c] = 0.0);
        let mut shuffled: Vec<usize> = (0..g.size()).collect();
        shuffled.shuffle(rng);
        shuffled[..remove].iter().for_each(|&c| negative[start + c] = 0.0);
    }
    (positive, negative)
}

/// Trains the encoder; returns it with the loss of every step.
pub(super) fn train(graph: &GraphInput, deps: &Dependencies, l1: &Scores, config: &GcnConfig, device: &Device) -> (GcnModel, Vec<f32>) {
    let mut model = GcnModel::new(super::FEATURES, config.depth, config.width, config.embedding, config.seed, device).train();
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0xC0_47A5);
    let k = config.variants.max(1);
    let mut losses = Vec::with_capacity(config.steps);
    for _ in 0..config.steps {
        let mut rows = vec![vec![1.0f32; graph.total]];
        let (mut positives, mut negatives) = (Vec::new(), Vec::new());
        for _ in 0..k {
            let (p, n) = variant_pair(deps, l1, config, &mut rng);
            positives.push(p);
            negatives.push(n);
        }
        rows.extend(positives);
        rows.extend(negatives);
        let masks = Tensor::from_data(TensorData::new(rows.concat(), [2 * k + 1, graph.total]), device);
        let z = normalise(model.embed(&graph.adjacency, graph.features(masks)));
        let anchor = z.clone().narrow(0, 0, 1);
        let positive = (z.clone().narrow(0, 1, k) * anchor.clone()).sum_dim(1);
        let negative = z.narrow(0, k + 1, k).matmul(anchor.transpose()).transpose().repeat_dim(0, k);
        // Row i: [sim(positive i), sim(negative 1..k)] / τ; the positive is the right answer.
        let logits = Tensor::cat(vec![positive, negative], 1).div_scalar(config.temperature);
        let loss = log_softmax(logits, 1).slice([0..k, 0..1]).neg().mean();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(config.lr, model, grads);
    }
    (model, losses)
}
