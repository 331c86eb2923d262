//! Network + weights → an ONNX model (opset 14, weights as initializers, batch dimension
//! symbolic). Every op sacp represents has an exact ONNX counterpart.

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto, attribute_type, data_type,
};
use crate::ir::{Network, Op, Shape};
use crate::weights::{WeightTensor, Weights};
use petgraph::graph::NodeIndex;
use prost::Message;

/// The opset the export targets.
pub const OPSET: i64 = 14;
/// The ONNX IR version written (IR 8 goes with opsets 14 and 15).
const IR_VERSION: i64 = 8;

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: value,
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: value,
        ..Default::default()
    }
}

fn float_tensor(name: String, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name,
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: String, data: &[i64]) -> TensorProto {
    TensorProto {
        name,
        dims: vec![data.len() as i64],
        data_type: data_type::INT64,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, shape: Shape) -> ValueInfoProto {
    let batch = Dimension {
        dim_value: None,
        dim_param: Some("N".into()),
    };
    let dims = std::iter::once(batch).chain(shape.dims().into_iter().map(|d| Dimension {
        dim_value: Some(d as i64),
        dim_param: None,
    }));
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: dims.collect() }),
            }),
        }),
    }
}

fn node(op_type: &str, name: &str, inputs: Vec<String>, output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs,
        output: vec![output.into()],
        name: name.into(),
        op_type: op_type.into(),
        attribute,
        ..Default::default()
    }
}

