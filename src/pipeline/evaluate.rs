//! Scoring a pruned network for real: cut the network to a keep-set (or to a candidate's
//! widths, keeping each group's most important channels), re-estimate BatchNorm
//! statistics, measure held-out accuracy. Deterministic: the recalibration batches and the
//! held-out images are fixed, decoded and uploaded once per evaluator.

use super::workbench::Workbench;
use crate::channels::{Scores, keep_widths};
use crate::data::{DataError, Split};
use crate::exec::Executable;
use crate::ir::Network;
use crate::search::Score;
use crate::surgery;
use crate::train::{self, ResidentSplit};
use crate::weights::Weights;
use burn::tensor::{Device, Tensor};

/// How a keep-set is scored on a workbench: cut, `recalibration_batches` of BatchNorm
/// recalibration on the training split, accuracy on the held-out images. Both sets of
/// images are decoded and uploaded once, when the evaluator is made, and every keep-set
/// reuses them. Shared by the worker threads.
pub struct KeepEvaluator<'a> {
    /// The network, weights and data.
    pub bench: &'a Workbench<'a>,
    device: Device,
    recalibration: Vec<Tensor<4>>,
    heldout: ResidentSplit,
}

impl<'a> KeepEvaluator<'a> {
    /// Uploads the recalibration batches (seeded, from the training split) and `heldout` to
    /// `device`, where every keep-set is then cut, recalibrated and scored.
    pub fn new(bench: &'a Workbench<'a>, device: &Device, heldout: &Split, recalibration_batches: usize) -> Result<Self, DataError> {
        Ok(KeepEvaluator {
            bench,
            device: device.clone(),
            recalibration: train::recalibration_batches(
                &bench.train,
                &bench.batcher,
                recalibration_batches,
                bench.batch_size,
                bench.seed,
                device,
            )?,
            heldout: ResidentSplit::upload(heldout, &bench.batcher, bench.batch_size, device)?,
        })
    }

    /// The network cut to `keep` (kept channels per group), with recalibrated BatchNorm
    /// statistics, on the device.
    fn recalibrated(&self, keep: &[Vec<usize>]) -> (Network, Executable) {
        let b = self.bench;
        let (net, weights) = surgery::prune(b.net, b.weights, b.deps, keep).expect("keep-sets built by sacp are valid");
        let exec = Executable::new(&net, &weights, &self.device);
        train::recalibrate(&exec, &self.recalibration);
        (net, exec)
    }

    /// The network cut to `keep`, with recalibrated BatchNorm statistics.
    pub fn pruned(&self, keep: &[Vec<usize>]) -> (Network, Weights) {
        let (net, exec) = self.recalibrated(keep);
        (net, exec.weights())
    }

    /// Held-out top-1 accuracy of the network cut to `keep`, scored where it was
    /// recalibrated (BatchNorm folded into the convolutions, counts kept on the device);
    /// [`Score::Failed`] when any held-out image gives non-finite logits (the network is
    /// numerically broken, whatever its accuracy), so such a keep-set is never mistaken
    /// for a good one.
    pub fn accuracy(&self, keep: &[Vec<usize>]) -> Score {
        let (_, exec) = self.recalibrated(keep);
        let result = train::top1_on_device(&exec.folded(), &self.heldout);
        if result.non_finite > 0 {
            Score::Failed(format!(
                "{} of {} held-out images gave non-finite logits (NaN or infinity)",
                result.non_finite, result.images
            ))
        } else {
            Score::Accuracy(result.correct as f64 / result.images.max(1) as f64)
        }
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
    pub fn pruned(&self, widths: &[usize]) -> (Network, Weights) {
        self.keep.pruned(&keep_widths(self.keep.bench.deps, self.scores, widths))
    }

    /// Held-out top-1 accuracy of the candidate with these widths (see [`KeepEvaluator::accuracy`]).
    pub fn accuracy(&self, widths: &[usize]) -> Score {
        self.keep.accuracy(&keep_widths(self.keep.bench.deps, self.scores, widths))
    }
}
