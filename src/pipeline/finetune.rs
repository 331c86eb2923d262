//! Stage 5, fine-tuning: the winner cut from the base network, its BatchNorm recalibrated,
//! then trained for `[finetune] epochs` (distilled from the base network when asked),
//! checkpointed so `--resume` continues it.

use super::evaluate::CandidateEvaluator;
use super::prepare::Run;
use super::scoring::Scored;
use super::workbench::Workbench;
use super::{PipelineError, train_with_bar, training_config};
use crate::exec::Executable;
use crate::ir::Network;
use crate::search::log::Record;
use crate::train::{Checkpointing, Distill};
use crate::weights::Weights;

/// The winner's network and its fine-tuned (or, with 0 epochs, recalibrated) weights.
pub fn finetune_winner(run: &Run, bench: &Workbench, scored: &Scored, winner: &Record) -> Result<(Network, Weights), PipelineError> {
    let space = run.space();
    // Only the recalibration batches are needed: no held-out images are uploaded.
    let mut no_images = bench.heldout.clone();
    no_images.indices.clear();
    let evaluator = CandidateEvaluator {
        keep: bench.keep_evaluator(&no_images, space.evaluate.recalibration_batches)?,
        scores: &scored.scores,
    };
    let (pruned, recalibrated) = evaluator.pruned(&winner.widths);
    let f = &space.finetune;
    if f.epochs == 0 {
        return Ok((pruned, recalibrated));
    }
    run.say(format!("fine-tuning the winner ({} epochs)", f.epochs));
    let config = training_config(f.epochs, f.batch_size, f.lr, f.max_steps, space);
    let distill = f.distillation.then(|| Distill {
        teacher: Executable::new(bench.net, bench.weights, bench.device),
        temperature: f.temperature,
        alpha: f.alpha,
    });
    let checkpoint = Checkpointing {
        path: run.out.join("finetune.checkpoint.safetensors"),
        resume: run.options.resume,
    };
    let quiet = run.options.quiet;
    let summary = train_with_bar(
        &pruned,
        &recalibrated,
        bench.data,
        &config,
        distill.as_ref(),
        bench.device,
        &checkpoint,
        quiet,
    )?;
    Ok((pruned, summary.weights))
}