struct Builder<'a> {
    net: &'a Network,
    weights: &'a Weights,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder<'_> {
    fn weight(&mut self, node: NodeIndex, kind: &str) -> String {
        let name = format!("{}.{kind}", self.net.node(node).name);
        let WeightTensor { shape, data } = self.weights.of(self.net, node, kind);
        self.initializers.push(float_tensor(name.clone(), shape, data));
        name
    }

    fn constant_f32(&mut self, name: String, value: f32) -> String {
        self.initializers.push(float_tensor(name.clone(), &[], &[value]));
        name
    }

    fn layer(&mut self, index: NodeIndex) {
        let net = self.net;
        let layer = net.node(index);
        let name = layer.name.as_str();
        let inputs: Vec<String> = net.inputs(index).into_iter().map(|i| net.node(i).name.clone()).collect();
        let first = || inputs[0].clone();
        let emitted = match &layer.op {
            Op::Input { .. } => return,
            Op::Conv2d {
                kernel,
                stride,
                padding,
                groups,
                bias,
                ..
            } => {
                let mut args = vec![first(), self.weight(index, "weight")];
                if *bias {
                    args.push(self.weight(index, "bias"));
                }
                let attrs = vec![
                    ints("kernel_shape", kernel),
                    ints("strides", stride),
                    ints("pads", &Op::symmetric_padding(*padding)),
                    ints("dilations", &[1, 1]),
                    int("group", *groups as i64),
                ];
                node("Conv", name, args, name, attrs)
            }
            Op::BatchNorm { eps } => {
                let args = vec![
                    first(),
                    self.weight(index, "weight"),
                    self.weight(index, "bias"),
                    self.weight(index, "running_mean"),
                    self.weight(index, "running_var"),
                ];
                node("BatchNormalization", name, args, name, vec![float("epsilon", *eps as f32)])
            }
            Op::Relu => node("Relu", name, vec![first()], name, vec![]),
            Op::Relu6 => {
                let low = self.constant_f32(format!("{name}.min"), 0.0);
                let high = self.constant_f32(format!("{name}.max"), 6.0);
                node("Clip", name, vec![first(), low, high], name, vec![])
            }
            Op::MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            } => node(
                "MaxPool",
                name,
                vec![first()],
                name,
                vec![
                    ints("kernel_shape", kernel),
                    ints("strides", stride),
                    ints("pads", padding),
                    int("ceil_mode", *ceil_mode as i64),
                ],
            ),
            Op::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => node(
                "AveragePool",
                name,
                vec![first()],
                name,
                vec![
                    ints("kernel_shape", kernel),
                    ints("strides", stride),
                    ints("pads", padding),
                    int("ceil_mode", *ceil_mode as i64),
                    int("count_include_pad", *count_include_pad as i64),
                ],
            ),
            Op::Lrn { size, alpha, beta, k } => node(
                "LRN",
                name,
                vec![first()],
                name,
                vec![
                    int("size", *size as i64),
                    float("alpha", *alpha as f32),
                    float("beta", *beta as f32),
                    float("bias", *k as f32),
                ],
            ),
            Op::Softmax => node("Softmax", name, vec![first()], name, vec![int("axis", 1)]),
            Op::Sigmoid => node("Sigmoid", name, vec![first()], name, vec![]),
            Op::HardSigmoid { alpha, beta } => node(
                "HardSigmoid",
                name,
                vec![first()],
                name,
                vec![float("alpha", *alpha as f32), float("beta", *beta as f32)],
            ),
            Op::HardSwish => node("HardSwish", name, vec![first()], name, vec![]),
            Op::Mul => node("Mul", name, inputs.clone(), name, vec![]),
            Op::Permute { order } => {
                let indices = format!("{name}.order");
                let order: Vec<i64> = order.iter().map(|&i| i as i64).collect();
                self.initializers.push(int64_tensor(indices.clone(), &order));
                node("Gather", name, vec![first(), indices], name, vec![int("axis", 1)])
            }
            Op::Slice { start, end } => {
                let bounds = [("starts", *start), ("ends", *end), ("axes", 1)];
                let args = bounds
                    .iter()
                    .map(|(kind, v)| {
                        let n = format!("{name}.{kind}");
                        self.initializers.push(int64_tensor(n.clone(), &[*v as i64]));
                        n
                    })
                    .collect::<Vec<_>>();
                node("Slice", name, [vec![first()], args].concat(), name, vec![])
            }
            Op::GlobalAvgPool => node("GlobalAveragePool", name, vec![first()], name, vec![]),
            Op::Add if inputs.len() == 2 => node("Add", name, inputs.clone(), name, vec![]),
            Op::Add => node("Sum", name, inputs.clone(), name, vec![]),
            Op::Concat => node("Concat", name, inputs.clone(), name, vec![int("axis", 1)]),
            Op::ZeroPad { before, after, stride } => {
                let mut source = first();
                if *stride > 1 {
                    let sub = format!("{name}.subsample");
                    self.nodes.push(node(
                        "MaxPool",
                        &sub,
                        vec![source],
                        &sub,
                        vec![ints("kernel_shape", &[1, 1]), ints("strides", &[*stride, *stride])],
                    ));
                    source = sub;
                }
                let amounts = [0, *before as i64, 0, 0, 0, *after as i64, 0, 0];
                let pads_name = format!("{name}.pads");
                self.initializers.push(int64_tensor(pads_name.clone(), &amounts));
                node("Pad", name, vec![source, pads_name], name, vec![])
            }
            Op::Flatten => match net.input_shapes(index)[0] {
                Shape::Map { .. } => node("Flatten", name, vec![first()], name, vec![int("axis", 1)]),
                Shape::Flat { .. } => node("Identity", name, vec![first()], name, vec![]),
            },
            Op::Linear { bias, .. } => {
                let mut args = vec![first(), self.weight(index, "weight")];
                if *bias {
                    args.push(self.weight(index, "bias"));
                }
                node("Gemm", name, args, name, vec![int("transB", 1)])
            }
            Op::Output => match net.input_shapes(index)[0] {
                Shape::Map { .. } => node("Flatten", name, vec![first()], name, vec![int("axis", 1)]),
                Shape::Flat { .. } => node("Identity", name, vec![first()], name, vec![]),
            },
        };
        self.nodes.push(emitted);
    }
}

/// The ONNX model of a network with its weights (checked against the network first).
pub fn to_model(net: &Network, weights: &Weights) -> ModelProto {
    let mut builder = Builder {
        net,
        weights,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    net.nodes().for_each(|n| builder.layer(n));
    let input = net.input();
    let output = net.output();
    let out_shape = Shape::Flat {
        f: net.shape(output).numel(),
    };
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "sacp".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: builder.nodes,
            name: "sacp".into(),
            initializer: builder.initializers,
            input: vec![value_info(&net.node(input).name, net.shape(input))],
            output: vec![value_info(&net.node(output).name, out_shape)],
            value_info: Vec::new(),
        }),
    }
}

/// The ONNX file's bytes.
pub fn to_bytes(net: &Network, weights: &Weights) -> Vec<u8> {
    to_model(net, weights).encode_to_vec()
}
