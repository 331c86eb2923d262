//! The network as GCN input: one node per layer, the symmetrically normalised adjacency
//! with self loops, and node features that are a differentiable function of per-channel
//! keep-masks.
//!
//! Masks are one vector over all group channels (`total` entries, groups back to back),
//! `1` = kept. For a batch of masks `M` (`[B, total]`), every mask-dependent feature is a
//! product `M · P` with a constant `[total, layers]` matrix `P`, so gradients with respect
//! to each channel's mask come for free.

use crate::deps::{Dependencies, units};
use crate::ir::{Network, OP_KINDS, Op};
use crate::weights::Weights;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

/// The least share a mask-dependent feature takes the log of (an emptied layer is not −∞).
const LEAST_SHARE: f64 = 1e-3;

/// Number of features per node.
pub const FEATURES: usize = OP_KINDS.len() + 10;

/// The constant parts of the graph; [`GraphInput::features`] adds the mask-dependent ones.
pub struct GraphInput {
    /// Layers (graph nodes).
    pub nodes: usize,
    /// Group channels (mask entries).
    pub total: usize,
    /// Where each group's channels start in the mask vector.
    pub offsets: Vec<usize>,
    /// `D^{-1/2} (A + I) D^{-1/2}`, `[nodes, nodes]`, with `A` the undirected data flow.
    pub adjacency: Tensor<2>,
    constant: Tensor<2>,
    out_share: Tensor<2>,
    in_share: Tensor<2>,
    macs: [Tensor<2>; 3],
    params: [Tensor<2>; 3],
    norm_stats: [Tensor<2>; 3],
    gamma_stats: [Tensor<2>; 3],
}

fn dense(rows: usize, cols: usize, entries: &[(usize, usize, f32)], device: &Device) -> Tensor<2> {
    let mut data = vec![0f32; rows * cols];
    entries.iter().for_each(|&(r, c, v)| data[r * cols + c] += v);
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

fn row(values: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [1, n]), device)
}

/// Values as z-scores within their layer (all zero when they do not vary).
fn standardise(values: &[f32]) -> Vec<f32> {
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
    values.iter().map(|v| if std > 1e-12 { (v - mean) / std } else { 0.0 }).collect()
}

/// For every layer, the mask entry each of its output units follows.
pub(super) fn unit_index(net: &Network, deps: &Dependencies, offsets: &[usize]) -> Vec<Vec<usize>> {
    let mut index: Vec<Vec<usize>> = net.nodes().map(|l| vec![0; units(net, l)]).collect();
    for (g, group) in deps.groups.iter().enumerate() {
        for (k, members) in group.channels.iter().enumerate() {
            members.iter().for_each(|u| index[u.node.index()][u.channel] = offsets[g] + k);
        }
    }
    index
}

