//! Stage 4, the search: candidates proposed by the strategy, ranked by the GCN predictor
//! (trained on the rounds so far) or the encoder's similarity (or shuffled), evaluated in
//! parallel on the workbench (cut, recalibrated, scored on the held-out batches) and logged
//! as they finish.

use super::evaluate::CandidateEvaluator;
use super::prepare::Run;
use super::scoring::Scored;
use super::workbench::Workbench;
use super::workers::Workers;
use super::{PipelineError, bar, fingerprint};
use crate::channels::{channel_energy, keep_widths};
use crate::gcn::{self, Predictor, PredictorConfig};
use crate::search::candidates::{Candidate, Layout};
use crate::search::log::{Header, Log, Record};
use crate::search::space::{Parallelism, Ranking, SearchSection};
use crate::search::{self, Outcome, Ranked, Space};
use indicatif::ProgressBar;
use std::sync::Mutex;

/// Images whose activations give the predictor its channel energies.
const PROBE_IMAGES: usize = 256;

/// Runs the search of the prepared space and returns every candidate and the winner.
pub fn search_candidates(run: &Run, bench: &Workbench, scored: &Scored) -> Result<Outcome, PipelineError> {
    let c = &run.checked;
    let space = &c.space;
    let heldout = bench.heldout_batches(space.evaluate.heldout_batches);
    let layout = Layout::new(&c.network, &c.deps, c.rate_groups.clone(), space.levels()).with_round_to(space.space.round_to);
    let layout = match &run.latency {
        Some(table) => layout.with_latency(table),
        None => layout,
    };
    let header = Header::new(
        format!("{}-{}", fingerprint(space, &c.settings), scored.weights_key),
        c.rate_groups.iter().map(|g| g.name.clone()).collect(),
    );
    let (log, logged) = Log::open(&run.log_path, &header, run.options.resume)?;
    if !logged.is_empty() {
        run.say(format!(
            "resuming: {} candidates already in {}",
            logged.len(),
            run.log_path.display()
        ));
    }
    run.say(format!(
        "searching: {:?} strategy, {} ranking, budget {}, top-m {} per round",
        space.search.strategy,
        match space.search.ranking {
            Ranking::Gcn => "GCN predictor",
            Ranking::Similarity => "GCN similarity",
            Ranking::None => "no",
        },
        space.search.budget,
        space.search.gcn_top_m
    ));
    let progress = bar(
        run.options.quiet,
        space.search.budget as u64,
        "  candidates [{bar:30}] {pos}/{len} {msg} ETA {eta}",
    );
    let observe = best_so_far(&progress);
    let mut rank = ranker(run, bench, scored)?;
    let search_space = Space {
        layout: &layout,
        target: c.target,
        grid: &c.grid,
    };
    let outcome = if c.settings.devices.is_empty() {
        let evaluator = CandidateEvaluator {
            keep: bench.keep_evaluator(&heldout, space.evaluate.recalibration_batches)?,
            scores: &scored.scores,
        };
        let evaluate = |c: &Candidate| Ok(evaluator.accuracy(&c.widths));
        search::run(&search_space, &space.search, &mut rank, &evaluate, log, logged, &observe)?
    } else {
        let workers = Workers::start(run, bench, &heldout, space.evaluate.recalibration_batches)?;
        let say = |line: String| progress.suspend(|| run.say(line));
        let names = space.evaluate.devices.join(", ");
        say(format!("evaluating on {} workers: {names}", workers.len()));
        let lost = |worker: &str, reason: &str| say(format!("worker {worker} lost ({reason}); its candidate goes to another worker"));
        let evaluate = |c: &Candidate| {
            let keep = keep_widths(bench.deps, &scored.scores, &c.widths);
            workers.evaluate(|evaluator| evaluator.accuracy(&keep), &lost)
        };
        let settings = one_candidate_per_worker(&space.search, workers.len());
        let outcome = search::run(&search_space, &settings, &mut rank, &evaluate, log, logged, &observe)?;
        workers.summary().iter().for_each(|w| say(w.to_string()));
        outcome
    };
    progress.finish_and_clear();
    let winner = &outcome.records[outcome.winner];
    run.say(format!(
        "winner: {:.2}% held-out, {:.1}% MACs and {:.1}% parameters removed ({} candidates, {} from the log)",
        100.0 * winner.heldout_accuracy,
        100.0 * winner.macs_reduction,
        100.0 * winner.params_reduction,
        outcome.records.len(),
        outcome.reused
    ));
    Ok(outcome)
}

/// The search's settings when each of `workers` takes one candidate at a time: as many threads
/// as workers, each waiting on its worker's device.
fn one_candidate_per_worker(search: &SearchSection, workers: usize) -> SearchSection {
    SearchSection {
        threads: workers,
        parallelism: Parallelism::Candidates,
        ..search.clone()
    }
}

/// The ranker of the space's `ranking`: the GCN predictor (probe energies read once, refitted
/// whenever the history has grown) or the encoder's similarity.
fn ranker<'a>(
    run: &Run,
    bench: &'a Workbench,
    scored: &'a Scored,
) -> Result<impl FnMut(&[Candidate], &[search::Scored]) -> Ranked + 'a, PipelineError> {
    let space = run.space();
    let mask = move |c: &Candidate| gcn::mask_of(bench.deps, &keep_widths(bench.deps, &scored.scores, &c.widths));
    let mut predictor = match space.search.ranking {
        Ranking::Gcn => {
            let energy = channel_energy(bench.net, bench.weights, bench.deps, bench.probe(PROBE_IMAGES)?, bench.device);
            let config = PredictorConfig {
                seed: space.search.seed,
                ..PredictorConfig::default()
            };
            Some(Predictor::new(bench.net, bench.weights, bench.deps, &energy, &config, bench.device))
        }
        _ => None,
    };
    let mut fitted_on = usize::MAX;
    Ok(move |candidates: &[Candidate], history: &[search::Scored]| -> Ranked {
        let masks: Vec<Vec<f32>> = candidates.iter().map(mask).collect();
        match predictor.as_mut() {
            Some(predictor) => {
                if fitted_on != history.len() {
                    let seen: Vec<Vec<f32>> = history.iter().map(|h| mask(h.candidate)).collect();
                    let accuracy: Vec<f64> = history.iter().map(|h| h.accuracy).collect();
                    predictor.fit(&seen, &accuracy);
                    fitted_on = history.len();
                }
                let p = predictor.predict(&masks);
                Ranked {
                    score: p.score,
                    spread: p.spread,
                }
            }
            None => {
                let encoder = scored.encoder.as_ref().expect("the similarity ranking has an encoder");
                let score = encoder.similarity(&masks);
                Ranked {
                    spread: vec![0.0; score.len()],
                    score,
                }
            }
        }
    })
}

/// An observer that advances `progress` and shows the best scored candidate so far.
fn best_so_far(progress: &ProgressBar) -> impl Fn(&Record, bool) + Sync + '_ {
    let best = Mutex::new(None::<(f64, f64)>);
    move |r: &Record, _from_log: bool| {
        let mut b = best.lock().expect("no observer panicked");
        if r.failed.is_none() && b.is_none_or(|(acc, _)| r.heldout_accuracy > acc) {
            *b = Some((r.heldout_accuracy, r.macs_reduction));
        }
        if let Some((acc, macs)) = *b {
            progress.set_message(format!("best {:.2}% held-out at {:.1}% MACs removed", 100.0 * acc, 100.0 * macs));
        }
        progress.inc(1);
    }
}
