//! Stage 3, channel scores: the GCN encoder (trained, or loaded from the output folder)
//! when the method or the similarity ranking needs it, then every channel scored by the space's
//! importance method (gcn-rl's agents trained on the workbench's data).

use super::prepare::Run;
use super::workbench::Workbench;
use super::{PipelineError, bar};
use crate::channels::Scores;
use crate::gcn::{self, Encoder};
use crate::importance::{self, Context, Method};
use crate::search::space::Ranking;

/// The scores and the encoder the search ranks candidates with.
pub struct Scored {
    /// Importance of every channel.
    pub scores: Scores,
    /// The GCN encoder, when the method or the ranking uses it.
    pub encoder: Option<Encoder>,
    /// The content key of the network, weights and GCN settings (names the cached encoder
    /// and is part of the candidate log's fingerprint).
    pub weights_key: String,
}

/// Scores every channel of the workbench's network.
pub fn score_channels(run: &Run, bench: &Workbench) -> Result<Scored, PipelineError> {
    let space = run.space();
    let settings = &run.checked.settings;
    let method = settings.method;
    let weights_key = gcn::cache_key(bench.net, bench.weights, &settings.gcn);
    let encoder = if method == Method::Gcn || space.search.ranking == Ranking::Similarity {
        run.say("GCN encoder: training (or loading from the output folder)".into());
        let cache = run.out.join(format!("gcn-{weights_key}.safetensors"));
        Some(Encoder::load_or_train(
            bench.net,
            bench.weights,
            bench.deps,
            &settings.gcn,
            Some(&cache),
            bench.device,
        )?)
    } else {
        None
    };
    let rl = &settings.gcn_rl;
    if method == Method::GcnRl {
        run.say(format!("gcn-rl: training one agent per channel group ({} episodes)", rl.episodes));
    }
    let episodes = bar(
        run.options.quiet || method != Method::GcnRl,
        rl.episodes as u64,
        "  gcn-rl episodes [{bar:30}] {pos}/{len} {msg} ETA {eta}",
    );
    let scores = bench.with_gcn_rl(rl, run.checked.target.macs, &episodes, |probe, gcn_rl| {
        let context = Context {
            net: bench.net,
            weights: bench.weights,
            deps: bench.deps,
            seed: space.search.seed,
            device: bench.device,
            probe: Some(probe),
            encoder: encoder.as_ref(),
            gcn_rl,
        };
        importance::score(method, &context)
    })??;
    Ok(Scored {
        scores,
        encoder,
        weights_key,
    })
}
