//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sacp::deps::Dependencies;
use sacp::ir::Network;
use sacp::models::{ZooConfig, build};
use sacp::weights::{self, Weights};
use std::path::Path;

/// A zoo network from its spec under `models/`, optionally with a smaller input.
pub fn zoo(file: &str, input: Option<[usize; 3]>) -> Network {
    let spec = sacp::spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file)).unwrap();
    match input {
        None => spec.network,
        Some(input) => build(&ZooConfig {
            input,
            ..spec.zoo.unwrap()
        })
        .unwrap(),
    }
}

/// Random weights whose BatchNorm statistics and affine terms are random too, so that a
/// wrongly placed channel shows in the output.
pub fn random_weights(net: &Network, seed: u64) -> Weights {
    let mut w = weights::initialise(net, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for (name, t) in w.tensors.iter_mut() {
        let range = if name.ends_with(".running_var") || (name.ends_with(".weight") && t.shape.len() == 1) {
            0.5..1.5
        } else if t.shape.len() == 1 {
            -0.5..0.5
        } else {
            continue;
        };
        t.data.iter_mut().for_each(|v| *v = rng.random_range(range.clone()));
    }
    w
}

/// A random keep-set: each prunable group keeps a random non-empty subset.
pub fn random_keep(deps: &Dependencies, rng: &mut StdRng) -> Vec<Vec<usize>> {
    deps.groups
        .iter()
        .map(|g| {
            if !g.prunable() {
                return (0..g.size()).collect();
            }
            let count = rng.random_range(1..=g.size());
            let mut all: Vec<usize> = (0..g.size()).collect();
            for i in 0..count {
                let j = rng.random_range(i..g.size());
                all.swap(i, j);
            }
            let mut keep = all[..count].to_vec();
            keep.sort_unstable();
            keep
        })
        .collect()
}

/// Deterministic pseudo-random input images `[batch, C, H, W]` as a flat vector.
pub fn random_input(net: &Network, batch: usize, seed: u64) -> (Vec<f32>, [usize; 4]) {
    let dims = net.shape(net.input()).dims();
    let shape = [batch, dims[0], dims[1], dims[2]];
    let mut rng = StdRng::seed_from_u64(seed);
    ((0..shape.iter().product()).map(|_| rng.random_range(-1.0..1.0)).collect(), shape)
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
