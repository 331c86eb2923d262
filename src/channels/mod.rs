//! The vocabulary of channel pruning that every importance method shares and no method
//! owns: channel scores, keep-sets chosen from them for a MAC target or for given widths,
//! the magnitude criteria (filter norms, BatchNorm scales) and the pooled activations that
//! data-driven criteria compare. It sits below [`crate::importance`], [`crate::gcn`] and
//! [`crate::gcn_rl`], which all import it and none of which it imports.

mod activations;
mod allocate;
mod magnitude;

pub use activations::{channel_activations, channel_energy};
pub use allocate::{Allocation, SelectError, keep_widths, macs_reduction, select};
pub use magnitude::{Norm, bn_scale, filter_norms};

use crate::deps::Dependencies;
use crate::ir::Network;
use crate::weights::Weights;

/// Importance of every channel: one list per dependency group (empty for pinned groups).
/// Higher means more important; values are comparable across groups.
pub type Scores = Vec<Vec<f32>>;

/// The `l1` scores: each channel's mean absolute filter weight (the GCN's positives and
/// gcn-rl's node features are built from them).
pub fn l1_scores(net: &Network, weights: &Weights, deps: &Dependencies) -> Scores {
    filter_norms(net, weights, deps, Norm::L1)
}

/// The share of the total score of all prunable channels that a keep-set keeps (with `l1`
/// scores: the share of the L1 norm kept, a cheap proxy of a candidate's accuracy).
pub fn kept_share(scores: &Scores, keep: &[Vec<usize>]) -> f64 {
    let total: f64 = scores.iter().flatten().map(|&v| f64::from(v)).sum();
    let kept: f64 = keep
        .iter()
        .zip(scores)
        .map(|(kept, s)| kept.iter().filter_map(|&c| s.get(c)).map(|&v| f64::from(v)).sum::<f64>())
        .sum();
    kept / total
}
