//! Training and fine-tuning (SGD, schedules, label smoothing, distillation, checkpoints),
//! evaluation (top-1, top-5, per class) and BatchNorm recalibration.

mod evaluate;
mod loss;
mod sgd;

pub use evaluate::{Evaluation, ResidentSplit, Top1, evaluate, rank_of_true_class, recalibrate, recalibration_batches, top1_on_device};
pub use sgd::Sgd;

use crate::data::{DataError, DataSet, Split};
use crate::exec::{Executable, NormMode};
use crate::ir::Network;
use crate::weights::{self, WeightError, WeightTensor, Weights};
use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Reading or writing weights or a checkpoint failed.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// A checkpoint does not belong to this run.
    #[error("{file}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        file: String,
        /// Why it cannot be resumed.
        message: String,
    },
    /// The caller asked the run to stop; the last finished epoch's checkpoint stays.
    #[error("training interrupted during epoch {epoch}")]
    Interrupted {
        /// The epoch that was running (1-based).
        epoch: usize,
    },
    /// The loss became NaN or infinite; nothing of the epoch is written, the checkpoint of
    /// the last finished epoch (if any) stays as it was.
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss is {loss}; stopped without writing weights, the checkpoint of the last finished epoch (if any) is kept; lower the learning rate or check the weights"
    )]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// The offending loss.
        loss: f32,
    },
}

/// Learning-rate schedule over all steps of a run.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    /// Cosine decay from the base rate to zero.
    Cosine,
    /// Multiply the rate by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// A constant rate.
    Constant,
}

/// Distillation from a teacher (usually the unpruned network).
pub struct Distill {
    /// The teacher, on the training device's base (non-autodiff) device.
    pub teacher: Executable,
    /// Softmax temperature.
    pub temperature: f64,
    /// Weight of the distillation term (the cross-entropy gets `1 - alpha`).
    pub alpha: f64,
}

/// Settings of a training run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Label smoothing ε (0 disables).
    pub label_smoothing: f64,
    /// Seed of shuffling, augmentation and the held-out split.
    pub seed: u64,
    /// Images carved from the training set as the held-out split.
    pub heldout: usize,
    /// Stop each epoch after this many steps (short fine-tunes); `None` = whole epochs.
    pub max_steps_per_epoch: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine,
            label_smoothing: 0.0,
            seed: 0,
            heldout: 5000,
            max_steps_per_epoch: None,
        }
    }
}

/// What a training step reports to the caller (for progress bars).
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Steps done in this epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Mean training loss over the epoch so far.
    pub loss: f64,
    /// Training accuracy over the epoch so far.
    pub accuracy: f64,
    /// Images per second over the epoch so far.
    pub images_per_sec: f64,
}

/// The result of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    /// Epochs trained in total (including those before a resume).
    pub epochs: usize,
    /// Mean training loss of the last epoch.
    pub train_loss: f64,
    /// Held-out accuracy after the last epoch.
    pub heldout_accuracy: f64,
    /// Mean training throughput of this process, images per second.
    pub images_per_sec: f64,
    #[serde(skip)]
    /// The trained weights.
    pub weights: Weights,
}

/// Where a run keeps its checkpoint, and whether to resume from it.
pub struct Checkpointing {
    /// The checkpoint file (rewritten atomically after every epoch).
    pub path: PathBuf,
    /// Continue from the checkpoint when it exists.
    pub resume: bool,
}

fn learning_rate(config: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
    let total = (config.epochs * steps_per_epoch).max(1) as f64;
    match config.schedule {
        Schedule::Constant => config.lr,
        Schedule::Cosine => config.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total).cos()),
        Schedule::Step { every, gamma } => config.lr * gamma.powi((step / steps_per_epoch / every.max(1)) as i32),
    }
}

fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Trains `net` from `weights` on `data` and returns the new weights. `on_step` sees every
/// step and may stop the run by returning `ControlFlow::Break`. Deterministic for a
/// seed: shuffling and augmentation are drawn from per-epoch seeded generators, and a
/// checkpoint holds weights, BatchNorm statistics and momentum buffers, so a resumed run
/// ends where an uninterrupted one does.
#[allow(clippy::too_many_arguments)] // each argument is a separate concern of a run
pub fn train(
    net: &Network,
    weights: &Weights,
    data: &DataSet,
    config: &TrainConfig,
    distill: Option<&Distill>,
    device: &Device,
    checkpoint: Option<&Checkpointing>,
    on_step: &mut dyn FnMut(&StepReport) -> ControlFlow<()>,
) -> Result<TrainSummary, TrainError> {
    let autodiff = device.clone().autodiff();
    let (train_split, heldout) = data.split(config.heldout, config.seed);
    let batcher = data.batcher();
    crate::data::require_batch(
        data,
        &train_split,
        config.batch_size,
        "training",
        "lower the batch size or use a larger data set",
    )?;
    let batch_size = config.batch_size;
    let steps_per_epoch = (train_split.len() / batch_size)
        .max(1)
        .min(config.max_steps_per_epoch.unwrap_or(usize::MAX).max(1));
    let mut sgd = Sgd::new(config.momentum, config.nesterov, config.weight_decay);
    let mut start_epoch = 0;
    let mut current = weights.clone();
    if let Some(ck) = checkpoint.filter(|c| c.resume && c.path.exists()) {
        start_epoch = load_checkpoint(&ck.path, net, config, &mut current, &mut sgd, &autodiff)?;
    }
    let mut exec = Executable::new(net, &current, &autodiff).train();
    let (mut last_loss, mut images, started) = (f64::NAN, 0usize, Instant::now());
    for epoch in start_epoch..config.epochs {
        let mut rng = epoch_rng(config.seed, epoch);
        let mut order: Vec<usize> = (0..train_split.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen, epoch_start) = (0.0f64, 0usize, 0usize, Instant::now());
        for step in 0..steps_per_epoch {
            let positions = &order[step * batch_size..(step + 1) * batch_size];
            let batch = batcher.batch(&train_split, positions, Some(&mut rng), &autodiff)?;
            let logits = exec.forward_with(batch.images.clone(), NormMode::Train { momentum: 0.1 });
            let teacher = distill.map(|d| (d.teacher.forward(batch.images.clone().inner()), d.temperature, d.alpha));
            let loss = loss::objective(logits.clone(), batch.labels, config.label_smoothing, teacher);
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch: epoch + 1,
                    step: step + 1,
                    loss: value,
                });
            }
            let grads = loss.backward();
            let lr = learning_rate(config, epoch * steps_per_epoch + step, steps_per_epoch);
            exec = exec.map(&mut sgd.step(&grads, lr));
            correct += loss::correct(logits.inner(), &batch.classes);
            seen += positions.len();
            loss_sum += value as f64 * positions.len() as f64;
            let report = StepReport {
                epoch: epoch + 1,
                step: step + 1,
                steps_per_epoch,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                images_per_sec: seen as f64 / epoch_start.elapsed().as_secs_f64(),
            };
            if on_step(&report).is_break() {
                return Err(TrainError::Interrupted { epoch: epoch + 1 });
            }
        }
        images += seen;
        last_loss = loss_sum / seen as f64;
        if let Some(ck) = checkpoint {
            save_checkpoint(&ck.path, net, &exec.weights(), &sgd, epoch + 1, config)?;
        }
    }
    let weights = exec.weights();
    let eval = Executable::new(net, &weights, device);
    let heldout_accuracy = if heldout.is_empty() {
        f64::NAN
    } else {
        evaluate(&eval, &heldout, &batcher, 256, data.num_classes, device)?.top1
    };
    let images_per_sec = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(TrainSummary {
        epochs: config.epochs,
        train_loss: last_loss,
        heldout_accuracy,
        images_per_sec,
        weights,
    })
}

/// Settings that must match for a checkpoint to be resumed (the epoch count may grow):
/// the network's fingerprint and the training settings.
fn fingerprint(net: &Network, config: &TrainConfig) -> String {
    let mut c = config.clone();
    c.epochs = 0;
    format!(
        "network {} {}",
        crate::spec::fingerprint(net),
        serde_json::to_string(&c).expect("a config serialises")
    )
}

fn save_checkpoint(path: &Path, net: &Network, weights: &Weights, sgd: &Sgd, epoch: usize, config: &TrainConfig) -> Result<(), TrainError> {
    let mut all = weights.clone();
    all.tensors.extend(sgd.state());
    let metadata = HashMap::from([
        ("epoch".to_string(), epoch.to_string()),
        ("config".to_string(), fingerprint(net, config)),
    ]);
    Ok(weights::save_with_metadata(&all, Some(metadata), path)?)
}

fn load_checkpoint(
    path: &Path,
    net: &Network,
    config: &TrainConfig,
    weights: &mut Weights,
    sgd: &mut Sgd,
    device: &Device,
) -> Result<usize, TrainError> {
    let file = path.display().to_string();
    let fail = |message: String| TrainError::Checkpoint {
        file: file.clone(),
        message,
    };
    let (mut all, metadata) = weights::load_with_metadata(path)?;
    let epoch: usize = metadata
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| fail("not a sacp checkpoint (no epoch in its metadata)".into()))?;
    if metadata.get("config") != Some(&fingerprint(net, config)) {
        return Err(fail(format!(
            "written for another network or with other training settings ({}); resume with the same network and settings, or start afresh",
            metadata.get("config").cloned().unwrap_or_default()
        )));
    }
    let momentum: Vec<(usize, WeightTensor)> = all
        .tensors
        .iter()
        .filter_map(|(name, t)| {
            name.strip_prefix("optimizer.momentum.")
                .and_then(|s| s.parse().ok())
                .map(|slot| (slot, t.clone()))
        })
        .collect();
    all.tensors.retain(|name, _| !name.starts_with("optimizer."));
    all.check(net, &file)?;
    sgd.restore(&momentum, device);
    *weights = all;
    Ok(epoch.min(config.epochs))
}

/// Positions `0..split.len()` in batches of `size` (the last may be smaller).
pub(crate) fn batches(split: &Split, size: usize) -> impl Iterator<Item = Vec<usize>> + '_ {
    let size = size.max(1);
    (0..split.len().div_ceil(size)).map(move |b| (b * size..((b + 1) * size).min(split.len())).collect())
}
