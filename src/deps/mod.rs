//! Dependency analysis: the groups of channels that must be pruned together so that every
//! pruned network stays valid.
//!
//! Every output channel ("unit") of every layer is an element of a union-find. Layers that
//! pass channels through (BatchNorm, activations, pooling, depthwise convs, flatten, the
//! output) tie each output unit to the same input unit; `add` ties all its inputs
//! unit-by-unit (as does `mul`); `concat` ties each input to its offset range, `slice` its
//! output to a range of its input; the zero-pad shortcut ties its input to the middle of its
//! output; a permutation (a channel shuffle) ties each output to the input it moves; a
//! grouped convolution makes every group of its inputs, and of its outputs, lose as many
//! channels as the others (`balance`: classes merged into balanced sets). Dense convs and linear layers start new units; LRN and
//! softmax pin the channels they mix.
//! An equivalence class is one prunable channel; classes that touch the same set of
//! layers form a [`ChannelGroup`]. Removing one class removes, at every member layer,
//! exactly the units of that class, which is why any keep-set is a valid network.

mod balance;

use crate::ir::{Cost, Network, Op, Shape, node_cost};
use petgraph::graph::NodeIndex;
use petgraph::unionfind::UnionFind;
use std::collections::BTreeMap;

/// One output unit of a layer: a channel of a feature map or a feature of a vector.
/// For `flatten` a unit is one input channel (expanding to `h·w` features).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    /// The layer.
    pub node: NodeIndex,
    /// The unit's index on the layer's channel axis.
    pub channel: usize,
}

/// Why a group may not be pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pin {
    /// The channels of the network input.
    NetworkInput,
    /// The classifier's outputs.
    NetworkOutput,
    /// Channels that an LRN or a softmax mixes: each result depends on its neighbours on
    /// the channel axis, so removing one changes the others.
    ChannelMixing,
}

/// A set of channels that must keep the same indices everywhere they appear.
#[derive(Clone, Debug)]
pub struct ChannelGroup {
    /// Position in [`Dependencies::groups`].
    pub id: usize,
    /// Name of the layer that produces these channels (the first dense conv or linear
    /// among the members, else the first member).
    pub name: String,
    /// For each group channel, every `(layer, unit)` that carries it.
    pub channels: Vec<Vec<Unit>>,
    /// Member layers in topological order.
    pub nodes: Vec<NodeIndex>,
    /// `Some` when the group must not be pruned, with the reason.
    pub pinned: Option<Pin>,
    /// Parameters and MACs that removing one channel of this group saves, at full width.
    pub cost_per_channel: Cost,
}

impl ChannelGroup {
    /// Number of channels in the group.
    pub fn size(&self) -> usize {
        self.channels.len()
    }

    /// True when the group may be pruned.
    pub fn prunable(&self) -> bool {
        self.pinned.is_none()
    }
}

/// All channel groups of a network.
#[derive(Clone, Debug)]
pub struct Dependencies {
    /// The groups, ordered by their first member layer.
    pub groups: Vec<ChannelGroup>,
}

/// Number of units on a layer's channel axis (see [`Unit`]).
pub fn units(net: &Network, node: NodeIndex) -> usize {
    match net.node(node).op {
        Op::Flatten => net.input_shapes(node)[0].channels(),
        _ => net.shape(node).channels(),
    }
}

