//! Scoring a pruned network for real: cut the network to a keep-set (or to a candidate's
//! widths, keeping each group's most important channels), re-estimate BatchNorm
//! statistics, measure held-out accuracy. Deterministic: the recalibration batches and the
//! held-out images are fixed.

use super::workbench::Workbench;
use crate::channels::{Scores, keep_widths};
use crate::data::{DataError, Split};
use crate::exec::Executable;
use crate::ir::Network;
use crate::search::Score;
use crate::surgery;
use crate::train;
use crate::weights::Weights;

/// How a keep-set is scored on a workbench: cut, `recalibration_batches` of BatchNorm
/// recalibration on the training split, accuracy on `heldout`. Shared by the worker threads.
pub struct KeepEvaluator<'a> {
    /// The network, weights, data and device.
    pub bench: &'a Workbench<'a>,
    /// The held-out images a keep-set is scored on.
    pub heldout: &'a Split,
    /// Recalibration batches.
    pub recalibration_batches: usize,
}

impl KeepEvaluator<'_> {
    /// The network cut to `keep` (kept channels per group), with recalibrated BatchNorm
    /// statistics.
    pub fn pruned(&self, keep: &[Vec<usize>]) -> Result<(Network, Weights), DataError> {
        let b = self.bench;
        let (net, weights) = surgery::prune(b.net, b.weights, b.deps, keep).expect("keep-sets built by sacp are valid");
        let exec = Executable::new(&net, &weights, b.device);
        train::recalibrate(
            &exec,
            &b.train,
            &b.batcher,
            self.recalibration_batches,
            b.batch_size,
            b.seed,
            b.device,
        )?;
        Ok((net, exec.weights()))
    }

    /// Held-out top-1 accuracy of the network cut to `keep`; [`Score::Failed`] when any
    /// held-out image gives non-finite logits (the network is numerically broken, whatever
    /// its accuracy), so such a keep-set is never mistaken for a good one.
    pub fn accuracy(&self, keep: &[Vec<usize>]) -> Result<Score, DataError> {
        let (net, weights) = self.pruned(keep)?;
        let b = self.bench;
        let exec = Executable::new(&net, &weights, b.device);
        let result = train::evaluate(&exec, self.heldout, &b.batcher, b.batch_size, b.data.num_classes, b.device)?;
        Ok(if result.non_finite > 0 {
            Score::Failed(format!(
                "{} of {} held-out images gave non-finite logits (NaN or infinity)",
                result.non_finite, result.images
            ))
        } else {
            Score::Accuracy(result.top1)
        })
    }
}

/// A search candidate's evaluation: its widths filled with each group's most important
/// channels, then scored like any keep-set.
pub struct CandidateEvaluator<'a> {
    /// How a keep-set is scored.
    pub keep: KeepEvaluator<'a>,
    /// Channel importance, deciding which channels a width keeps.
    pub scores: &'a Scores,
}

impl CandidateEvaluator<'_> {
    /// The pruned network and weights for `widths`, with recalibrated BatchNorm statistics.
    pub fn pruned(&self, widths: &[usize]) -> Result<(Network, Weights), DataError> {
        self.keep.pruned(&keep_widths(self.keep.bench.deps, self.scores, widths))
    }

    /// Held-out top-1 accuracy of the candidate with these widths (see [`KeepEvaluator::accuracy`]).
    pub fn accuracy(&self, widths: &[usize]) -> Result<Score, DataError> {
        self.keep.accuracy(&keep_widths(self.keep.bench.deps, self.scores, widths))
    }
}
