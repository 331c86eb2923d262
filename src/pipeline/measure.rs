//! Measuring a network where it runs: forward latency on the search's device.

use crate::exec::{Executable, to_vec};
use crate::ir::Network;
use crate::weights::Weights;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// Median of five timed forward passes of a random batch (after one warm-up pass).
pub fn latency_ms(net: &Network, weights: &Weights, batch: usize, device: &Device) -> f64 {
    let exec = Executable::new(net, weights, device);
    let dims = net.shape(net.input()).dims();
    let x = Tensor::<4>::random([batch, dims[0], dims[1], dims[2]], Distribution::Normal(0.0, 1.0), device);
    to_vec(exec.forward(x.clone()));
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            to_vec(exec.forward(x.clone()));
            1e3 * t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}
