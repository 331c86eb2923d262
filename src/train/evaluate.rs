//! Evaluation and BatchNorm recalibration.

use super::batches;
use crate::data::{Batcher, DataError, Split};
use crate::exec::{Executable, NormMode, to_vec};
use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Accuracy of a network on a split.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// Top-1 accuracy in `[0, 1]`.
    pub top1: f64,
    /// Top-5 accuracy in `[0, 1]` (top-k with k = classes when there are fewer than 5).
    pub top5: f64,
    /// Top-1 accuracy of each class (NaN for a class with no image in the split).
    pub per_class: Vec<f64>,
    /// Images evaluated.
    pub images: usize,
    /// Images whose logits held a NaN or an infinity (each counted as wrong).
    pub non_finite: usize,
}

/// Where the true class ranks in one row of logits: the number of classes ahead of it,
/// or `None` when any logit is NaN or infinite (such a prediction is never correct).
/// Classes ahead are those scoring strictly higher, and those scoring the same with a
/// lower index: ties go to the lowest class index, as `argmax` picks the first maximum.
pub fn rank_of_true_class(row: &[f32], class: usize) -> Option<usize> {
    if row.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mine = row[class];
    Some(
        row.iter()
            .enumerate()
            .filter(|&(i, &v)| v > mine || (v == mine && i < class))
            .count(),
    )
}

/// Evaluates `exec` (eval-mode BatchNorm) on every image of `split`. An image counts as
/// correct (top-1) when all its logits are finite and its class is the strict argmax, ties
/// going to the lowest class index (see [`rank_of_true_class`]).
pub fn evaluate(
    exec: &Executable,
    split: &Split,
    batcher: &Batcher,
    batch_size: usize,
    num_classes: usize,
    device: &Device,
) -> Result<Evaluation, DataError> {
    let (mut top1, mut top5, mut non_finite) = (0usize, 0usize, 0usize);
    let mut per_class = vec![(0usize, 0usize); num_classes];
    let k = num_classes.min(5);
    for positions in batches(split, batch_size) {
        let batch = batcher.batch(split, &positions, None, device)?;
        let logits = to_vec(exec.forward(batch.images));
        for (row, &class) in logits.chunks_exact(num_classes).zip(&batch.classes) {
            let rank = rank_of_true_class(row, class);
            non_finite += usize::from(rank.is_none());
            top1 += usize::from(rank == Some(0));
            top5 += usize::from(rank.is_some_and(|r| r < k));
            per_class[class].0 += usize::from(rank == Some(0));
            per_class[class].1 += 1;
        }
    }
    let n = split.len().max(1) as f64;
    Ok(Evaluation {
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        per_class: per_class
            .iter()
            .map(|&(right, all)| if all == 0 { f64::NAN } else { right as f64 / all as f64 })
            .collect(),
        images: split.len(),
        non_finite,
    })
}

/// The images [`recalibrate`] feeds: `count` batches of `split` in a seeded order, wrapping
/// around a split smaller than `count · batch_size`.
pub fn recalibration_batches(
    split: &Split,
    batcher: &Batcher,
    count: usize,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<Tensor<4>>, DataError> {
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let batch_size = batch_size.min(order.len()).max(1);
    (0..count)
        .map(|k| {
            let start = (k * batch_size) % order.len();
            let positions: Vec<usize> = (0..batch_size).map(|i| order[(start + i) % order.len()]).collect();
            Ok(batcher.batch(split, &positions, None, device)?.images)
        })
        .collect()
}

/// EagleEye's adaptive BatchNorm: re-estimates every BatchNorm layer's running mean and
/// variance as the average over `batches` (see [`recalibration_batches`]), in train mode,
/// without touching any weight. This is what makes a freshly pruned network's accuracy say
/// something about its accuracy after fine-tuning.
pub fn recalibrate(exec: &Executable, batches: &[Tensor<4>]) {
    for (k, images) in batches.iter().enumerate() {
        // Momentum 1/(k+1) turns the running statistics into the mean over batches so far.
        exec.forward_with(
            images.clone(),
            NormMode::Train {
                momentum: 1.0 / (k + 1) as f64,
            },
        );
    }
}

/// A split's images and labels uploaded once, in batches, to be scored many times.
pub struct ResidentSplit {
    batches: Vec<(Tensor<4>, Tensor<1, Int>)>,
    images: usize,
}

impl ResidentSplit {
    /// Decodes and uploads every image of `split` to `device`, in batches of `batch_size`.
    pub fn upload(split: &Split, batcher: &Batcher, batch_size: usize, device: &Device) -> Result<Self, DataError> {
        let batches = batches(split, batch_size)
            .map(|positions| {
                let batch = batcher.batch(split, &positions, None, device)?;
                Ok((batch.images, batch.labels))
            })
            .collect::<Result<_, DataError>>()?;
        Ok(ResidentSplit {
            batches,
            images: split.len(),
        })
    }
}

/// Top-1 counts of one pass over a resident split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Top1 {
    /// Images whose logits were all finite and whose class was the argmax.
    pub correct: usize,
    /// Images whose logits held a NaN or an infinity.
    pub non_finite: usize,
    /// Images scored.
    pub images: usize,
}

/// Top-1 of `exec` (eval-mode BatchNorm) on a resident split, counted on the device: the
/// same rule as [`evaluate`] (finite logits, ties to the lowest class index); two numbers
/// come back to the host, once.
pub fn top1_on_device(exec: &Executable, split: &ResidentSplit) -> Top1 {
    let mut totals: Option<Tensor<1, Int>> = None;
    for (images, labels) in &split.batches {
        let logits = exec.forward(images.clone());
        let [n, classes] = logits.dims();
        let device = logits.device();
        let labels = labels.clone().reshape([n, 1]);
        let mine = logits.clone().gather(1, labels.clone());
        let index = Tensor::<1, Int>::arange(0..classes as i64, &device).reshape([1, classes]);
        // Classes ahead of the true one: a higher logit, or the same logit at a lower index.
        let ahead = logits
            .clone()
            .greater(mine.clone())
            .int()
            .add(logits.clone().equal(mine).int().mul(index.lower(labels).int()))
            .sum_dim(1);
        let broken = logits.clone().is_nan().int().add(logits.is_inf().int()).sum_dim(1).greater_elem(0);
        let correct = ahead.equal_elem(0).int().mul(broken.clone().bool_not().int()).sum();
        let counts = Tensor::cat(vec![correct, broken.int().sum()], 0);
        totals = Some(match totals {
            Some(t) => t + counts,
            None => counts,
        });
    }
    let counts: Vec<i64> = totals.map_or(vec![0, 0], |t| {
        t.into_data().convert::<i64>().try_into_vec::<i64>().expect("two counts")
    });
    Top1 {
        correct: counts[0] as usize,
        non_finite: counts[1] as usize,
        images: split.images,
    }
}