impl GraphInput {
    /// Builds the graph of a network with its weights.
    pub fn new(net: &Network, weights: &Weights, deps: &Dependencies, device: &Device) -> GraphInput {
        let n = net.len();
        let mut offsets = Vec::with_capacity(deps.groups.len());
        let mut total = 0;
        for g in &deps.groups {
            offsets.push(total);
            total += g.size();
        }
        let unit_index = unit_index(net, deps, &offsets);
        // Adjacency with self loops, symmetric normalisation.
        let mut a = vec![0f32; n * n];
        for l in net.nodes() {
            a[l.index() * n + l.index()] = 1.0;
            for i in net.inputs(l) {
                a[l.index() * n + i.index()] = 1.0;
                a[i.index() * n + l.index()] = 1.0;
            }
        }
        let degree: Vec<f32> = (0..n).map(|i| a[i * n..(i + 1) * n].iter().sum()).collect();
        (0..n * n).for_each(|i| a[i] /= (degree[i / n] * degree[i % n]).sqrt());

        let total_cost = net.total_cost();
        let (mut constant, mut out_share, mut in_share) = (Vec::new(), Vec::new(), Vec::new());
        let mut macs = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut params = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let (mut norm, mut norm_sq, mut norm_count) = (Vec::new(), Vec::new(), Vec::new());
        let (mut gamma, mut gamma_sq, mut gamma_count) = (Vec::new(), Vec::new(), Vec::new());
        let mut constant_rows = vec![0f32; n * (OP_KINDS.len() + 2)];
        for l in net.nodes() {
            let i = l.index();
            let op = &net.node(l).op;
            let base = i * (OP_KINDS.len() + 2);
            constant_rows[base + OP_KINDS.iter().position(|k| *k == op.kind()).expect("every op has a kind")] = 1.0;
            let (kernel, stride) = match op {
                Op::Conv2d { kernel, stride, .. } | Op::MaxPool2d { kernel, stride, .. } | Op::AvgPool2d { kernel, stride, .. } => {
                    (kernel[0], stride[0])
                }
                Op::ZeroPad { stride, .. } => (1, *stride),
                _ => (1, 1),
            };
            constant_rows[base + OP_KINDS.len()] = kernel as f32 / 7.0;
            constant_rows[base + OP_KINDS.len() + 1] = stride as f32 / 2.0;
            let count = unit_index[i].len() as f32;
            unit_index[i].iter().for_each(|&m| out_share.push((m, i, 1.0 / count)));
            if let Some(&input) = net.inputs(l).first() {
                let c = unit_index[input.index()].len() as f32;
                unit_index[input.index()].iter().for_each(|&m| in_share.push((m, i, 1.0 / c)));
            } else {
                in_share.extend(unit_index[i].iter().map(|&m| (m, i, 1.0 / count)));
            }
            // Costs scale with the kept share of inputs and/or outputs.
            let cost = net.cost(l);
            let in_channels = net.input_shapes(l).first().map_or(0, |s| s.channels());
            let (uses_in, uses_out) = match op {
                Op::Conv2d { .. } if op.is_depthwise(in_channels) => (0.0, 1.0),
                Op::Conv2d { .. } | Op::Linear { .. } => (1.0, 1.0),
                Op::BatchNorm { .. } => (0.0, 1.0),
                _ => (0.0, 0.0),
            };
            macs.0[i] = cost.macs as f32 / total_cost.macs.max(1) as f32;
            (macs.1[i], macs.2[i]) = (uses_in, uses_out);
            params.0[i] = cost.params as f32 / total_cost.params.max(1) as f32;
            (params.1[i], params.2[i]) = (uses_in, uses_out);
            // Filter norms (mean |w| per output filter) and BatchNorm |γ| of the kept output
            // channels, as z-scores within their layer.
            match op {
                Op::Conv2d { .. } | Op::Linear { .. } => {
                    let w = weights.of(net, l, "weight");
                    let per = w.data.len() / w.shape[0];
                    let l1: Vec<f32> = w
                        .data
                        .chunks_exact(per)
                        .map(|f| f.iter().map(|v| v.abs()).sum::<f32>() / per as f32)
                        .collect();
                    for (u, r) in standardise(&l1).into_iter().enumerate() {
                        let m = unit_index[i][u];
                        norm.push((m, i, r));
                        norm_sq.push((m, i, r * r));
                        norm_count.push((m, i, 1.0));
                    }
                }
                Op::BatchNorm { .. } => {
                    let g: Vec<f32> = weights.of(net, l, "weight").data.iter().map(|v| v.abs()).collect();
                    for (u, r) in standardise(&g).into_iter().enumerate() {
                        let m = unit_index[i][u];
                        gamma.push((m, i, r));
                        gamma_sq.push((m, i, r * r));
                        gamma_count.push((m, i, 1.0));
                    }
                }
                _ => {}
            }
        }
        constant.extend(constant_rows);
        let matrix = |entries: &[(usize, usize, f32)]| dense(total, n, entries, device);
        GraphInput {
            nodes: n,
            total,
            offsets,
            adjacency: Tensor::from_data(TensorData::new(a, [n, n]), device),
            constant: Tensor::from_data(TensorData::new(constant, [n, OP_KINDS.len() + 2]), device),
            out_share: matrix(&out_share),
            in_share: matrix(&in_share),
            macs: [row(macs.0, device), row(macs.1, device), row(macs.2, device)],
            params: [row(params.0, device), row(params.1, device), row(params.2, device)],
            norm_stats: [matrix(&norm), matrix(&norm_sq), matrix(&norm_count)],
            gamma_stats: [matrix(&gamma), matrix(&gamma_sq), matrix(&gamma_count)],
        }
    }

