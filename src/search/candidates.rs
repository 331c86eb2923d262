//! The combination space: a candidate is one pruning rate per rate group; it fixes every
//! channel group's width, and with it the pruned network's MACs and parameters (read off
//! the graph, no backend).

use super::clusters::RateGroup;
use super::costing::WidthCost;
use super::latency::LatencyTable;
use super::space::SearchSpace;
use crate::deps::Dependencies;
use crate::ir::{Cost, Network};
use crate::spec::SpecError;
use crate::surgery;
use rayon::prelude::*;

/// One point of the space with its cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// A pruning rate per rate group.
    pub rates: Vec<f64>,
    /// Channels each channel group keeps (pinned and unclustered groups keep all).
    pub widths: Vec<usize>,
    /// MACs of the pruned network.
    pub macs: u64,
    /// Parameters of the pruned network.
    pub params: u64,
    /// Share of the original MACs removed.
    pub macs_reduction: f64,
    /// Share of the original parameters removed.
    pub params_reduction: f64,
    /// Predicted latency in milliseconds and the share of the base network's predicted
    /// latency removed (when the layout has a latency table).
    pub latency: Option<(f64, f64)>,
}

/// The rate groups, their levels and the network they prune.
pub struct Layout<'a> {
    /// The network.
    pub net: &'a Network,
    /// Its channel groups.
    pub deps: &'a Dependencies,
    /// The rate groups.
    pub rate_groups: Vec<RateGroup>,
    /// Rate levels of the coarse grid, ascending.
    pub levels: Vec<f64>,
    /// Every pruned width is a multiple of this (or the group's full width).
    pub round_to: usize,
    base: Cost,
    latency: Option<(&'a LatencyTable, f64)>,
    width_cost: Option<WidthCost>,
}

/// Reduction targets with their tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Share of MACs to remove.
    pub macs: Option<f64>,
    /// Share of parameters to remove.
    pub params: Option<f64>,
    /// Share of the base network's predicted latency to remove.
    pub latency: Option<f64>,
    /// Allowed distance from each target.
    pub tolerance: f64,
}

impl Target {
    /// True when every given reduction is within tolerance of its target.
    pub fn admits(&self, c: &Candidate) -> bool {
        let near = |target: Option<f64>, value: f64| target.is_none_or(|t| (value - t).abs() <= self.tolerance + 1e-12);
        let latency = match (self.latency, c.latency) {
            (Some(t), Some((_, reduction))) => near(Some(t), reduction),
            (Some(_), None) => false,
            (None, _) => true,
        };
        near(self.macs, c.macs_reduction) && near(self.params, c.params_reduction) && latency
    }
}

impl<'a> Layout<'a> {
    /// A layout over `rate_groups` with the given coarse levels.
    pub fn new(net: &'a Network, deps: &'a Dependencies, rate_groups: Vec<RateGroup>, levels: Vec<f64>) -> Self {
        Layout {
            net,
            deps,
            rate_groups,
            levels,
            round_to: 1,
            base: net.total_cost(),
            latency: None,
            width_cost: WidthCost::new(net, deps),
        }
    }

    /// The same layout with every candidate's latency predicted from `table`.
    pub fn with_latency(mut self, table: &'a LatencyTable) -> Self {
        self.latency = Some((table, table.predict_ms(self.net)));
        self
    }

    /// The same layout with every pruned width a multiple of `round_to` (at least 1).
    pub fn with_round_to(mut self, round_to: usize) -> Self {
        self.round_to = round_to.max(1);
        self
    }

    /// MACs and parameters of the unpruned network.
    pub fn base(&self) -> Cost {
        self.base
    }

    /// Channels each group keeps at these rates: `size − round(rate · size)`, at least one;
    /// with `round_to` > 1 a pruned width goes to the nearest multiple of it (at least one
    /// multiple; the full width when that is as near, or when the group is narrower).
    pub fn widths(&self, rates: &[f64]) -> Vec<usize> {
        let mut widths: Vec<usize> = self.deps.groups.iter().map(|g| g.size()).collect();
        let r = self.round_to;
        for (cluster, &rate) in self.rate_groups.iter().zip(rates) {
            for &g in &cluster.groups {
                let size = widths[g];
                let width = size.saturating_sub((rate * size as f64).round() as usize).max(1);
                widths[g] = if r <= 1 || width == size {
                    width
                } else {
                    ((width + r / 2) / r * r).max(r).min(size)
                };
            }
        }
        widths
    }

