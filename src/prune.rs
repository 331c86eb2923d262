//! One-shot pruning to a MAC target: score channels, choose the keep-set, cut.

use crate::channels::{self, Allocation};
use crate::deps::Dependencies;
use crate::gcn::{Encoder, GcnConfig};
use crate::importance::{self, Context, ImportanceError, Method};
use crate::ir::Network;
use crate::surgery;
use crate::weights::Weights;
use burn::tensor::{Device, Tensor};
use std::path::PathBuf;

/// What to prune and how.
pub struct Request<'a> {
    /// The network.
    pub net: &'a Network,
    /// Its (trained) weights.
    pub weights: &'a Weights,
    /// The importance method.
    pub method: Method,
    /// Share of MACs to remove, in `[0, 1)`.
    pub target: f64,
    /// How removals are spread over groups.
    pub allocation: Allocation,
    /// Largest share of any group's channels that may go.
    pub max_ratio: f64,
    /// Every pruned width a multiple of this, or the full width (1: any width).
    pub round_to: usize,
    /// Seed of random choices.
    pub seed: u64,
    /// Device for the GCN and data-driven scores.
    pub device: &'a Device,
    /// Images for data-driven methods.
    pub probe: Option<Tensor<4>>,
    /// GCN settings, for `gcn`.
    pub gcn: GcnConfig,
    /// Where the trained encoder is cached, for `gcn`.
    pub gcn_cache: Option<PathBuf>,
    /// Reward and settings, for `gcn-rl`.
    pub gcn_rl: Option<crate::gcn_rl::Setup<'a>>,
}

/// A pruned network.
pub struct Pruned {
    /// The smaller graph.
    pub network: Network,
    /// Its weights.
    pub weights: Weights,
    /// The channels each group kept.
    pub keep: Vec<Vec<usize>>,
    /// Share of MACs removed.
    pub macs_reduction: f64,
    /// Share of parameters removed.
    pub params_reduction: f64,
}

/// Scores the channels, keeps the most important ones that meet the target, and cuts.
pub fn one_shot(request: &Request) -> Result<Pruned, ImportanceError> {
    let deps = Dependencies::analyse(request.net);
    let encoder = match request.method {
        Method::Gcn => Some(Encoder::load_or_train(
            request.net,
            request.weights,
            &deps,
            &request.gcn,
            request.gcn_cache.as_deref(),
            request.device,
        )?),
        _ => None,
    };
    let context = Context {
        net: request.net,
        weights: request.weights,
        deps: &deps,
        seed: request.seed,
        device: request.device,
        probe: request.probe.clone(),
        encoder: encoder.as_ref(),
        gcn_rl: request.gcn_rl,
    };
    let scores = importance::score(request.method, &context)?;
    let keep = channels::select(
        request.net,
        &deps,
        &scores,
        request.target,
        request.allocation,
        (request.max_ratio, request.round_to),
    )?;
    let (network, weights) = surgery::prune(request.net, request.weights, &deps, &keep).expect("selected keep-sets are valid");
    let (before, after) = (request.net.total_cost(), network.total_cost());
    Ok(Pruned {
        macs_reduction: 1.0 - after.macs as f64 / before.macs as f64,
        params_reduction: 1.0 - after.params as f64 / before.params as f64,
        network,
        weights,
        keep,
    })
}
