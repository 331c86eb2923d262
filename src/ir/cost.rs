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

/// Largest parameter or MAC count one layer, or a whole network, may have (2⁵⁰): counts
/// are checked against it when a network is built, so sums of them never overflow.
pub const MAX_COUNT: u64 = 1 << 50;

/// The cost of one layer given its operation, input shapes and output shape (for a network
/// whose costs were checked when it was built).
pub fn node_cost(op: &Op, inputs: &[Shape], output: Shape) -> Cost {
    checked_node_cost(op, inputs, output).expect("layer costs are checked when a network is built")
}

/// The cost of one layer, or `None` when a count overflows or exceeds [`MAX_COUNT`].
pub fn checked_node_cost(op: &Op, inputs: &[Shape], output: Shape) -> Option<Cost> {
    let n = |v: usize| u64::try_from(v).ok();
    let cost = match op {
        Op::Conv2d {
            out_channels,
            kernel,
            groups,
            bias,
            ..
        } => {
            let in_per_group = n(inputs[0].channels() / groups)?;
            let weights = n(*out_channels)?
                .checked_mul(in_per_group)?
                .checked_mul(n(kernel[0])?.checked_mul(n(kernel[1])?)?)?;
            let bias = if *bias { n(*out_channels)? } else { 0 };
            Cost {
                params: weights.checked_add(bias)?,
                macs: weights.checked_mul(n(output.spatial())?)?,
            }
        }
        Op::Linear { out_features, bias } => {
            let weights = n(*out_features)?.checked_mul(n(inputs[0].channels())?)?;
            let bias = if *bias { n(*out_features)? } else { 0 };
            Cost {
                params: weights.checked_add(bias)?,
                macs: weights,
            }
        }
        Op::BatchNorm { .. } => Cost {
            params: 2 * n(output.channels())?,
            macs: 0,
        },
        _ => Cost::default(),
    };
    (cost.params <= MAX_COUNT && cost.macs <= MAX_COUNT).then_some(cost)
}
