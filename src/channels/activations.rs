//! What each channel of each prunable group carries over a batch of images: its global-
//! average-pooled activation, the data that data-driven criteria (`similarity`, gcn-rl's
//! channel graphs) compare channels by.

use super::Scores;
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

/// Every channel's activation energy over the batch `images`: the mean square of its
/// pooled activation (read where [`channel_activations`] reads it), per prunable group (no
/// values for pinned groups). What a channel contributes to the signal the next layer sees.
pub fn channel_energy(net: &Network, weights: &Weights, deps: &Dependencies, images: Tensor<4>, device: &Device) -> Scores {
    channel_activations(net, weights, deps, images, device)
        .into_iter()
        .map(|group| {
            group
                .iter()
                .map(|v| v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32)
                .collect()
        })
        .collect()
}
