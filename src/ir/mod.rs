//! The network as a graph: a petgraph DAG whose nodes are layers and whose edges are
//! tensors. Shape inference, parameter and multiply-accumulate (MAC) counts live here;
//! nothing in this module knows about burn.

mod cost;
mod op;
mod shape;

pub use cost::{Cost, MAX_COUNT, node_cost};
pub use op::{OP_KINDS, Op};
pub use shape::{MAX_ACTIVATION, Shape};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;

/// Errors raised while building or checking a network graph.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IrError {
    /// A layer's inputs do not have the shapes its operation needs.
    #[error("layer `{node}` ({op}): {reason}")]
    Shape {
        /// Name of the offending layer.
        node: String,
        /// Operation of the offending layer.
        op: &'static str,
        /// What does not fit, in words.
        reason: String,
    },
    /// A layer refers to an input that is not defined before it.
    #[error("layer `{node}`: input `{input}` is not a layer defined before it")]
    UnknownInput {
        /// Name of the layer that refers to the input.
        node: String,
        /// The name that could not be resolved.
        input: String,
    },
    /// Two layers share one name.
    #[error("layer name `{0}` is used twice; layer names must be unique")]
    DuplicateName(String),
    /// The network's parameter or MAC count exceeds [`MAX_COUNT`].
    #[error(
        "the network has more than {} parameters or MACs; sizes this large cannot be counted",
        cost::MAX_COUNT
    )]
    TooLarge,
    /// The graph has no input or no output layer, or more than one.
    #[error("a network needs exactly one `input` and one `output` layer, found {inputs} and {outputs}")]
    Endpoints {
        /// Number of input layers found.
        inputs: usize,
        /// Number of output layers found.
        outputs: usize,
    },
}

/// One layer of the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique layer name; weight tensors are named `<name>.weight`, `<name>.bias`, ...
    pub name: String,
    /// What the layer computes.
    pub op: Op,
}

/// A CNN as a directed acyclic graph of layers.
///
/// Invariant: node indices are a topological order (every layer's inputs have smaller
/// indices), there is exactly one `Input` and one `Output` node, and the shapes fit.
/// Edge weights are the input slot of the edge's target (order matters for `Concat`).
#[derive(Clone, Debug)]
pub struct Network {
    graph: DiGraph<Node, usize>,
    shapes: Vec<Shape>,
    input: NodeIndex,
    output: NodeIndex,
}

/// A network under construction: layers are appended in topological order.
#[derive(Clone, Debug, Default)]
pub struct NetworkBuilder {
    graph: DiGraph<Node, usize>,
    names: HashMap<String, NodeIndex>,
}

impl NetworkBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer reading from `inputs` (in slot order) and returns its index.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeIndex]) -> Result<NodeIndex, IrError> {
        let name = name.into();
        if self.names.contains_key(&name) {
            return Err(IrError::DuplicateName(name));
        }
        let index = self.graph.add_node(Node { name: name.clone(), op });
        for (slot, &from) in inputs.iter().enumerate() {
            self.graph.add_edge(from, index, slot);
        }
        self.names.insert(name, index);
        Ok(index)
    }

    /// Appends a layer whose inputs are given by name.
    pub fn add_named(&mut self, name: impl Into<String>, op: Op, inputs: &[String]) -> Result<NodeIndex, IrError> {
        let name = name.into();
        let resolved = inputs
            .iter()
            .map(|input| {
                self.names.get(input).copied().ok_or_else(|| IrError::UnknownInput {
                    node: name.clone(),
                    input: input.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.add(name, op, &resolved)
    }

    /// Checks the graph (endpoints, shapes) and returns the finished network.
    pub fn finish(self) -> Result<Network, IrError> {
        Network::from_graph(self.graph)
    }
}

impl Network {
    fn from_graph(graph: DiGraph<Node, usize>) -> Result<Self, IrError> {
        let find = |pred: fn(&Op) -> bool| graph.node_indices().filter(|&i| pred(&graph[i].op)).collect::<Vec<_>>();
        let inputs = find(|op| matches!(op, Op::Input { .. }));
        let outputs = find(|op| matches!(op, Op::Output));
        let endpoints = (inputs.len() == 1 && outputs.len() == 1).then(|| (inputs[0], outputs[0]));
        let (input, output) = endpoints.unwrap_or_default();
        let mut net = Network {
            graph,
            shapes: Vec::new(),
            input,
            output,
        };
        // Shapes first: a shape error names the layer at fault, which helps more than a
        // missing output layer further down.
        net.shapes = shape::infer(&net)?;
        let total = net.nodes().try_fold(Cost::default(), |sum, i| {
            let c = net.cost(i);
            Some(Cost {
                params: sum.params.checked_add(c.params).filter(|&p| p <= cost::MAX_COUNT)?,
                macs: sum.macs.checked_add(c.macs).filter(|&m| m <= cost::MAX_COUNT)?,
            })
        });
        if total.is_none() {
            return Err(IrError::TooLarge);
        }
        if endpoints.is_none() {
            return Err(IrError::Endpoints {
                inputs: inputs.len(),
                outputs: outputs.len(),
            });
        }
        Ok(net)
    }

    /// Rebuilds a network with the same topology and new operations (used by surgery).
    pub fn with_ops(&self, ops: Vec<Op>) -> Result<Network, IrError> {
        let mut graph = self.graph.clone();
        for (index, op) in graph.node_indices().zip(ops) {
            graph[index].op = op;
        }
        Network::from_graph(graph)
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when the network has no layers (never the case for a checked network).
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// All layer indices in topological order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.node_indices()
    }

    /// The layer at `index`.
    pub fn node(&self, index: NodeIndex) -> &Node {
        &self.graph[index]
    }

    /// The layer called `name`, if any.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.nodes().find(|&i| self.graph[i].name == name)
    }

    /// The layer's inputs in slot order.
    pub fn inputs(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut edges: Vec<_> = self
            .graph
            .edges_directed(index, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, source)| source).collect()
    }

    /// The layers that read this layer's output.
    pub fn consumers(&self, index: NodeIndex) -> Vec<NodeIndex> {
        let mut out: Vec<_> = self.graph.neighbors_directed(index, Direction::Outgoing).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The network's single input layer.
    pub fn input(&self) -> NodeIndex {
        self.input
    }

    /// The network's single output layer.
    pub fn output(&self) -> NodeIndex {
        self.output
    }

    /// The inferred output shape of a layer (per sample, without the batch axis).
    pub fn shape(&self, index: NodeIndex) -> Shape {
        self.shapes[index.index()]
    }

    /// Shapes of a layer's inputs, in slot order.
    pub fn input_shapes(&self, index: NodeIndex) -> Vec<Shape> {
        self.inputs(index).into_iter().map(|i| self.shape(i)).collect()
    }

    /// Parameters and MACs of one layer.
    pub fn cost(&self, index: NodeIndex) -> Cost {
        cost::node_cost(&self.graph[index].op, &self.input_shapes(index), self.shape(index))
    }

    /// Parameters and MACs of the whole network.
    pub fn total_cost(&self) -> Cost {
        self.nodes().map(|i| self.cost(i)).sum()
    }

    /// The underlying petgraph graph (read only).
    pub fn graph(&self) -> &DiGraph<Node, usize> {
        &self.graph
    }
}
