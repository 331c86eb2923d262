//! SVG plots of a search, drawn with plotters.

use super::{CandidateLatency, LayerWidth};
use crate::search::log::Record;
use plotters::prelude::*;

/// A plot that could not be drawn or written.
pub type PlotError = Box<dyn std::error::Error + Send + Sync>;

const SIZE: (u32, u32) = (900, 540);

/// Candidates on the Pareto front of (MACs removed ↑, held-out accuracy ↑), by MACs removed.
pub fn pareto_front(records: &[Record]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| {
        records[b]
            .macs_reduction
            .total_cmp(&records[a].macs_reduction)
            .then(records[b].heldout_accuracy.total_cmp(&records[a].heldout_accuracy))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        if records[i].heldout_accuracy > best {
            best = records[i].heldout_accuracy;
            front.push(i);
        }
    }
    front.reverse();
    front
}

fn padded(values: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(0.5);
    (lo - pad)..(hi + pad)
}

/// SVG: held-out accuracy vs MACs removed of every candidate, the Pareto front, the winner.
pub fn accuracy_vs_macs(records: &[Record], winner: usize) -> Result<String, PlotError> {
    let point = |r: &Record| (100.0 * r.macs_reduction, 100.0 * r.heldout_accuracy);
    let scatter = FrontScatter {
        caption: "Every evaluated candidate",
        x_desc: "MACs removed (%)",
        points: records.iter().map(point).collect(),
        front: pareto_front(records).into_iter().map(|i| point(&records[i])).collect(),
        winner: records.get(winner).map(point),
        legend: SeriesLabelPosition::LowerLeft,
    };
    let mut svg = String::new();
    draw_front_scatter(&mut svg, scatter)?;
    Ok(svg)
}

/// A scatter of held-out accuracy (%) against some cost, with a Pareto front line and
/// optionally the winner.
struct FrontScatter {
    caption: &'static str,
    x_desc: &'static str,
    points: Vec<(f64, f64)>,
    front: Vec<(f64, f64)>,
    winner: Option<(f64, f64)>,
    legend: SeriesLabelPosition,
}

