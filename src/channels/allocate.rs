//! From scores to keep-sets that meet a MAC reduction target.

use super::Scores;
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::surgery;

/// Why no keep-set meets a MAC reduction target.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The target cannot be reached within the space allowed.
    #[error(
        "a MAC reduction of {target:.1}% is out of reach: at most {reachable:.1}% with every group keeping at least {keep_min:.0}% of its channels"
    )]
    Unreachable {
        /// The target, in percent.
        target: f64,
        /// The largest reduction reachable, in percent.
        reachable: f64,
        /// The least share of channels a group keeps, in percent.
        keep_min: f64,
    },
    /// The target is not a fraction in [0, 1).
    #[error("MAC reduction {0} must be in [0, 1)")]
    BadTarget(f64),
}

/// How the pruned channels are spread over the groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Allocation {
    /// One ranking of all channels of all groups by importance per unit of cost: a
    /// channel's share of its group's remaining importance divided by the MACs it saves
    /// (relative to the mean over groups). The channels that buy the most MACs for the
    /// least of their group's importance go first; score scales never compare across
    /// groups, and a group gets dearer to prune the more it has lost.
    Global,
    /// Every group loses the same share of its channels, its least important ones.
    Uniform,
}

/// For each step of a schedule, the channels each group has lost by then.
type RemovalSchedule<'a> = Box<dyn Fn(usize) -> Vec<Vec<usize>> + 'a>;

/// The share of `net`'s MACs a keep-set removes.
pub fn macs_reduction(net: &Network, deps: &Dependencies, keep: &[Vec<usize>]) -> f64 {
    let pruned = surgery::prune_network(net, deps, keep).expect("keep-sets built here are valid");
    1.0 - pruned.total_cost().macs as f64 / net.total_cost().macs as f64
}

/// Channels of each group in ascending importance (ties broken by index).
fn ascending(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order
}

fn keep_without(deps: &Dependencies, removed: &[Vec<usize>]) -> Vec<Vec<usize>> {
    deps.groups
        .iter()
        .zip(removed)
        .map(|(g, gone)| {
            let mut mark = vec![true; g.size()];
            gone.iter().for_each(|&c| mark[c] = false);
            (0..g.size()).filter(|&c| mark[c]).collect()
        })
        .collect()
}

/// The MACs one channel of each group carries (what removing one of its channels saves);
/// 0 for pinned groups.
fn macs_per_channel(net: &Network, deps: &Dependencies) -> Vec<f64> {
    let base = net.total_cost().macs as f64;
    let all: Vec<Vec<usize>> = deps.groups.iter().map(|g| (0..g.size()).collect()).collect();
    deps.groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            if !group.prunable() || group.size() < 2 {
                return 0.0;
            }
            let mut keep = all.clone();
            keep[g].remove(0);
            base * macs_reduction(net, deps, &keep)
        })
        .collect()
}

/// The order in which global allocation removes channels: greedily, the channel whose
/// removal loses the least of its group's remaining importance per MAC it saves, i.e.
/// `(score / sum of the group's kept scores) / (group's MACs per channel / mean)`; within a
/// group the least important go first, at most `cap(size)` of them. Scores are shifted to
/// be positive within a group when some are negative. Summed over the removals this is
/// the loss in `Σ_groups ln(kept share of the group's importance)` per MAC, so a group
/// that has lost much becomes dearer to prune further and no group is emptied.
fn global_order(
    net: &Network,
    deps: &Dependencies,
    scores: &Scores,
    orders: &[Vec<usize>],
    cap: impl Fn(usize) -> usize,
) -> Vec<(usize, usize)> {
    let cost = macs_per_channel(net, deps);
    let priced: Vec<f64> = cost.iter().copied().filter(|&c| c > 0.0).collect();
    let mean_cost = priced.iter().sum::<f64>() / priced.len().max(1) as f64;
    let positive: Vec<Vec<f64>> = scores
        .iter()
        .map(|s| {
            let min = s.iter().map(|&v| f64::from(v)).fold(f64::INFINITY, f64::min);
            let max = s.iter().map(|&v| f64::from(v)).fold(f64::NEG_INFINITY, f64::max);
            let floor = 1e-3 * (max - min).abs().max(max.abs()).max(1e-12);
            let shift = if min < floor { floor - min } else { 0.0 };
            s.iter().map(|&v| f64::from(v) + shift).collect()
        })
        .collect();
    let mut kept_sum: Vec<f64> = positive.iter().map(|s| s.iter().sum()).collect();
    let mut next = vec![0usize; deps.groups.len()];
    let mut sequence = Vec::new();
    loop {
        let pick = (0..deps.groups.len())
            .filter(|&g| deps.groups[g].prunable() && next[g] < cap(deps.groups[g].size()).min(orders[g].len()))
            .map(|g| {
                let c = orders[g][next[g]];
                let relative_cost = if cost[g] > 0.0 { cost[g] / mean_cost } else { f64::MIN_POSITIVE };
                ((positive[g][c] / kept_sum[g]) / relative_cost, g)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, g)) = pick else { break };
        let c = orders[g][next[g]];
        kept_sum[g] -= positive[g][c];
        next[g] += 1;
        sequence.push((g, c));
    }
    sequence
}