impl Dependencies {
    /// Analyses a network.
    pub fn analyse(net: &Network) -> Dependencies {
        let mut base = Vec::with_capacity(net.len() + 1);
        let mut total = 0;
        for node in net.nodes() {
            base.push(total);
            total += units(net, node);
        }
        let id = |u: Unit| base[u.node.index()] + u.channel;
        let mut uf = UnionFind::<usize>::new(total);
        let mut pins: Vec<Option<Pin>> = vec![None; total];
        for node in net.nodes() {
            let inputs = net.inputs(node);
            let count = units(net, node);
            let mut tie = |from: NodeIndex, offset: usize, n: usize| {
                for c in 0..n {
                    uf.union(id(Unit { node: from, channel: c }), id(Unit { node, channel: offset + c }));
                }
            };
            match &net.node(node).op {
                Op::Input { .. } => (0..count).for_each(|c| pins[id(Unit { node, channel: c })] = Some(Pin::NetworkInput)),
                Op::Conv2d { .. } => {
                    if net.node(node).op.is_depthwise(units(net, inputs[0])) {
                        tie(inputs[0], 0, count);
                    }
                }
                Op::Permute { order } => {
                    for (j, &i) in order.iter().enumerate() {
                        uf.union(
                            id(Unit {
                                node: inputs[0],
                                channel: i,
                            }),
                            id(Unit { node, channel: j }),
                        );
                    }
                }
                Op::Slice { start, .. } => {
                    for j in 0..count {
                        uf.union(
                            id(Unit {
                                node: inputs[0],
                                channel: start + j,
                            }),
                            id(Unit { node, channel: j }),
                        );
                    }
                }
                Op::Linear { .. } => {}
                Op::Add | Op::Mul => inputs.iter().for_each(|&i| tie(i, 0, count)),
                Op::Concat => {
                    let mut offset = 0;
                    for &i in &inputs {
                        let n = units(net, i);
                        tie(i, offset, n);
                        offset += n;
                    }
                }
                Op::ZeroPad { before, .. } => tie(inputs[0], *before, units(net, inputs[0])),
                Op::Lrn { .. } | Op::Softmax => {
                    tie(inputs[0], 0, count);
                    (0..count).for_each(|c| pins[id(Unit { node, channel: c })] = Some(Pin::ChannelMixing));
                }
                Op::Output => {
                    tie(inputs[0], 0, count);
                    (0..count).for_each(|c| pins[id(Unit { node, channel: c })] = Some(Pin::NetworkOutput));
                }
                Op::BatchNorm { .. }
                | Op::Relu
                | Op::Relu6
                | Op::MaxPool2d { .. }
                | Op::AvgPool2d { .. }
                | Op::GlobalAvgPool
                | Op::Sigmoid
                | Op::HardSigmoid { .. }
                | Op::HardSwish
                | Op::Flatten => tie(inputs[0], 0, count),
            }
        }

        // Classes: root -> member units (in topological order of layers, then channel).
        let mut by_root: BTreeMap<usize, (Vec<Unit>, Option<Pin>)> = BTreeMap::new();
        for node in net.nodes() {
            for channel in 0..units(net, node) {
                let unit = Unit { node, channel };
                let (members, pin) = by_root.entry(uf.find(id(unit))).or_default();
                members.push(unit);
                *pin = pin.or(pins[id(unit)]);
            }
        }
        let natural: Vec<(Vec<Unit>, Option<Pin>)> = by_root.into_values().collect();
        let units_of: Vec<Vec<Unit>> = natural.iter().map(|(members, _)| members.clone()).collect();
        // Grouped convolutions: classes merged until every group loses as many as the others.
        let classes: Vec<(Vec<Unit>, Option<Pin>)> = balance::balance(&units_of, &balance::partitions(net))
            .into_iter()
            .map(|set| {
                let mut members: Vec<Unit> = set.iter().flat_map(|&c| natural[c].0.iter().copied()).collect();
                members.sort_unstable();
                (members, set.iter().find_map(|&c| natural[c].1))
            })
            .collect();
        // Groups: classes touching the same layers.
        let mut by_nodes: BTreeMap<Vec<NodeIndex>, Vec<usize>> = BTreeMap::new();
        for (index, (members, _)) in classes.iter().enumerate() {
            let mut nodes: Vec<NodeIndex> = members.iter().map(|u| u.node).collect();
            nodes.dedup();
            by_nodes.entry(nodes).or_default().push(index);
        }
        let mut groups: Vec<ChannelGroup> = by_nodes
            .into_iter()
            .map(|(nodes, indices)| {
                let first = nodes[0];
                let mut channels: Vec<Vec<Unit>> = indices.iter().map(|&i| classes[i].0.clone()).collect();
                channels.sort_by_key(|members| members.iter().find(|u| u.node == first).map(|u| u.channel));
                let pinned = indices.iter().find_map(|&i| classes[i].1);
                let producer = nodes.iter().find(|&&n| match net.node(n).op {
                    Op::Conv2d { .. } => !net.node(n).op.is_depthwise(units(net, net.inputs(n)[0])),
                    Op::Linear { .. } | Op::Input { .. } => true,
                    _ => false,
                });
                let name = net.node(*producer.unwrap_or(&first)).name.clone();
                let cost_per_channel = channel_cost(net, &channels[0]);
                ChannelGroup {
                    id: 0,
                    name,
                    channels,
                    nodes,
                    pinned,
                    cost_per_channel,
                }
            })
            .collect();
        groups.sort_by_key(|g| (g.nodes[0], g.channels[0][0].channel));
        for (i, g) in groups.iter_mut().enumerate() {
            g.id = i;
        }
        Dependencies { groups }
    }

