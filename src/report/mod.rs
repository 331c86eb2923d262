//! `report.md` and its SVG plots: what a person reads after a search. Tables of base vs
//! pruned network (accuracy, MACs, params, latency), the winning rates and the per-layer
//! widths; plots of every candidate (accuracy vs MACs with the Pareto front and the
//! winner), of the channels per layer, of the search's progress and of the ranking's
//! predictions against the measured accuracies.

mod data;
pub mod plots;

pub use data::{
    CandidateLatency, LatencyCheck, LayerWidth, RateGroupReport, Report, Side, layer_widths, predicted_and_measured, ranking_spearman,
    spearman,
};

use crate::search::log::Record;
use crate::weights::write_atomic;
use std::fmt::Write;
use std::path::Path;

/// The plot files written beside `report.md` for every search.
pub const PLOTS: [&str; 3] = ["accuracy_vs_macs.svg", "widths.svg", "progress.svg"];
/// The plot of the ranking's predictions against the measured accuracies, written when the
/// search was ranked.
pub const RANKING_PLOT: &str = "predicted_vs_measured.svg";
/// The plots of a search with a latency target: predicted vs measured latency, and
/// held-out accuracy vs measured latency with its Pareto front.
pub const LATENCY_PLOTS: [&str; 2] = ["latency_predicted_vs_measured.svg", "accuracy_vs_latency.svg"];

fn millions(v: u64) -> String {
    format!("{:.3} M", v as f64 / 1e6)
}

/// The Markdown text of a report.
pub fn markdown(report: &Report, records: &[Record]) -> String {
    let (b, p) = (&report.base, &report.pruned);
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    let mut md = String::new();
    let _ = writeln!(md, "# sacp search report\n");
    let _ = writeln!(
        md,
        "{} candidates evaluated ({} taken from an earlier run's log, {} failed with non-finite outputs and are left out below) out of {} feasible grid points; {} search, {} ranking, `{}` importance, seed {}. Device: {}. {:.0} s.\n",
        report.candidates_evaluated,
        report.candidates_reused,
        report.candidates_failed,
        report.feasible_grid_points,
        report.search["strategy"].as_str().unwrap_or("?"),
        report.search["ranking"].as_str().unwrap_or("?"),
        report.search["importance"].as_str().unwrap_or("?"),
        report.search["seed"],
        report.device,
        report.seconds
    );
    let _ = writeln!(md, "## Base vs pruned\n");
    let _ = writeln!(md, "| | base | pruned | change |\n|---|---|---|---|");
    let _ = writeln!(
        md,
        "| test accuracy | {} | {} | {:+.2} points |",
        pct(b.test_accuracy),
        pct(p.test_accuracy),
        100.0 * (p.test_accuracy - b.test_accuracy)
    );
    let _ = writeln!(
        md,
        "| held-out accuracy | {} | {} | {:+.2} points |",
        pct(b.heldout_accuracy),
        pct(p.heldout_accuracy),
        100.0 * (p.heldout_accuracy - b.heldout_accuracy)
    );
    let _ = writeln!(
        md,
        "| MACs | {} | {} | −{} |",
        millions(b.macs),
        millions(p.macs),
        pct(report.macs_reduction)
    );
    let _ = writeln!(
        md,
        "| parameters | {} | {} | −{} |",
        millions(b.params),
        millions(p.params),
        pct(report.params_reduction)
    );
    let _ = writeln!(
        md,
        "| latency (batch {}) | {:.1} ms | {:.1} ms | {:.2}× faster |\n",
        report.latency_batch, b.latency_ms, p.latency_ms, report.speedup
    );
    let _ = writeln!(
        md,
        "The winner scored {} held-out after BatchNorm recalibration, before fine-tuning.\n",
        pct(report.winner.heldout_accuracy)
    );
    let _ = writeln!(md, "## Winning rates\n\n| rate group | rate | channel groups |\n|---|---|---|");
    for g in &report.rate_groups {
        let _ = writeln!(md, "| {} | {:.3} | {} |", g.name, g.rate, g.groups.join(", "));
    }
    let _ = writeln!(
        md,
        "\n## Channels per layer\n\n| # | layer | before | after | kept |\n|---|---|---|---|---|"
    );
    for (i, w) in report.widths.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0}% |",
            i + 1,
            w.layer,
            w.before,
            w.after,
            100.0 * w.after as f64 / w.before.max(1) as f64
        );
    }
    let _ = writeln!(md, "\n![channels per layer](widths.svg)\n");
    let _ = writeln!(md, "## Candidates\n");
    let front = plots::pareto_front(records);
    let _ = writeln!(
        md,
        "Held-out accuracy against MACs removed for every evaluated candidate; the green line is the Pareto front ({} candidates), the red triangle the winner.\n",
        front.len()
    );
    let _ = writeln!(md, "![accuracy vs MACs](accuracy_vs_macs.svg)\n");
    let _ = writeln!(md, "![search progress](progress.svg)\n");
    ranking_section(&mut md, report, records);
    if let Some(latency) = &report.latency {
        latency_section(&mut md, latency);
    }
    let _ = writeln!(md, "## Pareto front\n");
    let _ = writeln!(
        md,
        "| MACs removed | params removed | held-out | ranking score | rates |\n|---|---|---|---|---|"
    );
    for &i in &front {
        let r = &records[i];
        let rates: Vec<String> = r.rates.iter().map(|x| format!("{x:.3}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            pct(r.macs_reduction),
            pct(r.params_reduction),
            pct(r.heldout_accuracy),
            r.predicted.map_or("–".to_string(), |s| format!("{s:.4}")),
            rates.join(" / ")
        );
    }
    md
}