/// Channels a group of `size` loses when `n` are asked for and the width it keeps must
/// be a multiple of `round_to` (or its full width): the kept width rounded down to a
/// multiple, but never below one multiple nor below `size − cap`. Monotone in `n`.
fn rounded_removal(size: usize, n: usize, round_to: usize, cap: usize) -> usize {
    if round_to <= 1 || n == 0 {
        return n;
    }
    let least = (size - cap.min(size)).div_ceil(round_to).max(1) * round_to;
    let kept = ((size - n) / round_to * round_to).max(least);
    size.saturating_sub(kept)
}

/// The keep-set that removes at least `target` of the MACs with as few channels as the
/// allocation allows, never removing more than `max_ratio` of any group's channels (and
/// always keeping one). The reduction overshoots the target by at most one channel's worth
/// (`round_to` channels per group when every pruned width must be a multiple of
/// `round_to`; 1 for any width).
pub fn select(
    net: &Network,
    deps: &Dependencies,
    scores: &Scores,
    target: f64,
    allocation: Allocation,
    (max_ratio, round_to): (f64, usize),
) -> Result<Vec<Vec<usize>>, SelectError> {
    if !(0.0..1.0).contains(&target) {
        return Err(SelectError::BadTarget(target));
    }
    let cap = |size: usize| ((size as f64 * max_ratio).floor() as usize).min(size.saturating_sub(1));
    let orders: Vec<Vec<usize>> = deps
        .groups
        .iter()
        .zip(scores)
        .map(|(g, s)| if g.prunable() { ascending(s) } else { Vec::new() })
        .collect();
    // `removed(x)`: the channels removed at step x of a monotone schedule.
    let (steps, removed): (usize, RemovalSchedule<'_>) = match allocation {
        Allocation::Global => {
            let all = global_order(net, deps, scores, &orders, cap);
            let n = all.len();
            let sizes: Vec<usize> = deps.groups.iter().map(|g| g.size()).collect();
            let orders = orders.clone();
            (
                n,
                Box::new(move |x| {
                    // A group's removals come in its ascending order: a prefix of it, whose
                    // length rounding may lengthen.
                    let mut count = vec![0usize; sizes.len()];
                    all[..x].iter().for_each(|&(g, _)| count[g] += 1);
                    (0..sizes.len())
                        .map(|g| {
                            let n = rounded_removal(sizes[g], count[g], round_to, cap(sizes[g]));
                            orders[g][..n.min(orders[g].len())].to_vec()
                        })
                        .collect()
                }),
            )
        }
        Allocation::Uniform => {
            // Step x removes round(x / 1000 · max_ratio · size) channels of every group.
            let sizes: Vec<usize> = deps.groups.iter().map(|g| g.size()).collect();
            let orders = orders.clone();
            (
                1000,
                Box::new(move |x| {
                    sizes
                        .iter()
                        .zip(&orders)
                        .map(|(&size, order)| {
                            let n = ((x as f64 / 1000.0) * max_ratio * size as f64).round() as usize;
                            let n = n.min(cap(size)).min(order.len());
                            order[..rounded_removal(size, n, round_to, cap(size)).min(order.len())].to_vec()
                        })
                        .collect()
                }),
            )
        }
    };
    let reduction = |x: usize| macs_reduction(net, deps, &keep_without(deps, &removed(x)));
    let most = reduction(steps);
    if most < target {
        return Err(SelectError::Unreachable {
            target: 100.0 * target,
            reachable: 100.0 * most,
            keep_min: 100.0 * (1.0 - max_ratio),
        });
    }
    // Smallest step whose reduction reaches the target (reduction grows with the step).
    let (mut lo, mut hi) = (0, steps);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if reduction(mid) >= target { hi = mid } else { lo = mid + 1 }
    }
    // The closest last step removes single channels: not with rounded widths.
    if allocation == Allocation::Global && lo > 0 && round_to <= 1 {
        return Ok(keep_without(
            deps,
            &last_step_closest(net, deps, &orders, removed(lo - 1), target, cap),
        ));
    }
    if lo > 0 {
        return Ok(keep_without(
            deps,
            &last_step_by_group(net, deps, removed(lo - 1), removed(lo), target),
        ));
    }
    Ok(keep_without(deps, &removed(lo)))
}

