//! Batching: bytes → normalised f32 tensors on a device, with seeded augmentation.

use super::{DataError, Split};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::RngExt;
use rand::rngs::StdRng;
use rayon::prelude::*;

/// Training augmentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Random crop after zero-padding each side by this many pixels (0: no crop).
    pub crop_padding: usize,
    /// Random horizontal flip.
    pub flip: bool,
}

/// A batch on a device.
pub struct Batch {
    /// `[batch, C, H, W]` normalised images.
    pub images: Tensor<4>,
    /// `[batch]` class indices.
    pub labels: Tensor<1, Int>,
    /// The same labels on the host.
    pub classes: Vec<usize>,
}

/// Turns images of a split into normalised batches.
#[derive(Clone, Debug)]
pub struct Batcher {
    mean: Vec<f32>,
    std: Vec<f32>,
    augment: Augment,
}

/// Per-image augmentation drawn before decoding, so results do not depend on threads.
#[derive(Clone, Copy)]
struct Draw {
    dy: i64,
    dx: i64,
    flip: bool,
}

impl Batcher {
    /// A batcher with this normalisation and augmentation.
    pub fn new(mean: Vec<f32>, std: Vec<f32>, augment: Augment) -> Self {
        Batcher { mean, std, augment }
    }

    /// Loads `positions` (indices into `split.indices`); augments when `rng` is given.
    /// Images are decoded in parallel.
    pub fn batch(&self, split: &Split, positions: &[usize], rng: Option<&mut StdRng>, device: &Device) -> Result<Batch, DataError> {
        let [c, h, w] = split.source.shape();
        let size = c * h * w;
        let draws: Vec<Draw> = match rng {
            Some(rng) => {
                let p = self.augment.crop_padding as i64;
                positions
                    .iter()
                    .map(|_| Draw {
                        dy: if p > 0 { rng.random_range(-p..=p) } else { 0 },
                        dx: if p > 0 { rng.random_range(-p..=p) } else { 0 },
                        flip: self.augment.flip && rng.random::<bool>(),
                    })
                    .collect()
            }
            None => vec![Draw { dy: 0, dx: 0, flip: false }; positions.len()],
        };
        let mut data = vec![0f32; positions.len() * size];
        data.par_chunks_mut(size)
            .zip(positions.par_iter().zip(draws.par_iter()))
            .try_for_each(|(out, (&pos, draw))| {
                let mut bytes = vec![0u8; size];
                split.source.pixels(split.indices[pos], &mut bytes)?;
                for ch in 0..c {
                    let (mean, std) = (self.mean[ch], self.std[ch]);
                    for y in 0..h {
                        for x in 0..w {
                            let sy = y as i64 + draw.dy;
                            let sx = if draw.flip { (w - 1 - x) as i64 } else { x as i64 } + draw.dx;
                            let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                            let v = if inside {
                                bytes[ch * h * w + sy as usize * w + sx as usize] as f32 / 255.0
                            } else {
                                0.0
                            };
                            out[ch * h * w + y * w + x] = (v - mean) / std;
                        }
                    }
                }
                Ok::<(), DataError>(())
            })?;
        let classes: Vec<usize> = positions.iter().map(|&p| split.source.label(split.indices[p])).collect();
        let images = Tensor::from_data(TensorData::new(data, [positions.len(), c, h, w]), device);
        let labels = Tensor::from_data(
            TensorData::new(classes.iter().map(|&l| l as i64).collect::<Vec<_>>(), [positions.len()]),
            device,
        );
        Ok(Batch { images, labels, classes })
    }
}
