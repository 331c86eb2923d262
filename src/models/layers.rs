//! Shorthands for appending common layer patterns to a network builder.

use crate::ir::{IrError, NetworkBuilder, Op};
use petgraph::graph::NodeIndex;

/// A builder with the layer patterns the zoo uses.
pub(super) struct Layers {
    pub builder: NetworkBuilder,
}

/// Settings of a convolution.
#[derive(Clone, Copy)]
pub(super) struct ConvSpec {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A bias-free dense `k×k` conv with "same" padding.
    pub fn new(out: usize, kernel: usize, stride: usize) -> Self {
        ConvSpec {
            out,
            kernel,
            stride,
            groups: 1,
            bias: false,
        }
    }
}

impl Layers {
    pub fn new(input: [usize; 3]) -> Result<(Self, NodeIndex), IrError> {
        let mut builder = NetworkBuilder::new();
        let x = builder.add(
            "input",
            Op::Input {
                channels: input[0],
                height: input[1],
                width: input[2],
            },
            &[],
        )?;
        Ok((Layers { builder }, x))
    }

    pub fn op(&mut self, name: &str, op: Op, inputs: &[NodeIndex]) -> Result<NodeIndex, IrError> {
        self.builder.add(name, op, inputs)
    }

    pub fn conv(&mut self, name: &str, x: NodeIndex, spec: ConvSpec) -> Result<NodeIndex, IrError> {
        let (k, s) = (spec.kernel, spec.stride);
        let op = Op::Conv2d {
            out_channels: spec.out,
            kernel: [k, k],
            stride: [s, s],
            padding: [k / 2, k / 2],
            groups: spec.groups,
            bias: spec.bias,
        };
        self.op(name, op, &[x])
    }

    pub fn bn(&mut self, name: &str, x: NodeIndex) -> Result<NodeIndex, IrError> {
        self.op(name, Op::BatchNorm { eps: 1e-5 }, &[x])
    }

    pub fn relu(&mut self, name: &str, x: NodeIndex) -> Result<NodeIndex, IrError> {
        self.op(name, Op::Relu, &[x])
    }

    /// conv → BN, named `names[0]` and `names[1]`.
    pub fn conv_bn(&mut self, x: NodeIndex, names: [&str; 2], spec: ConvSpec) -> Result<NodeIndex, IrError> {
        let c = self.conv(names[0], x, spec)?;
        self.bn(names[1], c)
    }

    pub fn max_pool(&mut self, name: &str, x: NodeIndex, kernel: usize, stride: usize, padding: usize) -> Result<NodeIndex, IrError> {
        self.op(
            name,
            Op::MaxPool2d {
                kernel: [kernel; 2],
                stride: [stride; 2],
                padding: [padding; 4],
                ceil_mode: false,
            },
            &[x],
        )
    }

    /// Global average pool → flatten → linear classifier → output.
    pub fn classifier(mut self, x: NodeIndex, num_classes: usize) -> Result<crate::ir::Network, IrError> {
        let g = self.op("avgpool", Op::GlobalAvgPool, &[x])?;
        let f = self.op("flatten", Op::Flatten, &[g])?;
        let fc = self.op(
            "fc",
            Op::Linear {
                out_features: num_classes,
                bias: true,
            },
            &[f],
        )?;
        self.finish(fc)
    }

    pub fn finish(mut self, x: NodeIndex) -> Result<crate::ir::Network, IrError> {
        self.op("output", Op::Output, &[x])?;
        self.builder.finish()
    }
}
