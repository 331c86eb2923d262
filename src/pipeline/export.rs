//! Stage 6, export: the base and the pruned network measured (test and held-out accuracy,
//! MACs, parameters, latency), then `pruned.safetensors`, `pruned.onnx`, `pruned.toml`,
//! `report.json` and `report.md` with its plots written, each atomically.

use super::measure::latency_ms;
use super::prepare::Run;
use super::workbench::Workbench;
use super::{PipelineError, io_error};
use crate::ir::Network;
use crate::report::{LatencyCheck, RateGroupReport, Report, Side, layer_widths};
use crate::search::Outcome;
use crate::spec;
use crate::weights::{self, Weights};
use std::time::Instant;

/// Measures both networks, writes every output file and returns the report.
pub fn export(
    run: &Run,
    bench: &Workbench,
    outcome: &Outcome,
    (pruned, pruned_weights): (&Network, &Weights),
    latency: Option<LatencyCheck>,
    started: Instant,
) -> Result<Report, PipelineError> {
    run.say("measuring the base and the pruned network".into());
    let base_side = side(run, bench, bench.net, bench.weights)?;
    let pruned_side = side(run, bench, pruned, pruned_weights)?;
    write_network(run, pruned, pruned_weights)?;
    let mut report = report(run, outcome, pruned, base_side, pruned_side, started);
    report.latency = latency;
    let report_path = run.out.join("report.json");
    let json = serde_json::to_string_pretty(&report).expect("a report serialises");
    weights::write_atomic(&report_path, json.as_bytes()).map_err(io_error(&report_path))?;
    let scored: Vec<_> = outcome.records.iter().filter(|r| r.failed.is_none()).cloned().collect();
    crate::report::write(&run.out, &report, &scored).map_err(|e| PipelineError::Io {
        path: run.out.join("report.md").display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    run.say(format!(
        "test accuracy {:.2}% → {:.2}%, MACs −{:.1}%, params −{:.1}%, {:.2}× faster; wrote {}",
        100.0 * report.base.test_accuracy,
        100.0 * report.pruned.test_accuracy,
        100.0 * report.macs_reduction,
        100.0 * report.params_reduction,
        report.speedup,
        run.out.display()
    ));
    Ok(report)
}

/// One network's figures.
fn side(run: &Run, bench: &Workbench, net: &Network, w: &Weights) -> Result<Side, PipelineError> {
    let cost = net.total_cost();
    Ok(Side {
        macs: cost.macs,
        params: cost.params,
        test_accuracy: bench.accuracy(net, w, &run.data.test_split())?,
        heldout_accuracy: bench.accuracy(net, w, &bench.heldout)?,
        latency_ms: latency_ms(net, w, run.space().evaluate.latency_batch, bench.device),
    })
}

/// The pruned network's weights, ONNX model and graph spec.
fn write_network(run: &Run, net: &Network, w: &Weights) -> Result<(), PipelineError> {
    weights::save(w, &run.out.join("pruned.safetensors"))?;
    let onnx = run.out.join("pruned.onnx");
    weights::write_atomic(&onnx, &crate::onnx::to_bytes(net, w)).map_err(io_error(&onnx))?;
    let toml = run.out.join("pruned.toml");
    let text = spec::write_graph_spec(net, Some("pruned.safetensors"));
    weights::write_atomic(&toml, text.as_bytes()).map_err(io_error(&toml))
}

/// The report of a finished search.
fn report(run: &Run, outcome: &Outcome, pruned: &Network, base: Side, pruned_side: Side, started: Instant) -> Report {
    let c = &run.checked;
    let space = &c.space;
    let winner = outcome.records[outcome.winner].clone();
    Report {
        macs_reduction: 1.0 - pruned_side.macs as f64 / base.macs as f64,
        params_reduction: 1.0 - pruned_side.params as f64 / base.params as f64,
        speedup: base.latency_ms / pruned_side.latency_ms,
        latency_batch: space.evaluate.latency_batch,
        base,
        pruned: pruned_side,
        rates: c
            .rate_groups
            .iter()
            .map(|g| g.name.clone())
            .zip(winner.rates.iter().copied())
            .collect(),
        rate_groups: c
            .rate_groups
            .iter()
            .zip(&winner.rates)
            .map(|(g, &rate)| RateGroupReport {
                name: g.name.clone(),
                rate,
                groups: g.groups.iter().map(|&i| c.deps.groups[i].name.clone()).collect(),
            })
            .collect(),
        widths: layer_widths(&c.network, pruned),
        candidates_evaluated: outcome.records.len(),
        candidates_reused: outcome.reused,
        candidates_failed: outcome.records.iter().filter(|r| r.failed.is_some()).count(),
        feasible_grid_points: c.grid.len(),
        ranking_spearman: crate::report::ranking_spearman(&outcome.records),
        winner,
        search: serde_json::json!({
            "strategy": space.search.strategy, "ranking": space.search.ranking,
            "importance": c.settings.method, "budget": space.search.budget,
            "gcn_top_m": space.search.gcn_top_m, "seed": space.search.seed,
        }),
        constraints: serde_json::to_value(&space.constraints).expect("constraints serialise"),
        device: format!("{:?}", run.device),
        latency: None,
        seconds: started.elapsed().as_secs_f64(),
    }
}
