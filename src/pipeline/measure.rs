//! Measuring a network where it runs: forward latency on the search's device.

use crate::exec::Executable;
use crate::ir::Network;
use crate::weights::Weights;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// Timed passes at least, and at most.
const RUNS: (usize, usize) = (10, 200);
/// Time spent on timed passes at least (short layers are run more often), milliseconds.
const MIN_TOTAL_MS: f64 = 200.0;

/// Median forward latency of one random batch, milliseconds: one warm-up pass, then at
/// least ten timed passes (more for a fast network, until 200 ms are spent), each ended by
/// a device sync.
pub fn latency_ms(net: &Network, weights: &Weights, batch: usize, device: &Device) -> f64 {
    let exec = Executable::new(net, weights, device);
    let dims = net.shape(net.input()).dims();
    let x = Tensor::<4>::random([batch, dims[0], dims[1], dims[2]], Distribution::Normal(0.0, 1.0), device);
    let pass = || {
        let t = Instant::now();
        let y = exec.forward(x.clone());
        device.sync().expect("the device runs the forward pass");
        drop(y);
        1e3 * t.elapsed().as_secs_f64()
    };
    pass();
    let mut times: Vec<f64> = Vec::new();
    while times.len() < RUNS.0 || (times.len() < RUNS.1 && times.iter().sum::<f64>() < MIN_TOTAL_MS) {
        times.push(pass());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
