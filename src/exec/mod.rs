//! The executor: a burn [`Module`] built from a network graph and its weights, run in
//! topological order on whichever backend the [`Device`] belongs to.

mod allocator;
mod backend;
mod conv_op;
mod host;
mod host_conv;
mod norm_op;
mod pool_op;

pub use allocator::keep_freed_memory;
pub use backend::{Backend, BackendError};

use crate::ir::{Network, Op};
use crate::weights::{WeightTensor, Weights};
use burn::module::{Module, Param, RunningState};
use burn::tensor::module::{avg_pool2d, batch_norm, batch_norm_train, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};

/// A conv layer's parameters.
#[derive(Module, Debug)]
pub struct ConvParams {
    weight: Param<Tensor<4>>,
    bias: Option<Param<Tensor<1>>>,
}

/// A linear layer's parameters; the weight is stored `[in, out]`, burn's layout.
#[derive(Module, Debug)]
pub struct LinearParams {
    weight: Param<Tensor<2>>,
    bias: Option<Param<Tensor<1>>>,
}

/// A BatchNorm layer's affine parameters and running statistics.
#[derive(Module, Debug)]
pub struct NormParams {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
    running_mean: RunningState<Tensor<1>>,
    running_var: RunningState<Tensor<1>>,
    eps: f64,
}

/// How BatchNorm layers behave in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormMode {
    /// Normalise with the running statistics (inference).
    Eval,
    /// Normalise with the batch's statistics and fold them into the running statistics
    /// with this momentum (`running = (1 - m)·running + m·batch`); weights are not touched.
    Train {
        /// Weight of the current batch in the running statistics.
        momentum: f64,
    },
}

/// A network ready to run on a burn device.
#[derive(Module, Debug)]
pub struct Executable {
    convs: Vec<ConvParams>,
    linears: Vec<LinearParams>,
    norms: Vec<NormParams>,
    /// Every layer's operation, in topological order: the graph's own ops, run as they are.
    #[module(skip)]
    ops: Vec<Op>,
    /// For conv, linear and BatchNorm layers, the index of their parameters in `convs`,
    /// `linears` or `norms`.
    #[module(skip)]
    params: Vec<Option<usize>>,
    #[module(skip)]
    inputs: Vec<Vec<usize>>,
    #[module(skip)]
    names: Vec<String>,
    /// The BatchNorm layers folded into the convolution before them (see
    /// [`Executable::folded`]): they pass their input through.
    #[module(skip)]
    folded: Vec<bool>,
}

enum Value {
    Map(Tensor<4>),
    Flat(Tensor<2>),
}

impl Value {
    fn map(self) -> Tensor<4> {
        match self {
            Value::Map(t) => t,
            Value::Flat(_) => unreachable!("shape inference guarantees a feature map here"),
        }
    }
}

fn host<const D: usize>(t: Tensor<D>) -> WeightTensor {
    let shape = t.dims().to_vec();
    WeightTensor {
        shape,
        data: t.into_data().try_into_vec::<f32>().expect("f32 parameters"),
    }
}

