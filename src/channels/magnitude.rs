//! Magnitude baselines: filter norms and BatchNorm scales.

use super::Scores;
use crate::deps::Dependencies;
use crate::ir::{Network, Op};
use crate::weights::Weights;

/// Which filter norm to take.
#[derive(Clone, Copy, PartialEq)]
pub enum Norm {
    /// Mean absolute weight.
    L1,
    /// Root mean square weight.
    L2,
}

/// For each channel, the norm (per weight) of every filter that produces it (conv and
/// linear output rows), averaged over those filters.
pub fn filter_norms(net: &Network, weights: &Weights, deps: &Dependencies, norm: Norm) -> Scores {
    let rms = norm == Norm::L2;
    let f = |v: f32| if rms { v * v } else { v.abs() };
    deps.groups
        .iter()
        .map(|g| {
            if !g.prunable() {
                return Vec::new();
            }
            g.channels
                .iter()
                .map(|units| {
                    let (mut sum, mut count) = (0.0f32, 0usize);
                    for u in units {
                        if !matches!(net.node(u.node).op, Op::Conv2d { .. } | Op::Linear { .. }) {
                            continue;
                        }
                        let w = weights.of(net, u.node, "weight");
                        let row = w.data.len() / w.shape[0];
                        let filter = &w.data[u.channel * row..(u.channel + 1) * row];
                        let mean = filter.iter().map(|&v| f(v)).sum::<f32>() / row as f32;
                        sum += if rms { mean.sqrt() } else { mean };
                        count += 1;
                    }
                    if count == 0 { 0.0 } else { sum / count as f32 }
                })
                .collect()
        })
        .collect()
}

/// For each channel, the mean |γ| over the BatchNorm layers it passes through (the filter
/// L1 score for a group without BatchNorm).
pub fn bn_scale(net: &Network, weights: &Weights, deps: &Dependencies) -> Scores {
    let l1 = filter_norms(net, weights, deps, Norm::L1);
    deps.groups
        .iter()
        .zip(l1)
        .map(|(g, fallback)| {
            if !g.prunable() {
                return Vec::new();
            }
            g.channels
                .iter()
                .zip(fallback)
                .map(|(units, fallback)| {
                    let gammas: Vec<f32> = units
                        .iter()
                        .filter(|u| matches!(net.node(u.node).op, Op::BatchNorm { .. }))
                        .map(|u| weights.of(net, u.node, "weight").data[u.channel].abs())
                        .collect();
                    if gammas.is_empty() {
                        fallback
                    } else {
                        gammas.iter().sum::<f32>() / gammas.len() as f32
                    }
                })
                .collect()
        })
        .collect()
}
