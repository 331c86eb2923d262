//! ONNX model → sacp network and weights, parsed at run time. Understood: Conv (explicit or
//! SAME padding), BatchNormalization, Relu, Clip(0, 6), MaxPool, AveragePool,
//! GlobalAveragePool, Add/Sum (a constant operand becomes the bias of the conv or linear
//! layer before it), Concat, Pad on channels, Flatten, Reshape to `[N, -1]`, Gemm, MatMul
//! with a constant, Identity, Dropout; Reshape of constants is folded. Anything else is an
//! error that lists every such node.

use super::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type};
use crate::ir::{IrError, Network, NetworkBuilder, Op};
use crate::weights::{WeightError, WeightTensor, Weights};
use prost::Message;
use std::collections::HashMap;

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

/// A constant: dims and values (floats; integers converted).
#[derive(Clone, Debug)]
struct Constant {
    dims: Vec<usize>,
    values: Vec<f64>,
}

/// The product of `dims`, or `None` when it overflows.
fn checked_product(dims: impl IntoIterator<Item = usize>) -> Option<usize> {
    dims.into_iter().try_fold(1usize, |a, d| a.checked_mul(d))
}

fn constant(t: &TensorProto) -> Result<Constant, String> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count = checked_product(dims.iter().copied()).ok_or("dimensions overflow")?;
    let values: Vec<f64> = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
            .collect(),
        data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
        data_type::INT64 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64)
            .collect(),
        data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
        other => return Err(format!("element type {other} (only float32 and int64 constants are read)")),
    };
    if values.len() != count {
        return Err(format!("{} values for dimensions {dims:?}", values.len()));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "value {} at flat index {i} (dimensions {dims:?}); weights must be finite",
            values[i]
        ));
    }
    Ok(Constant { dims, values })
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
    Layer { layer: String, rank: usize },
    Constant(Constant),
}

