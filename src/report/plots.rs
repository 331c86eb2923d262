//! SVG plots of a search, drawn with plotters.

use super::LayerWidth;
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
    let mut svg = String::new();
    draw_accuracy_vs_macs(&mut svg, records, winner)?;
    Ok(svg)
}

fn draw_accuracy_vs_macs(svg: &mut String, records: &[Record], winner: usize) -> Result<(), PlotError> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = records.iter().map(|r| 100.0 * r.macs_reduction);
    let ys = records.iter().map(|r| 100.0 * r.heldout_accuracy);
    let mut chart = ChartBuilder::on(&root)
        .caption("Every evaluated candidate", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(padded(xs), padded(ys))?;
    chart
        .configure_mesh()
        .x_desc("MACs removed (%)")
        .y_desc("held-out accuracy after BN recalibration (%)")
        .draw()?;
    chart
        .draw_series(
            records
                .iter()
                .map(|r| Circle::new((100.0 * r.macs_reduction, 100.0 * r.heldout_accuracy), 4, BLUE.mix(0.5).filled())),
        )?
        .label("candidate")
        .legend(|(x, y)| Circle::new((x, y), 4, BLUE.mix(0.5).filled()));
    let front: Vec<(f64, f64)> = pareto_front(records)
        .into_iter()
        .map(|i| (100.0 * records[i].macs_reduction, 100.0 * records[i].heldout_accuracy))
        .collect();
    chart
        .draw_series(LineSeries::new(front, GREEN.stroke_width(2)))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], GREEN.stroke_width(2)));
    let w = &records[winner];
    chart
        .draw_series(std::iter::once(TriangleMarker::new(
            (100.0 * w.macs_reduction, 100.0 * w.heldout_accuracy),
            9,
            RED.filled(),
        )))?
        .label("winner")
        .legend(|(x, y)| TriangleMarker::new((x, y), 6, RED.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
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
