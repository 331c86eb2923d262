//! Seeded random initialisation.

use super::{WeightTensor, Weights, expected_tensors};
use crate::ir::{Network, Op};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Random weights for a network: conv kernels He-normal (`std = √(2 / fan_in)`), linear
/// weights and all biases PyTorch's default uniform `±1/√fan_in`, BatchNorm `γ = 1, β = 0,
/// μ = 0, σ² = 1`. The same seed gives the same weights.
pub fn initialise(net: &Network, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut weights = Weights::default();
    for node in net.nodes() {
        let tensors = expected_tensors(net, node);
        let fan_in = tensors
            .first()
            .map_or(1, |(_, shape)| shape.iter().skip(1).product::<usize>().max(1)) as f32;
        let is_conv = matches!(net.node(node).op, Op::Conv2d { .. });
        let is_bn = matches!(net.node(node).op, Op::BatchNorm { .. });
        for (name, shape) in tensors {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if is_bn {
                let one = name.ends_with(".weight") || name.ends_with(".running_var");
                vec![if one { 1.0 } else { 0.0 }; n]
            } else if is_conv && name.ends_with(".weight") {
                let normal = Normal::new(0.0, (2.0 / fan_in).sqrt()).expect("a positive standard deviation");
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            } else {
                let bound = 1.0 / fan_in.sqrt();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            };
            weights.tensors.insert(name, WeightTensor { shape, data });
        }
    }
    weights
}
