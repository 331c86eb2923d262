//! The similarity baseline (the first seed's motivation): channels whose global-average-
//! pooled activations over a batch are most alike another channel's are redundant.

use super::{Context, Scores};
use crate::deps::Dependencies;
use crate::exec::Executable;
use crate::ir::{Network, Op};
use crate::weights::Weights;
use burn::tensor::{Device, Tensor};

/// Every channel's global-average-pooled activation over the batch `images`: per group, one
/// vector of `batch` values per channel (no vectors for pinned groups). Activations are read
/// after the group's first activation function (else its first BatchNorm, else its first
/// layer), where a channel's information is what the next layer sees.
pub fn channel_activations(
    net: &Network,
    weights: &Weights,
    deps: &Dependencies,
    images: Tensor<4>,
    device: &Device,
) -> Vec<Vec<Vec<f32>>> {
    let taps: Vec<Option<usize>> = deps
        .groups
        .iter()
        .map(|g| {
            g.prunable().then(|| {
                let pick = |f: fn(&Op) -> bool| g.nodes.iter().copied().find(|&n| f(&net.node(n).op));
                pick(|op| matches!(op, Op::Relu | Op::Relu6))
                    .or_else(|| pick(|op| matches!(op, Op::BatchNorm { .. })))
                    .unwrap_or(g.nodes[0])
                    .index()
            })
        })
        .collect();
    let layers: Vec<usize> = taps.iter().flatten().copied().collect();
    let exec = Executable::new(net, weights, device);
    let mut pooled = exec.pooled_activations(images, &layers).into_iter();
    deps.groups
        .iter()
        .zip(&taps)
        .map(|(g, tap)| {
            let Some(layer) = tap else { return Vec::new() };
            let act = pooled.next().expect("one pooled tensor per tap");
            let [batch, _] = act.dims();
            let values: Vec<f32> = act.into_data().try_into_vec::<f32>().expect("f32 activations");
            let units = values.len() / batch;
            let column = |unit: usize| -> Vec<f32> { (0..batch).map(|b| values[b * units + unit]).collect() };
            g.channels
                .iter()
                .map(|members| column(members.iter().find(|u| u.node.index() == *layer).map_or(0, |u| u.channel)))
                .collect()
        })
        .collect()
}

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
