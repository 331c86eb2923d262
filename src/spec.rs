//! Model specs: the TOML files under `models/` that name a zoo network, and the explicit
//! layer lists that pruned networks are written as.
//!
//! A zoo spec:
//! ```toml
//! arch = "resnet"          # vgg | resnet | mobilenet_v2 | graph
//! depth = 56
//! num_classes = 10
//! input = [3, 32, 32]      # channels, height, width
//! weights = "resnet56.safetensors"   # optional, relative to this file
//! ```
//! A graph spec (`arch = "graph"`) lists its layers instead of `depth`/`num_classes`; see
//! [`write_graph_spec`]; its input layer is named `input` unless `input_name` says
//! otherwise. An ONNX spec (`arch = "onnx"`, `onnx = "model.onnx"`) imports the network and
//! its weights from an ONNX file (and its external data files, beside it).

use crate::ir::{IrError, Network, NetworkBuilder, OP_KINDS, Op};
use crate::models::{self, ZooConfig, ZooError};
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The ops a graph spec accepts: every kind but `input`, which `input = [C, H, W]` declares.
pub fn graph_ops() -> &'static [&'static str] {
    &OP_KINDS[1..]
}

/// A malformed or unreadable model spec. The message names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// 1-based line of the offending key, when known.
    pub line: Option<usize>,
    /// What is wrong and what would be valid.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    arch: Spanned<String>,
    depth: Option<Spanned<usize>>,
    num_classes: Option<Spanned<usize>>,
    input: Option<Spanned<[usize; 3]>>,
    input_name: Option<String>,
    weights: Option<String>,
    onnx: Option<Spanned<String>>,
    #[serde(default)]
    layers: Vec<LayerSpec>,
}

/// One layer of a graph spec. Which keys are required depends on `op`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LayerSpec {
    name: String,
    op: Spanned<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out_channels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    out_features: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<[usize; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stride: Option<[usize; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    padding: Option<Spanned<Vec<usize>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceil_mode: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    count_include_pad: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bias: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<usize>,
}

/// A model spec read from disk.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    /// The file it was read from.
    pub path: PathBuf,
    /// The zoo settings, for zoo specs.
    pub zoo: Option<ZooConfig>,
    /// The network it describes.
    pub network: Network,
    /// The weights file it names, resolved relative to the spec's folder.
    pub weights: Option<PathBuf>,
    /// For `arch = "onnx"`: the ONNX file and the weights inside it.
    pub onnx: Option<(PathBuf, Weights)>,
}

impl ModelSpec {
    /// The weights the spec carries: its `weights` file when it names one, else the
    /// weights inside its ONNX file; `None` when it has neither.
    pub fn embedded_weights(&self) -> Option<&Weights> {
        self.onnx.as_ref().filter(|_| self.weights.is_none()).map(|(_, w)| w)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks a model spec file.
pub fn load(path: &Path) -> Result<ModelSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.display().to_string(),
        line: None,
        message: e.to_string(),
    })?;
    parse(&text, path)
}