fn tensor<const D: usize>(t: &WeightTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

impl Executable {
    /// Builds the executable network; `weights` must have passed [`Weights::check`].
    pub fn new(net: &Network, weights: &Weights, device: &Device) -> Executable {
        let (mut convs, mut linears, mut norms) = (Vec::new(), Vec::new(), Vec::new());
        let mut params = Vec::with_capacity(net.len());
        for node in net.nodes() {
            let bias = |kind: &str| {
                let name = format!("{}.{kind}", net.node(node).name);
                weights.get(&name).map(|b| Param::from_tensor(tensor::<1>(b, device)))
            };
            let index = match &net.node(node).op {
                Op::Conv2d { .. } => {
                    convs.push(ConvParams {
                        weight: Param::from_tensor(tensor(weights.of(net, node, "weight"), device)),
                        bias: bias("bias"),
                    });
                    Some(convs.len() - 1)
                }
                Op::Linear { .. } => {
                    let w: Tensor<2> = tensor(weights.of(net, node, "weight"), device);
                    linears.push(LinearParams {
                        weight: Param::from_tensor(w.transpose()),
                        bias: bias("bias"),
                    });
                    Some(linears.len() - 1)
                }
                Op::BatchNorm { eps } => {
                    let get = |kind| tensor::<1>(weights.of(net, node, kind), device);
                    norms.push(NormParams {
                        gamma: Param::from_tensor(get("weight")),
                        beta: Param::from_tensor(get("bias")),
                        running_mean: RunningState::new(get("running_mean")),
                        running_var: RunningState::new(get("running_var")),
                        eps: *eps,
                    });
                    Some(norms.len() - 1)
                }
                _ => None,
            };
            params.push(index);
        }
        let inputs = net.nodes().map(|n| net.inputs(n).iter().map(|i| i.index()).collect()).collect();
        let names = net.nodes().map(|n| net.node(n).name.clone()).collect();
        Executable {
            convs,
            linears,
            norms,
            ops: net.nodes().map(|n| net.node(n).op.clone()).collect(),
            params,
            inputs,
            names,
            folded: vec![false; net.len()],
        }
    }

    /// The same network for inference with every BatchNorm that directly follows a
    /// convolution (its only reader) folded into it, on the device: the conv's weight
    /// scaled by `γ / √(var + ε)` per output channel and its bias set to
    /// `(b − mean) · γ / √(var + ε) + β`. Eval mode only; one pass less over each activation.
    pub fn folded(&self) -> Executable {
        let mut readers = vec![0usize; self.ops.len()];
        self.inputs.iter().flatten().for_each(|&i| readers[i] += 1);
        let mut convs: Vec<ConvParams> = self.convs.clone();
        let mut folded = self.folded.clone();
        for (index, op) in self.ops.iter().enumerate() {
            let Op::BatchNorm { .. } = op else { continue };
            let source = self.inputs[index][0];
            if !matches!(self.ops[source], Op::Conv2d { .. }) || readers[source] != 1 || folded[index] {
                continue;
            }
            let (norm, conv) = (
                &self.norms[self.params[index].expect("BatchNorm parameters")],
                &mut convs[self.params[source].expect("conv parameters")],
            );
            let scale = norm.gamma.val() / norm.running_var.value_sync().add_scalar(norm.eps).sqrt();
            let outputs = scale.dims()[0];
            let weight = conv.weight.val() * scale.clone().reshape([outputs, 1, 1, 1]);
            let bias = match &conv.bias {
                Some(b) => b.val(),
                None => Tensor::zeros([outputs], &scale.device()),
            };
            let bias = (bias - norm.running_mean.value_sync()) * scale + norm.beta.val();
            *conv = ConvParams {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            };
            folded[index] = true;
        }
        Executable {
            convs,
            linears: self.linears.clone(),
            norms: self.norms.clone(),
            ops: self.ops.clone(),
            params: self.params.clone(),
            inputs: self.inputs.clone(),
            names: self.names.clone(),
            folded,
        }
    }

    /// How many BatchNorm layers [`Executable::folded`] folded away.
    pub fn folded_count(&self) -> usize {
        self.folded.iter().filter(|&&f| f).count()
    }

    /// The current parameters and running statistics as named host tensors (PyTorch
    /// layout), e.g. after training or BatchNorm recalibration.
    pub fn weights(&self) -> Weights {
        assert!(
            !self.folded.contains(&true),
            "a folded network's weights are not its layers' weights"
        );
        let mut out = Weights::default();
        for ((op, params), name) in self.ops.iter().zip(&self.params).zip(&self.names) {
            let mut put = |kind: &str, t: WeightTensor| {
                out.tensors.insert(format!("{name}.{kind}"), t);
            };
            let Some(params) = params else { continue };
            match op {
                Op::Conv2d { .. } => {
                    let p = &self.convs[*params];
                    put("weight", host(p.weight.val()));
                    if let Some(b) = &p.bias {
                        put("bias", host(b.val()));
                    }
                }
                Op::Linear { .. } => {
                    let p = &self.linears[*params];
                    put("weight", host(p.weight.val().transpose()));
                    if let Some(b) = &p.bias {
                        put("bias", host(b.val()));
                    }
                }
                Op::BatchNorm { .. } => {
                    let p = &self.norms[*params];
                    put("weight", host(p.gamma.val()));
                    put("bias", host(p.beta.val()));
                    put("running_mean", host(p.running_mean.value_sync()));
                    put("running_var", host(p.running_var.value_sync()));
                }
                _ => {}
            }
        }
        out
    }

    /// Inference: `[batch, C, H, W]` images to `[batch, outputs]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.run(x, NormMode::Eval, &[]).0
    }

    /// A forward pass with the given BatchNorm behaviour.
    pub fn forward_with(&self, x: Tensor<4>, mode: NormMode) -> Tensor<2> {
        self.run(x, mode, &[]).0
    }

    /// Inference that also returns, for each layer index in `layers`, its output averaged
    /// over the spatial axes: `[batch, units]` per layer (global-average-pooled activations).
    pub fn pooled_activations(&self, x: Tensor<4>, layers: &[usize]) -> Vec<Tensor<2>> {
        self.run(x, NormMode::Eval, layers).1
    }

    fn run(&self, x: Tensor<4>, mode: NormMode, taps: &[usize]) -> (Tensor<2>, Vec<Tensor<2>>) {
        let mut tapped: Vec<(usize, Tensor<2>)> = Vec::new();
        let device = x.device();
        let batch = x.dims()[0];
        let host_kernels = on_host(&device);
        let mut values: Vec<Option<Value>> = Vec::with_capacity(self.ops.len());
        let mut input = Some(x);
        // How many later layers still read each value, so that tensors are dropped early.
        let mut readers = vec![0usize; self.ops.len()];
        self.inputs.iter().flatten().for_each(|&i| readers[i] += 1);
        for (index, op) in self.ops.iter().enumerate() {
            let mut args: Vec<Value> = Vec::with_capacity(self.inputs[index].len());
            for &i in &self.inputs[index] {
                readers[i] -= 1;
                let value = if readers[i] == 0 {
                    values[i].take()
                } else {
                    values[i].as_ref().map(Value::share)
                };
                args.push(value.expect("every value is computed before it is read"));
            }
            let mut args = args.into_iter();
            let mut next = || args.next().expect("shape inference checked the input count");
            let params = || self.params[index].expect("conv, linear and BatchNorm layers have parameters");
            let value = match op {
                Op::Input { .. } => Value::Map(input.take().expect("one input layer")),
                Op::Conv2d {
                    stride,
                    padding,
                    groups: 1,
                    ..
                } if host_kernels => {
                    let p = &self.convs[params()];
                    Value::Map(conv_op::conv2d(
                        next().map(),
                        p.weight.val(),
                        p.bias.as_ref().map(|b| b.val()),
                        *stride,
                        *padding,
                    ))
                }
                Op::Conv2d {
                    stride, padding, groups, ..
                } => {
                    let p = &self.convs[params()];
                    let options = ConvOptions::new(*stride, *padding, [1, 1], *groups);
                    Value::Map(conv2d(next().map(), p.weight.val(), p.bias.as_ref().map(|b| b.val()), options))
                }
                Op::BatchNorm { .. } if self.folded[index] => {
                    assert_eq!(mode, NormMode::Eval, "a network with folded BatchNorm runs in eval mode only");
                    next()
                }
                Op::BatchNorm { .. } => {
                    let p = &self.norms[params()];
                    match next() {
                        Value::Map(t) => Value::Map(normalise(p, t, mode)),
                        Value::Flat(t) => Value::Flat(normalise(p, t, mode)),
                    }
                }
                Op::Relu => next().apply(activation::relu, activation::relu),
                Op::Relu6 => next().apply(|t| t.clamp(0.0, 6.0), |t| t.clamp(0.0, 6.0)),
                Op::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    ceil_mode,
                } if host_kernels && padding[..2] == padding[2..] => Value::Map(pool_op::max_pool2d(
                    next().map(),
                    *kernel,
                    *stride,
                    [padding[0], padding[1]],
                    *ceil_mode,
                )),
                Op::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    ceil_mode,
                } => Value::Map(max_pool2d(
                    next().map(),
                    MaxPoolOptions::new(*kernel)
                        .with_stride(*stride)
                        .with_padding_pairs(padding_pairs(padding))
                        .with_ceil_mode(*ceil_mode),
                )),
                Op::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    ceil_mode,
                    count_include_pad,
                } => Value::Map(avg_pool2d(
                    next().map(),
                    AvgPoolOptions::new(*kernel)
                        .with_stride(*stride)
                        .with_padding_pairs(padding_pairs(padding))
                        .with_ceil_mode(*ceil_mode)
                        .with_count_include_pad(*count_include_pad),
                )),
                Op::Lrn { size, alpha, beta, k } => Value::Map(local_response_norm(next().map(), *size, *alpha, *beta, *k)),
                Op::Softmax => next().apply(|t| activation::softmax(t, 1), |t| activation::softmax(t, 1)),
                Op::Sigmoid => next().apply(activation::sigmoid, activation::sigmoid),
                Op::HardSigmoid { alpha, beta } => next().apply(
                    |t| activation::hard_sigmoid(t, *alpha, *beta),
                    |t| activation::hard_sigmoid(t, *alpha, *beta),
                ),
                Op::HardSwish => next().apply(activation::hard_swish, activation::hard_swish),
                Op::Mul => {
                    let first = next();
                    first.zip(next(), |a, b| a * b, |a, b| a * b)
                }
                Op::Permute { order } => {
                    let indices: Vec<i64> = order.iter().map(|&i| i as i64).collect();
                    let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [order.len()]), &device);
                    Value::Map(next().map().select(1, indices))
                }
                Op::Slice { start, end } => Value::Map(next().map().narrow(1, *start, end - start)),
                Op::GlobalAvgPool => Value::Map(next().map().mean_dim(3).mean_dim(2)),
                Op::Add => {
                    let first = next();
                    args.fold(first, |acc, v| acc.zip(v, |a, b| a + b, |a, b| a + b))
                }
                Op::Concat => Value::Map(Tensor::cat(args.map(Value::map).collect(), 1)),
                Op::ZeroPad { before, after, stride } => {
                    let x = next().map();
                    let x = if *stride > 1 && host_kernels {
                        pool_op::max_pool2d(x, [1, 1], [*stride; 2], [0, 0], false)
                    } else if *stride > 1 {
                        max_pool2d(x, MaxPoolOptions::new([1, 1]).with_stride([*stride; 2]))
                    } else {
                        x
                    };
                    let [n, _, h, w] = x.dims();
                    let mut parts = Vec::with_capacity(3);
                    if *before > 0 {
                        parts.push(Tensor::zeros([n, *before, h, w], &device));
                    }
                    parts.push(x);
                    if *after > 0 {
                        parts.push(Tensor::zeros([n, *after, h, w], &device));
                    }
                    Value::Map(Tensor::cat(parts, 1))
                }
                Op::Flatten => match next() {
                    Value::Map(t) => Value::Flat(t.reshape([batch as i32, -1])),
                    flat => flat,
                },
                Op::Linear { .. } => {
                    let p = &self.linears[params()];
                    let x = match next() {
                        Value::Flat(t) => t,
                        Value::Map(_) => unreachable!("shape inference puts a flatten before every linear layer"),
                    };
                    Value::Flat(linear(x, p.weight.val(), p.bias.as_ref().map(|b| b.val())))
                }
                Op::Output => next(),
            };
            if taps.contains(&index) {
                tapped.push((index, value.pooled()));
            }
            values.push(Some(value));
        }
        let output = match values.pop().flatten().expect("the output layer is last") {
            Value::Flat(t) => t,
            Value::Map(t) => t.reshape([batch as i32, -1]),
        };
        let pooled = taps
            .iter()
            .map(|t| tapped.iter().find(|(i, _)| i == t).expect("tapped layers exist").1.clone())
            .collect();
        (output, pooled)
    }
}

