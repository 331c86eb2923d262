//! What a search reports (`report.json`, and the data `report.md` is drawn from): base vs
//! pruned network (accuracy, MACs, parameters, measured latency, per-layer widths), the
//! winning rates and the search's bookkeeping.

use crate::ir::{Network, Op};
use crate::search::log::Record;
use serde::Serialize;
use std::collections::BTreeMap;

/// One network's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Parameters.
    pub params: u64,
    /// Top-1 accuracy on the test split.
    pub test_accuracy: f64,
    /// Top-1 accuracy on the held-out split.
    pub heldout_accuracy: f64,
    /// Median forward latency of one batch, milliseconds.
    pub latency_ms: f64,
}

/// Output width of one conv or linear layer before and after pruning.
#[derive(Clone, Debug, Serialize)]
pub struct LayerWidth {
    /// Layer name.
    pub layer: String,
    /// Output channels (features) of the original.
    pub before: usize,
    /// Output channels (features) of the pruned network.
    pub after: usize,
}

/// A rate group and the producing layers of its channel groups.
#[derive(Clone, Debug, Serialize)]
pub struct RateGroupReport {
    /// Its name.
    pub name: String,
    /// The winning rate.
    pub rate: f64,
    /// Producing layers of its channel groups.
    pub groups: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The unpruned network.
    pub base: Side,
    /// The exported network (after fine-tuning).
    pub pruned: Side,
    /// Share of MACs removed.
    pub macs_reduction: f64,
    /// Share of parameters removed.
    pub params_reduction: f64,
    /// Base latency / pruned latency.
    pub speedup: f64,
    /// Batch size of the latency measurement.
    pub latency_batch: usize,
    /// The winning rate of every rate group.
    pub rates: BTreeMap<String, f64>,
    /// The rate groups in search order.
    pub rate_groups: Vec<RateGroupReport>,
    /// Per-layer widths.
    pub widths: Vec<LayerWidth>,
    /// Candidates of the search (evaluated in this run or taken from the log).
    pub candidates_evaluated: usize,
    /// Of those, taken from the log of an interrupted run.
    pub candidates_reused: usize,
    /// How many candidates failed (non-finite outputs); they are logged, never winners.
    pub candidates_failed: usize,
    /// Feasible points of the coarse grid.
    pub feasible_grid_points: usize,
    /// The winner's log record (held-out accuracy before fine-tuning).
    pub winner: Record,
    /// Search settings: strategy, ranking, importance, seed.
    pub search: serde_json::Value,
    /// The constraints.
    pub constraints: serde_json::Value,
    /// Backend device the work ran on.
    pub device: String,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
}

/// Output widths of every conv and linear layer, matched by name.
pub fn layer_widths(base: &Network, pruned: &Network) -> Vec<LayerWidth> {
    base.nodes()
        .filter(|&n| matches!(base.node(n).op, Op::Conv2d { .. } | Op::Linear { .. }))
        .filter_map(|n| {
            let name = &base.node(n).name;
            let after = pruned.find(name)?;
            Some(LayerWidth {
                layer: name.clone(),
                before: base.shape(n).channels(),
                after: pruned.shape(after).channels(),
            })
        })
        .collect()
}
