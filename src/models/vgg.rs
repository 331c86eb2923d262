//! VGG with BatchNorm: the CIFAR variant of HRank's code (13 convs, `512→512→BN→ReLU→classes`
//! head), the ImageNet variant (torchvision's `vgg*_bn`), and a small 8-layer net for
//! 28×28 grayscale images.

use super::layers::{ConvSpec, Layers};
use super::{ZooConfig, ZooError};
use crate::ir::{Network, Op};

const M: usize = 0;

fn features(depth: usize) -> Result<&'static [usize], ZooError> {
    Ok(match depth {
        8 => &[32, 32, M, 64, 64, M, 128, 128, M],
        11 => &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
        13 => &[64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
        16 => &[64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
        19 => &[
            64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M,
        ],
        depth => {
            return Err(ZooError::Depth {
                arch: "vgg",
                depth,
                valid: "8, 11, 13, 16, 19",
            });
        }
    })
}

pub(super) fn build(config: &ZooConfig) -> Result<Network, ZooError> {
    let depth = config.depth.unwrap_or(16);
    let cfg = features(depth)?;
    let (mut l, mut x) = Layers::new(config.input)?;
    let (mut conv, mut pool) = (0, 0);
    for &width in cfg {
        if width == M {
            pool += 1;
            x = l.max_pool(&format!("features.pool{pool}"), x, 2, 2, 0)?;
        } else {
            conv += 1;
            let spec = ConvSpec {
                bias: true,
                ..ConvSpec::new(width, 3, 1)
            };
            x = l.conv_bn(x, [&format!("features.conv{conv}"), &format!("features.bn{conv}")], spec)?;
            x = l.relu(&format!("features.relu{conv}"), x)?;
        }
    }
    x = l.op("flatten", Op::Flatten, &[x])?;
    let linear = |out| Op::Linear {
        out_features: out,
        bias: true,
    };
    let imagenet = config.input[1] >= 64 && depth != 8;
    let hidden = match depth {
        8 => 256,
        _ if imagenet => 4096,
        _ => 512,
    };
    x = l.op("classifier.linear1", linear(hidden), &[x])?;
    if imagenet {
        x = l.relu("classifier.relu1", x)?;
        x = l.op("classifier.linear2", linear(hidden), &[x])?;
        x = l.relu("classifier.relu2", x)?;
    } else {
        x = l.bn("classifier.norm1", x)?;
        x = l.relu("classifier.relu1", x)?;
    }
    x = l.op("classifier.fc", linear(config.num_classes), &[x])?;
    Ok(l.finish(x)?)
}