/// burn's `[(top, bottom), (left, right)]` from `[top, left, bottom, right]`.
fn padding_pairs(padding: &[usize; 4]) -> [(usize, usize); 2] {
    [(padding[0], padding[2]), (padding[1], padding[3])]
}

/// ONNX's LRN: the windowed sum of squares is a stride-1 average pool of `x²` along the
/// channel axis (zero padded, padding counted), times `size`.
fn local_response_norm(x: Tensor<4>, size: usize, alpha: f64, beta: f64, k: f64) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let squares = x.clone().powi_scalar(2).reshape([n, 1, c, h * w]);
    let before = (size - 1) / 2;
    let options = AvgPoolOptions::new([size, 1])
        .with_stride([1, 1])
        .with_padding_pairs([(before, size - 1 - before), (0, 0)])
        .with_count_include_pad(true);
    let mean = avg_pool2d(squares, options).reshape([n, c, h, w]);
    x / mean.mul_scalar(alpha).add_scalar(k).powf_scalar(beta)
}

/// Whether `device` is burn-flex, with or without autodiff: there, dense convolutions
/// (`conv_op`), training-mode BatchNorm (`norm_op`) and max pooling (`pool_op`) are
/// computed on the host.
fn on_host(device: &Device) -> bool {
    *device == Device::flex() || *device == Device::flex().autodiff()
}

