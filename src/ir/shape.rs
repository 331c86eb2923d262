//! Shape inference in topological order.

use super::{IrError, Network, Op};

/// The shape of one sample's activation (the batch axis is implicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A feature map `channels × height × width`.
    Map {
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// A feature vector.
    Flat {
        /// Features.
        f: usize,
    },
}

impl Shape {
    /// Channels of a map, features of a vector.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Map { c, .. } => c,
            Shape::Flat { f } => f,
        }
    }

    /// Spatial positions per channel (`h·w` for a map, 1 for a vector).
    pub fn spatial(&self) -> usize {
        match *self {
            Shape::Map { h, w, .. } => h * w,
            Shape::Flat { .. } => 1,
        }
    }

    /// Total elements per sample.
    pub fn numel(&self) -> usize {
        self.channels() * self.spatial()
    }

    /// The shape as a list of dimensions, e.g. `[16, 32, 32]` or `[10]`.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Map { c, h, w } => vec![c, h, w],
            Shape::Flat { f } => vec![f],
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Shape::Map { c, h, w } => write!(f, "{c}×{h}×{w}"),
            Shape::Flat { f: n } => write!(f, "{n}"),
        }
    }
}

/// Largest number of elements one sample's activation may have (2³²): sizes read from a
/// file are checked against it, so no later product of them overflows.
pub const MAX_ACTIVATION: usize = 1 << 32;

/// Output size of a sliding window along one axis, or `None` when the window does not fit
/// (or the padded size overflows).
fn window(size: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = size.checked_add(padding.checked_mul(2)?)?;
    (stride > 0 && kernel > 0 && padded >= kernel).then(|| (padded - kernel) / stride + 1)
}

/// Output size of a pooling window along one axis with `[begin, end]` padding: rounded
/// down, or with `ceil_mode` up, except that a window starting in the end padding is
/// dropped (PyTorch's and ONNX Runtime's rule). `None` when the window does not fit.
fn pool_window(size: usize, kernel: usize, stride: usize, padding: [usize; 2], ceil_mode: bool) -> Option<usize> {
    let padded = size.checked_add(padding[0])?.checked_add(padding[1])?;
    if stride == 0 || kernel == 0 || padded < kernel {
        return None;
    }
    let span = padded - kernel;
    let mut out = if ceil_mode { span.div_ceil(stride) } else { span / stride } + 1;
    if ceil_mode && (out - 1) * stride >= size + padding[0] {
        out -= 1;
    }
    Some(out)
}

/// Elements of a shape, or `None` past [`MAX_ACTIVATION`].
fn checked_numel(shape: Shape) -> Option<usize> {
    shape
        .dims()
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ACTIVATION)
}

