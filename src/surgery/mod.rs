//! Physical pruning: (network, weights, kept channels per group) → a smaller network and
//! its weights. A pure function: no backend, no masks left behind.

use crate::deps::Dependencies;
use crate::ir::{IrError, Network, Op};
use crate::weights::{WeightTensor, Weights};

/// Errors in a keep-set.
#[derive(Debug, thiserror::Error)]
pub enum SurgeryError {
    /// The keep-set does not have one entry per group.
    #[error("expected a keep-list for each of the {expected} groups, got {found}")]
    GroupCount {
        /// Number of groups.
        expected: usize,
        /// Number of keep-lists.
        found: usize,
    },
    /// A keep-list is empty, unsorted, repeats a channel or names one out of range.
    #[error("group {group} (`{name}`, {size} channels): keep-list must be sorted, unique, non-empty and below {size}")]
    BadKeep {
        /// Group index.
        group: usize,
        /// Group name.
        name: String,
        /// Group size.
        size: usize,
    },
    /// A pinned group was asked to lose channels.
    #[error("group {group} (`{name}`) may not be pruned ({reason})")]
    Pinned {
        /// Group index.
        group: usize,
        /// Group name.
        name: String,
        /// Why it is pinned.
        reason: String,
    },
    /// The pruned graph failed its shape check (a bug if it ever happens).
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Keeps every channel of every group (the identity keep-set).
pub fn keep_all(deps: &Dependencies) -> Vec<Vec<usize>> {
    deps.groups.iter().map(|g| (0..g.size()).collect()).collect()
}

fn check_keep(deps: &Dependencies, keep: &[Vec<usize>]) -> Result<(), SurgeryError> {
    if keep.len() != deps.groups.len() {
        return Err(SurgeryError::GroupCount {
            expected: deps.groups.len(),
            found: keep.len(),
        });
    }
    for (group, list) in deps.groups.iter().zip(keep) {
        let ordered = list.windows(2).all(|w| w[0] < w[1]);
        if list.is_empty() || !ordered || list.last().is_some_and(|&k| k >= group.size()) {
            return Err(SurgeryError::BadKeep {
                group: group.id,
                name: group.name.clone(),
                size: group.size(),
            });
        }
        if let Some(pin) = group.pinned
            && list.len() != group.size()
        {
            return Err(SurgeryError::Pinned {
                group: group.id,
                name: group.name.clone(),
                reason: format!("{pin:?}"),
            });
        }
    }
    Ok(())
}

/// Prunes only the graph: the new layer settings for a keep-set.
pub fn prune_network(net: &Network, deps: &Dependencies, keep: &[Vec<usize>]) -> Result<Network, SurgeryError> {
    check_keep(deps, keep)?;
    let kept = deps.kept_units(net, keep);
    Ok(pruned_network(net, &kept)?)
}

fn pruned_network(net: &Network, kept: &[Vec<usize>]) -> Result<Network, IrError> {
    let ops = net
        .nodes()
        .map(|node| {
            let units = &kept[node.index()];
            let in_channels = net.input_shapes(node).first().map_or(0, |s| s.channels());
            let mut op = net.node(node).op.clone();
            let depthwise = op.is_depthwise(in_channels);
            match &mut op {
                Op::Conv2d { out_channels, groups, .. } => {
                    *out_channels = units.len();
                    if depthwise {
                        *groups = units.len();
                    }
                }
                Op::Linear { out_features, .. } => *out_features = units.len(),
                Op::Permute { order } => {
                    // The kept outputs, in order, each reading its input's new index.
                    let source = &kept[net.inputs(node)[0].index()];
                    *order = units
                        .iter()
                        .map(|&j| source.binary_search(&order[j]).expect("tied units are kept together"))
                        .collect();
                }
                Op::Slice { start, end } => {
                    let source = &kept[net.inputs(node)[0].index()];
                    let (s, e) = (*start, *end);
                    *start = source.iter().filter(|&&u| u < s).count();
                    *end = *start + source.iter().filter(|&&u| (s..e).contains(&u)).count();
                }
                Op::ZeroPad { before, after, .. } => {
                    let end = *before + in_channels;
                    let (b, e) = (*before, end);
                    *before = units.iter().filter(|&&u| u < b).count();
                    *after = units.iter().filter(|&&u| u >= e).count();
                }
                _ => {}
            }
            op
        })
        .collect();
    net.with_ops(ops)
}

/// A conv weight `[out, in / groups, kh, kw]` cut to the kept output `rows`, each row
/// keeping the kept input `columns` of its own group (positions within the group).
fn grouped_weight(w: &WeightTensor, groups: usize, rows: &[usize], columns: &[usize], in_channels: usize) -> WeightTensor {
    let (out_per_group, in_per_group) = (w.shape[0] / groups, in_channels / groups);
    let mut shape = w.shape.clone();
    shape[0] = 0;
    let mut cut = WeightTensor { shape, data: Vec::new() };
    for group in 0..groups {
        let group_rows: Vec<usize> = rows.iter().copied().filter(|r| r / out_per_group == group).collect();
        let group_columns: Vec<usize> = columns
            .iter()
            .filter(|c| *c / in_per_group == group)
            .map(|c| c % in_per_group)
            .collect();
        let part = w.select(0, &group_rows).select(1, &group_columns);
        cut.shape[1] = part.shape[1];
        cut.shape[0] += part.shape[0];
        cut.data.extend(part.data);
    }
    cut
}

/// Prunes a network and its weights. `keep[g]` lists the channels group `g` keeps (sorted).
/// The result is physically smaller: every tensor loses the removed rows and columns.
pub fn prune(net: &Network, weights: &Weights, deps: &Dependencies, keep: &[Vec<usize>]) -> Result<(Network, Weights), SurgeryError> {
    check_keep(deps, keep)?;
    let kept = deps.kept_units(net, keep);
    let pruned = pruned_network(net, &kept)?;
    let mut out = Weights::default();
    for node in net.nodes() {
        let name = &net.node(node).name;
        let rows = &kept[node.index()];
        let inputs = net.inputs(node);
        let take = |kind: &str| weights.get(&format!("{name}.{kind}")).map(|t| (format!("{name}.{kind}"), t));
        let mut put = |name: String, t: WeightTensor| {
            out.tensors.insert(name, t);
        };
        match &net.node(node).op {
            Op::Conv2d { groups, .. } => {
                if let Some((n, w)) = take("weight") {
                    // A depthwise conv keeps its one column. A grouped conv's kept rows of
                    // group j read group j's kept input positions (as many in every group).
                    let in_channels = net.input_shapes(node)[0].channels();
                    if net.node(node).op.is_depthwise(in_channels) {
                        put(n, w.select(0, rows));
                    } else {
                        put(n, grouped_weight(w, *groups, rows, &kept[inputs[0].index()], in_channels));
                    }
                }
                if let Some((n, b)) = take("bias") {
                    put(n, b.select(0, rows));
                }
            }
            Op::Linear { .. } => {
                let source = inputs[0];
                let columns: Vec<usize> = if matches!(net.node(source).op, Op::Flatten) {
                    let spatial = net.input_shapes(source)[0].spatial();
                    kept[source.index()].iter().flat_map(|&u| u * spatial..(u + 1) * spatial).collect()
                } else {
                    kept[source.index()].clone()
                };
                if let Some((n, w)) = take("weight") {
                    put(n, w.select(0, rows).select(1, &columns));
                }
                if let Some((n, b)) = take("bias") {
                    put(n, b.select(0, rows));
                }
            }
            Op::BatchNorm { .. } => {
                for kind in ["weight", "bias", "running_mean", "running_var"] {
                    if let Some((n, t)) = take(kind) {
                        put(n, t.select(0, rows));
                    }
                }
            }
            _ => {}
        }
    }
    Ok((pruned, out))
}
