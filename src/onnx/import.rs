//! ONNX model → sacp network and weights, parsed at run time. Understood: Conv (explicit or
//! SAME padding), BatchNormalization, Relu, Clip(0, 6), MaxPool and AveragePool (asymmetric
//! padding, `ceil_mode`, `count_include_pad`), GlobalAveragePool, ReduceMean over H, W,
//! LRN, Softmax over channels, Add/Sum, Concat, Pad on channels, Flatten, Reshape to
//! `[N, -1]`, Gemm, MatMul with a constant, Identity, Dropout, Cast. Constants (initializers,
//! `Constant`, `ConstantOfShape`, inline or external data) and operations on them are
//! folded; a per-channel constant applied to a conv, linear or BatchNorm output becomes part
//! of that layer's weights. The graph's input and output names become the input and output
//! layers' names. Anything else is an error that lists every such node.

use super::constants::{Constant, ExternalData, constant};
use super::proto::{AttributeProto, ModelProto, NodeProto, data_type};
use crate::ir::{IrError, Network, NetworkBuilder, Op};
use crate::weights::{WeightError, WeightTensor, Weights};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// Why an ONNX file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX model.
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    /// Nodes whose operators sacp does not represent.
    #[error("unsupported ONNX nodes (name: op): {}", .0.iter().map(|(n, o)| format!("{n}: {o}")).collect::<Vec<_>>().join(", "))]
    Unsupported(Vec<(String, String)>),
    /// A node sacp represents, used in a way it does not.
    #[error("node `{node}` ({op}): {message}")]
    Invalid {
        /// Node name.
        node: String,
        /// Its operator.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The graph as a whole is not a single-input classifier sacp can build.
    #[error("{0}")]
    Graph(String),
    /// The resulting network is inconsistent.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// The initializers do not fit the layers they feed (e.g. a classifier whose width is not
    /// what the layers before it produce).
    #[error(transparent)]
    Weights(#[from] WeightError),
}

/// One layer of the network being built.
struct Pending {
    name: String,
    op: Op,
    inputs: Vec<String>,
}

/// A value of the ONNX graph: a layer's output (and its rank) or a constant.
#[derive(Clone)]
enum Value {
    Layer {
        layer: String,
        rank: usize,
    },
    Constant(Constant),
    /// A layer's `N × C × H × W` output viewed as `N × groups × C/groups × H × W` (and,
    /// once transposed, `N × C/groups × groups × H × W`): half of a channel shuffle.
    Shuffle {
        layer: String,
        groups: usize,
        transposed: bool,
    },
}

struct Importer {
    layers: Vec<Pending>,
    weights: Weights,
    values: HashMap<String, Value>,
    /// How many node inputs (and graph outputs) read each value: a constant is folded into
    /// the layer that produced a value only when nothing else reads that value.
    uses: HashMap<String, usize>,
    /// The default-domain opset the model declares (defaults of Softmax and the axes
    /// operands of Unsqueeze, Squeeze and ReduceMean changed across opsets).
    opset: i64,
    /// Softmax layers read with opset < 13 semantics (over all of C×H×W): valid as a
    /// softmax over channels only when H = W = 1, checked once shapes are known.
    flat_softmax: Vec<String>,
    /// Files that initializers and constants may point to.
    external: ExternalData,
    /// The batch size the model's input declares (1 when symbolic): what `Shape` reports.
    batch: usize,
}

/// What a 5-D view of a layer output may be used for.
const SHUFFLE_ONLY: &str = "a 5-D view of a feature map is represented only as a channel shuffle: Reshape to [N, g, C/g, H, W], Transpose [0, 2, 1, 3, 4], Reshape back";

fn ints_attribute(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attribute(node, name).map(|a| a.ints.clone())
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn pair(node: &NodeProto, name: &str, default: [usize; 2]) -> Result<[usize; 2], String> {
    match attribute(node, name) {
        None => Ok(default),
        Some(a) if a.ints.len() == 2 && a.ints.iter().all(|&v| v >= 0) => Ok([a.ints[0] as usize, a.ints[1] as usize]),
        Some(a) => Err(format!("`{name}` = {:?}: expected two non-negative values", a.ints)),
    }
}

/// Symmetric `[h, w]` padding from `pads`/`auto_pad`.
fn padding(node: &NodeProto, kernel: [usize; 2], stride: [usize; 2]) -> Result<[usize; 2], String> {
    let auto = attribute(node, "auto_pad")
        .map(|a| String::from_utf8_lossy(&a.s).into_owned())
        .unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => match attribute(node, "pads") {
            None => Ok([0, 0]),
            Some(a) if a.ints.len() == 4 && a.ints[0] == a.ints[2] && a.ints[1] == a.ints[3] && a.ints.iter().all(|&v| v >= 0) => {
                Ok([a.ints[0] as usize, a.ints[1] as usize])
            }
            Some(a) => Err(format!("pads {:?}: only symmetric padding is represented", a.ints)),
        },
        "VALID" => Ok([0, 0]),
        "SAME_UPPER" | "SAME_LOWER" if stride == [1, 1] && kernel.iter().all(|k| k % 2 == 1) => Ok([kernel[0] / 2, kernel[1] / 2]),
        other => Err(format!(
            "auto_pad {other} with kernel {kernel:?} and stride {stride:?} is not symmetric"
        )),
    }
}

/// Pooling padding `[top, left, bottom, right]` from `pads`/`auto_pad` (asymmetric allowed).
fn pool_padding(node: &NodeProto, kernel: [usize; 2], stride: [usize; 2]) -> Result<[usize; 4], String> {
    match attribute(node, "pads") {
        Some(a) if a.ints.len() == 4 && a.ints.iter().all(|&v| v >= 0) => {
            Ok([a.ints[0] as usize, a.ints[1] as usize, a.ints[2] as usize, a.ints[3] as usize])
        }
        Some(a) => Err(format!("pads {:?}: four non-negative values were expected", a.ints)),
        None => padding(node, kernel, stride).map(Op::symmetric_padding),
    }
}

impl Importer {
    fn value(&self, node: &NodeProto, slot: usize) -> Result<Value, String> {
        let name = node
            .input
            .get(slot)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("input {slot} is missing"))?;
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| format!("input `{name}` is not produced before this node"))
    }

    fn layer_input(&self, node: &NodeProto, slot: usize) -> Result<(String, usize), String> {
        match self.value(node, slot)? {
            Value::Layer { layer, rank } => Ok((layer, rank)),
            Value::Constant(_) => Err(format!("input {slot} is a constant; a layer output was expected")),
            Value::Shuffle { .. } => Err(SHUFFLE_ONLY.into()),
        }
    }

    fn constant_input(&self, node: &NodeProto, slot: usize) -> Result<Constant, String> {
        match self.value(node, slot)? {
            Value::Constant(c) => Ok(c),
            _ => Err(format!("input {slot} must be a constant (an initializer)")),
        }
    }

    fn tensor(&mut self, layer: &str, kind: &str, shape: Vec<usize>, values: &[f64]) {
        let data = values.iter().map(|&v| v as f32).collect();
        self.weights.tensors.insert(format!("{layer}.{kind}"), WeightTensor { shape, data });
    }

    fn push(&mut self, node: &NodeProto, name: &str, op: Op, inputs: Vec<String>, rank: usize) {
        self.layers.push(Pending {
            name: name.to_string(),
            op,
            inputs,
        });
        self.values.insert(
            node.output[0].clone(),
            Value::Layer {
                layer: name.to_string(),
                rank,
            },
        );
    }

    fn alias(&mut self, node: &NodeProto, value: Value) {
        self.values.insert(node.output[0].clone(), value);
    }

    /// Adds the node; `Ok(false)` when its operator is not supported at all.
    fn node(&mut self, node: &NodeProto, name: &str) -> Result<bool, String> {
        if node.output.is_empty() {
            return Err("the node has no output".into());
        }
        match node.op_type.as_str() {
            "Conv" => {
                let (x, _) = self.layer_input(node, 0)?;
                let w = self.constant_input(node, 1)?;
                if w.dims.len() != 4 {
                    return Err(format!("weight dimensions {:?}: a 2-D convolution was expected", w.dims));
                }
                if attribute(node, "dilations").is_some_and(|a| a.ints.iter().any(|&d| d != 1)) {
                    return Err("dilated convolutions are not represented".into());
                }
                let kernel = [w.dims[2], w.dims[3]];
                let stride = pair(node, "strides", [1, 1])?;
                let groups = attribute(node, "group").map_or(1, |a| a.i.max(1) as usize);
                let bias = node.input.len() > 2 && !node.input[2].is_empty();
                let op = Op::Conv2d {
                    out_channels: w.dims[0],
                    kernel,
                    stride,
                    padding: padding(node, kernel, stride)?,
                    groups,
                    bias,
                };
                self.tensor(name, "weight", w.dims.clone(), &w.values);
                if bias {
                    let b = self.constant_input(node, 2)?;
                    self.tensor(name, "bias", vec![b.values.len()], &b.values);
                }
                self.push(node, name, op, vec![x], 4);
            }
            "BatchNormalization" => {
                let (x, rank) = self.layer_input(node, 0)?;
                for (slot, kind) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    let c = self.constant_input(node, slot)?;
                    self.tensor(name, kind, vec![c.values.len()], &c.values);
                }
                let eps = attribute(node, "epsilon").map_or(1e-5, |a| a.f as f64);
                if !(eps >= 0.0 && eps.is_finite()) {
                    return Err(format!("epsilon = {eps} must be a finite, non-negative number"));
                }
                self.push(node, name, Op::BatchNorm { eps }, vec![x], rank);
            }
            "Relu" => {
                let (x, rank) = self.layer_input(node, 0)?;
                self.push(node, name, Op::Relu, vec![x], rank);
            }
            "Clip" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let bound = |slot: usize, attr: &str| -> Result<Option<f64>, String> {
                    if node.input.len() > slot && !node.input[slot].is_empty() {
                        Ok(self.constant_input(node, slot)?.values.first().copied())
                    } else {
                        Ok(attribute(node, attr).map(|a| a.f as f64))
                    }
                };
                match (bound(1, "min")?, bound(2, "max")?) {
                    (Some(lo), Some(hi)) if lo == 0.0 && hi == 6.0 => self.push(node, name, Op::Relu6, vec![x], rank),
                    (lo, hi) => return Err(format!("Clip({lo:?}, {hi:?}): only ReLU6 = Clip(0, 6) is represented")),
                }
            }
            "MaxPool" | "AveragePool" => {
                let (x, _) = self.layer_input(node, 0)?;
                let kernel = pair(node, "kernel_shape", [0, 0])?;
                if kernel.contains(&0) {
                    return Err("`kernel_shape` is required".into());
                }
                if attribute(node, "dilations").is_some_and(|a| a.ints.iter().any(|&d| d != 1)) {
                    return Err("dilated pooling is not represented".into());
                }
                let stride = pair(node, "strides", [1, 1])?;
                let padding = pool_padding(node, kernel, stride)?;
                let ceil_mode = attribute(node, "ceil_mode").is_some_and(|a| a.i != 0);
                let op = if node.op_type == "MaxPool" {
                    if node.output.len() > 1 && !node.output[1].is_empty() {
                        return Err("MaxPool's indices output is not represented".into());
                    }
                    Op::MaxPool2d {
                        kernel,
                        stride,
                        padding,
                        ceil_mode,
                    }
                } else {
                    Op::AvgPool2d {
                        kernel,
                        stride,
                        padding,
                        ceil_mode,
                        count_include_pad: attribute(node, "count_include_pad").is_some_and(|a| a.i != 0),
                    }
                };
                self.push(node, name, op, vec![x], 4);
            }
            "LRN" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let size = attribute(node, "size").map(|a| a.i).ok_or("`size` is required")?;
                if rank != 4 || size <= 0 {
                    return Err(format!("LRN of size {size} over a rank-{rank} value is not represented"));
                }
                let float = |name: &str, default: f64| attribute(node, name).map_or(default, |a| a.f as f64);
                let op = Op::Lrn {
                    size: size as usize,
                    alpha: float("alpha", 1e-4),
                    beta: float("beta", 0.75),
                    k: float("bias", 1.0),
                };
                self.push(node, name, op, vec![x], 4);
            }
            "Softmax" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let axis = attribute(node, "axis").map_or(if self.opset >= 13 { -1 } else { 1 }, |a| a.i);
                let axis = if axis < 0 { axis + rank as i64 } else { axis };
                if axis != 1 {
                    return Err(format!(
                        "softmax over axis {axis} of a rank-{rank} value: only channels are represented"
                    ));
                }
                if rank == 4 && self.opset < 13 {
                    self.flat_softmax.push(name.to_string());
                }
                self.push(node, name, Op::Softmax, vec![x], rank);
            }
            "ReduceMean" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let axes = match node.input.get(1).filter(|n| !n.is_empty()) {
                    Some(_) => self.constant_input(node, 1)?.values.iter().map(|&v| v as i64).collect(),
                    None => ints_attribute(node, "axes").unwrap_or_default(),
                };
                let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank as i64 } else { a }).collect();
                axes.sort_unstable();
                if rank != 4 || axes != [2, 3] {
                    return Err(format!(
                        "mean over axes {axes:?} of a rank-{rank} value: only the spatial mean (axes 2, 3) is represented"
                    ));
                }
                if attribute(node, "keepdims").is_none_or(|a| a.i != 0) {
                    self.push(node, name, Op::GlobalAvgPool, vec![x], 4);
                } else {
                    let pooled = format!("{name}.pool");
                    self.push(node, &pooled, Op::GlobalAvgPool, vec![x], 4);
                    self.push(node, name, Op::Flatten, vec![pooled], 2);
                }
            }
            "GlobalAveragePool" => {
                let (x, _) = self.layer_input(node, 0)?;
                self.push(node, name, Op::GlobalAvgPool, vec![x], 4);
            }
            "Add" | "Sum" => self.add(node, name)?,
            "Concat" if node.input.len() == 1 => self.alias(node, self.value(node, 0)?),
            "Concat" if (0..node.input.len()).all(|s| matches!(self.value(node, s), Ok(Value::Constant(_)))) => {
                let parts = (0..node.input.len())
                    .map(|s| self.constant_input(node, s))
                    .collect::<Result<Vec<_>, _>>()?;
                self.alias(node, Value::Constant(Constant::concat(&parts)?));
            }
            "Concat" => {
                let axis = attribute(node, "axis").map_or(1, |a| a.i);
                let inputs = (0..node.input.len())
                    .map(|s| self.layer_input(node, s))
                    .collect::<Result<Vec<_>, _>>()?;
                if !(axis == 1 || (axis == -3 && inputs.iter().all(|(_, r)| *r == 4))) {
                    return Err(format!("concatenation on axis {axis}: only channels (axis 1) are represented"));
                }
                let rank = inputs[0].1;
                self.push(node, name, Op::Concat, inputs.into_iter().map(|(l, _)| l).collect(), rank);
            }
            "Pad" => {
                let (x, _) = self.layer_input(node, 0)?;
                let pads = self.constant_input(node, 1)?.values;
                let only_channels = pads.len() == 8 && [0, 2, 3, 4, 6, 7].iter().all(|&i| pads[i] == 0.0) && pads.iter().all(|&v| v >= 0.0);
                let nonzero_fill = match node.input.get(2) {
                    Some(v) if !v.is_empty() => self.constant_input(node, 2)?.values.iter().any(|&v| v != 0.0),
                    _ => false,
                };
                if !only_channels || nonzero_fill {
                    return Err(format!("pads {pads:?}: only zero padding of channels is represented"));
                }
                let op = Op::ZeroPad {
                    before: pads[1] as usize,
                    after: pads[5] as usize,
                    stride: 1,
                };
                self.push(node, name, op, vec![x], 4);
            }
            "Flatten" => {
                let (x, rank) = self.layer_input(node, 0)?;
                if attribute(node, "axis").is_some_and(|a| a.i != 1) {
                    return Err("only Flatten with axis 1 is represented".into());
                }
                if rank == 2 {
                    self.alias(node, self.value(node, 0)?);
                } else {
                    self.push(node, name, Op::Flatten, vec![x], 2);
                }
            }
            "Reshape" => self.reshape(node, name)?,
            "Transpose" => match self.value(node, 0)? {
                Value::Shuffle {
                    layer,
                    groups,
                    transposed: false,
                } if ints_attribute(node, "perm").as_deref() == Some(&[0, 2, 1, 3, 4]) => self.alias(
                    node,
                    Value::Shuffle {
                        layer,
                        groups,
                        transposed: true,
                    },
                ),
                _ => return Err(SHUFFLE_ONLY.into()),
            },
            "Shape" => {
                let (layer, _) = self.layer_input(node, 0)?;
                let dims: Vec<f64> = self.dims(&layer)?.into_iter().map(|d| d as f64).collect();
                let n = dims.len() as i64;
                let bound = |name: &str, default: i64| {
                    let v = attribute(node, name).map_or(default, |a| a.i);
                    (if v < 0 { v + n } else { v }).clamp(0, n) as usize
                };
                let (start, end) = (bound("start", 0), bound("end", n));
                self.alias(node, Value::Constant(Constant::vector(dims[start..end.max(start)].to_vec(), true)));
            }
            "Gather" => {
                let (data, indices) = (self.constant_input(node, 0)?, self.constant_input(node, 1)?);
                if attribute(node, "axis").is_some_and(|a| a.i != 0) {
                    return Err("only gathering along axis 0 of a constant is represented".into());
                }
                self.alias(node, Value::Constant(data.gather(&indices)?));
            }
            "Slice" => self.slice(node, name)?,
            "Split" => self.split(node, name)?,
            "Sigmoid" | "HardSwish" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let op = if node.op_type == "Sigmoid" { Op::Sigmoid } else { Op::HardSwish };
                self.push(node, name, op, vec![x], rank);
            }
            "HardSigmoid" => {
                let (x, rank) = self.layer_input(node, 0)?;
                let float = |name: &str, default: f64| attribute(node, name).map_or(default, |a| a.f as f64);
                let op = Op::HardSigmoid {
                    alpha: float("alpha", 0.2),
                    beta: float("beta", 0.5),
                };
                self.push(node, name, op, vec![x], rank);
            }
            "Gemm" | "MatMul" => {
                let (x, rank) = self.layer_input(node, 0)?;
                if rank != 2 {
                    return Err("a linear layer needs a flattened (2-D) input".into());
                }
                let w = self.constant_input(node, 1)?;
                if w.dims.len() != 2 {
                    return Err(format!("weight dimensions {:?}: a matrix was expected", w.dims));
                }
                let gemm = node.op_type == "Gemm";
                if gemm && (attribute(node, "transA").is_some_and(|a| a.i != 0) || attribute(node, "alpha").is_some_and(|a| a.f != 1.0)) {
                    return Err("only Gemm with transA = 0 and alpha = 1 is represented".into());
                }
                let trans_b = gemm && attribute(node, "transB").is_some_and(|a| a.i != 0);
                // sacp keeps linear weights as [out, in].
                let (out, inputs) = if trans_b { (w.dims[0], w.dims[1]) } else { (w.dims[1], w.dims[0]) };
                let values: Vec<f64> = if trans_b {
                    w.values.clone()
                } else {
                    (0..out)
                        .flat_map(|o| (0..inputs).map(move |i| (o, i)))
                        .map(|(o, i)| w.values[i * out + o])
                        .collect()
                };
                self.tensor(name, "weight", vec![out, inputs], &values);
                let bias = gemm && node.input.len() > 2 && !node.input[2].is_empty();
                if bias {
                    if attribute(node, "beta").is_some_and(|a| a.f != 1.0) {
                        return Err("only Gemm with beta = 1 is represented".into());
                    }
                    let b = self.constant_input(node, 2)?;
                    if b.values.len() != out {
                        return Err(format!("bias of {} values for {out} outputs", b.values.len()));
                    }
                    self.tensor(name, "bias", vec![out], &b.values);
                }
                self.push(node, name, Op::Linear { out_features: out, bias }, vec![x], 2);
            }
            "Identity" | "Dropout" => self.alias(node, self.value(node, 0)?),
            "Cast" => {
                let to = attribute(node, "to").map_or(0, |a| a.i as i32);
                let float = matches!(to, data_type::FLOAT | data_type::DOUBLE);
                match self.value(node, 0)? {
                    Value::Constant(c) => {
                        let values = if float {
                            c.values
                        } else {
                            c.values.iter().map(|v| v.trunc()).collect()
                        };
                        self.alias(
                            node,
                            Value::Constant(Constant {
                                values,
                                integer: !float,
                                ..c
                            }),
                        )
                    }
                    layer @ Value::Layer { .. } if to == data_type::FLOAT => self.alias(node, layer),
                    _ => {
                        return Err(format!(
                            "a cast of a layer output to element type {to}: only float32 is represented"
                        ));
                    }
                }
            }
            "Constant" => {
                let value = if let Some(t) = attribute(node, "value").and_then(|a| a.t.as_ref()) {
                    constant(t, &mut self.external)?
                } else if let Some(a) = attribute(node, "value_float") {
                    Constant::scalar(a.f as f64)
                } else if let Some(a) = attribute(node, "value_int") {
                    Constant::vector(vec![a.i as f64], true).squeeze(&[])?
                } else if let Some(a) = attribute(node, "value_floats") {
                    Constant::vector(a.floats.iter().map(|&v| v as f64).collect(), false)
                } else if let Some(a) = attribute(node, "value_ints") {
                    Constant::vector(a.ints.iter().map(|&v| v as f64).collect(), true)
                } else {
                    return Err("only tensor, float and int constants are read".into());
                };
                self.alias(node, Value::Constant(value));
            }
            "ConstantOfShape" => {
                let dims = self.constant_input(node, 0)?.as_dims()?;
                let fill = match attribute(node, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => constant(t, &mut self.external)?,
                    None => Constant::scalar(0.0),
                };
                self.alias(node, Value::Constant(fill.filled(dims)?));
            }
            "Unsqueeze" | "Squeeze" => {
                let c = self.constant_input(node, 0)?;
                let axes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
                    Some(_) => self.constant_input(node, 1)?.values.iter().map(|&v| v as i64).collect(),
                    None => ints_attribute(node, "axes").unwrap_or_default(),
                };
                let folded = if node.op_type == "Unsqueeze" {
                    c.unsqueeze(&axes)?
                } else {
                    c.squeeze(&axes)?
                };
                self.alias(node, Value::Constant(folded));
            }
            "Mul" | "Sub" | "Div" => self.arithmetic(node, name)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The dimensions of a layer's output, batch first (`Shape`, `Split`, `Slice` and
    /// `Reshape` need them): shape inference over the layers imported so far.
    fn dims(&self, layer: &str) -> Result<Vec<usize>, String> {
        let mut builder = NetworkBuilder::new();
        for p in &self.layers {
            builder
                .add_named(p.name.clone(), p.op.clone(), &p.inputs)
                .map_err(|e| e.to_string())?;
        }
        builder
            .add_named("sacp.probe", Op::Output, &[layer.to_string()])
            .map_err(|e| e.to_string())?;
        let net = builder.finish().map_err(|e| e.to_string())?;
        let node = net.nodes().find(|&n| net.node(n).name == layer).expect("just built");
        Ok(std::iter::once(self.batch).chain(net.shape(node).dims()).collect())
    }

    /// Reshape: of a constant (folded), a flattening to `[N, -1]`, a no-op, or either half of
    /// a channel shuffle.
    fn reshape(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let shape = self.constant_input(node, 1)?.values;
        let (layer, rank) = match self.value(node, 0)? {
            Value::Constant(c) => {
                self.alias(node, Value::Constant(c.reshape(&shape)?));
                return Ok(());
            }
            Value::Shuffle {
                layer,
                groups,
                transposed: true,
            } if shape.len() == 4 => {
                let channels = self.dims(&layer)?[1];
                let order = Op::channel_shuffle(channels, groups);
                self.push(node, name, Op::Permute { order }, vec![layer], 4);
                return Ok(());
            }
            Value::Shuffle { .. } => return Err(SHUFFLE_ONLY.into()),
            Value::Layer { layer, rank } => (layer, rank),
        };
        let flattening = shape.len() == 2 && (shape[1] == -1.0 || shape[0] == 0.0 || shape[0] == 1.0 || shape[0] == -1.0);
        if flattening {
            if rank == 2 {
                self.alias(node, Value::Layer { layer, rank });
            } else {
                self.push(node, name, Op::Flatten, vec![layer], 2);
            }
            return Ok(());
        }
        let dims = self.dims(&layer)?;
        let same = |wanted: &[f64], have: &[usize]| {
            wanted.len() == have.len()
                && wanted
                    .iter()
                    .zip(have)
                    .enumerate()
                    .all(|(i, (&w, &h))| w == h as f64 || (w == 0.0 || w == -1.0) && i == 0)
        };
        match (rank, shape.len()) {
            (_, n) if n == rank && same(&shape, &dims) => self.alias(node, Value::Layer { layer, rank }),
            (4, 5) if shape[1] > 0.0 && same(&[shape[0], shape[1] * shape[2], shape[3], shape[4]], &dims) => {
                let groups = shape[1] as usize;
                self.alias(
                    node,
                    Value::Shuffle {
                        layer,
                        groups,
                        transposed: false,
                    },
                );
            }
            _ => {
                return Err(format!(
                    "reshape of a {dims:?} value to {shape:?}: only flattening to [N, -1] and channel shuffles are represented"
                ));
            }
        }
        Ok(())
    }

    /// A layer for output `k` of a node with several outputs (`Split`).
    fn push_output(&mut self, node: &NodeProto, k: usize, name: String, op: Op, input: String) {
        self.layers.push(Pending {
            name: name.clone(),
            op,
            inputs: vec![input],
        });
        self.values.insert(node.output[k].clone(), Value::Layer { layer: name, rank: 4 });
    }

    /// `Slice` of channels (axis 1, step 1), bounds clamped as ONNX clamps them.
    fn slice(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let operand = |slot: usize, attr: &str| -> Result<Option<Vec<f64>>, String> {
            match node.input.get(slot).filter(|n| !n.is_empty()) {
                Some(_) => Ok(Some(self.constant_input(node, slot)?.values)),
                None => Ok(ints_attribute(node, attr).map(|v| v.iter().map(|&x| x as f64).collect())),
            }
        };
        let (starts, ends) = (operand(1, "starts")?.unwrap_or_default(), operand(2, "ends")?.unwrap_or_default());
        let axes = operand(3, "axes")?.unwrap_or_else(|| (0..starts.len()).map(|a| a as f64).collect());
        let steps = operand(4, "steps")?.unwrap_or_else(|| vec![1.0; starts.len()]);
        let (layer, rank) = self.layer_input(node, 0)?;
        let on_channels = |a: f64| a == 1.0 || a == -(rank as f64 - 1.0);
        if rank != 4 || starts.len() != 1 || ends.len() != 1 || !axes.iter().all(|&a| on_channels(a)) || steps != [1.0] {
            return Err(format!(
                "slice over axes {axes:?} with steps {steps:?}: only a contiguous range of channels is represented"
            ));
        }
        let c = self.dims(&layer)?[1] as f64;
        let clamp = |v: f64| (if v < 0.0 { v + c } else { v }).clamp(0.0, c) as usize;
        let (start, end) = (clamp(starts[0]), clamp(ends[0]));
        self.push(node, name, Op::Slice { start, end }, vec![layer], 4);
        Ok(())
    }

    /// `Split` along channels into consecutive slices (sizes given, or equal parts).
    fn split(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let (layer, rank) = self.layer_input(node, 0)?;
        let axis = attribute(node, "axis").map_or(0, |a| a.i);
        if rank != 4 || !(axis == 1 || axis == -3) {
            return Err(format!(
                "split along axis {axis} of a rank-{rank} value: only channels are represented"
            ));
        }
        let c = self.dims(&layer)?[1];
        let parts = node.output.len();
        let sizes: Vec<usize> = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(_) => self.constant_input(node, 1)?.as_dims()?,
            None => match ints_attribute(node, "split") {
                Some(v) => v.iter().map(|&x| x.max(0) as usize).collect(),
                // Equal parts, the last one smaller when C does not divide (opset 18).
                None => {
                    let size = c.div_ceil(parts);
                    (0..parts).map(|k| size.min(c.saturating_sub(k * size))).collect()
                }
            },
        };
        if sizes.len() != parts || sizes.iter().sum::<usize>() != c || sizes.contains(&0) {
            return Err(format!("split sizes {sizes:?} do not cut {c} channels into {parts} parts"));
        }
        let mut start = 0;
        for (k, size) in sizes.into_iter().enumerate() {
            let op = Op::Slice { start, end: start + size };
            self.push_output(node, k, format!("{name}.{k}"), op, layer.clone());
            start += size;
        }
        Ok(())
    }

    /// Add/Sum of layer outputs (a residual sum), or an element-wise operation with a
    /// constant operand.
    fn add(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let operands = (0..node.input.len()).map(|s| self.value(node, s)).collect::<Result<Vec<_>, _>>()?;
        let layers: Vec<(String, usize)> = operands
            .iter()
            .filter_map(|v| match v {
                Value::Layer { layer, rank } => Some((layer.clone(), *rank)),
                _ => None,
            })
            .collect();
        if layers.len() == operands.len() && layers.len() >= 2 {
            let rank = layers[0].1;
            self.push(node, name, Op::Add, layers.into_iter().map(|(l, _)| l).collect(), rank);
            return Ok(());
        }
        if operands.len() == 1 {
            self.alias(node, operands[0].clone());
            return Ok(());
        }
        if operands.len() != 2 {
            return Err("a sum of more than two values that are not all layer outputs is not represented".into());
        }
        self.arithmetic(node, name)
    }

    /// A binary element-wise operation (`Add`, `Sub`, `Mul`, `Div`) with a constant
    /// operand: two constants are folded; a layer output and a per-channel constant are
    /// folded into the convolution, linear or BatchNorm layer that produced the output (its
    /// scale or bias), when nothing else reads that output.
    fn arithmetic(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let op = node.op_type.as_str();
        let (a, b) = (self.value(node, 0)?, self.value(node, 1)?);
        let f = |x: f64, y: f64| match op {
            "Add" | "Sum" => x + y,
            "Sub" => x - y,
            "Mul" => x * y,
            _ => x / y,
        };
        let (layer, rank, c, layer_first, value_name) = match (a, b) {
            (Value::Constant(x), Value::Constant(y)) => {
                self.alias(node, Value::Constant(x.zip(&y, f)?));
                return Ok(());
            }
            (Value::Layer { layer, rank }, Value::Constant(c)) => (layer, rank, c, true, node.input[0].clone()),
            (Value::Constant(c), Value::Layer { layer, rank }) => (layer, rank, c, false, node.input[1].clone()),
            (Value::Layer { layer: x, rank }, Value::Layer { layer: y, .. }) if op == "Mul" => {
                self.push(node, name, Op::Mul, vec![x, y], rank);
                return Ok(());
            }
            (Value::Layer { .. }, Value::Layer { .. }) => {
                return Err(format!("{op} of two layer outputs is not represented (Add and Mul are)"));
            }
            _ => return Err(SHUFFLE_ONLY.into()),
        };
        let width = self.width(&layer).ok_or_else(|| {
            format!("a constant is applied to the output of `{layer}`, which is not a convolution, linear or BatchNorm layer")
        })?;
        let values = c.per_channel(rank, width).ok_or_else(|| {
            format!(
                "a constant of dimensions {:?} does not act per channel on the {width} channels of `{layer}`",
                c.dims
            )
        })?;
        if self.uses.get(&value_name).copied().unwrap_or(0) > 1 {
            return Err(format!(
                "the output of `{layer}` is also read elsewhere, so the constant cannot be folded into it"
            ));
        }
        let (scale, shift): (Vec<f64>, Vec<f64>) = match (op, layer_first) {
            ("Add" | "Sum", _) => (vec![1.0; width], values),
            ("Sub", true) => (vec![1.0; width], values.iter().map(|v| -v).collect()),
            ("Mul", _) => (values, vec![0.0; width]),
            ("Div", true) if values.iter().all(|&v| v != 0.0) => (values.iter().map(|v| 1.0 / v).collect(), vec![0.0; width]),
            _ => {
                return Err(format!(
                    "{op} with a layer output as its second operand (or by zero) is not represented"
                ));
            }
        };
        self.fold_affine(&layer, &scale, &shift);
        self.alias(node, Value::Layer { layer, rank });
        Ok(())
    }

    /// Output channels of a conv, linear or BatchNorm layer being built.
    fn width(&self, layer: &str) -> Option<usize> {
        let pending = self.layers.iter().rev().find(|p| p.name == layer)?;
        match pending.op {
            Op::Conv2d { out_channels, .. } => Some(out_channels),
            Op::Linear { out_features, .. } => Some(out_features),
            Op::BatchNorm { .. } => self.weights.tensors.get(&format!("{layer}.weight")).map(|t| t.data.len()),
            _ => None,
        }
    }

    /// `y ↦ scale·y + shift` per channel, folded into the layer's weights and bias (a
    /// missing bias is created).
    fn fold_affine(&mut self, layer: &str, scale: &[f64], shift: &[f64]) {
        let pending = self.layers.iter_mut().rev().find(|p| p.name == layer).expect("width() found it");
        let (weight, bias) = match &mut pending.op {
            Op::Conv2d { bias, .. } | Op::Linear { bias, .. } => {
                let had = std::mem::replace(bias, true);
                ("weight", if had { Some("bias") } else { None })
            }
            _ => ("weight", Some("bias")),
        };
        let w = self
            .weights
            .tensors
            .get_mut(&format!("{layer}.{weight}"))
            .expect("imported with its layer");
        let per_row = w.data.len() / scale.len();
        for (row, &s) in w.data.chunks_mut(per_row).zip(scale) {
            row.iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
        }
        let old: Vec<f64> = match bias {
            Some(kind) => self.weights.tensors[&format!("{layer}.{kind}")]
                .data
                .iter()
                .map(|&v| v as f64)
                .collect(),
            None => vec![0.0; scale.len()],
        };
        let new: Vec<f64> = old.iter().zip(scale).zip(shift).map(|((b, s), t)| b * s + t).collect();
        self.tensor(layer, "bias", vec![new.len()], &new);
    }
}