/// The last channels of a global schedule, chosen to overshoot the target least: `before`
/// falls short of it. Among the next channel of every group (within its cap), one whose
/// removal reaches the target within half a point ends the schedule; otherwise the one that
/// comes closest without reaching it is removed and the choice is made again, and if none is
/// left, the one found on the way that overshot least is taken. One channel of a residual
/// group can carry several percent of a network's MACs, so the greedy next channel may
/// overshoot far more than a few cheap channels that suffice.
fn last_step_closest(
    net: &Network,
    deps: &Dependencies,
    orders: &[Vec<usize>],
    mut before: Vec<Vec<usize>>,
    target: f64,
    cap: impl Fn(usize) -> usize,
) -> Vec<Vec<usize>> {
    let mut best: Option<(f64, Vec<Vec<usize>>)> = None;
    loop {
        let mut closest_below: Option<(f64, Vec<Vec<usize>>)> = None;
        for (g, group) in deps.groups.iter().enumerate() {
            let gone = before[g].len();
            if !group.prunable() || gone >= cap(group.size()).min(orders[g].len()) {
                continue;
            }
            let mut removed = before.clone();
            removed[g].push(orders[g][gone]);
            let reached = macs_reduction(net, deps, &keep_without(deps, &removed));
            if reached >= target {
                if best.as_ref().is_none_or(|(r, _)| reached < *r) {
                    best = Some((reached, removed));
                }
            } else if closest_below.as_ref().is_none_or(|(r, _)| reached > *r) {
                closest_below = Some((reached, removed));
            }
        }
        match (best.as_ref(), closest_below) {
            (Some((r, _)), _) if *r - target <= 0.005 => break,
            (_, Some((_, removed))) => before = removed,
            _ => break,
        }
    }
    best.map_or(before, |(_, removed)| removed)
}

/// The last step of a uniform schedule, applied one group at a time: `before` falls short
/// of the target, `after` reaches it. While no single group's step reaches the target, the
/// group whose step removes the fewest MACs takes it; then, of the groups whose step reaches
/// the target, the one that overshoots least. Networks whose groups share a few sizes (all
/// stages of a RegNet, say) would otherwise jump several points past the target at once.
fn last_step_by_group(
    net: &Network,
    deps: &Dependencies,
    mut before: Vec<Vec<usize>>,
    after: Vec<Vec<usize>>,
    target: f64,
) -> Vec<Vec<usize>> {
    let mut pending: Vec<usize> = (0..after.len()).filter(|&g| after[g].len() > before[g].len()).collect();
    loop {
        let steps: Vec<(usize, f64)> = pending
            .iter()
            .map(|&g| {
                let mut next = before.clone();
                next[g] = after[g].clone();
                (g, macs_reduction(net, deps, &keep_without(deps, &next)))
            })
            .collect();
        let reaching = steps.iter().filter(|(_, r)| *r >= target).min_by(|a, b| a.1.total_cmp(&b.1));
        let (g, _) = match reaching {
            Some(&step) => step,
            None => *steps.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("`after` reaches the target"),
        };
        before[g] = after[g].clone();
        if reaching.is_some() {
            return before;
        }
        pending.retain(|&p| p != g);
    }
}

/// The keep-set that gives every group its width in `widths`, keeping the group's most
/// important channels (ties broken by index); pinned groups keep everything.
pub fn keep_widths(deps: &Dependencies, scores: &Scores, widths: &[usize]) -> Vec<Vec<usize>> {
    deps.groups
        .iter()
        .zip(scores)
        .zip(widths)
        .map(|((g, s), &w)| {
            if !g.prunable() || w >= g.size() {
                return (0..g.size()).collect();
            }
            let mut kept = ascending(s)[g.size() - w.max(1)..].to_vec();
            kept.sort_unstable();
            kept
        })
        .collect()
}
