//! Latency targets: the lookup table of layer latencies (every layer timed alone at the
//! channel counts the space can produce, on the run's device at the target's batch size,
//! calibrated on whole networks, cached in the output folder), and after the search the
//! predicted against the measured latency of every scored candidate.

use super::measure::latency_ms;
use super::prepare::Run;
use super::{PipelineError, io_error};
use crate::deps::Dependencies;
use crate::ir::{Network, NetworkBuilder, Op, Shape};
use crate::report::{CandidateLatency, LatencyCheck};
use crate::search::Outcome;
use crate::search::candidates::{Layout, check_space};
use crate::search::latency::{Entry, LatencyTable, LayerShape, layer_work};
use crate::spec::fingerprint;
use crate::surgery;
use crate::weights::{self, initialise};
use burn::tensor::Device;
use indicatif::ProgressBar;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How many times each calibration network is timed (interleaved; the fastest counts).
const CALIBRATION_ROUNDS: usize = 3;
/// Calibration networks with rates drawn at random per rate group, besides the one per
/// level with every group at that level: the line is fitted on the mixes the search ranks.
const CALIBRATION_MIXES: usize = 4;

/// A layer to time: its operation and input shapes at some channel counts.
#[derive(Clone, Debug)]
struct Probe {
    op: Op,
    inputs: Vec<Shape>,
    work: u64,
}

impl Probe {
    /// Layers with the same operation and input shapes take the same time.
    fn key(&self) -> String {
        format!("{:?} <- {:?}", self.op, self.inputs)
    }
}

/// Every layer shape of `net` with what it takes to time it.
fn probes(net: &Network) -> Vec<(LayerShape, Probe)> {
    net.nodes()
        .filter(|&n| !matches!(net.node(n).op, Op::Input { .. } | Op::Output | Op::Flatten))
        .map(|n| {
            let inputs = net.input_shapes(n);
            let shape = LayerShape {
                layer: net.node(n).name.clone(),
                inputs: inputs.iter().map(Shape::channels).collect(),
                output: net.shape(n).channels(),
            };
            let probe = Probe {
                op: net.node(n).op.clone(),
                inputs,
                work: layer_work(net, n),
            };
            (shape, probe)
        })
        .collect()
}

/// The rate vectors whose networks show every layer at every channel count the levels can
/// give it, for layers whose counts depend on at most two rate groups: each rate group
/// alone at each level, and each pair of rate groups at each pair of levels (the others
/// unpruned). Layers that depend on more (a concat of many groups) are interpolated.
fn covering_rates(layout: &Layout) -> Vec<Vec<f64>> {
    let (groups, levels) = (layout.rate_groups.len(), &layout.levels);
    let mut all = vec![vec![0.0; groups]];
    for a in 0..groups {
        for &la in levels {
            let mut rates = vec![0.0; groups];
            rates[a] = la;
            all.push(rates.clone());
            for b in a + 1..groups {
                for &lb in levels {
                    rates[b] = lb;
                    all.push(rates.clone());
                }
                rates[b] = 0.0;
            }
        }
    }
    all.push(vec![levels.last().copied().unwrap_or(0.0); groups]);
    all
}

/// The network `layout` prunes at `rates` (channels kept in order: latency does not depend
/// on which).
pub fn network_at(layout: &Layout, rates: &[f64]) -> Network {
    pruned_at(layout.net, layout.deps, &layout.widths(rates))
}

/// A network that runs one layer: an input shaped for it (channel slices of one input when
/// its inputs differ, a global pooling for a `C × 1 × 1` one, a flatten for features).
fn probe_network(probe: &Probe) -> Option<Network> {
    let mut b = NetworkBuilder::new();
    let (h, w) = probe
        .inputs
        .iter()
        .find_map(|s| match *s {
            Shape::Map { h, w, .. } => Some((h, w)),
            Shape::Flat { .. } => None,
        })
        .unwrap_or((1, 1));
    let same = probe.inputs.windows(2).all(|p| p[0] == p[1]);
    let channels = if same {
        probe.inputs[0].channels()
    } else {
        probe.inputs.iter().map(Shape::channels).sum()
    };
    let x = b
        .add(
            "x",
            Op::Input {
                channels,
                height: h,
                width: w,
            },
            &[],
        )
        .ok()?;
    let mut feeds = Vec::new();
    let mut start = 0;
    for (i, s) in probe.inputs.iter().enumerate() {
        let mut feed = x;
        if !same {
            let end = start + s.channels();
            feed = b.add(format!("slice{i}"), Op::Slice { start, end }, &[feed]).ok()?;
            start = end;
        }
        feed = match *s {
            Shape::Flat { .. } => b.add(format!("flatten{i}"), Op::Flatten, &[feed]).ok()?,
            Shape::Map { h: 1, w: 1, .. } if (h, w) != (1, 1) => b.add(format!("pool{i}"), Op::GlobalAvgPool, &[feed]).ok()?,
            Shape::Map { .. } => feed,
        };
        feeds.push(feed);
    }
    let layer = b.add("layer", probe.op.clone(), &feeds).ok()?;
    b.add("out", Op::Output, &[layer]).ok()?;
    b.finish().ok()
}

