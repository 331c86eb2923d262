//! Stage 2, the base network: the weights the space names, the weights inside its ONNX
//! spec, or a network trained with `[train]` and cached in the output folder (with what it
//! was trained for, so a stale cache is refused rather than loaded).

use super::prepare::Run;
use super::{PipelineError, train_with_bar, training_config};
use crate::ir::Network;
use crate::train::{Checkpointing, TrainConfig};
use crate::weights::{self, Weights};
use std::path::Path;

/// The metadata key of the cached base network's fingerprint.
const BASE_KEY: &str = "sacp_base";

/// The unpruned network's weights.
pub fn base_network(run: &Run) -> Result<Weights, PipelineError> {
    let space = run.space();
    let net = &run.checked.network;
    if let Some(w) = &space.model.weights {
        let path = space.resolve(w);
        let w = weights::load(&path)?;
        w.check(net, &path.display().to_string())?;
        return Ok(w);
    }
    if let Some(embedded) = &run.checked.embedded {
        return Ok(embedded.clone());
    }
    let t = &space.train;
    let config = training_config(t.epochs, t.batch_size, t.lr, t.max_steps, space);
    let cached = run.out.join("base.safetensors");
    let key = base_key(net, &config, t.seed, &space.data.dataset);
    if cached.is_file() {
        run.say(format!("base network: {}", cached.display()));
        return load_cached_base(&cached, net, &key);
    }
    run.say(format!("training the base network ({} epochs)", t.epochs));
    let initial = weights::initialise(net, t.seed);
    let checkpoint = Checkpointing {
        path: run.out.join("base.checkpoint.safetensors"),
        resume: true,
    };
    let quiet = run.options.quiet;
    let summary = train_with_bar(net, &initial, &run.data, &config, None, &run.device, &checkpoint, quiet)?;
    let metadata = std::collections::HashMap::from([(BASE_KEY.to_string(), key)]);
    weights::save_with_metadata(&summary.weights, Some(metadata), &cached)?;
    Ok(summary.weights)
}

/// What the cached base network was trained for: the network, the training settings, the
/// initialisation seed and the data set.
fn base_key(net: &Network, config: &TrainConfig, seed: u64, dataset: &str) -> String {
    format!(
        "network {}; train {}; init seed {seed}; data {dataset}",
        crate::spec::fingerprint(net),
        serde_json::to_string(config).expect("a config serialises")
    )
}

/// Loads `OUT/base.safetensors` when it was trained for `key`; refuses it otherwise.
fn load_cached_base(path: &Path, net: &Network, key: &str) -> Result<Weights, PipelineError> {
    let (w, metadata) = weights::load_with_metadata(path)?;
    let stale = |reason: String| PipelineError::Stale {
        path: path.display().to_string(),
        reason,
    };
    match metadata.get(BASE_KEY) {
        Some(found) if found == key => {}
        Some(found) => return Err(stale(format!("it records `{found}`, this search needs `{key}`"))),
        None => return Err(stale("it carries no fingerprint".into())),
    }
    w.check(net, &path.display().to_string()).map_err(|e| stale(e.to_string()))?;
    Ok(w)
}
