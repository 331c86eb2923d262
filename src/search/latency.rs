//! Predicted latency (NetAdapt-style): a lookup table of every layer's latency measured at
//! the channel counts a search space can produce, summed over a candidate's layers and
//! mapped onto whole-network latency by a linear calibration. Pure data: the table is
//! measured by the pipeline (on the search's backend, at one batch size) and cached as JSON.

use crate::ir::{Network, Op};
use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One layer at given channel counts: the key of a table entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LayerShape {
    /// Layer name.
    pub layer: String,
    /// Channels (features) of each input, in slot order.
    pub inputs: Vec<usize>,
    /// Channels (features) of the output.
    pub output: usize,
}

/// A measured layer latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The layer and its channel counts.
    pub shape: LayerShape,
    /// The layer's work at these counts (see [`layer_work`]), for interpolation.
    pub work: u64,
    /// Median latency of the layer alone, milliseconds.
    pub ms: f64,
}

/// The lookup table of one network on one backend at one batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTable {
    /// The backend device it was measured on.
    pub backend: String,
    /// The batch size.
    pub batch: usize,
    /// Fingerprint of the unpruned network.
    pub network: String,
    /// Measured layers.
    pub entries: Vec<Entry>,
    /// Calibration `measured ≈ scale · Σ layers + offset_ms`, fitted on whole networks.
    pub scale: f64,
    /// See `scale`.
    pub offset_ms: f64,
}

/// The layers that compute something (not the input, output or a flatten), with their
/// channel counts and work, in topological order.
pub fn layer_shapes(net: &Network) -> Vec<(LayerShape, u64)> {
    net.nodes()
        .filter(|&n| !matches!(net.node(n).op, Op::Input { .. } | Op::Output | Op::Flatten))
        .map(|n| {
            let shape = LayerShape {
                layer: net.node(n).name.clone(),
                inputs: net.input_shapes(n).iter().map(|s| s.channels()).collect(),
                output: net.shape(n).channels(),
            };
            (shape, layer_work(net, n))
        })
        .collect()
}

/// A layer's work: its MACs for a conv or linear layer, otherwise the elements it reads and
/// writes (one sample).
pub fn layer_work(net: &Network, node: NodeIndex) -> u64 {
    let macs = net.cost(node).macs;
    if macs > 0 {
        return macs;
    }
    let elements = |dims: Vec<usize>| dims.iter().product::<usize>() as u64;
    net.input_shapes(node).into_iter().map(|s| elements(s.dims())).sum::<u64>() + elements(net.shape(node).dims())
}

impl LatencyTable {
    /// An empty table (identity calibration).
    pub fn new(backend: String, batch: usize, network: String) -> Self {
        LatencyTable {
            backend,
            batch,
            network,
            entries: Vec::new(),
            scale: 1.0,
            offset_ms: 0.0,
        }
    }

    /// Whether this table was made for this backend, batch size and network.
    pub fn fits(&self, backend: &str, batch: usize, network: &str) -> bool {
        self.backend == backend && self.batch == batch && self.network == network
    }

    /// The sum of `net`'s layer latencies: measured ones from the table; a layer at counts
    /// the table lacks is interpolated linearly in work between the nearest measured counts
    /// of the same layer (scaled from the nearest one outside their range). Layers the
    /// table never saw count zero.
    pub fn layer_sum_ms(&self, net: &Network) -> f64 {
        let mut by_layer: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            by_layer.entry(e.shape.layer.as_str()).or_default().push(e);
        }
        layer_shapes(net)
            .iter()
            .map(|(shape, work)| match by_layer.get(shape.layer.as_str()) {
                Some(entries) => entries
                    .iter()
                    .find(|e| &e.shape == shape)
                    .map_or_else(|| interpolate(entries, *work), |e| e.ms),
                None => 0.0,
            })
            .sum()
    }

    /// Predicted latency of `net`, milliseconds (calibrated layer sum).
    pub fn predict_ms(&self, net: &Network) -> f64 {
        (self.scale * self.layer_sum_ms(net) + self.offset_ms).max(0.0)
    }

    /// Fits `scale` and `offset_ms` to measured `(layer sum, whole network)` points by
    /// least squares; a fit with a slope outside [0.5, 2] (too few or too noisy points)
    /// leaves the identity, the plain layer sum.
    pub fn calibrate(&mut self, points: &[(f64, f64)]) {
        let n = points.len() as f64;
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
        let (mx, my) = (sx / n, sy / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = sxy / sxx;
        (self.scale, self.offset_ms) = if points.len() >= 2 && slope.is_finite() && (0.5..=2.0).contains(&slope) {
            (slope, my - slope * mx)
        } else {
            (1.0, 0.0)
        };
    }
}

/// Piecewise-linear interpolation in work among one layer's measured entries.
fn interpolate(entries: &[&Entry], work: u64) -> f64 {
    let mut points: Vec<(f64, f64)> = entries.iter().map(|e| (e.work as f64, e.ms)).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let w = work as f64;
    let scaled = |(pw, pm): (f64, f64)| if pw > 0.0 { pm * w / pw } else { pm };
    match points.iter().position(|p| p.0 >= w) {
        Some(0) => scaled(points[0]),
        Some(i) => {
            let ((w0, m0), (w1, m1)) = (points[i - 1], points[i]);
            m0 + (m1 - m0) * (w - w0) / (w1 - w0)
        }
        None => scaled(*points.last().expect("a layer in the table has an entry")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(work: u64, ms: f64) -> Entry {
        Entry {
            shape: LayerShape {
                layer: "conv".into(),
                inputs: vec![work as usize],
                output: 1,
            },
            work,
            ms,
        }
    }

    #[test]
    fn missing_counts_are_interpolated_in_work_and_scaled_outside_the_range() {
        let (a, b) = (entry(100, 1.0), entry(300, 2.0));
        let entries = [&a, &b];
        assert!((interpolate(&entries, 200) - 1.5).abs() < 1e-12);
        assert!((interpolate(&entries, 50) - 0.5).abs() < 1e-12);
        assert!((interpolate(&entries, 600) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_fits_a_line_or_keeps_the_plain_sum() {
        let mut table = LatencyTable::new("cpu".into(), 8, "net".into());
        table.calibrate(&[(10.0, 14.0), (4.0, 5.0), (7.0, 9.5)]);
        assert!((table.scale - 1.5).abs() < 1e-12 && (table.offset_ms + 1.0).abs() < 1e-12);
        table.calibrate(&[(10.0, 12.0)]);
        assert!(table.scale == 1.0 && table.offset_ms == 0.0);
        table.calibrate(&[(10.0, 40.0), (4.0, 5.0)]);
        assert!(table.scale == 1.0 && table.offset_ms == 0.0);
    }
}
