//! MobileNetV2 (Sandler et al. 2018), laid out as torchvision's `mobilenet_v2`.

use super::layers::{ConvSpec, Layers};
use super::{ZooConfig, ZooError};
use crate::ir::{Network, Op};
use petgraph::graph::NodeIndex;

/// Inverted-residual settings: expansion t, output channels c, repeats n, first stride s.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn conv_bn_relu6(l: &mut Layers, x: NodeIndex, prefix: &str, spec: ConvSpec) -> Result<NodeIndex, ZooError> {
    let c = l.conv_bn(x, [&format!("{prefix}.0"), &format!("{prefix}.1")], spec)?;
    Ok(l.op(&format!("{prefix}.2"), Op::Relu6, &[c])?)
}

pub(super) fn build(config: &ZooConfig) -> Result<Network, ZooError> {
    let (mut l, x) = Layers::new(config.input)?;
    let mut x = conv_bn_relu6(&mut l, x, "features.0", ConvSpec::new(32, 3, 2))?;
    let mut channels = 32;
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        for repeat in 0..n {
            let stride = if repeat == 0 { s } else { 1 };
            let p = format!("features.{index}.conv");
            let hidden = channels * t;
            let mut y = x;
            let mut part = 0;
            if t != 1 {
                y = conv_bn_relu6(&mut l, y, &format!("{p}.{part}"), ConvSpec::new(hidden, 1, 1))?;
                part += 1;
            }
            let depthwise = ConvSpec {
                groups: hidden,
                ..ConvSpec::new(hidden, 3, stride)
            };
            y = conv_bn_relu6(&mut l, y, &format!("{p}.{part}"), depthwise)?;
            y = l.conv_bn(
                y,
                [&format!("{p}.{}", part + 1), &format!("{p}.{}", part + 2)],
                ConvSpec::new(c, 1, 1),
            )?;
            x = if stride == 1 && channels == c {
                l.op(&format!("features.{index}.add"), Op::Add, &[x, y])?
            } else {
                y
            };
            channels = c;
            index += 1;
        }
    }
    x = conv_bn_relu6(&mut l, x, &format!("features.{index}"), ConvSpec::new(1280, 1, 1))?;
    let g = l.op("avgpool", Op::GlobalAvgPool, &[x])?;
    let f = l.op("flatten", Op::Flatten, &[g])?;
    let fc = l.op(
        "classifier.1",
        Op::Linear {
            out_features: config.num_classes,
            bias: true,
        },
        &[f],
    )?;
    Ok(l.finish(fc)?)
}
