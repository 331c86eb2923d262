//! `sacp inspect`: a per-layer table, totals and the dependency groups of a network.

use crate::deps::Dependencies;
use crate::ir::{Cost, Network};
use serde::Serialize;

/// One row of the layer table.
#[derive(Debug, Serialize)]
pub struct LayerRow {
    /// Layer name.
    pub name: String,
    /// Operation kind.
    pub op: &'static str,
    /// Names of the layers it reads.
    pub inputs: Vec<String>,
    /// Channels (or features) of its first input; 0 for the input layer.
    pub in_channels: usize,
    /// Channels (or features) of its output.
    pub out_channels: usize,
    /// Output shape per sample.
    pub output_shape: Vec<usize>,
    /// Learnable parameters.
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub macs: u64,
}

/// One dependency group.
#[derive(Debug, Serialize)]
pub struct GroupRow {
    /// Group index.
    pub id: usize,
    /// The layer that produces the group's channels.
    pub name: String,
    /// Channels in the group.
    pub size: usize,
    /// Whether it may be pruned.
    pub prunable: bool,
    /// Why not, when it may not.
    pub pinned: Option<crate::deps::Pin>,
    /// Member layers.
    pub layers: Vec<String>,
    /// Parameters one channel costs.
    pub params_per_channel: u64,
    /// MACs one channel costs.
    pub macs_per_channel: u64,
}

/// Everything `sacp inspect` shows; serialises to the `--json` output.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Per-layer rows in topological order.
    pub layers: Vec<LayerRow>,
    /// The dependency groups.
    pub groups: Vec<GroupRow>,
    /// Whole-network parameters and MACs.
    pub totals: Cost,
}

/// Builds the inspection of a network.
pub fn inspect(net: &Network) -> Inspection {
    let layers = net
        .nodes()
        .map(|n| {
            let cost = net.cost(n);
            LayerRow {
                name: net.node(n).name.clone(),
                op: net.node(n).op.kind(),
                inputs: net.inputs(n).iter().map(|&i| net.node(i).name.clone()).collect(),
                in_channels: net.input_shapes(n).first().map_or(0, |s| s.channels()),
                out_channels: net.shape(n).channels(),
                output_shape: net.shape(n).dims(),
                params: cost.params,
                macs: cost.macs,
            }
        })
        .collect();
    let groups = Dependencies::analyse(net)
        .groups
        .into_iter()
        .map(|g| GroupRow {
            id: g.id,
            size: g.size(),
            prunable: g.prunable(),
            pinned: g.pinned,
            layers: g.nodes.iter().map(|&n| net.node(n).name.clone()).collect(),
            params_per_channel: g.cost_per_channel.params,
            macs_per_channel: g.cost_per_channel.macs,
            name: g.name,
        })
        .collect();
    Inspection {
        layers,
        groups,
        totals: net.total_cost(),
    }
}

/// Formats a count with an SI suffix (`1.82G`, `0.85M`, `512`).
pub fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

impl Inspection {
    /// The human-readable report: layer table, totals, groups.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let width = self.layers.iter().map(|l| l.name.len()).max().unwrap_or(4).max(5);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<width$}  {:<14} {:>6} {:>6}  {:<14} {:>10} {:>10}",
            "layer", "op", "in", "out", "output", "params", "MACs"
        );
        for l in &self.layers {
            let shape = l.output_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
            let _ = writeln!(
                s,
                "{:<width$}  {:<14} {:>6} {:>6}  {:<14} {:>10} {:>10}",
                l.name,
                l.op,
                l.in_channels,
                l.out_channels,
                shape,
                human(l.params),
                human(l.macs)
            );
        }
        let _ = writeln!(
            s,
            "\ntotal: {} params ({}), {} MACs ({})",
            self.totals.params,
            human(self.totals.params),
            self.totals.macs,
            human(self.totals.macs)
        );
        let prunable = self.groups.iter().filter(|g| g.prunable).count();
        let _ = writeln!(s, "\n{} dependency groups ({prunable} prunable):", self.groups.len());
        let _ = writeln!(
            s,
            "{:>4}  {:<width$} {:>6} {:>10} {:>12}  {:<8} layers",
            "id", "produced by", "size", "params/ch", "MACs/ch", "status"
        );
        for g in &self.groups {
            let status = match g.pinned {
                None => "prunable".to_string(),
                Some(pin) => format!("{pin:?}"),
            };
            let members = if g.layers.len() > 6 {
                format!(
                    "{} … {} ({} layers)",
                    g.layers[..3].join(", "),
                    g.layers[g.layers.len() - 1],
                    g.layers.len()
                )
            } else {
                g.layers.join(", ")
            };
            let _ = writeln!(
                s,
                "{:>4}  {:<width$} {:>6} {:>10} {:>12}  {:<8} {members}",
                g.id,
                g.name,
                g.size,
                human(g.params_per_channel),
                human(g.macs_per_channel),
                status
            );
        }
        s
    }
}