fn normalise<const D: usize>(p: &NormParams, x: Tensor<D>, mode: NormMode) -> Tensor<D> {
    match mode {
        NormMode::Eval => batch_norm(
            x,
            p.gamma.val(),
            p.beta.val(),
            p.running_mean.value_sync(),
            p.running_var.value_sync(),
            p.eps,
        ),
        NormMode::Train { momentum } => {
            // Per channel statistics are over n = batch·h·w values; running variance is kept
            // unbiased, as PyTorch keeps it.
            let n = (x.shape().num_elements() / x.dims()[1]) as f64;
            let (output, batch_mean, variance) = if on_host(&x.device()) {
                norm_op::batch_norm_train(x, p.gamma.val(), p.beta.val(), p.eps)
            } else {
                let out = batch_norm_train(x, p.gamma.val(), p.beta.val(), p.eps);
                (out.output, out.mean, out.variance)
            };
            let unbiased = variance.mul_scalar(n / (n - 1.0).max(1.0));
            let mean = p
                .running_mean
                .value_sync()
                .mul_scalar(1.0 - momentum)
                .add(batch_mean.mul_scalar(momentum));
            let var = p
                .running_var
                .value_sync()
                .mul_scalar(1.0 - momentum)
                .add(unbiased.mul_scalar(momentum));
            p.running_mean.update(mean.detach());
            p.running_var.update(var.detach());
            output
        }
    }
}