/// Infers every layer's output shape, failing on the first layer whose inputs do not fit.
pub(super) fn infer(net: &Network) -> Result<Vec<Shape>, IrError> {
    let mut shapes: Vec<Shape> = Vec::with_capacity(net.len());
    for index in net.nodes() {
        let node = net.node(index);
        let inputs: Vec<Shape> = net.inputs(index).iter().map(|i| shapes[i.index()]).collect();
        let fail = |reason: String| IrError::Shape {
            node: node.name.clone(),
            op: node.op.kind(),
            reason,
        };
        let expected_inputs = match node.op {
            Op::Input { .. } => Some(0),
            Op::Add | Op::Concat => None,
            Op::Mul => Some(2),
            _ => Some(1),
        };
        match expected_inputs {
            Some(n) if inputs.len() != n => return Err(fail(format!("takes {n} input(s), got {}", inputs.len()))),
            None if inputs.len() < 2 => return Err(fail(format!("takes two or more inputs, got {}", inputs.len()))),
            _ => {}
        }
        let map = |s: Shape| match s {
            Shape::Map { c, h, w } => Ok((c, h, w)),
            Shape::Flat { f } => Err(fail(format!("needs a C×H×W feature map, got a vector of {f} features"))),
        };
        let shape = match &node.op {
            Op::Input { channels, height, width } => {
                if *channels == 0 || *height == 0 || *width == 0 {
                    return Err(fail("input dimensions must be positive".into()));
                }
                Shape::Map {
                    c: *channels,
                    h: *height,
                    w: *width,
                }
            }
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                let (c, h, w) = map(inputs[0])?;
                if *groups == 0 || c % groups != 0 || out_channels % groups != 0 {
                    return Err(fail(format!(
                        "groups = {groups} must divide in ({c}) and out ({out_channels}) channels"
                    )));
                }
                if *out_channels == 0 {
                    return Err(fail("out_channels must be positive".into()));
                }
                let oh = window(h, kernel[0], stride[0], padding[0]);
                let ow = window(w, kernel[1], stride[1], padding[1]);
                match (oh, ow) {
                    (Some(h), Some(w)) => Shape::Map { c: *out_channels, h, w },
                    _ => {
                        return Err(fail(format!(
                            "kernel {kernel:?} with padding {padding:?} and stride {stride:?} does not fit a {h}×{w} input"
                        )));
                    }
                }
            }
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            }
            | Op::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                ..
            } => {
                let (c, h, w) = map(inputs[0])?;
                if padding[0].max(padding[2]) * 2 > kernel[0] || padding[1].max(padding[3]) * 2 > kernel[1] {
                    return Err(fail(format!("padding {padding:?} must be at most half the kernel {kernel:?}")));
                }
                match (
                    pool_window(h, kernel[0], stride[0], [padding[0], padding[2]], *ceil_mode),
                    pool_window(w, kernel[1], stride[1], [padding[1], padding[3]], *ceil_mode),
                ) {
                    (Some(h), Some(w)) => Shape::Map { c, h, w },
                    _ => {
                        return Err(fail(format!(
                            "window {kernel:?} with stride {stride:?} and padding {padding:?} does not fit a {h}×{w} input"
                        )));
                    }
                }
            }
            Op::Lrn { size, alpha, beta, k } => {
                map(inputs[0])?;
                if *size == 0 || ![alpha, beta, k].iter().all(|v| v.is_finite()) {
                    return Err(fail(format!(
                        "size {size} must be positive and alpha {alpha}, beta {beta}, k {k} finite"
                    )));
                }
                inputs[0]
            }
            Op::BatchNorm { .. } | Op::Relu | Op::Relu6 | Op::Softmax | Op::Sigmoid | Op::HardSwish | Op::Output => inputs[0],
            Op::HardSigmoid { alpha, beta } => {
                if !(alpha.is_finite() && beta.is_finite()) {
                    return Err(fail(format!("alpha {alpha} and beta {beta} must be finite")));
                }
                inputs[0]
            }
            Op::Mul => match (inputs[0], inputs[1]) {
                (a, b) if a == b => a,
                (Shape::Map { c, h, w }, Shape::Map { c: c2, h: 1, w: 1 }) | (Shape::Map { c: c2, h: 1, w: 1 }, Shape::Map { c, h, w })
                    if c == c2 =>
                {
                    Shape::Map { c, h, w }
                }
                (a, b) => {
                    return Err(fail(format!(
                        "inputs must have one shape, or one be C×1×1 with the other's C; got {a} and {b}"
                    )));
                }
            },
            Op::Permute { order } => {
                let (c, _, _) = map(inputs[0])?;
                let mut seen = vec![false; c];
                if order.len() != c || !order.iter().all(|&i| i < c && !std::mem::replace(&mut seen[i], true)) {
                    return Err(fail(format!("order must list each of the {c} input channels once")));
                }
                inputs[0]
            }
            Op::Slice { start, end } => {
                let (c, h, w) = map(inputs[0])?;
                if start >= end || *end > c {
                    return Err(fail(format!("channels {start}..{end} are not a non-empty range of the {c} inputs")));
                }
                Shape::Map { c: end - start, h, w }
            }
            Op::GlobalAvgPool => {
                let (c, _, _) = map(inputs[0])?;
                Shape::Map { c, h: 1, w: 1 }
            }
            Op::Add => {
                if inputs.iter().any(|s| *s != inputs[0]) {
                    let list: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
                    return Err(fail(format!("inputs must have one shape, got {}", list.join(" and "))));
                }
                inputs[0]
            }
            Op::Concat => {
                let (_, h, w) = map(inputs[0])?;
                let mut c = 0usize;
                for s in &inputs {
                    let (ci, hi, wi) = map(*s)?;
                    if (hi, wi) != (h, w) {
                        return Err(fail(format!("inputs must share height and width, got {h}×{w} and {hi}×{wi}")));
                    }
                    c = c.checked_add(ci).ok_or_else(|| fail("the channel count overflows".into()))?;
                }
                Shape::Map { c, h, w }
            }
            Op::ZeroPad { before, after, stride } => {
                let (c, h, w) = map(inputs[0])?;
                if *stride == 0 {
                    return Err(fail("stride must be positive".into()));
                }
                Shape::Map {
                    c: before
                        .checked_add(c)
                        .and_then(|c| c.checked_add(*after))
                        .ok_or_else(|| fail("the channel count overflows".into()))?,
                    h: h.div_ceil(*stride),
                    w: w.div_ceil(*stride),
                }
            }
            Op::Flatten => Shape::Flat { f: inputs[0].numel() },
            Op::Linear { out_features, .. } => match inputs[0] {
                Shape::Flat { .. } if *out_features > 0 => Shape::Flat { f: *out_features },
                Shape::Flat { .. } => return Err(fail("out_features must be positive".into())),
                Shape::Map { c, h, w } => {
                    return Err(fail(format!(
                        "needs a feature vector, got a {c}×{h}×{w} map: add a flatten layer before it"
                    )));
                }
            },
        };
        if checked_numel(shape).is_none() {
            return Err(fail(format!("output {shape} has more than {MAX_ACTIVATION} elements per sample")));
        }
        if super::cost::checked_node_cost(&node.op, &inputs, shape).is_none() {
            return Err(fail(format!(
                "its parameter or MAC count exceeds {} (sizes too large to count)",
                super::cost::MAX_COUNT
            )));
        }
        shapes.push(shape);
    }
    Ok(shapes)
}