/// How well the ranking predicted this search's accuracies (nothing for an unranked one).
fn ranking_section(md: &mut String, report: &Report, records: &[Record]) {
    let pairs = predicted_and_measured(records);
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Ranking quality\n");
    let _ = writeln!(
        md,
        "The ranking's score of every scored candidate when it was chosen (standardised within its round: each round's scores come from the predictor trained on the rounds before), against its measured held-out accuracy ({} candidates). Spearman's rank correlation within rounds, averaged: {}. Only each round's top candidates are measured, so this understates the ranking's quality over the whole pool.\n",
        pairs.len(),
        report.ranking_spearman.map_or(
            "not defined (fewer than three candidates, or constant values)".to_string(),
            |s| format!("{s:.3}")
        )
    );
    let _ = writeln!(md, "![predicted vs measured]({RANKING_PLOT})\n");
}

/// The latency target against the measured latencies.
fn latency_section(md: &mut String, l: &LatencyCheck) {
    let _ = writeln!(md, "## Latency target\n");
    let _ = writeln!(
        md,
        "Each candidate's latency (batch {}) was predicted from a lookup table of layer latencies measured on this device; after the search every candidate was measured. Median prediction error {:.1}% over {} candidates.\n",
        l.batch,
        100.0 * l.median_error(),
        l.candidates.len()
    );
    let _ = writeln!(md, "| | predicted | measured |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| base network | {:.2} ms | {:.2} ms |",
        l.base_predicted_ms, l.base_measured_ms
    );
    let _ = writeln!(md, "| winner | {:.2} ms | {:.2} ms |", l.winner_predicted_ms, l.winner_measured_ms);
    let _ = writeln!(
        md,
        "| latency removed | target {:.1}% ± {:.1}% | {:.1}% ({}) |\n",
        100.0 * l.target_reduction,
        100.0 * l.tolerance,
        100.0 * l.measured_reduction,
        if l.met() { "met" } else { "**not met**" }
    );
    let _ = writeln!(
        md,
        "{} of the {} candidates meet the target when measured; the winner is the most accurate of them{}.\n",
        l.measured_feasible,
        l.candidates.len(),
        if l.measured_feasible == 0 {
            " (none does: the search's winner by prediction is kept)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "![predicted vs measured latency]({})\n", LATENCY_PLOTS[0]);
    let front = plots::latency_front(&l.candidates);
    let _ = writeln!(
        md,
        "Held-out accuracy against measured latency; the green line is the Pareto front ({} candidates).\n",
        front.len()
    );
    let _ = writeln!(md, "![accuracy vs latency]({})\n", LATENCY_PLOTS[1]);
}

/// Writes `report.md` and its plots into `out` (each file atomically).
pub fn write(out: &Path, report: &Report, records: &[Record]) -> Result<(), plots::PlotError> {
    let winner = records.iter().position(|r| r.widths == report.winner.widths).unwrap_or(0);
    let svgs = [
        plots::accuracy_vs_macs(records, winner)?,
        plots::widths(&report.widths)?,
        plots::progress(records)?,
    ];
    for (name, svg) in PLOTS.iter().zip(svgs) {
        write_atomic(&out.join(name), svg.as_bytes())?;
    }
    let pairs = predicted_and_measured(records);
    if !pairs.is_empty() {
        write_atomic(&out.join(RANKING_PLOT), plots::predicted_vs_measured(&pairs)?.as_bytes())?;
    }
    if let Some(latency) = &report.latency {
        let svgs = [
            plots::latency_scatter(&latency.candidates)?,
            plots::accuracy_vs_latency(&latency.candidates)?,
        ];
        for (name, svg) in LATENCY_PLOTS.iter().zip(svgs) {
            write_atomic(&out.join(name), svg.as_bytes())?;
        }
    }
    write_atomic(&out.join("report.md"), markdown(report, records).as_bytes())?;
    Ok(())
}