    /// The network pruned to these widths (each group keeps its first channels).
    fn pruned(&self, widths: &[usize]) -> Network {
        let keep: Vec<Vec<usize>> = widths.iter().map(|&w| (0..w).collect()).collect();
        surgery::prune_network(self.net, self.deps, &keep).expect("prefix keep-sets of admissible widths are valid")
    }

    /// True when candidates are costed from their widths alone, without building their
    /// networks (every layer's channels belong to channel groups; see `costing.rs`).
    pub fn costs_from_widths(&self) -> bool {
        self.width_cost.is_some()
    }

    /// MACs and parameters of the network pruned to `widths`.
    fn cost(&self, widths: &[usize]) -> Cost {
        match &self.width_cost {
            Some(model) => model.cost(widths),
            None => self.pruned(widths).total_cost(),
        }
    }

    /// The candidate at these rates, with its cost.
    pub fn candidate(&self, rates: &[f64]) -> Candidate {
        let widths = self.widths(rates);
        let (cost, latency) = match self.latency {
            Some((table, base)) => {
                let pruned = self.pruned(&widths);
                let ms = table.predict_ms(&pruned);
                (pruned.total_cost(), Some((ms, 1.0 - ms / base)))
            }
            None => (self.cost(&widths), None),
        };
        Candidate {
            rates: rates.to_vec(),
            macs: cost.macs,
            params: cost.params,
            macs_reduction: 1.0 - cost.macs as f64 / self.base.macs as f64,
            params_reduction: 1.0 - cost.params as f64 / self.base.params as f64,
            latency,
            widths,
        }
    }

    /// Number of points of the coarse grid (levels ^ rate groups), saturating.
    pub fn combinations(&self) -> u64 {
        (self.levels.len() as u64).saturating_pow(self.rate_groups.len() as u32)
    }

    /// The rates of grid point `index` (mixed radix, first rate group slowest).
    pub fn grid_point(&self, mut index: u64) -> Vec<f64> {
        let k = self.levels.len() as u64;
        let mut rates = vec![0.0; self.rate_groups.len()];
        for r in rates.iter_mut().rev() {
            *r = self.levels[(index % k) as usize];
            index /= k;
        }
        rates
    }

    /// Every grid point the target admits, in grid order (costed in parallel).
    ///
    /// The grid is walked as a tree, one rate group per level. MACs and parameters only fall
    /// as a rate rises, so the reductions reachable below a prefix of rates lie between its
    /// completion with the lowest level and its completion with the highest; a subtree whose
    /// range misses a MACs or parameters target is skipped without costing its points.
    pub fn feasible_grid(&self, target: &Target) -> Vec<Candidate> {
        self.feasible_below(Vec::with_capacity(self.rate_groups.len()), target)
    }

    /// The feasible grid points whose first rates are `prefix`, in grid order.
    fn feasible_below(&self, prefix: Vec<f64>, target: &Target) -> Vec<Candidate> {
        if prefix.len() == self.rate_groups.len() {
            let c = self.candidate(&prefix);
            return if target.admits(&c) { vec![c] } else { Vec::new() };
        }
        if !self.may_admit_below(&prefix, target) {
            return Vec::new();
        }
        let below: Vec<Vec<Candidate>> = self
            .levels
            .par_iter()
            .map(|&level| {
                let mut rates = prefix.clone();
                rates.push(level);
                self.feasible_below(rates, target)
            })
            .collect();
        below.concat()
    }

