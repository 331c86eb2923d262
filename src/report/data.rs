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
    /// How well the ranking predicted the search's measured accuracies: Spearman's rank
    /// correlation of the ranking's score (when each candidate was chosen) with its
    /// held-out accuracy within each round, averaged over rounds weighted by size; absent
    /// without a ranking or without a round of three scored candidates. Only the chosen
    /// (top) candidates of a round are measured, so this understates the ranking's
    /// quality over the whole pool.
    pub ranking_spearman: Option<f64>,
    /// The winner's log record (held-out accuracy before fine-tuning).
    pub winner: Record,
    /// Search settings: strategy, ranking, importance, seed.
    pub search: serde_json::Value,
    /// The constraints.
    pub constraints: serde_json::Value,
    /// Backend device the work ran on.
    pub device: String,
    /// A latency target's predictions checked against measurements (absent without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyCheck>,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
}

/// One candidate's latency, predicted from the lookup table and measured.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateLatency {
    /// Predicted latency of one batch, milliseconds.
    pub predicted_ms: f64,
    /// Measured latency of one batch (median), milliseconds.
    pub measured_ms: f64,
    /// Its held-out accuracy after recalibration.
    pub heldout_accuracy: f64,
    /// Share of MACs removed.
    pub macs_reduction: f64,
    /// Whether its evaluation failed (it is never the winner).
    pub failed: bool,
}

/// A latency target checked after the search: every candidate's predicted and measured
/// latency, and the winner's measured reduction against the target.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyCheck {
    /// Batch size of every latency here.
    pub batch: usize,
    /// Share of the base network's predicted latency the target removes.
    pub target_reduction: f64,
    /// Allowed distance from the target.
    pub tolerance: f64,
    /// The base network's predicted latency, milliseconds.
    pub base_predicted_ms: f64,
    /// The base network's measured latency, milliseconds.
    pub base_measured_ms: f64,
    /// The winner's predicted latency, milliseconds.
    pub winner_predicted_ms: f64,
    /// The winner's measured latency, milliseconds.
    pub winner_measured_ms: f64,
    /// `1 − winner measured / base measured`.
    pub measured_reduction: f64,
    /// Scored candidates whose measured latency meets the target (the winner is the most
    /// accurate of them, when there is one).
    pub measured_feasible: usize,
    /// The search's candidates in log order.
    pub candidates: Vec<CandidateLatency>,
}

impl LatencyCheck {
    /// Median of `|predicted − measured| / measured` over the candidates.
    pub fn median_error(&self) -> f64 {
        let mut errors: Vec<f64> = self
            .candidates
            .iter()
            .map(|c| (c.predicted_ms - c.measured_ms).abs() / c.measured_ms)
            .collect();
        errors.sort_by(f64::total_cmp);
        errors.get(errors.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Whether the winner's measured reduction is within tolerance of the target.
    pub fn met(&self) -> bool {
        (self.measured_reduction - self.target_reduction).abs() <= self.tolerance + 1e-12
    }
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

/// Spearman's rank correlation of `a` and `b` (ties take their average rank); `None` for
/// fewer than two pairs, when either side is constant, or when any value is not finite.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let rank = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut ranks = vec![0.0; v.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && v[order[end + 1]] == v[order[start]] {
                end += 1;
            }
            (start..=end).for_each(|k| ranks[order[k]] = (start + end) as f64 / 2.0);
            start = end + 1;
        }
        ranks
    };
    let (ra, rb) = (rank(a), rank(b));
    let mean = (a.len() - 1) as f64 / 2.0;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    let denominator = (var(&ra) * var(&rb)).sqrt();
    (denominator > 0.0).then(|| cov / denominator)
}

/// The scored candidates that carry a ranking score, as (score standardised within its
/// round, held-out accuracy) pairs. Scores of different rounds come from differently
/// trained predictors and are only comparable within a round.
pub fn predicted_and_measured(records: &[Record]) -> Vec<(f64, f64)> {
    rounds(records)
        .into_iter()
        .flat_map(|pairs| {
            let n = pairs.len() as f64;
            let mean = pairs.iter().map(|p| p.0).sum::<f64>() / n;
            let std = (pairs.iter().map(|p| (p.0 - mean).powi(2)).sum::<f64>() / n).sqrt();
            pairs
                .into_iter()
                .map(move |(score, accuracy)| (if std > 0.0 { (score - mean) / std } else { 0.0 }, accuracy))
        })
        .collect()
}

/// (score, accuracy) of the scored, ranked candidates, one list per round.
fn rounds(records: &[Record]) -> Vec<Vec<(f64, f64)>> {
    let mut by_round: std::collections::BTreeMap<usize, Vec<(f64, f64)>> = Default::default();
    for r in records.iter().filter(|r| r.failed.is_none()) {
        if let Some(p) = r.predicted {
            by_round.entry(r.round).or_default().push((f64::from(p), r.heldout_accuracy));
        }
    }
    by_round.into_values().collect()
}

/// [`Report::ranking_spearman`] of a search's records: Spearman of score and accuracy
/// within each round (where the scores come from one predictor), averaged over the rounds
/// with at least three scored candidates, weighted by their size.
pub fn ranking_spearman(records: &[Record]) -> Option<f64> {
    let (mut sum, mut weight) = (0.0, 0.0);
    for pairs in rounds(records).into_iter().filter(|p| p.len() >= 3) {
        let (predicted, measured): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        if let Some(rho) = spearman(&predicted, &measured) {
            sum += rho * pairs.len() as f64;
            weight += pairs.len() as f64;
        }
    }
    (weight > 0.0).then(|| sum / weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(round: usize, predicted: f32, accuracy: f64) -> Record {
        Record {
            predicted_latency_ms: None,
            round,
            rates: vec![],
            widths: vec![],
            macs: 0,
            params: 0,
            macs_reduction: 0.0,
            params_reduction: 0.0,
            predicted: Some(predicted),
            heldout_accuracy: accuracy,
            failed: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn ranking_spearman_compares_scores_within_rounds_only() {
        // Each round orders its candidates perfectly, but round 1's scores sit far below
        // round 0's while its accuracies are higher: pooled, the correlation would be negative.
        let records = vec![
            record(0, 10.0, 0.50),
            record(0, 11.0, 0.55),
            record(0, 12.0, 0.60),
            record(1, -5.0, 0.70),
            record(1, -4.0, 0.75),
            record(1, -3.0, 0.80),
        ];
        assert_eq!(ranking_spearman(&records), Some(1.0));
        let pooled: (Vec<f64>, Vec<f64>) = records
            .iter()
            .map(|r| (f64::from(r.predicted.unwrap()), r.heldout_accuracy))
            .unzip();
        assert!(spearman(&pooled.0, &pooled.1).unwrap() < 0.0);
        assert_eq!(ranking_spearman(&records[..2]), None, "no round of three");
        assert_eq!(spearman(&[1.0, f64::NAN], &[1.0, 2.0]), None, "a NaN is no correlation");
    }
}