    /// What every layer is, whatever the mask: `[nodes, OP_KINDS + 4]`, its kind (one-hot),
    /// kernel and stride, and its share of the network's MACs and parameters.
    pub(super) fn descriptors(&self) -> Tensor<2> {
        Tensor::cat(
            vec![
                self.constant.clone(),
                self.macs[0].clone().transpose(),
                self.params[0].clone().transpose(),
            ],
            1,
        )
    }

    /// Node features `[B, nodes, FEATURES]` for a batch of masks `[B, total]`.
    pub fn features(&self, masks: Tensor<2>) -> Tensor<3> {
        let [batch, _] = masks.dims();
        let kept_out = masks.clone().matmul(self.out_share.clone());
        let kept_in = masks.clone().matmul(self.in_share.clone());
        // (1 + uses·(fraction − 1)) per side: the share of a layer's cost left at these
        // fractions, and that share weighted by the layer's part of the network's cost.
        let left = |[share, uses_in, uses_out]: &[Tensor<2>; 3]| {
            let f_in = (kept_in.clone().sub_scalar(1.0) * uses_in.clone()).add_scalar(1.0);
            let f_out = (kept_out.clone().sub_scalar(1.0) * uses_out.clone()).add_scalar(1.0);
            let log_left = (f_in * f_out).clamp_min(LEAST_SHARE).log();
            (log_left.clone(), log_left * share.clone().mul_scalar(self.nodes as f64))
        };
        let stats = |[sum, sum_sq, count]: &[Tensor<2>; 3]| {
            let n = masks.clone().matmul(count.clone()).add_scalar(1e-6);
            let mean = masks.clone().matmul(sum.clone()) / n.clone();
            let var = relu(masks.clone().matmul(sum_sq.clone()) / n - mean.clone() * mean.clone());
            (mean, var.add_scalar(1e-6).sqrt())
        };
        let (norm_mean, norm_std) = stats(&self.norm_stats);
        let (gamma_mean, gamma_std) = stats(&self.gamma_stats);
        // Every mask-dependent feature is 0 for the unpruned network and moves away from it
        // as channels go: log shares kept (so halving a layer moves it as far as halving
        // it again), the log of the cost left (plain and weighted by the layer's share of
        // the network's MACs plus its share of the parameters), norm statistics of the kept
        // channels relative to all of them (z-scores: mean 0, std 1 when all are kept).
        let log_share = |t: Tensor<2>| t.clamp_min(LEAST_SHARE).log();
        let (macs_left, macs_weighted) = left(&self.macs);
        let (_, params_weighted) = left(&self.params);
        let per_node = [
            log_share(kept_in.clone()),
            log_share(kept_out.clone()),
            macs_left,
            macs_weighted + params_weighted,
            norm_mean,
            norm_std.sub_scalar(1.0),
            gamma_mean,
            gamma_std.sub_scalar(1.0),
        ];
        let varying: Vec<Tensor<3>> = per_node.into_iter().map(|t| t.reshape([batch, self.nodes, 1])).collect();
        let constant = self.constant.clone().unsqueeze_dim::<3>(0).repeat_dim(0, batch);
        Tensor::cat([vec![constant], varying].concat(), 2)
    }
}
