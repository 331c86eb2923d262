//! Costing a candidate from its widths alone, without building its network: a layer keeps
//! the units of its groups' kept channels, and its MACs and parameters follow from its
//! operation at those channel counts. Built only when every layer's channels are accounted
//! for by the groups; otherwise candidates are costed by pruning the network.

use crate::deps::Dependencies;
use crate::ir::{Cost, Network, Op, Shape, node_cost};

/// How one layer's output channel count follows from the groups' widths.
enum Channels {
    /// No group has units on the layer: it keeps its count.
    Fixed(usize),
    /// `scale ×` the sum over `(group, kept)` of `kept[width of group]`, where `kept[w]`
    /// counts the group's units on the layer among its first `w` channels. `scale` is the
    /// spatial size for a flatten whose units are its input's channels, else 1.
    Units { parts: Vec<(usize, Vec<usize>)>, scale: usize },
}

/// A layer that has a cost (conv, linear, batch norm), as the unpruned network has it.
struct CostedLayer {
    node: usize,
    op: Op,
    depthwise: bool,
    /// Input layers with their unpruned output shapes.
    inputs: Vec<(usize, Shape)>,
    output: Shape,
}

/// The per-layer channel counts of every candidate, as functions of its widths.
pub(super) struct WidthCost {
    channels: Vec<Channels>,
    layers: Vec<CostedLayer>,
}

impl WidthCost {
    /// The model of `net`, or `None` when some layer carries channels that no group or only
    /// part of its groups account for, or that no group touches while an input's are
    /// pruned (then only pruning the network costs it exactly).
    pub(super) fn new(net: &Network, deps: &Dependencies) -> Option<Self> {
        let mut parts: Vec<Vec<(usize, Vec<usize>)>> = vec![Vec::new(); net.len()];
        for group in &deps.groups {
            let mut on: Vec<Option<Vec<usize>>> = vec![None; net.len()];
            for (k, units) in group.channels.iter().enumerate() {
                for unit in units {
                    let kept = on[unit.node.index()].get_or_insert_with(|| vec![0; group.channels.len() + 1]);
                    kept[k + 1] += 1;
                }
            }
            for (node, kept) in on.into_iter().enumerate() {
                if let Some(mut kept) = kept {
                    for k in 1..kept.len() {
                        kept[k] += kept[k - 1];
                    }
                    parts[node].push((group.id, kept));
                }
            }
        }
        // A layer no group touches keeps its count only when its inputs keep theirs.
        let mut fixed = vec![false; net.len()];
        let channels = net
            .nodes()
            .zip(parts)
            .map(|(node, parts)| {
                let count = net.shape(node).channels();
                let full: usize = parts.iter().map(|(_, kept)| kept[kept.len() - 1]).sum();
                let per_input_channel = match (&net.node(node).op, net.input_shapes(node).first()) {
                    (Op::Flatten, Some(input)) => Some(input.spatial()),
                    _ => None,
                };
                if parts.is_empty() {
                    let inputs_fixed = net.inputs(node).iter().all(|i| fixed[i.index()]);
                    fixed[node.index()] = inputs_fixed;
                    inputs_fixed.then_some(Channels::Fixed(count))
                } else if full == count {
                    Some(Channels::Units { parts, scale: 1 })
                } else {
                    per_input_channel
                        .filter(|&spatial| full * spatial == count)
                        .map(|scale| Channels::Units { parts, scale })
                }
            })
            .collect::<Option<Vec<_>>>()?;
        let layers = net
            .nodes()
            .filter(|&node| matches!(net.node(node).op, Op::Conv2d { .. } | Op::Linear { .. } | Op::BatchNorm { .. }))
            .map(|node| {
                let inputs: Vec<(usize, Shape)> = net.inputs(node).iter().map(|i| i.index()).zip(net.input_shapes(node)).collect();
                let op = net.node(node).op.clone();
                CostedLayer {
                    node: node.index(),
                    depthwise: op.is_depthwise(inputs.first().map_or(0, |(_, s)| s.channels())),
                    op,
                    inputs,
                    output: net.shape(node),
                }
            })
            .collect();
        Some(WidthCost { channels, layers })
    }

    /// MACs and parameters of the network pruned to `widths` (each group keeps its first
    /// channels).
    pub(super) fn cost(&self, widths: &[usize]) -> Cost {
        let counts: Vec<usize> = self
            .channels
            .iter()
            .map(|c| match c {
                Channels::Fixed(n) => *n,
                Channels::Units { parts, scale } => scale * parts.iter().map(|(g, kept)| kept[widths[*g]]).sum::<usize>(),
            })
            .collect();
        let with_channels = |shape: Shape, c: usize| match shape {
            Shape::Map { h, w, .. } => Shape::Map { c, h, w },
            Shape::Flat { .. } => Shape::Flat { f: c },
        };
        self.layers
            .iter()
            .map(|layer| {
                let out = counts[layer.node];
                let mut op = layer.op.clone();
                match &mut op {
                    Op::Conv2d { out_channels, groups, .. } => {
                        *out_channels = out;
                        if layer.depthwise {
                            *groups = out;
                        }
                    }
                    Op::Linear { out_features, .. } => *out_features = out,
                    _ => {}
                }
                let inputs: Vec<Shape> = layer
                    .inputs
                    .iter()
                    .map(|&(source, shape)| with_channels(shape, counts[source]))
                    .collect();
                node_cost(&op, &inputs, with_channels(layer.output, out))
            })
            .sum()
    }
}