    /// The groups that may be pruned.
    pub fn prunable(&self) -> impl Iterator<Item = &ChannelGroup> {
        self.groups.iter().filter(|g| g.prunable())
    }

    /// For every layer, its output units that survive when group `g` keeps the group
    /// channels `keep[g]` (each list sorted). Units come back sorted per layer.
    pub fn kept_units(&self, net: &Network, keep: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let mut kept: Vec<Vec<usize>> = vec![Vec::new(); net.len()];
        for (group, channels) in self.groups.iter().zip(keep) {
            for &k in channels {
                for unit in &group.channels[k] {
                    kept[unit.node.index()].push(unit.channel);
                }
            }
        }
        for list in &mut kept {
            list.sort_unstable();
        }
        kept
    }
}

/// What removing one channel class saves: each member layer's cost at full width minus
/// its cost with the class's units taken off its inputs and outputs.
fn channel_cost(net: &Network, class: &[Unit]) -> Cost {
    let removed = |node: NodeIndex| class.iter().filter(|u| u.node == node).count();
    let mut affected: Vec<NodeIndex> = class.iter().map(|u| u.node).collect();
    for u in class {
        affected.extend(net.consumers(u.node));
    }
    affected.sort_unstable();
    affected.dedup();
    let mut saved = Cost::default();
    for node in affected {
        let full = net.cost(node);
        let inputs: Vec<Shape> = net
            .inputs(node)
            .into_iter()
            .map(|i| {
                let k = removed(i);
                match (net.node(i).op.clone(), net.shape(i)) {
                    (Op::Flatten, Shape::Flat { f }) => Shape::Flat {
                        f: f - k * net.input_shapes(i)[0].spatial(),
                    },
                    (_, Shape::Map { c, h, w }) => Shape::Map { c: c - k, h, w },
                    (_, Shape::Flat { f }) => Shape::Flat { f: f - k },
                }
            })
            .collect();
        let k_out = removed(node);
        let output = match net.shape(node) {
            Shape::Map { c, h, w } => Shape::Map { c: c - k_out, h, w },
            Shape::Flat { f } if matches!(net.node(node).op, Op::Flatten) => Shape::Flat {
                f: f - k_out * net.input_shapes(node)[0].spatial(),
            },
            Shape::Flat { f } => Shape::Flat { f: f - k_out },
        };
        let mut op = net.node(node).op.clone();
        let depthwise = op.is_depthwise(net.input_shapes(node).first().map_or(0, |s| s.channels()));
        match &mut op {
            Op::Conv2d { out_channels, groups, .. } => {
                *out_channels -= k_out;
                if depthwise {
                    *groups -= k_out;
                }
            }
            Op::Linear { out_features, .. } => *out_features -= k_out,
            _ => {}
        }
        // A class may hold every unit of a layer (it then cannot be removed, but its cost
        // is still asked): the layer would vanish.
        let emptied = output.channels() == 0 || inputs.iter().any(|s| s.channels() == 0);
        let reduced = if emptied {
            Cost::default()
        } else {
            node_cost(&op, &inputs, output)
        };
        saved = saved
            + Cost {
                params: full.params - reduced.params,
                macs: full.macs - reduced.macs,
            };
    }
    saved
}
