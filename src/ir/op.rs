//! The operations a layer can perform.

/// What one layer computes. Channel counts of a layer's *inputs* are not stored: they
/// follow from shape inference, so that pruning a producer needs no edit of its consumers
/// beyond their weights.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The network input: a `channels × height × width` image.
    Input {
        /// Input channels (3 for RGB, 1 for grayscale).
        channels: usize,
        /// Image height in pixels.
        height: usize,
        /// Image width in pixels.
        width: usize,
    },
    /// 2-D convolution, weight `[out, in / groups, kh, kw]`.
    Conv2d {
        /// Output channels.
        out_channels: usize,
        /// Kernel size `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
        /// Zero padding `[ph, pw]` on each side.
        padding: [usize; 2],
        /// Channel groups: 1 for a dense conv, `in = out = groups` for a depthwise one.
        groups: usize,
        /// Whether the conv has a bias vector.
        bias: bool,
    },
    /// Batch normalisation over channels (after a conv) or features (after a linear).
    BatchNorm {
        /// Added to the variance before the square root.
        eps: f64,
    },
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
    /// Max pooling.
    MaxPool2d {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
        /// Padding `[top, left, bottom, right]`, as ONNX orders it (padded cells never win).
        padding: [usize; 4],
        /// Output size rounded up rather than down (PyTorch's and ONNX's `ceil_mode`): a last,
        /// partial window is kept unless it would start in the end padding.
        ceil_mode: bool,
    },
    /// Average pooling.
    AvgPool2d {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
        /// Padding `[top, left, bottom, right]`.
        padding: [usize; 4],
        /// As for max pooling.
        ceil_mode: bool,
        /// Whether padded cells count in the divisor as zeros (PyTorch's default) or not
        /// (ONNX's default); cells past the padding, in a ceil-mode window, never count.
        count_include_pad: bool,
    },
    /// Local response normalisation across channels (AlexNet, GoogLeNet):
    /// `x / (k + alpha/size · Σ x²)^beta`, the sum over `size` neighbouring channels
    /// (`⌊(size−1)/2⌋` before, `⌈(size−1)/2⌉` after, as ONNX defines it).
    Lrn {
        /// Channels in the window.
        size: usize,
        /// Scale of the windowed sum of squares.
        alpha: f64,
        /// Exponent.
        beta: f64,
        /// Additive constant (PyTorch's `k`, ONNX's `bias`).
        k: f64,
    },
    /// Softmax over the channel (or feature) axis: a classifier's probabilities.
    Softmax,
    /// The logistic function `1 / (1 + e^−x)` (SiLU is `x · sigmoid(x)`: this and a `mul`).
    Sigmoid,
    /// `max(0, min(1, alpha·x + beta))` (PyTorch's hardsigmoid: alpha = 1/6, beta = 0.5).
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// `x · max(0, min(1, x/6 + 1/2))` (MobileNetV3).
    HardSwish,
    /// Element-wise product of two inputs with the same channels; a `C × 1 × 1` input is
    /// broadcast over the other's `H × W` (a squeeze-and-excitation gate).
    Mul,
    /// A reordering of channels: output channel `j` is input channel `order[j]`. ShuffleNet's
    /// channel shuffle (a view as `g × C/g`, transposed and flattened back) is the order
    /// `j ↦ (j mod g) · C/g + ⌊j/g⌋`; a pruned shuffle is the same order on the channels kept.
    Permute {
        /// For each output channel, the input channel it is.
        order: Vec<usize>,
    },
    /// The input channels `start..end` (a `split` or `chunk` along channels).
    Slice {
        /// First channel taken.
        start: usize,
        /// One past the last channel taken.
        end: usize,
    },
    /// Mean over the spatial axes: `C × H × W → C × 1 × 1`.
    GlobalAvgPool,
    /// Element-wise sum of two or more inputs of one shape.
    Add,
    /// Concatenation along the channel axis, inputs in slot order.
    Concat,
    /// The "option A" shortcut of the CIFAR ResNets: spatial subsampling by `stride`
    /// (`x[:, :, ::s, ::s]`) then `before` zero channels in front and `after` behind.
    ZeroPad {
        /// Zero channels placed before the input's channels.
        before: usize,
        /// Zero channels placed after the input's channels.
        after: usize,
        /// Spatial subsampling step.
        stride: usize,
    },
    /// `C × H × W → C·H·W` features (channel-major, as PyTorch's `flatten(1)`).
    Flatten,
    /// Fully connected layer, weight `[out, in]`.
    Linear {
        /// Output features.
        out_features: usize,
        /// Whether the layer has a bias vector.
        bias: bool,
    },
    /// The network output (identity).
    Output,
}

/// Every operation kind, as [`Op::kind`] names it, `input` first.
pub const OP_KINDS: [&str; 22] = [
    "input",
    "conv2d",
    "batchnorm",
    "relu",
    "relu6",
    "maxpool2d",
    "avgpool2d",
    "global_avgpool",
    "lrn",
    "softmax",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "mul",
    "permute",
    "slice",
    "add",
    "concat",
    "zeropad",
    "flatten",
    "linear",
    "output",
];

impl Op {
    /// The short lower-case name used in model specs, tables and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Conv2d { .. } => "conv2d",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::MaxPool2d { .. } => "maxpool2d",
            Op::AvgPool2d { .. } => "avgpool2d",
            Op::GlobalAvgPool => "global_avgpool",
            Op::Lrn { .. } => "lrn",
            Op::Softmax => "softmax",
            Op::Sigmoid => "sigmoid",
            Op::HardSigmoid { .. } => "hardsigmoid",
            Op::HardSwish => "hardswish",
            Op::Mul => "mul",
            Op::Permute { .. } => "permute",
            Op::Slice { .. } => "slice",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::ZeroPad { .. } => "zeropad",
            Op::Flatten => "flatten",
            Op::Linear { .. } => "linear",
            Op::Output => "output",
        }
    }

    /// Padding `[top, left, bottom, right]` of `[h, w]` on both sides of each axis.
    pub fn symmetric_padding(padding: [usize; 2]) -> [usize; 4] {
        [padding[0], padding[1], padding[0], padding[1]]
    }

    /// The channel order of ShuffleNet's shuffle of `channels` in `groups` groups.
    pub fn channel_shuffle(channels: usize, groups: usize) -> Vec<usize> {
        let per_group = channels / groups;
        (0..channels).map(|j| (j % groups) * per_group + j / groups).collect()
    }

    /// True for a conv whose every output channel reads exactly one input channel
    /// (`groups = in = out`).
    pub fn is_depthwise(&self, in_channels: usize) -> bool {
        matches!(self, Op::Conv2d { groups, out_channels, .. } if *groups > 1 && *groups == in_channels && *out_channels == in_channels)
    }
}