    /// The lowest and the highest rate level.
    fn level_range(&self) -> (f64, f64) {
        let lowest = self.levels.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = self.levels.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lowest, highest)
    }

    /// False when no completion of `prefix` can meet the MACs or parameters target.
    fn may_admit_below(&self, prefix: &[f64], target: &Target) -> bool {
        if target.macs.is_none() && target.params.is_none() {
            return true;
        }
        let completed = |level: f64| {
            let mut rates = prefix.to_vec();
            rates.resize(self.rate_groups.len(), level);
            let cost = self.cost(&self.widths(&rates));
            (
                1.0 - cost.macs as f64 / self.base.macs as f64,
                1.0 - cost.params as f64 / self.base.params as f64,
            )
        };
        let (lowest, highest) = self.level_range();
        let (least_macs, least_params) = completed(lowest);
        let (most_macs, most_params) = completed(highest);
        let slack = target.tolerance + 1e-12;
        let reachable = |t: Option<f64>, least: f64, most: f64| t.is_none_or(|t| most >= t - slack && least <= t + slack);
        reachable(target.macs, least_macs, most_macs) && reachable(target.params, least_params, most_params)
    }
}

/// Checks the space's size and that its targets are reachable, before any work; errors
/// point at `space.max_combinations` or at the constraint no combination meets.
pub fn check_space(space: &SearchSpace, layout: &Layout, target: &Target) -> Result<Vec<Candidate>, SpecError> {
    if layout.rate_groups.is_empty() {
        return Err(space.error("space", "no channel group is left to prune (all pinned, excluded or unlisted)"));
    }
    let n = layout.combinations();
    if n > space.space.max_combinations {
        return Err(space.error(
            "space.max_combinations",
            format!(
                "the space has {} levels ^ {} rate groups = {} combinations, more than max_combinations = {}; use fewer levels, a coarser clustering, or raise the bound",
                layout.levels.len(),
                layout.rate_groups.len(),
                if n == u64::MAX { "more than 2^64".to_string() } else { n.to_string() },
                space.space.max_combinations
            ),
        ));
    }
    let feasible = layout.feasible_grid(target);
    if feasible.is_empty() {
        let alone = |macs: Option<f64>, params: Option<f64>, latency: Option<f64>| Target {
            macs,
            params,
            latency,
            tolerance: target.tolerance,
        };
        let unreachable = |t: Target| layout.feasible_grid(&t).is_empty();
        // MACs and parameters fall as rates rise, so the grid's extremes bound their range;
        // predicted latency need not, so its range is read off every point.
        let range = |candidates: &[Candidate], f: &dyn Fn(&Candidate) -> f64| {
            let lo = candidates.iter().map(f).fold(f64::INFINITY, f64::min);
            let hi = candidates.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
            (100.0 * lo, 100.0 * hi)
        };
        let extremes = || {
            let (lowest, highest) = layout.level_range();
            [lowest, highest].map(|level| layout.candidate(&vec![level; layout.rate_groups.len()]))
        };
        let tol = 100.0 * target.tolerance;
        let (key, message) = match (target.macs, target.params, target.latency) {
            (Some(t), _, _) if unreachable(alone(Some(t), None, None)) => {
                let (lo, hi) = range(&extremes(), &|c| c.macs_reduction);
                (
                    "constraints.macs_reduction",
                    format!(
                        "no combination of the space removes {:.1}% ± {tol:.1}% of the MACs: they remove {lo:.1}% to {hi:.1}%; change the target or `space.rates`",
                        100.0 * t
                    ),
                )
            }
            (_, Some(t), _) if unreachable(alone(None, Some(t), None)) => {
                let (lo, hi) = range(&extremes(), &|c| c.params_reduction);
                (
                    "constraints.params_reduction",
                    format!(
                        "no combination of the space removes {:.1}% ± {tol:.1}% of the parameters: they remove {lo:.1}% to {hi:.1}%; change the target or `space.rates`",
                        100.0 * t
                    ),
                )
            }
            (_, _, Some(t)) if unreachable(alone(None, None, Some(t))) => {
                let all: Vec<Candidate> = (0..n).into_par_iter().map(|i| layout.candidate(&layout.grid_point(i))).collect();
                let (lo, hi) = range(&all, &|c| c.latency.map_or(f64::NAN, |l| l.1));
                (
                    "constraints",
                    format!(
                        "no combination of the space removes {:.1}% ± {tol:.1}% of the predicted latency: they remove {lo:.1}% to {hi:.1}%; change the latency target or `space.rates`",
                        100.0 * t
                    ),
                )
            }
            _ => (
                "constraints",
                "no combination of the space meets all the targets at once; loosen `tolerance` or one target".to_string(),
            ),
        };
        return Err(space.error(key, message));
    }
    Ok(feasible)
}
