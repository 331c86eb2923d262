//! The workbench: what channel scoring, candidate evaluation and fine-tuning share, built
//! once from a network, its weights and a data set: the channel groups, the seeded training
//! and held-out splits, the batcher and the device. `sacp search` and `sacp prune --data`
//! both build one, so the two score keep-sets the same way.

use super::evaluate::KeepEvaluator;
use crate::data::{Batcher, DataError, DataSet, Split};
use crate::deps::Dependencies;
use crate::exec::Executable;
use crate::gcn_rl::{GcnRlConfig, Setup};
use crate::ir::Network;
use crate::train;
use crate::weights::Weights;
use burn::tensor::{Device, Tensor};
use indicatif::ProgressBar;

/// A network, its weights and data, ready for scoring and evaluation.
pub struct Workbench<'a> {
    /// The unpruned network.
    pub net: &'a Network,
    /// Its weights.
    pub weights: &'a Weights,
    /// Its channel groups.
    pub deps: &'a Dependencies,
    /// The data set.
    pub data: &'a DataSet,
    /// The training images (recalibration, probes, fine-tuning).
    pub train: Split,
    /// The held-out images (scoring; never trained on).
    pub heldout: Split,
    /// Normalisation of the data set.
    pub batcher: Batcher,
    /// Images per batch of recalibration and scoring.
    pub batch_size: usize,
    /// Seed of the held-out split and the recalibration batches.
    pub seed: u64,
    /// The device.
    pub device: &'a Device,
}

impl<'a> Workbench<'a> {
    /// A workbench whose held-out split has `heldout` images (at most a fifth of the
    /// training set), carved with `seed`.
    #[allow(clippy::too_many_arguments)] // each argument is one part of the bench
    pub fn new(
        net: &'a Network,
        weights: &'a Weights,
        deps: &'a Dependencies,
        data: &'a DataSet,
        heldout: usize,
        batch_size: usize,
        seed: u64,
        device: &'a Device,
    ) -> Self {
        let (train, heldout) = data.split(heldout, seed);
        Workbench {
            net,
            weights,
            deps,
            data,
            train,
            heldout,
            batcher: data.batcher(),
            batch_size,
            seed,
            device,
        }
    }

    /// The first `count` batches of the held-out split (all of it for 0).
    pub fn heldout_batches(&self, count: usize) -> Split {
        let mut h = self.heldout.clone();
        if count > 0 {
            h.indices.truncate(count * self.batch_size);
        }
        h
    }

    /// Scores keep-sets on `heldout` after `recalibration_batches` of BatchNorm
    /// recalibration on the training split, on the bench's device.
    pub fn keep_evaluator(&'a self, heldout: &Split, recalibration_batches: usize) -> Result<KeepEvaluator<'a>, DataError> {
        KeepEvaluator::new(self, self.device, heldout, recalibration_batches)
    }

    /// The images data-driven methods look at: the first `max(256, samples)` training
    /// images (fewer when the split is smaller), unaugmented.
    pub fn probe(&self, samples: usize) -> Result<Tensor<4>, DataError> {
        let positions: Vec<usize> = (0..self.train.len().min(256.max(samples))).collect();
        Ok(self.batcher.batch(&self.train, &positions, None, self.device)?.images)
    }

    /// Top-1 accuracy of a network on `split` (eval-mode BatchNorm).
    pub fn accuracy(&self, net: &Network, weights: &Weights, split: &Split) -> Result<f64, DataError> {
        let exec = Executable::new(net, weights, self.device);
        Ok(train::evaluate(&exec, split, &self.batcher, self.batch_size, self.data.num_classes, self.device)?.top1)
    }

    /// Runs `work` with the probe images and, when a MAC `target` is given, gcn-rl's reward
    /// wired to this bench: a keep-set's held-out accuracy on the first
    /// `heldout_batches` after `recalibration_batches` (none for non-finite outputs), with
    /// a progress bar over the episodes in `bar` (a hidden bar shows nothing).
    pub fn with_gcn_rl<T>(
        &self,
        rl: &GcnRlConfig,
        target: Option<f64>,
        bar: &ProgressBar,
        work: impl FnOnce(Tensor<4>, Option<Setup<'_>>) -> T,
    ) -> Result<T, DataError> {
        let heldout = self.heldout_batches(rl.heldout_batches);
        let evaluator = self.keep_evaluator(&heldout, rl.recalibration_batches)?;
        let accuracy = |keep: &[Vec<usize>]| Ok(super::reward_accuracy(evaluator.accuracy(keep)));
        let progress = |_episode: usize, reward: f64| {
            bar.set_message(format!("mean reward {reward:.4}"));
            bar.inc(1);
        };
        let setup = target.map(|target| Setup {
            config: rl,
            target,
            accuracy: &accuracy,
            progress: Some(&progress),
        });
        let result = work(self.probe(rl.samples)?, setup);
        bar.finish_and_clear();
        Ok(result)
    }
}
