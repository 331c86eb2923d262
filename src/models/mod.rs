//! The model zoo: builders for the networks the pruning literature reports on.
//!
//! Names follow torchvision / the CIFAR reference code (`layer1.0.conv1`, `bn1`, `fc`), so
//! weights exported from PyTorch map onto them by name.

mod layers;
mod mobilenet;
mod resnet;
mod vgg;

use crate::ir::{IrError, Network};

/// Errors raised when a zoo entry is asked for with settings it does not have.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    /// The architecture name is not in the zoo.
    #[error("unknown arch `{0}`; valid: vgg, resnet, mobilenet_v2, graph")]
    UnknownArch(String),
    /// The depth is not one the architecture defines.
    #[error("{arch} has no depth {depth}; valid: {valid}")]
    Depth {
        /// Architecture name.
        arch: &'static str,
        /// The depth asked for.
        depth: usize,
        /// The depths that exist, in words.
        valid: &'static str,
    },
    /// The built network does not fit the requested input.
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// What a zoo entry is built from: the fields of a model spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ZooConfig {
    /// `vgg`, `resnet` or `mobilenet_v2`.
    pub arch: String,
    /// Depth for VGG (8, 11, 13, 16, 19) and ResNet (20, 32, 44, 56, 110 CIFAR-style;
    /// 18, 34, 50, 101, 152 ImageNet-style); ignored by MobileNetV2.
    pub depth: Option<usize>,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
}

/// Builds a zoo network.
pub fn build(config: &ZooConfig) -> Result<Network, ZooError> {
    match config.arch.as_str() {
        "vgg" => vgg::build(config),
        "resnet" => resnet::build(config),
        "mobilenet_v2" => mobilenet::build(config),
        other => Err(ZooError::UnknownArch(other.to_string())),
    }
}

/// The architectures `build` accepts.
pub const ARCHS: &[&str] = &["vgg", "resnet", "mobilenet_v2"];