impl Value {
    /// `[batch, C, H, W]` averaged over `H, W`; vectors as they are.
    fn pooled(&self) -> Tensor<2> {
        match self {
            Value::Map(t) => {
                let [n, c, _, _] = t.dims();
                t.clone().mean_dim(3).mean_dim(2).reshape([n, c])
            }
            Value::Flat(t) => t.clone(),
        }
    }

    fn share(&self) -> Value {
        match self {
            Value::Map(t) => Value::Map(t.clone()),
            Value::Flat(t) => Value::Flat(t.clone()),
        }
    }

    fn apply(self, on_map: impl FnOnce(Tensor<4>) -> Tensor<4>, on_flat: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Value {
        match self {
            Value::Map(t) => Value::Map(on_map(t)),
            Value::Flat(t) => Value::Flat(on_flat(t)),
        }
    }

    fn zip(
        self,
        other: Value,
        on_map: impl FnOnce(Tensor<4>, Tensor<4>) -> Tensor<4>,
        on_flat: impl FnOnce(Tensor<2>, Tensor<2>) -> Tensor<2>,
    ) -> Value {
        match (self, other) {
            (Value::Map(a), Value::Map(b)) => Value::Map(on_map(a, b)),
            (Value::Flat(a), Value::Flat(b)) => Value::Flat(on_flat(a, b)),
            _ => unreachable!("shape inference gives add and mul inputs one rank"),
        }
    }
}

/// Copies a `[batch, features]` tensor back to the host, row-major.
pub fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 output")
}
