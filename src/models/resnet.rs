//! ResNets: the CIFAR family (He et al. 2016, §4.2) with "option A" zero-pad shortcuts as in
//! the widely used reference code, and torchvision's ImageNet ResNet-18/34/50/101/152
//! (stride on the 3×3 conv of bottlenecks, "v1.5").

use super::layers::{ConvSpec, Layers};
use super::{ZooConfig, ZooError};
use crate::ir::{Network, Op};
use petgraph::graph::NodeIndex;

pub(super) fn build(config: &ZooConfig) -> Result<Network, ZooError> {
    let depth = config.depth.unwrap_or(56);
    match depth {
        20 | 32 | 44 | 56 | 110 => cifar(config, (depth - 2) / 6),
        18 => imagenet(config, [2, 2, 2, 2], false),
        34 => imagenet(config, [3, 4, 6, 3], false),
        50 => imagenet(config, [3, 4, 6, 3], true),
        101 => imagenet(config, [3, 4, 23, 3], true),
        152 => imagenet(config, [3, 8, 36, 3], true),
        depth => Err(ZooError::Depth {
            arch: "resnet",
            depth,
            valid: "20, 32, 44, 56, 110 (CIFAR); 18, 34, 50, 101, 152 (ImageNet)",
        }),
    }
}

fn cifar(config: &ZooConfig, blocks: usize) -> Result<Network, ZooError> {
    let (mut l, x) = Layers::new(config.input)?;
    let x = l.conv_bn(x, ["conv1", "bn1"], ConvSpec::new(16, 3, 1))?;
    let mut x = l.relu("relu", x)?;
    let mut channels = 16;
    for (stage, width) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..blocks {
            let p = format!("layer{}.{block}", stage + 1);
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let y = l.conv_bn(x, [&format!("{p}.conv1"), &format!("{p}.bn1")], ConvSpec::new(width, 3, stride))?;
            let y = l.relu(&format!("{p}.relu1"), y)?;
            let y = l.conv_bn(y, [&format!("{p}.conv2"), &format!("{p}.bn2")], ConvSpec::new(width, 3, 1))?;
            let shortcut = if width != channels {
                let pad = (width - channels) / 2;
                l.op(
                    &format!("{p}.shortcut"),
                    Op::ZeroPad {
                        before: pad,
                        after: width - channels - pad,
                        stride,
                    },
                    &[x],
                )?
            } else {
                x
            };
            let sum = l.op(&format!("{p}.add"), Op::Add, &[y, shortcut])?;
            x = l.relu(&format!("{p}.relu2"), sum)?;
            channels = width;
        }
    }
    Ok(l.classifier(x, config.num_classes)?)
}

fn imagenet(config: &ZooConfig, blocks: [usize; 4], bottleneck: bool) -> Result<Network, ZooError> {
    let (mut l, x) = Layers::new(config.input)?;
    let x = l.conv_bn(x, ["conv1", "bn1"], ConvSpec::new(64, 7, 2))?;
    let x = l.relu("relu", x)?;
    let mut x = l.max_pool("maxpool", x, 3, 2, 1)?;
    let mut channels = 64;
    let expansion = if bottleneck { 4 } else { 1 };
    for (stage, (&count, width)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        for block in 0..count {
            let p = format!("layer{}.{block}", stage + 1);
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let out = width * expansion;
            let y = if bottleneck {
                bottleneck_branch(&mut l, x, &p, width, stride)?
            } else {
                basic_branch(&mut l, x, &p, width, stride)?
            };
            let shortcut = if stride != 1 || channels != out {
                let names = [format!("{p}.downsample.0"), format!("{p}.downsample.1")];
                l.conv_bn(x, [&names[0], &names[1]], ConvSpec::new(out, 1, stride))?
            } else {
                x
            };
            let sum = l.op(&format!("{p}.add"), Op::Add, &[y, shortcut])?;
            x = l.relu(&format!("{p}.relu"), sum)?;
            channels = out;
        }
    }
    Ok(l.classifier(x, config.num_classes)?)
}

fn basic_branch(l: &mut Layers, x: NodeIndex, p: &str, width: usize, stride: usize) -> Result<NodeIndex, ZooError> {
    let y = l.conv_bn(x, [&format!("{p}.conv1"), &format!("{p}.bn1")], ConvSpec::new(width, 3, stride))?;
    let y = l.relu(&format!("{p}.relu1"), y)?;
    Ok(l.conv_bn(y, [&format!("{p}.conv2"), &format!("{p}.bn2")], ConvSpec::new(width, 3, 1))?)
}

fn bottleneck_branch(l: &mut Layers, x: NodeIndex, p: &str, width: usize, stride: usize) -> Result<NodeIndex, ZooError> {
    let y = l.conv_bn(x, [&format!("{p}.conv1"), &format!("{p}.bn1")], ConvSpec::new(width, 1, 1))?;
    let y = l.relu(&format!("{p}.relu1"), y)?;
    let y = l.conv_bn(y, [&format!("{p}.conv2"), &format!("{p}.bn2")], ConvSpec::new(width, 3, stride))?;
    let y = l.relu(&format!("{p}.relu2"), y)?;
    Ok(l.conv_bn(y, [&format!("{p}.conv3"), &format!("{p}.bn3")], ConvSpec::new(width * 4, 1, 1))?)
}
