//! Grouped convolutions: every group of a grouped convolution must keep the same number of
//! input channels and the same number of output channels, though not the same positions.
//!
//! Each grouped (not depthwise) convolution splits its input's channels and its own output
//! channels into equal contiguous blocks: two [`Partition`]s. A channel class is *balanced*
//! for a partition when it holds as many units in every block of it (or none): removing a
//! balanced class then takes the same count from every block. [`balance`] merges the
//! classes that are not into the smallest sets it can find that are, partition by
//! partition; a merged set of balanced classes stays balanced, so one pass suffices.
//!
//! Merging picks, among the classes that fit what a set still lacks, the one that overlaps
//! least with the set in the *other* partitions. Between two grouped convolutions joined by
//! a channel shuffle (ShuffleNet), that builds sets with one channel per group of each conv
//! (a Latin square) where tying the same position in every group would chain all of them
//! together. When no class fits, the set takes every class still unbalanced: their union is
//! balanced, because the blocks are equally large and every other set is balanced.

use super::Unit;
use crate::ir::{Network, Op};
use petgraph::graph::NodeIndex;
use std::collections::BTreeMap;

/// A layer's channels split into `blocks` contiguous blocks of `width` units each.
#[derive(Clone, Copy, Debug)]
pub(super) struct Partition {
    node: NodeIndex,
    width: usize,
    blocks: usize,
}

/// The partitions of every grouped convolution: its input's, then its output's, in
/// topological order.
pub(super) fn partitions(net: &Network) -> Vec<Partition> {
    let mut list = Vec::new();
    for node in net.nodes() {
        let Op::Conv2d { groups, .. } = net.node(node).op else {
            continue;
        };
        let input = net.inputs(node)[0];
        let in_channels = super::units(net, input);
        if groups < 2 || net.node(node).op.is_depthwise(in_channels) {
            continue;
        }
        for (layer, channels) in [(input, in_channels), (node, super::units(net, node))] {
            list.push(Partition {
                node: layer,
                width: channels / groups,
                blocks: groups,
            });
        }
    }
    list
}

/// A set of classes being merged: its members, its first unit (for a stable order) and
/// how many of its units fall in each `(partition, block)`.
struct Set {
    members: Vec<usize>,
    first: Unit,
    hits: BTreeMap<(usize, usize), usize>,
}

impl Set {
    fn counts(&self, partition: usize, blocks: usize) -> Vec<usize> {
        (0..blocks).map(|b| self.hits.get(&(partition, b)).copied().unwrap_or(0)).collect()
    }

    /// Units the two sets share blocks on, in partitions other than `partition`.
    fn overlap(&self, other: &Set, partition: usize) -> usize {
        other
            .hits
            .iter()
            .filter(|((p, _), _)| *p != partition)
            .map(|(key, &n)| n.min(self.hits.get(key).copied().unwrap_or(0)))
            .sum()
    }

    fn absorb(&mut self, other: Set) {
        self.members.extend(other.members);
        self.first = self.first.min(other.first);
        for (key, n) in other.hits {
            *self.hits.entry(key).or_default() += n;
        }
    }
}

/// Groups `classes` (each a non-empty list of units) into sets balanced for every
/// partition; returns each set's class indices, sets in the order of their first unit.
pub(super) fn balance(classes: &[Vec<Unit>], partitions: &[Partition]) -> Vec<Vec<usize>> {
    let mut by_node: BTreeMap<NodeIndex, Vec<usize>> = BTreeMap::new();
    for (p, partition) in partitions.iter().enumerate() {
        by_node.entry(partition.node).or_default().push(p);
    }
    let mut sets: Vec<Set> = classes
        .iter()
        .enumerate()
        .map(|(i, units)| {
            let mut hits = BTreeMap::new();
            for unit in units {
                for &p in by_node.get(&unit.node).into_iter().flatten() {
                    *hits.entry((p, unit.channel / partitions[p].width)).or_default() += 1;
                }
            }
            Set {
                members: vec![i],
                first: units[0],
                hits,
            }
        })
        .collect();
    for (p, partition) in partitions.iter().enumerate() {
        let blocks = partition.blocks;
        let (mut unbalanced, mut done): (Vec<Set>, Vec<Set>) = sets.into_iter().partition(|s| {
            let counts = s.counts(p, blocks);
            counts.iter().any(|&n| n != counts[0])
        });
        unbalanced.sort_by_key(|s| s.first);
        unbalanced.reverse();
        while let Some(mut set) = unbalanced.pop() {
            let mut have = set.counts(p, blocks);
            loop {
                let target = *have.iter().max().expect("a grouped conv has blocks");
                let lacking: Vec<usize> = have.iter().map(|&n| target - n).collect();
                if lacking.iter().all(|&n| n == 0) {
                    break;
                }
                let fitting = unbalanced
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.counts(p, blocks).iter().zip(&lacking).all(|(n, l)| n <= l))
                    .min_by_key(|(_, s)| (set.overlap(s, p), s.first));
                match fitting.map(|(i, _)| i) {
                    Some(i) => {
                        let other = unbalanced.remove(i);
                        for (h, n) in have.iter_mut().zip(other.counts(p, blocks)) {
                            *h += n;
                        }
                        set.absorb(other);
                    }
                    None => {
                        for other in unbalanced.drain(..) {
                            set.absorb(other);
                        }
                        break;
                    }
                }
            }
            done.push(set);
        }
        sets = done;
    }
    sets.sort_by_key(|s| s.first);
    sets.into_iter().map(|s| s.members).collect()
}