fn draw_front_scatter(svg: &mut String, plot: FrontScatter) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = plot.points.iter().map(|p| p.0);
    let ys = plot.points.iter().map(|p| p.1);
    let mut chart = ChartBuilder::on(&root)
        .caption(plot.caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(padded(xs), padded(ys))?;
    chart
        .configure_mesh()
        .x_desc(plot.x_desc)
        .y_desc("held-out accuracy after BN recalibration (%)")
        .draw()?;
    chart
        .draw_series(plot.points.iter().map(|&p| Circle::new(p, 4, BLUE.mix(0.5).filled())))?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x, y), 4, BLUE.mix(0.5).filled()));
    chart
        .draw_series(LineSeries::new(plot.front, GREEN.stroke_width(2)))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], GREEN.stroke_width(2)));
    if let Some(w) = plot.winner {
        chart
            .draw_series(std::iter::once(TriangleMarker::new(w, 9, RED.filled())))?
            .label("winner")
            .legend(|(x, y)| TriangleMarker::new((x, y), 6, RED.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(plot.legend)
        .draw()?;
    root.present()?;
    Ok(())
}

/// SVG: output channels of every conv and linear layer, before and after pruning.
pub fn widths(widths: &[LayerWidth]) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_widths(&mut svg, widths)?;
    Ok(svg)
}

fn draw_widths(svg: &mut String, widths: &[LayerWidth]) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, (SIZE.0.max(24 * widths.len() as u32 + 140), SIZE.1)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = widths.iter().map(|w| w.before).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("Channels per layer", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..widths.len() as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("conv and linear layers, in order")
        .y_desc("output channels")
        .x_labels(widths.len().min(30))
        .x_label_formatter(&|x| format!("{}", *x as usize + 1))
        .draw()?;
    let bar = |i: usize, value: usize, left: f64, right: f64, color: RGBColor| {
        Rectangle::new([(i as f64 + left, 0.0), (i as f64 + right, value as f64)], color.filled())
    };
    chart
        .draw_series(
            widths
                .iter()
                .enumerate()
                .map(|(i, w)| bar(i, w.before, 0.1, 0.5, RGBColor(170, 170, 170))),
        )?
        .label("original")
        .legend(|(x, y)| Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], RGBColor(170, 170, 170).filled()));
    chart
        .draw_series(widths.iter().enumerate().map(|(i, w)| bar(i, w.after, 0.5, 0.9, BLUE)))?
        .label("pruned")
        .legend(|(x, y)| Rectangle::new([(x - 6, y - 6), (x + 6, y + 6)], BLUE.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// SVG: held-out accuracy of each candidate in evaluation order and the best so far.
pub fn progress(records: &[Record]) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_progress(&mut svg, records)?;
    Ok(svg)
}

fn draw_progress(svg: &mut String, records: &[Record]) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let ys = records.iter().map(|r| 100.0 * r.heldout_accuracy);
    let mut chart = ChartBuilder::on(&root)
        .caption("Search progress", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..(records.len() as f64 + 1.0), padded(ys))?;
    chart
        .configure_mesh()
        .x_desc("candidates evaluated")
        .y_desc("held-out accuracy (%)")
        .draw()?;
    chart
        .draw_series(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| Circle::new((i as f64 + 1.0, 100.0 * r.heldout_accuracy), 3, BLUE.mix(0.5).filled())),
        )?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x, y), 3, BLUE.mix(0.5).filled()));
    let mut best = f64::NEG_INFINITY;
    let best_so_far: Vec<(f64, f64)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            best = best.max(100.0 * r.heldout_accuracy);
            (i as f64 + 1.0, best)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(best_so_far, RED.stroke_width(2)))?
        .label("best so far")
        .legend(|(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// SVG: the ranking's score of every scored candidate against its measured held-out accuracy.
pub fn predicted_vs_measured(pairs: &[(f64, f64)]) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_predicted_vs_measured(&mut svg, pairs)?;
    Ok(svg)
}

fn draw_predicted_vs_measured(svg: &mut String, pairs: &[(f64, f64)]) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = pairs.iter().map(|p| p.0);
    let lo = xs.clone().fold(f64::INFINITY, f64::min);
    let hi = xs.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let ys = pairs.iter().map(|p| 100.0 * p.1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Ranking score vs measured accuracy", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo - pad)..(hi + pad), padded(ys))?;
    chart
        .configure_mesh()
        .x_desc("ranking score when chosen, standardised within its round (higher = predicted better)")
        .y_desc("held-out accuracy after BN recalibration (%)")
        .draw()?;
    chart.draw_series(pairs.iter().map(|&(x, y)| Circle::new((x, 100.0 * y), 4, BLUE.mix(0.5).filled())))?;
    root.present()?;
    Ok(())
}

/// Scored candidates on the Pareto front of (measured latency ↓, held-out accuracy ↑), by
/// latency.
pub fn latency_front(candidates: &[CandidateLatency]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| !candidates[i].failed).collect();
    order.sort_by(|&a, &b| {
        candidates[a]
            .measured_ms
            .total_cmp(&candidates[b].measured_ms)
            .then(candidates[b].heldout_accuracy.total_cmp(&candidates[a].heldout_accuracy))
    });
    let mut best = f64::NEG_INFINITY;
    order
        .into_iter()
        .filter(|&i| {
            let better = candidates[i].heldout_accuracy > best;
            best = best.max(candidates[i].heldout_accuracy);
            better
        })
        .collect()
}

/// SVG: predicted against measured latency of every candidate, with the diagonal.
pub fn latency_scatter(candidates: &[CandidateLatency]) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_latency_scatter(&mut svg, candidates)?;
    Ok(svg)
}

fn draw_latency_scatter(svg: &mut String, candidates: &[CandidateLatency]) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let all = candidates.iter().flat_map(|c| [c.predicted_ms, c.measured_ms]);
    let range = padded(all);
    let mut chart = ChartBuilder::on(&root)
        .caption("Predicted vs measured latency", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(range.clone(), range.clone())?;
    chart
        .configure_mesh()
        .x_desc("predicted from the layer table (ms per batch)")
        .y_desc("measured (ms per batch)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            [(range.start, range.start), (range.end, range.end)],
            BLACK.mix(0.4),
        ))?
        .label("predicted = measured")
        .legend(|(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], BLACK.mix(0.4)));
    chart
        .draw_series(
            candidates
                .iter()
                .map(|c| Circle::new((c.predicted_ms, c.measured_ms), 4, BLUE.mix(0.5).filled())),
        )?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x, y), 4, BLUE.mix(0.5).filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// SVG: held-out accuracy against measured latency of every scored candidate and the
/// Pareto front.
pub fn accuracy_vs_latency(candidates: &[CandidateLatency]) -> Result<String, PlotError> {
    let point = |c: &CandidateLatency| (c.measured_ms, 100.0 * c.heldout_accuracy);
    let scatter = FrontScatter {
        caption: "Accuracy vs measured latency",
        x_desc: "measured latency (ms per batch)",
        points: candidates.iter().filter(|c| !c.failed).map(point).collect(),
        front: latency_front(candidates).into_iter().map(|i| point(&candidates[i])).collect(),
        winner: None,
        legend: SeriesLabelPosition::LowerRight,
    };
    let mut svg = String::new();
    draw_front_scatter(&mut svg, scatter)?;
    Ok(svg)
}