/// Parses ONNX bytes into a network and its weights. A model whose weights live in
/// external data files must be read with [`from_file`].
pub fn from_bytes(bytes: &[u8]) -> Result<(Network, Weights), OnnxError> {
    import(bytes, ExternalData::new(None))
}

/// Reads an ONNX file into a network and its weights; external data files (PyTorch's
/// default exporter writes `model.onnx.data`) are read from the model's folder.
pub fn from_file(path: &Path) -> Result<(Network, Weights), OnnxError> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Decode(format!("{}: {e}", path.display())))?;
    import(&bytes, ExternalData::new(Some(path.parent().unwrap_or(Path::new(".")))))
}

fn import(bytes: &[u8], external: ExternalData) -> Result<(Network, Weights), OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let graph = model.graph.ok_or_else(|| OnnxError::Decode("the model has no graph".into()))?;
    let mut uses: HashMap<String, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| &n.input).chain(graph.output.iter().map(|o| &o.name)) {
        *uses.entry(name.clone()).or_default() += 1;
    }
    let mut importer = Importer {
        layers: Vec::new(),
        weights: Weights::default(),
        values: HashMap::new(),
        uses,
        opset,
        flat_softmax: Vec::new(),
        external,
        batch: 1,
    };
    for t in &graph.initializer {
        let c = constant(t, &mut importer.external).map_err(|m| OnnxError::Graph(format!("initializer `{}`: {m}", t.name)))?;
        importer.values.insert(t.name.clone(), Value::Constant(c));
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !importer.values.contains_key(&i.name)).collect();
    let [input] = inputs.as_slice() else {
        return Err(OnnxError::Graph(format!(
            "{} graph inputs besides the initializers; sacp takes exactly one image input",
            inputs.len()
        )));
    };
    let dims: Vec<i64> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value.unwrap_or(-1)).collect())
        .unwrap_or_default();
    let [n, c, h, w] = dims.as_slice() else {
        return Err(OnnxError::Graph(format!(
            "input `{}` has shape {dims:?}; [N, C, H, W] was expected",
            input.name
        )));
    };
    if [c, h, w].iter().any(|&&d| d <= 0) {
        return Err(OnnxError::Graph(format!(
            "input `{}` needs fixed C, H, W; found {dims:?}",
            input.name
        )));
    }
    importer.batch = usize::try_from(*n).ok().filter(|&n| n > 0).unwrap_or(1);
    let input_op = Op::Input {
        channels: *c as usize,
        height: *h as usize,
        width: *w as usize,
    };
    importer.layers.push(Pending {
        name: input.name.clone(),
        op: input_op,
        inputs: vec![],
    });
    importer.values.insert(
        input.name.clone(),
        Value::Layer {
            layer: input.name.clone(),
            rank: 4,
        },
    );
    let output = graph
        .output
        .first()
        .ok_or_else(|| OnnxError::Graph("the graph has no output".into()))?;
    let mut unsupported = Vec::new();
    // Layer names: the node's name, else its output's; the graph's input and output names
    // are kept for the input and output layers (so an export keeps them).
    let mut used = std::collections::HashSet::from([input.name.clone(), output.name.clone()]);
    for (i, node) in graph.node.iter().enumerate() {
        let base = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        let base = if base.is_empty() { format!("node{i}") } else { base };
        let name = if used.contains(&base) { format!("{base}.{i}") } else { base };
        used.insert(name.clone());
        let foreign = !(node.domain.is_empty() || node.domain == "ai.onnx");
        match if foreign { Ok(false) } else { importer.node(node, &name) } {
            Ok(true) => {}
            Ok(false) => unsupported.push((name, node.op_type.clone())),
            Err(message) if unsupported.is_empty() => {
                return Err(OnnxError::Invalid {
                    node: name,
                    op: node.op_type.clone(),
                    message,
                });
            }
            // After an unsupported node, later nodes may lack their inputs; every unsupported
            // node is still found, since unsupported operators are recognised first.
            Err(_) => {}
        }
    }
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported(unsupported));
    }
    let last = match importer.values.get(&output.name) {
        Some(Value::Layer { layer, .. }) => layer.clone(),
        _ => return Err(OnnxError::Graph(format!("output `{}` is not computed by the graph", output.name))),
    };
    let mut builder = NetworkBuilder::new();
    for layer in importer.layers {
        builder.add_named(layer.name, layer.op, &layer.inputs)?;
    }
    builder.add_named(output.name.clone(), Op::Output, &[last])?;
    let network = builder.finish()?;
    for name in &importer.flat_softmax {
        let node = network.nodes().find(|&n| &network.node(n).name == name).expect("built");
        if network.shape(node).spatial() != 1 {
            return Err(OnnxError::Invalid {
                node: name.clone(),
                op: "Softmax".into(),
                message: format!(
                    "before opset 13 a softmax over axis 1 spans C×H×W; over a {} map that is not a softmax over channels",
                    network.shape(node)
                ),
            });
        }
    }
    importer.weights.check(&network, "ONNX model")?;
    Ok((network, importer.weights))
}
