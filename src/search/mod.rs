//! The search over per-rate-group pruning rates (SACP's bounded combination space).
//!
//! Each round a strategy proposes feasible, unseen candidates (the constraints are checked
//! on the graph, before any evaluation); a caller-supplied ranker scores them (the GCN
//! predictor, trained on the results so far, or the embedding similarity; or they are
//! shuffled, the baseline) and the top-m are evaluated in parallel by a caller-supplied
//! evaluator. A share of the top-m (`explore`) goes to the candidates the ranker is least
//! sure of. Every evaluation is logged at once; a resumed
//! search replays the same rounds and takes logged results instead of evaluating again.
//! Everything here is pure except the evaluator the caller passes in.

pub mod candidates;
pub mod clusters;
mod costing;
pub mod latency;
pub mod log;
pub mod space;
pub mod strategy;

use candidates::{Candidate, Layout, Target};
use log::{Log, LogError, Record};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use space::{Parallelism, Ranking, SearchSection};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;
pub use strategy::Scored;
use strategy::{Proposer, round_rng};

/// Errors of a search run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The candidate log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Evaluating a candidate failed.
    #[error("evaluating a candidate failed: {0}")]
    Evaluate(String),
    /// No candidate could be scored: every evaluation failed.
    #[error("all {count} evaluated candidates failed, none can be the winner; the first failure: {first}")]
    AllFailed {
        /// Candidates evaluated.
        count: usize,
        /// The first failure's reason.
        first: String,
    },
    /// The worker threads could not be started.
    #[error("cannot start {threads} worker threads: {message}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Why not.
        message: String,
    },
}

/// What a finished search found.
pub struct Outcome {
    /// Every candidate of this search in the order they were chosen (logged or evaluated).
    pub records: Vec<Record>,
    /// Index of the winner in `records`: best held-out accuracy, then fewest MACs, among the
    /// candidates that did not fail.
    pub winner: usize,
    /// How many of `records` came from the log of an earlier run.
    pub reused: usize,
}

/// How a candidate's evaluation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Score {
    /// Its held-out accuracy.
    Accuracy(f64),
    /// It could not be scored (e.g. its network gave non-finite outputs); the reason is
    /// logged and it never wins.
    Failed(String),
}

/// Scores a candidate; an `Err` (e.g. unreadable data) stops the search.
pub type Evaluate<'a> = dyn Fn(&Candidate) -> Result<Score, String> + Sync + 'a;
/// A ranker's view of a round's candidates.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    /// Score per candidate: higher is expected to be more accurate.
    pub score: Vec<f32>,
    /// Uncertainty per candidate (zeros when the ranker has none).
    pub spread: Vec<f32>,
}

/// Ranks a round's candidates, given every candidate scored so far (in evaluation order).
pub type Rank<'a> = dyn FnMut(&[Candidate], &[Scored]) -> Ranked + 'a;
/// Sees every record as it is done, and whether it came from the log.
pub type Observe<'a> = dyn Fn(&Record, bool) + Sync + 'a;

/// The candidates and their context.
pub struct Space<'a> {
    /// Rate groups, levels and the network.
    pub layout: &'a Layout<'a>,
    /// The reduction targets.
    pub target: Target,
    /// The feasible points of the coarse grid.
    pub grid: &'a [Candidate],
}

/// The order in which a round's candidates are evaluated: the `take − explore` best
/// scored, then the `explore` most uncertain of the rest (ties by position).
/// Exploration only happens when the ranker reports some uncertainty.
fn top_m(ranked: &Ranked, take: usize, explore: usize) -> Vec<usize> {
    let by = |values: &[f32]| {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        order
    };
    let mut order: Vec<usize> = by(&ranked.score).into_iter().take(take.saturating_sub(explore)).collect();
    let uncertain: Vec<usize> = by(&ranked.spread)
        .into_iter()
        .filter(|i| !order.contains(i))
        .take(explore)
        .collect();
    order.extend(uncertain);
    order
}

