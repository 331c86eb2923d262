//! Parameter and multiply-accumulate counts.

use super::{Op, Shape};

/// Learnable parameters and multiply-accumulates of a layer or network (one sample).
/// MACs are counted for conv and linear layers only, as the pruning literature does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    /// Learnable parameters (BatchNorm's running statistics are buffers, not parameters).
    pub params: u64,
    /// Multiply-accumulate operations for one sample.
    pub macs: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            params: self.params + other.params,
            macs: self.macs + other.macs,
        }
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), |a, b| a + b)
    }
}

/// The cost of one layer given its operation, input shapes and output shape.
pub fn node_cost(op: &Op, inputs: &[Shape], output: Shape) -> Cost {
    match op {
        Op::Conv2d {
            out_channels,
            kernel,
            groups,
            bias,
            ..
        } => {
            let in_per_group = (inputs[0].channels() / groups) as u64;
            let weights = *out_channels as u64 * in_per_group * (kernel[0] * kernel[1]) as u64;
            let bias = if *bias { *out_channels as u64 } else { 0 };
            Cost {
                params: weights + bias,
                macs: weights * output.spatial() as u64,
            }
        }
        Op::Linear { out_features, bias } => {
            let weights = (*out_features * inputs[0].channels()) as u64;
            let bias = if *bias { *out_features as u64 } else { 0 };
            Cost {
                params: weights + bias,
                macs: weights,
            }
        }
        Op::BatchNorm { .. } => Cost {
            params: 2 * output.channels() as u64,
            macs: 0,
        },
        _ => Cost::default(),
    }
}