/// Milliseconds of one layer alone by `stopwatch` (a layer that cannot be run alone counts
/// zero; the calibration takes it into the whole network's share).
fn time_probe(probe: &Probe, stopwatch: &dyn Fn(&Network) -> f64) -> f64 {
    probe_network(probe).map_or(0.0, |net| stopwatch(&net))
}

/// The rate vectors of the calibration networks: every rate group at one level, for each
/// level, then [`CALIBRATION_MIXES`] seeded random mixes of the levels.
fn calibration_rates(layout: &Layout) -> Vec<Vec<f64>> {
    let (groups, levels) = (layout.rate_groups.len(), &layout.levels);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let uniform = levels.iter().map(|&rate| vec![rate; groups]);
    let mixes: Vec<Vec<f64>> = (0..CALIBRATION_MIXES)
        .map(|_| (0..groups).map(|_| levels[rng.random_range(0..levels.len())]).collect())
        .collect();
    uniform.chain(mixes).collect()
}

/// Where the table of this device and batch size is cached.
fn table_path(out: &Path, device: &Device, batch: usize) -> PathBuf {
    let backend: String = format!("{device:?}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    out.join(format!("latency-{}-b{batch}.json", backend.trim_matches('-')))
}

/// The latency table of `layout`'s network on `device` at `batch`, each network timed by
/// [`latency_ms`] (see [`build_table_with`]).
pub fn build_table(layout: &Layout, batch: usize, device: &Device, cached: Option<LatencyTable>, progress: &ProgressBar) -> LatencyTable {
    let stopwatch = |net: &Network| latency_ms(net, &initialise(net, 0), batch, device);
    build_table_with(layout, batch, format!("{device:?}"), cached, progress, &stopwatch)
}

/// The latency table of `layout`'s network on `backend` at `batch`, every network timed by
/// `stopwatch` (milliseconds per batch): `cached` entries are reused when they belong to
/// the same backend, batch and network; the layer shapes it lacks are timed (`progress`
/// counts them), and the calibration is refitted whenever anything was timed, on the
/// networks of [`calibration_rates`].
pub fn build_table_with(
    layout: &Layout,
    batch: usize,
    backend: String,
    cached: Option<LatencyTable>,
    progress: &ProgressBar,
    stopwatch: &dyn Fn(&Network) -> f64,
) -> LatencyTable {
    let network = fingerprint(layout.net);
    let mut table = cached
        .filter(|t| t.fits(&backend, batch, &network))
        .unwrap_or_else(|| LatencyTable::new(backend, batch, network));
    let shapes: BTreeMap<LayerShape, Probe> = covering_rates(layout)
        .par_iter()
        .map(|rates| probes(&network_at(layout, rates)))
        .flatten()
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    let known: std::collections::HashSet<LayerShape> = table.entries.iter().map(|e| e.shape.clone()).collect();
    let missing: Vec<(LayerShape, Probe)> = shapes.into_iter().filter(|(s, _)| !known.contains(s)).collect();
    if missing.is_empty() {
        return table;
    }
    let calibration = calibration_rates(layout);
    progress.set_length((missing.len() + calibration.len()) as u64);
    let mut timed: HashMap<String, f64> = HashMap::new();
    for (shape, probe) in missing {
        let ms = *timed.entry(probe.key()).or_insert_with(|| time_probe(&probe, stopwatch));
        table.entries.push(Entry {
            shape,
            work: probe.work,
            ms,
        });
        progress.inc(1);
    }
    table.entries.sort_by(|a, b| a.shape.cmp(&b.shape));
    let nets: Vec<Network> = calibration.iter().map(|rates| network_at(layout, rates)).collect();
    let mut whole = vec![f64::INFINITY; nets.len()];
    // The smallest of interleaved rounds: a slow spell of the machine during one round
    // would otherwise bias every prediction the fitted line makes.
    for _ in 0..CALIBRATION_ROUNDS {
        for (ms, net) in whole.iter_mut().zip(&nets) {
            *ms = ms.min(stopwatch(net));
        }
    }
    progress.inc(nets.len() as u64);
    let points: Vec<(f64, f64)> = nets.iter().zip(whole).map(|(net, ms)| (table.layer_sum_ms(net), ms)).collect();
    table.calibrate(&points);
    table
}

/// Stage 1b, for a space with a latency target: the table measured (or read from the output
/// folder), the target turned into a share of the base network's predicted latency, and the
/// feasible grid recomputed with it; a target no grid point meets is refused here, before
/// the base network is trained or any candidate evaluated.
pub fn plan_latency(run: &mut Run) -> Result<(), PipelineError> {
    let space = &run.checked.space;
    if !space.constraints.has_latency() {
        return Ok(());
    }
    let batch = space.latency_batch();
    let path = table_path(&run.out, &run.device, batch);
    let cached = std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let c = &run.checked;
    let layout = Layout::new(&c.network, &c.deps, c.rate_groups.clone(), space.levels()).with_round_to(space.space.round_to);
    run.say(format!(
        "timing layers for the latency target (batch {batch}, cached in {})",
        path.display()
    ));
    let progress = super::bar(run.options.quiet, 0, "  layers [{bar:30}] {pos}/{len} ETA {eta}");
    let table = build_table(&layout, batch, &run.device, cached, &progress);
    progress.finish_and_clear();
    let json = serde_json::to_string_pretty(&table).expect("a table serialises");
    weights::write_atomic(&path, json.as_bytes()).map_err(io_error(&path))?;
    let base_ms = table.predict_ms(&c.network);
    let reduction = match (space.constraints.latency_reduction, space.constraints.latency_ms) {
        (Some(r), _) => r,
        (None, Some(ms)) if ms < base_ms => 1.0 - ms / base_ms,
        (None, Some(ms)) => {
            let message = format!("the base network already runs a batch of {batch} in {base_ms:.2} ms (predicted), within {ms} ms");
            return Err(space.error("constraints.latency_ms", message).into());
        }
        (None, None) => unreachable!("has_latency"),
    };
    let mut target = c.target;
    target.latency = Some(reduction);
    let grid = check_space(space, &layout.with_latency(&table), &target)?;
    run.say(format!(
        "latency: base {base_ms:.2} ms per batch of {batch} (predicted), target {:.1}% less; {} feasible grid points",
        100.0 * reduction,
        grid.len()
    ));
    run.checked.target = target;
    run.checked.grid = grid;
    run.latency = Some(table);
    Ok(())
}

/// After the search: every candidate's latency measured (one at a time, on the run's
/// device, at the target's batch size) next to its prediction, with the base network's.
/// The winner becomes the most accurate candidate whose *measured* latency meets the target
/// (fewest MACs on a tie); when none does, the search's winner stays and the report says so.
pub fn check_latency(run: &Run, outcome: &mut Outcome) -> Option<LatencyCheck> {
    let table = run.latency.as_ref()?;
    let c = &run.checked;
    let batch = table.batch;
    let measure = |net: &Network| latency_ms(net, &initialise(net, 0), batch, &run.device);
    let records = &outcome.records;
    run.say(format!("measuring the latency of {} candidates", records.len()));
    let progress = super::bar(
        run.options.quiet,
        records.len() as u64 + 1,
        "  latency [{bar:30}] {pos}/{len} ETA {eta}",
    );
    let base_measured_ms = measure(&c.network);
    progress.inc(1);
    let candidates: Vec<CandidateLatency> = records
        .iter()
        .map(|r| {
            let net = pruned_at(&c.network, &c.deps, &r.widths);
            progress.inc(1);
            CandidateLatency {
                predicted_ms: table.predict_ms(&net),
                measured_ms: measure(&net),
                heldout_accuracy: r.heldout_accuracy,
                macs_reduction: r.macs_reduction,
                failed: r.failed.is_some(),
            }
        })
        .collect();
    progress.finish_and_clear();
    let target = c.target.latency.unwrap_or_default();
    let meets = |l: &CandidateLatency| (1.0 - l.measured_ms / base_measured_ms - target).abs() <= c.target.tolerance + 1e-12;
    let measured_feasible: Vec<usize> = (0..records.len())
        .filter(|&i| !candidates[i].failed && meets(&candidates[i]))
        .collect();
    if let Some(&best) = measured_feasible.iter().min_by(|&&a, &&b| {
        records[b]
            .heldout_accuracy
            .total_cmp(&records[a].heldout_accuracy)
            .then(records[a].macs.cmp(&records[b].macs))
            .then(a.cmp(&b))
    }) && best != outcome.winner
    {
        run.say(format!(
            "winner by measured latency: {:.2}% held-out, {:.1}% of the measured latency removed",
            100.0 * records[best].heldout_accuracy,
            100.0 * (1.0 - candidates[best].measured_ms / base_measured_ms)
        ));
        outcome.winner = best;
    }
    let w = &candidates[outcome.winner];
    Some(LatencyCheck {
        batch,
        target_reduction: target,
        tolerance: c.target.tolerance,
        base_predicted_ms: table.predict_ms(&c.network),
        base_measured_ms,
        winner_predicted_ms: w.predicted_ms,
        winner_measured_ms: w.measured_ms,
        measured_reduction: 1.0 - w.measured_ms / base_measured_ms,
        measured_feasible: measured_feasible.len(),
        candidates,
    })
}

/// A network pruned to `widths` per channel group, for timing.
fn pruned_at(net: &Network, deps: &Dependencies, widths: &[usize]) -> Network {
    let keep: Vec<Vec<usize>> = widths.iter().map(|&w| (0..w).collect()).collect();
    surgery::prune_network(net, deps, &keep).expect("admissible widths are valid")
}
