//! The similarity baseline (the first seed's motivation): channels whose global-average-
//! pooled activations over a batch are most alike another channel's are redundant.

use super::Context;
use crate::channels::{Scores, channel_activations};
use burn::tensor::Tensor;

/// Importance = 1 − the largest cosine similarity between the channel's pooled activations
/// (a vector over the batch) and any other channel's in the group.
pub(super) fn redundancy(ctx: &Context, images: Tensor<4>) -> Scores {
    channel_activations(ctx.net, ctx.weights, ctx.deps, images, ctx.device)
        .into_iter()
        .map(|vectors| {
            let norms: Vec<f32> = vectors.iter().map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
            (0..vectors.len())
                .map(|i| {
                    if norms[i] == 0.0 {
                        return 0.0; // a dead channel carries nothing
                    }
                    let most_alike = (0..vectors.len())
                        .filter(|&j| j != i && norms[j] > 0.0)
                        .map(|j| vectors[i].iter().zip(&vectors[j]).map(|(a, b)| a * b).sum::<f32>() / (norms[i] * norms[j]))
                        .fold(-1.0f32, f32::max);
                    1.0 - most_alike.max(-1.0)
                })
                .collect()
        })
        .collect()
}
