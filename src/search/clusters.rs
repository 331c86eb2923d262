//! Rate groups: which channel groups share one pruning rate in a candidate.

use super::space::{Clustering, SearchSpace};
use crate::deps::{ChannelGroup, Dependencies};
use crate::ir::{Network, Shape};
use crate::spec::SpecError;
use glob::Pattern;

/// Channel groups that take the same pruning rate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RateGroup {
    /// Name in logs and reports.
    pub name: String,
    /// Ids of the channel groups (see [`Dependencies::groups`]).
    pub groups: Vec<usize>,
}

fn producer_shape(net: &Network, group: &ChannelGroup) -> Shape {
    let node = group
        .nodes
        .iter()
        .copied()
        .find(|&n| net.node(n).name == group.name)
        .unwrap_or(group.nodes[0]);
    net.shape(node)
}

/// Numeric path components dropped: `layer2.3.conv1` → `layer2.conv1`.
fn without_block_index(name: &str) -> String {
    name.split('.')
        .filter(|part| !part.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(".")
}

/// Clusters the prunable, not excluded groups of `net` as `space` says. Errors point at the
/// pattern that matches nothing or the cluster that claims a group twice.
pub fn rate_groups(space: &SearchSpace, net: &Network, deps: &Dependencies) -> Result<Vec<RateGroup>, SpecError> {
    let exclude: Vec<Pattern> = space
        .space
        .exclude
        .iter()
        .map(|p| Pattern::new(p).expect("checked on load"))
        .collect();
    let candidates: Vec<&ChannelGroup> = deps
        .groups
        .iter()
        .filter(|g| g.prunable() && !exclude.iter().any(|p| p.matches(&g.name)))
        .collect();
    if space.space.clustering == Clustering::Explicit {
        return explicit(space, &candidates);
    }
    Ok(clustered(net, &candidates, space.space.clustering))
}

/// Rate groups of `candidates` (prunable channel groups) by a clustering other than
/// `explicit` (which needs the space's patterns; it gets one rate group per candidate here).
pub fn clustered(net: &Network, candidates: &[&ChannelGroup], clustering: Clustering) -> Vec<RateGroup> {
    // Stages: distinct spatial sizes, largest first; vectors (classifier) come last.
    let mut sizes: Vec<usize> = candidates.iter().map(|g| producer_shape(net, g).spatial()).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    let stage_of = |g: &ChannelGroup| {
        let shape = producer_shape(net, g);
        let stage = sizes.iter().position(|&s| s == shape.spatial()).expect("every size listed") + 1;
        match shape {
            Shape::Map { h, w, .. } => format!("stage{stage}({h}x{w})"),
            Shape::Flat { .. } => "classifier".to_string(),
        }
    };
    let mut clusters: Vec<RateGroup> = Vec::new();
    let mut add = |name: String, id: usize| match clusters.iter_mut().find(|c| c.name == name) {
        Some(c) => c.groups.push(id),
        None => clusters.push(RateGroup { name, groups: vec![id] }),
    };
    match clustering {
        Clustering::PerLayer | Clustering::Explicit => candidates.iter().for_each(|g| add(g.name.clone(), g.id)),
        Clustering::PerStage => candidates.iter().for_each(|g| add(stage_of(g), g.id)),
        Clustering::PerBlockPosition => candidates
            .iter()
            .for_each(|g| add(format!("{}/{}", stage_of(g), without_block_index(&g.name)), g.id)),
    }
    clusters
}

fn explicit(space: &SearchSpace, candidates: &[&ChannelGroup]) -> Result<Vec<RateGroup>, SpecError> {
    let mut owner: Vec<Option<usize>> = vec![None; candidates.iter().map(|g| g.id + 1).max().unwrap_or(0)];
    let mut out = Vec::new();
    for (i, cluster) in space.space.clusters.iter().enumerate() {
        let mut groups = Vec::new();
        for (j, pattern) in cluster.layers.iter().enumerate() {
            let key = format!("space.clusters.{i}.layers.{j}");
            let p = Pattern::new(pattern).expect("checked on load");
            let matched: Vec<usize> = candidates.iter().filter(|g| p.matches(&g.name)).map(|g| g.id).collect();
            if matched.is_empty() {
                let names: Vec<&str> = candidates.iter().map(|g| g.name.as_str()).collect();
                return Err(space.error(
                    &key,
                    format!(
                        "`{pattern}` matches no prunable group; their producing layers are: {}",
                        names.join(", ")
                    ),
                ));
            }
            for id in matched {
                match owner[id] {
                    Some(other) if other != i => {
                        return Err(space.error(
                            &key,
                            format!(
                                "`{pattern}` claims group `{}`, already in cluster `{}`",
                                candidates.iter().find(|g| g.id == id).expect("matched").name,
                                space.space.clusters[other].name
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        owner[id] = Some(i);
                        groups.push(id);
                    }
                }
            }
        }
        groups.sort_unstable();
        out.push(RateGroup {
            name: cluster.name.clone(),
            groups,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_indices_are_dropped() {
        assert_eq!(without_block_index("layer2.3.conv1"), "layer2.conv1");
        assert_eq!(without_block_index("features.conv1"), "features.conv1");
    }
}