/// Runs the search. `logged` are records of an earlier run of the same search (from
/// [`Log::open`]); they are taken instead of evaluated when the search reaches them.
pub fn run(
    space: &Space,
    settings: &SearchSection,
    rank: &mut Rank,
    evaluate: &Evaluate,
    log: Log,
    logged: Vec<Record>,
    observe: &Observe,
) -> Result<Outcome, SearchError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(settings.threads)
        .build()
        .map_err(|e| SearchError::Threads {
            threads: settings.threads,
            message: e.to_string(),
        })?;
    let logged: HashMap<Vec<usize>, Record> = logged.into_iter().map(|r| (r.widths.clone(), r)).collect();
    let log = Mutex::new(log);
    let mut proposer = Proposer::new(settings.strategy, settings.seed, &space.layout.levels);
    let mut done: Vec<(Candidate, Record)> = Vec::new();
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut reused = 0;
    let mut round = 0;
    while done.len() < settings.budget {
        let history: Vec<Scored> = done
            .iter()
            .filter(|(_, r)| r.failed.is_none())
            .map(|(c, r)| Scored {
                candidate: c,
                accuracy: r.heldout_accuracy,
            })
            .collect();
        let proposals = proposer.propose(round, space.layout, &space.target, space.grid, &history, &seen, settings.pool);
        if proposals.is_empty() {
            break;
        }
        let take = settings.gcn_top_m.min(settings.budget - done.len());
        let (order, predicted) = match settings.ranking {
            Ranking::None => {
                let mut order: Vec<usize> = (0..proposals.len()).collect();
                order.shuffle(&mut round_rng(settings.seed.wrapping_add(1), round));
                (order, None)
            }
            Ranking::Gcn | Ranking::Similarity => {
                let ranked = rank(&proposals, &history);
                let uncertain = ranked.spread.iter().any(|&s| s > 0.0);
                let explore = if settings.ranking == Ranking::Similarity || !uncertain {
                    0
                } else {
                    (settings.explore * take as f64).floor() as usize
                };
                (top_m(&ranked, take, explore), Some(ranked.score))
            }
        };
        let chosen: Vec<(&Candidate, Option<f32>)> = order
            .iter()
            .take(take)
            .map(|&i| (&proposals[i], predicted.as_ref().map(|p| p[i])))
            .collect();
        let evaluate_one = |&(c, predicted): &(&Candidate, Option<f32>)| {
            if let Some(r) = logged.get(&c.widths) {
                observe(r, true);
                return Ok((r.clone(), true));
            }
            let started = Instant::now();
            let (accuracy, failed) = match evaluate(c).map_err(SearchError::Evaluate)? {
                Score::Accuracy(a) if a.is_finite() => (a, None),
                Score::Accuracy(a) => (0.0, Some(format!("held-out accuracy {a} is not a number"))),
                Score::Failed(reason) => (0.0, Some(reason)),
            };
            let record = Record {
                round,
                rates: c.rates.clone(),
                widths: c.widths.clone(),
                macs: c.macs,
                params: c.params,
                macs_reduction: c.macs_reduction,
                params_reduction: c.params_reduction,
                predicted_latency_ms: c.latency.map(|(ms, _)| ms),
                predicted,
                heldout_accuracy: accuracy,
                failed,
                seconds: started.elapsed().as_secs_f64(),
            };
            log.lock().expect("no writer panicked").append(&record)?;
            observe(&record, false);
            Ok((record, false))
        };
        let results: Vec<Result<(Record, bool), SearchError>> = pool.install(|| match settings.parallelism {
            Parallelism::Candidates => chosen.par_iter().map(evaluate_one).collect(),
            Parallelism::Kernels => chosen.iter().map(evaluate_one).collect(),
        });
        for ((c, _), result) in chosen.into_iter().zip(results) {
            let (record, from_log) = result?;
            reused += usize::from(from_log);
            seen.insert(c.widths.clone());
            done.push((c.clone(), record));
        }
        round += 1;
    }
    let records: Vec<Record> = done.into_iter().map(|(_, r)| r).collect();
    let winner = (0..records.len()).filter(|&i| records[i].failed.is_none()).min_by(|&a, &b| {
        let (ra, rb) = (&records[a], &records[b]);
        rb.heldout_accuracy
            .total_cmp(&ra.heldout_accuracy)
            .then(ra.macs.cmp(&rb.macs))
            .then(a.cmp(&b))
    });
    match winner {
        Some(winner) => Ok(Outcome { records, winner, reused }),
        None => Err(SearchError::AllFailed {
            count: records.len(),
            first: records
                .iter()
                .find_map(|r| r.failed.clone())
                .unwrap_or_else(|| "no candidate was evaluated".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{Ranked, top_m};

    #[test]
    fn top_m_spends_the_exploration_share_on_the_most_uncertain_of_the_rest() {
        let ranked = Ranked {
            score: vec![0.9, 0.8, 0.7, 0.1, 0.2],
            spread: vec![0.6, 0.0, 0.1, 0.5, 0.3],
        };
        assert_eq!(top_m(&ranked, 3, 0), vec![0, 1, 2]);
        // Candidate 0 is the most uncertain but already among the best: the next one is 3.
        assert_eq!(top_m(&ranked, 3, 1), vec![0, 1, 3]);
        assert_eq!(top_m(&ranked, 4, 2), vec![0, 1, 3, 4]);
        assert_eq!(top_m(&ranked, 2, 2), vec![0, 3]);
    }
}