struct Importer {
    layers: Vec<Pending>,
    weights: Weights,
    values: HashMap<String, Value>,
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
        }
    }

    fn constant_input(&self, node: &NodeProto, slot: usize) -> Result<Constant, String> {
        match self.value(node, slot)? {
            Value::Constant(c) => Ok(c),
            Value::Layer { .. } => Err(format!("input {slot} must be a constant (an initializer)")),
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
                if attribute(node, "ceil_mode").is_some_and(|a| a.i != 0) {
                    return Err("ceil_mode = 1 is not represented".into());
                }
                let stride = pair(node, "strides", [1, 1])?;
                let padding = padding(node, kernel, stride)?;
                let op = if node.op_type == "MaxPool" {
                    Op::MaxPool2d { kernel, stride, padding }
                } else {
                    if padding != [0, 0] && attribute(node, "count_include_pad").is_none_or(|a| a.i == 0) {
                        return Err("padded average pooling that excludes the padding is not represented".into());
                    }
                    Op::AvgPool2d { kernel, stride, padding }
                };
                self.push(node, name, op, vec![x], 4);
            }
            "GlobalAveragePool" => {
                let (x, _) = self.layer_input(node, 0)?;
                self.push(node, name, Op::GlobalAvgPool, vec![x], 4);
            }
            "Add" | "Sum" => self.add(node, name)?,
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
            "Reshape" => match self.value(node, 0)? {
                Value::Constant(c) => {
                    let shape = self.constant_input(node, 1)?.values;
                    let total = c.values.len();
                    let known = checked_product(shape.iter().filter(|&&d| d > 0.0).map(|&d| d as usize));
                    let dims: Vec<usize> = shape
                        .iter()
                        .map(|&d| if d < 0.0 { total / known.unwrap_or(0).max(1) } else { d as usize })
                        .collect();
                    if checked_product(dims.iter().copied()) != Some(total) {
                        return Err(format!("cannot reshape {:?} to {shape:?}", c.dims));
                    }
                    self.alias(node, Value::Constant(Constant { dims, values: c.values }));
                }
                Value::Layer { layer, rank } => {
                    let shape = self.constant_input(node, 1)?.values;
                    let flattening = shape.len() == 2 && (shape[1] == -1.0 || shape[0] == 0.0 || shape[0] == 1.0 || shape[0] == -1.0);
                    if !flattening {
                        return Err(format!("reshape to {shape:?}: only flattening to [N, -1] is represented"));
                    }
                    if rank == 2 {
                        self.alias(node, Value::Layer { layer, rank });
                    } else {
                        self.push(node, name, Op::Flatten, vec![layer], 2);
                    }
                }
            },
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Add/Sum of layers, or a layer plus a constant bias folded into the layer before.
    fn add(&mut self, node: &NodeProto, name: &str) -> Result<(), String> {
        let operands = (0..node.input.len()).map(|s| self.value(node, s)).collect::<Result<Vec<_>, _>>()?;
        let constants: Vec<&Constant> = operands
            .iter()
            .filter_map(|v| if let Value::Constant(c) = v { Some(c) } else { None })
            .collect();
        let layers: Vec<(String, usize)> = operands
            .iter()
            .filter_map(|v| {
                if let Value::Layer { layer, rank } = v {
                    Some((layer.clone(), *rank))
                } else {
                    None
                }
            })
            .collect();
        match (layers.len(), constants.len()) {
            (n, 0) if n >= 2 => {
                let rank = layers[0].1;
                self.push(node, name, Op::Add, layers.into_iter().map(|(l, _)| l).collect(), rank);
                Ok(())
            }
            (1, 1) => {
                let (layer, rank) = layers[0].clone();
                let bias = constants[0].clone();
                let target = self.layers.iter_mut().rev().find(|p| p.name == layer);
                let Some(pending) = target else {
                    return Err("a constant is added to a value that is not a layer output".into());
                };
                let (has_bias, width) = match &mut pending.op {
                    Op::Conv2d { bias, out_channels, .. } => (bias, *out_channels),
                    Op::Linear { bias, out_features } => (bias, *out_features),
                    _ => {
                        return Err(format!(
                            "a constant is added to the output of `{layer}`, which is neither a convolution nor a linear layer"
                        ));
                    }
                };
                if *has_bias || bias.values.len() != width {
                    return Err(format!(
                        "a constant of dimensions {:?} cannot become the bias of `{layer}`",
                        bias.dims
                    ));
                }
                *has_bias = true;
                self.tensor(&layer, "bias", vec![width], &bias.values);
                self.alias(node, Value::Layer { layer, rank });
                Ok(())
            }
            _ => Err("only sums of layer outputs, or a layer output plus a bias, are represented".into()),
        }
    }
}

/// Parses ONNX bytes into a network and its weights.
pub fn from_bytes(bytes: &[u8]) -> Result<(Network, Weights), OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph = model.graph.ok_or_else(|| OnnxError::Decode("the model has no graph".into()))?;
    let mut importer = Importer {
        layers: Vec::new(),
        weights: Weights::default(),
        values: HashMap::new(),
    };
    for t in &graph.initializer {
        let c = constant(t).map_err(|m| OnnxError::Graph(format!("initializer `{}`: {m}", t.name)))?;
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
    let [_, c, h, w] = dims.as_slice() else {
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
    let mut unsupported = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (i, node) in graph.node.iter().enumerate() {
        let base = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        let base = if base.is_empty() { format!("node{i}") } else { base };
        let name = if used.contains(&base) { format!("{base}.{i}") } else { base };
        used.insert(name.clone());
        match importer.node(node, &name) {
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
    let output = graph
        .output
        .first()
        .ok_or_else(|| OnnxError::Graph("the graph has no output".into()))?;
    let last = match importer.values.get(&output.name) {
        Some(Value::Layer { layer, .. }) => layer.clone(),
        _ => return Err(OnnxError::Graph(format!("output `{}` is not computed by the graph", output.name))),
    };
    let mut builder = NetworkBuilder::new();
    for layer in importer.layers {
        builder.add_named(layer.name, layer.op, &layer.inputs)?;
    }
    let output_name = if used.contains("output") { "sacp.output" } else { "output" };
    builder.add_named(output_name, Op::Output, &[last])?;
    let network = builder.finish()?;
    importer.weights.check(&network, "ONNX model")?;
    Ok((network, importer.weights))
}
