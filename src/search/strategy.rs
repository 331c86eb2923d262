//! Search strategies: each round, a pool of new feasible candidates to rank and evaluate.

use super::candidates::{Candidate, Layout, Target};
use super::space::Strategy;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;

/// Grid points a refinement round considers at most (sampled beyond).
const REFINE_POINTS: usize = 4096;
/// Halvings of the refinement step after which a search with nothing new stops.
const REFINE_HALVINGS: usize = 8;

/// A candidate evaluated earlier, as strategies see it.
pub struct Scored<'a> {
    /// The candidate.
    pub candidate: &'a Candidate,
    /// Its held-out accuracy.
    pub accuracy: f64,
}

/// The state a strategy carries from round to round (a function of the seed and of the
/// results so far, so a resumed search proposes what the original did).
pub struct Proposer {
    strategy: Strategy,
    seed: u64,
    refine_step: f64,
}

/// The generator of one round: seeded by the search seed and the round.
pub fn round_rng(seed: u64, round: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn best<'a>(history: &'a [Scored<'a>]) -> Option<&'a Scored<'a>> {
    history.iter().fold(None, |best: Option<&Scored>, s| match best {
        Some(b) if b.accuracy >= s.accuracy => Some(b),
        _ => Some(s),
    })
}

impl Proposer {
    /// A proposer for `strategy` over `levels`.
    pub fn new(strategy: Strategy, seed: u64, levels: &[f64]) -> Self {
        let gap = levels.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
        Proposer {
            strategy,
            seed,
            refine_step: if gap.is_finite() { gap / 2.0 } else { 0.05 },
        }
    }

    /// New, feasible, distinct candidates for round `round` (at most `pool`, except that
    /// `exhaustive` offers every unseen feasible grid point).
    #[allow(clippy::too_many_arguments)] // the round's whole context
    pub fn propose(
        &mut self,
        round: usize,
        layout: &Layout,
        target: &Target,
        grid: &[Candidate],
        history: &[Scored],
        seen: &HashSet<Vec<usize>>,
        pool: usize,
    ) -> Vec<Candidate> {
        let mut rng = round_rng(self.seed, round);
        let unseen_grid = || grid.iter().filter(|c| !seen.contains(&c.widths)).cloned().collect::<Vec<_>>();
        let random = |rng: &mut StdRng| {
            let mut all = unseen_grid();
            all.shuffle(rng);
            all.truncate(pool);
            all
        };
        match self.strategy {
            Strategy::Exhaustive => unseen_grid(),
            Strategy::Random => random(&mut rng),
            Strategy::Refine if round == 0 => unseen_grid(),
            Strategy::Evolution if round == 0 || history.len() < 2 => random(&mut rng),
            Strategy::Evolution => {
                let children = evolve(layout, target, history, seen, pool, &mut rng);
                if children.is_empty() { random(&mut rng) } else { children }
            }
            Strategy::Refine => {
                let Some(best) = best(history) else { return unseen_grid() };
                let (lo, hi) = (layout.levels[0], *layout.levels.last().expect("at least one level"));
                for _ in 0..REFINE_HALVINGS {
                    let points = neighbourhood(&best.candidate.rates, self.refine_step, lo, hi, &mut rng);
                    let fresh = fresh(layout, target, points, seen, pool, &mut rng);
                    self.refine_step /= 2.0;
                    if !fresh.is_empty() {
                        return fresh;
                    }
                }
                Vec::new()
            }
        }
    }
}

/// The grid `{r − step, r, r + step}` per rate group around `rates`, within `[lo, hi]`
/// (sampled when larger than [`REFINE_POINTS`]).
fn neighbourhood(rates: &[f64], step: f64, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<Vec<f64>> {
    let options: Vec<Vec<f64>> = rates
        .iter()
        .map(|&r| {
            let mut o: Vec<f64> = [r - step, r, r + step]
                .into_iter()
                .filter(|&v| v >= lo - 1e-12 && v <= hi + 1e-12)
                .collect();
            o.dedup();
            o
        })
        .collect();
    let total = options.iter().map(|o| o.len()).try_fold(1usize, |a, n| a.checked_mul(n));
    match total {
        Some(n) if n <= REFINE_POINTS => options.iter().fold(vec![Vec::new()], |points, o| {
            points
                .into_iter()
                .flat_map(|p| {
                    o.iter().map(move |&v| {
                        let mut q = p.clone();
                        q.push(v);
                        q
                    })
                })
                .collect()
        }),
        _ => (0..REFINE_POINTS)
            .map(|_| options.iter().map(|o| o[rng.random_range(0..o.len())]).collect())
            .collect(),
    }
}

/// Costs `points`, keeps the feasible unseen distinct ones, at most `pool` of them (seeded).
fn fresh(
    layout: &Layout,
    target: &Target,
    points: Vec<Vec<f64>>,
    seen: &HashSet<Vec<usize>>,
    pool: usize,
    rng: &mut StdRng,
) -> Vec<Candidate> {
    use rayon::prelude::*;
    let costed: Vec<Candidate> = points.par_iter().map(|r| layout.candidate(r)).collect();
    let mut distinct = HashSet::new();
    let mut out: Vec<Candidate> = costed
        .into_iter()
        .filter(|c| target.admits(c) && !seen.contains(&c.widths) && distinct.insert(c.widths.clone()))
        .collect();
    if out.len() > pool {
        out.shuffle(rng);
        out.truncate(pool);
    }
    out
}

/// Children of the (up to eight) best evaluated candidates: uniform crossover of two parents, then each
/// rate moved one level up or down with probability 1 / rate groups.
fn evolve(
    layout: &Layout,
    target: &Target,
    history: &[Scored],
    seen: &HashSet<Vec<usize>>,
    pool: usize,
    rng: &mut StdRng,
) -> Vec<Candidate> {
    let mut ranked: Vec<&Scored> = history.iter().collect();
    ranked.sort_by(|a, b| b.accuracy.total_cmp(&a.accuracy));
    let parents = &ranked[..ranked.len().min(8)];
    let levels = &layout.levels;
    let level_of = |r: f64| {
        levels
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - r).abs().total_cmp(&(b.1 - r).abs()))
            .map(|(i, _)| i)
            .expect("at least one level")
    };
    let genes = layout.rate_groups.len();
    let points: Vec<Vec<f64>> = (0..pool * 8)
        .map(|_| {
            let a = parents[rng.random_range(0..parents.len())];
            let b = parents[rng.random_range(0..parents.len())];
            (0..genes)
                .map(|g| {
                    let parent = if rng.random_bool(0.5) { a } else { b };
                    let mut level = level_of(parent.candidate.rates[g]) as isize;
                    if rng.random_bool(1.0 / genes as f64) {
                        level += if rng.random_bool(0.5) { 1 } else { -1 };
                    }
                    levels[level.clamp(0, levels.len() as isize - 1) as usize]
                })
                .collect()
        })
        .collect();
    fresh(layout, target, points, seen, pool, rng)
}
