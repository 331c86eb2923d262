//! Channel importance behind one interface: [`score`] chooses among the methods. `gcn` is
//! the method ([`crate::gcn`]); `l1`, `l2`, `bn_scale`, `random` and `similarity` are the
//! baselines every comparison is made against; `gcn-rl` is the second seed's method
//! ([`crate::gcn_rl`]). The vocabulary they share (scores, keep-sets, magnitude criteria)
//! lives below them, in [`crate::channels`].

mod similarity;

use crate::channels::{Norm, Scores, SelectError, bn_scale, filter_norms};
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::weights::Weights;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The importance methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Method {
    /// Structure-aware: attribution of the GCN embedding's similarity to the original.
    Gcn,
    /// Mean absolute weight of the filters that produce the channel.
    L1,
    /// Root mean square weight of the filters that produce the channel.
    L2,
    /// |γ| of the BatchNorm layers the channel passes through.
    BnScale,
    /// Seeded random scores.
    Random,
    /// Redundancy of global-average-pooled activations: a channel whose activations over a
    /// batch are most alike another channel's matters least.
    Similarity,
    /// Per-layer channel graphs and GCN agents trained by reinforcement learning (Jiang et
    /// al., IJCAI 2022): keep probabilities of the trained agents.
    #[serde(rename = "gcn-rl", alias = "gcn_rl")]
    #[value(name = "gcn-rl", alias = "gcn_rl")]
    GcnRl,
}

impl Method {
    /// All methods, in report order.
    pub const ALL: [Method; 7] = [
        Method::Gcn,
        Method::GcnRl,
        Method::L1,
        Method::L2,
        Method::BnScale,
        Method::Similarity,
        Method::Random,
    ];

    /// The method's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::Gcn => "gcn",
            Method::L1 => "l1",
            Method::L2 => "l2",
            Method::BnScale => "bn_scale",
            Method::Random => "random",
            Method::Similarity => "similarity",
            Method::GcnRl => "gcn-rl",
        }
    }
}

/// Errors of importance scoring and channel selection.
#[derive(Debug, thiserror::Error)]
pub enum ImportanceError {
    /// A method needs images and none were given.
    #[error("importance `{0}` needs data: give --data KIND:PATH")]
    NeedsData(&'static str),
    /// No keep-set meets the target.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// The GCN failed.
    #[error(transparent)]
    Gcn(#[from] crate::gcn::GcnError),
    /// `gcn-rl` was asked for without its reward (held-out data and a MAC target).
    #[error("importance `gcn-rl` needs training and held-out data and a MAC reduction target")]
    NeedsReward,
    /// Training the `gcn-rl` agents failed (a reward could not be measured).
    #[error("gcn-rl: {0}")]
    GcnRl(String),
}

/// What scoring may look at.
pub struct Context<'a> {
    /// The network.
    pub net: &'a Network,
    /// Its weights.
    pub weights: &'a Weights,
    /// Its channel groups.
    pub deps: &'a Dependencies,
    /// Seed of random choices.
    pub seed: u64,
    /// The device to run on.
    pub device: &'a Device,
    /// A batch of images for data-driven methods (`similarity`).
    pub probe: Option<Tensor<4>>,
    /// The GCN encoder, for `gcn`.
    pub encoder: Option<&'a crate::gcn::Encoder>,
    /// The reward and settings of `gcn-rl`.
    pub gcn_rl: Option<crate::gcn_rl::Setup<'a>>,
}

/// Scores every channel of every prunable group with `method`.
pub fn score(method: Method, ctx: &Context) -> Result<Scores, ImportanceError> {
    Ok(match method {
        Method::L1 => filter_norms(ctx.net, ctx.weights, ctx.deps, Norm::L1),
        Method::L2 => filter_norms(ctx.net, ctx.weights, ctx.deps, Norm::L2),
        Method::BnScale => bn_scale(ctx.net, ctx.weights, ctx.deps),
        Method::Random => {
            let mut rng = StdRng::seed_from_u64(ctx.seed);
            ctx.deps
                .groups
                .iter()
                .map(|g| {
                    if g.prunable() {
                        (0..g.size()).map(|_| rng.random::<f32>()).collect()
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        }
        Method::Similarity => similarity::redundancy(ctx, ctx.probe.clone().ok_or(ImportanceError::NeedsData("similarity"))?),
        Method::Gcn => {
            let encoder = match ctx.encoder {
                Some(e) => e,
                None => return Err(crate::gcn::GcnError::Missing.into()),
            };
            encoder.importance(ctx.deps)?
        }
        Method::GcnRl => {
            let images = ctx.probe.clone().ok_or(ImportanceError::NeedsData("gcn-rl"))?;
            let setup = ctx.gcn_rl.as_ref().ok_or(ImportanceError::NeedsReward)?;
            crate::gcn_rl::train(ctx.net, ctx.weights, ctx.deps, images, setup, ctx.seed, ctx.device)
                .map_err(ImportanceError::GcnRl)?
                .scores
        }
    })
}
