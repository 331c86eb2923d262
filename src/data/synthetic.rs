//! A synthetic, learnable image set for tests: each class is a random template, each image
//! its class's template blended with noise.

use super::InMemory;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// `count` training and `count / 4` test images of `shape` in `classes` classes.
pub(super) fn generate(shape: [usize; 3], classes: usize, count: usize, seed: u64) -> (InMemory, InMemory) {
    let mut rng = StdRng::seed_from_u64(seed);
    let size: usize = shape.iter().product();
    let templates: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..size).map(|_| rng.random_range(0.0..255.0)).collect())
        .collect();
    let mut make = |n: usize| {
        let mut images = Vec::with_capacity(n * size);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = i % classes;
            images.extend(
                templates[label]
                    .iter()
                    .map(|&t| (0.6 * t + 0.4 * rng.random_range(0.0..255.0f32)) as u8),
            );
            labels.push(label as u16);
        }
        InMemory::new(shape, images, labels)
    };
    let train = make(count);
    let test = make(count / 4);
    (train, test)
}