/// Parses a model spec; `path` names it in errors and anchors a relative `weights` path.
pub fn parse(text: &str, path: &Path) -> Result<ModelSpec, SpecError> {
    let file = path.display().to_string();
    let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError {
        file: file.clone(),
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let at = |span: std::ops::Range<usize>, key: &str, message: String| SpecError {
        file: file.clone(),
        line: Some(line_of(text, span.start)),
        message: format!("`{key}`: {message}"),
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    if raw.arch.get_ref() == "onnx" {
        let onnx = raw.onnx.as_ref().ok_or_else(|| {
            at(
                raw.arch.span(),
                "onnx",
                "missing; an onnx spec names its file: onnx = \"model.onnx\"".into(),
            )
        })?;
        let onnx_path = folder.join(onnx.get_ref());
        let (network, embedded) =
            crate::onnx::from_file(&onnx_path).map_err(|e| at(onnx.span(), "onnx", format!("{}: {e}", onnx_path.display())))?;
        if let Some(input) = &raw.input
            && network.shape(network.input()).dims() != input.get_ref().to_vec()
        {
            return Err(at(
                input.span(),
                "input",
                format!("the ONNX model's input is {}", network.shape(network.input())),
            ));
        }
        return Ok(ModelSpec {
            path: path.to_path_buf(),
            zoo: None,
            network,
            weights: raw.weights.map(|w| folder.join(w)),
            onnx: Some((onnx_path, embedded)),
        });
    }
    if let Some(onnx) = &raw.onnx {
        return Err(at(onnx.span(), "onnx", "only `arch = \"onnx\"` specs read an ONNX file".into()));
    }
    let input = *raw
        .input
        .as_ref()
        .ok_or_else(|| at(raw.arch.span(), "input", "missing; give input = [channels, height, width]".into()))?
        .get_ref();
    let raw_input_span = raw.input.as_ref().map(|i| i.span()).expect("checked above");
    let (network, zoo) = if raw.arch.get_ref() == "graph" {
        if let Some(d) = &raw.depth {
            return Err(at(d.span(), "depth", "a graph spec lists its layers; remove `depth`".into()));
        }
        let input_name = raw.input_name.as_deref().unwrap_or("input");
        (build_graph(&raw.layers, input, input_name, text, &file)?, None)
    } else {
        if let Some(layer) = raw.layers.first() {
            return Err(at(
                layer.op.span(),
                "layers",
                format!(
                    "only `arch = \"graph\"` specs list layers, this one is arch `{}`",
                    raw.arch.get_ref()
                ),
            ));
        }
        let num_classes = raw.num_classes.as_ref().ok_or_else(|| {
            at(
                raw.arch.span(),
                "num_classes",
                "missing; a zoo spec needs the number of classes".into(),
            )
        })?;
        let config = ZooConfig {
            arch: raw.arch.get_ref().clone(),
            depth: raw.depth.as_ref().map(|d| *d.get_ref()),
            num_classes: *num_classes.get_ref(),
            input,
        };
        let network = models::build(&config).map_err(|e| match e {
            ZooError::UnknownArch(_) => at(raw.arch.span(), "arch", e.to_string()),
            ZooError::Depth { .. } => at(raw.depth.as_ref().map_or(raw.arch.span(), |d| d.span()), "depth", e.to_string()),
            ZooError::Ir(e) => at(
                raw_input_span.clone(),
                "input",
                format!("{e}; the network does not fit input {input:?}"),
            ),
        })?;
        (network, Some(config))
    };
    let weights = raw.weights.map(|w| folder.join(w));
    Ok(ModelSpec {
        path: path.to_path_buf(),
        zoo,
        network,
        weights,
        onnx: None,
    })
}

fn build_graph(layers: &[LayerSpec], input: [usize; 3], input_name: &str, text: &str, file: &str) -> Result<Network, SpecError> {
    let mut builder = NetworkBuilder::new();
    let fail = |line: Option<usize>, message: String| SpecError {
        file: file.to_string(),
        line,
        message,
    };
    builder
        .add(
            input_name,
            Op::Input {
                channels: input[0],
                height: input[1],
                width: input[2],
            },
            &[],
        )
        .map_err(|e| fail(None, e.to_string()))?;
    for layer in layers {
        let line = Some(line_of(text, layer.op.span().start));
        let need = |value: Option<usize>, key: &str| {
            value.ok_or_else(|| {
                fail(
                    line,
                    format!("layer `{}` (op {}): `{key}` is required", layer.name, layer.op.get_ref()),
                )
            })
        };
        let pair = |value: Option<[usize; 2]>, default: [usize; 2]| value.unwrap_or(default);
        // `padding`: `[h, w]` on both sides, or (pools only) `[top, left, bottom, right]`.
        let padding = |allow_four: bool| -> Result<[usize; 4], SpecError> {
            match layer
                .padding
                .as_ref()
                .map(|p| (p.get_ref().as_slice(), line_of(text, p.span().start)))
            {
                None => Ok([0; 4]),
                Some((&[h, w], _)) => Ok(Op::symmetric_padding([h, w])),
                Some((&[t, l, b, r], _)) if allow_four => Ok([t, l, b, r]),
                Some((values, line)) => Err(fail(
                    Some(line),
                    format!(
                        "layer `{}` (op {}): `padding` = {values:?}: give [h, w]{}",
                        layer.name,
                        layer.op.get_ref(),
                        if allow_four { " or [top, left, bottom, right]" } else { "" }
                    ),
                )),
            }
        };
        let op = match layer.op.get_ref().as_str() {
            "conv2d" => Op::Conv2d {
                out_channels: need(layer.out_channels, "out_channels")?,
                kernel: layer
                    .kernel
                    .ok_or_else(|| fail(line, format!("layer `{}` (op conv2d): `kernel` is required", layer.name)))?,
                stride: pair(layer.stride, [1, 1]),
                padding: {
                    let [t, l, _, _] = padding(false)?;
                    [t, l]
                },
                groups: layer.groups.unwrap_or(1),
                bias: layer.bias.unwrap_or(false),
            },
            "batchnorm" => {
                let eps = layer.eps.unwrap_or(1e-5);
                if !(eps >= 0.0 && eps.is_finite()) {
                    return Err(fail(
                        line,
                        format!(
                            "layer `{}` (op batchnorm): `eps` = {eps} must be a finite, non-negative number",
                            layer.name
                        ),
                    ));
                }
                Op::BatchNorm { eps }
            }
            "relu" => Op::Relu,
            "relu6" => Op::Relu6,
            "maxpool2d" | "avgpool2d" => {
                let kernel = layer
                    .kernel
                    .ok_or_else(|| fail(line, format!("layer `{}`: `kernel` is required", layer.name)))?;
                let (stride, padding) = (pair(layer.stride, kernel), padding(true)?);
                let ceil_mode = layer.ceil_mode.unwrap_or(false);
                if layer.op.get_ref() == "maxpool2d" {
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
                        count_include_pad: layer.count_include_pad.unwrap_or(true),
                    }
                }
            }
            "global_avgpool" => Op::GlobalAvgPool,
            "lrn" => Op::Lrn {
                size: need(layer.size, "size")?,
                alpha: layer.alpha.unwrap_or(1e-4),
                beta: layer.beta.unwrap_or(0.75),
                k: layer.k.unwrap_or(1.0),
            },
            "softmax" => Op::Softmax,
            "sigmoid" => Op::Sigmoid,
            "hardsigmoid" => Op::HardSigmoid {
                alpha: layer.alpha.unwrap_or(1.0 / 6.0),
                beta: layer.beta.unwrap_or(0.5),
            },
            "hardswish" => Op::HardSwish,
            "mul" => Op::Mul,
            "permute" => Op::Permute {
                order: layer
                    .order
                    .clone()
                    .ok_or_else(|| fail(line, format!("layer `{}` (op permute): `order` is required", layer.name)))?,
            },
            "slice" => Op::Slice {
                start: need(layer.start, "start")?,
                end: need(layer.end, "end")?,
            },
            "add" => Op::Add,
            "concat" => Op::Concat,
            "zeropad" => {
                let stride = pair(layer.stride, [1, 1]);
                if stride[0] != stride[1] {
                    return Err(fail(
                        line,
                        format!(
                            "layer `{}` (op zeropad): `stride` must be equal on both axes, got {stride:?}",
                            layer.name
                        ),
                    ));
                }
                Op::ZeroPad {
                    before: need(layer.before, "before")?,
                    after: need(layer.after, "after")?,
                    stride: stride[0],
                }
            }
            "flatten" => Op::Flatten,
            "linear" => Op::Linear {
                out_features: need(layer.out_features, "out_features")?,
                bias: layer.bias.unwrap_or(true),
            },
            "output" => Op::Output,
            other => {
                return Err(fail(
                    line,
                    format!(
                        "layer `{}`: `op`: unknown op `{other}`; valid: {}",
                        layer.name,
                        graph_ops().join(", ")
                    ),
                ));
            }
        };
        builder
            .add_named(layer.name.clone(), op, &layer.inputs)
            .map_err(|e| fail(line, e.to_string()))?;
    }
    builder.finish().map_err(|e: IrError| {
        let line = match &e {
            IrError::Shape { node, .. } => layers.iter().find(|l| &l.name == node).map(|l| line_of(text, l.op.span().start)),
            _ => None,
        };
        fail(line, e.to_string())
    })
}

/// A short content hash of a network's structure (its graph spec): equal for equal
/// networks, different when any layer, width or connection differs. Cached files that
/// belong to a network carry it.
pub fn fingerprint(net: &Network) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(write_graph_spec(net, None).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Writes a network as a graph spec (`arch = "graph"` with one `[[layers]]` table per
/// layer), the form pruned networks are saved in. `weights` is stored as given.
pub fn write_graph_spec(net: &Network, weights: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        arch: &'static str,
        input: [usize; 3],
        #[serde(skip_serializing_if = "Option::is_none")]
        input_name: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        weights: Option<&'a str>,
        layers: Vec<LayerSpec>,
    }
    let input = match net.node(net.input()).op {
        Op::Input { channels, height, width } => [channels, height, width],
        _ => unreachable!("the input layer is an Input op"),
    };
    let layers = net
        .nodes()
        .filter(|&n| n != net.input())
        .map(|n| {
            let node = net.node(n);
            let mut spec = LayerSpec {
                name: node.name.clone(),
                op: Spanned::new(0..0, node.op.kind().to_string()),
                inputs: net.inputs(n).iter().map(|&i| net.node(i).name.clone()).collect(),
                out_channels: None,
                out_features: None,
                kernel: None,
                stride: None,
                padding: None,
                groups: None,
                bias: None,
                eps: None,
                before: None,
                after: None,
                ceil_mode: None,
                count_include_pad: None,
                size: None,
                alpha: None,
                beta: None,
                k: None,
                order: None,
                start: None,
                end: None,
            };
            let padding = |p: Vec<usize>| Some(Spanned::new(0..0, p));
            match &node.op {
                Op::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding: pads,
                    groups,
                    bias,
                } => {
                    (spec.out_channels, spec.kernel, spec.stride, spec.padding) =
                        (Some(*out_channels), Some(*kernel), Some(*stride), padding(pads.to_vec()));
                    (spec.groups, spec.bias) = (Some(*groups), Some(*bias));
                }
                Op::BatchNorm { eps } => spec.eps = Some(*eps),
                Op::MaxPool2d {
                    kernel,
                    stride,
                    padding: pads,
                    ceil_mode,
                }
                | Op::AvgPool2d {
                    kernel,
                    stride,
                    padding: pads,
                    ceil_mode,
                    ..
                } => {
                    let symmetric = pads[0] == pads[2] && pads[1] == pads[3];
                    let pads = if symmetric { pads[..2].to_vec() } else { pads.to_vec() };
                    (spec.kernel, spec.stride, spec.padding) = (Some(*kernel), Some(*stride), padding(pads));
                    spec.ceil_mode = ceil_mode.then_some(true);
                    if let Op::AvgPool2d { count_include_pad, .. } = &node.op {
                        spec.count_include_pad = (!count_include_pad).then_some(false);
                    }
                }
                Op::Lrn { size, alpha, beta, k } => {
                    (spec.size, spec.alpha, spec.beta, spec.k) = (Some(*size), Some(*alpha), Some(*beta), Some(*k));
                }
                Op::HardSigmoid { alpha, beta } => (spec.alpha, spec.beta) = (Some(*alpha), Some(*beta)),
                Op::Permute { order } => spec.order = Some(order.clone()),
                Op::Slice { start, end } => (spec.start, spec.end) = (Some(*start), Some(*end)),
                Op::ZeroPad { before, after, stride } => {
                    (spec.before, spec.after, spec.stride) = (Some(*before), Some(*after), Some([*stride; 2]))
                }
                Op::Linear { out_features, bias } => (spec.out_features, spec.bias) = (Some(*out_features), Some(*bias)),
                _ => {}
            }
            spec
        })
        .collect();
    let input_name = Some(net.node(net.input()).name.as_str()).filter(|&n| n != "input");
    toml::to_string(&Out {
        arch: "graph",
        input,
        input_name,
        weights,
        layers,
    })
    .expect("a graph spec always serialises")
}
