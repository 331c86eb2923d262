//! The graph network of SACP (arXiv 2506.11469), written with burn tensors: the network's
//! layer graph is embedded by a GCN encoder trained contrastively on pruned variants
//! (L1-pruned = positives, randomly pruned at the same rates = negatives, both against
//! the original). Candidates are ranked by the cosine similarity of their embedding to the
//! original's, and channel importance is read off the same similarity.

mod contrastive;
mod features;
mod model;
mod predictor;

pub use features::{FEATURES, GraphInput};
pub use model::{Dense, GcnModel};
pub use predictor::{Prediction, Predictor, PredictorConfig};

use crate::channels::Scores;
use crate::deps::Dependencies;
use crate::ir::Network;
use crate::weights::{self, WeightError, WeightTensor, Weights};
use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors of the GCN.
#[derive(Debug, thiserror::Error)]
pub enum GcnError {
    /// The cache file could not be read or written.
    #[error(transparent)]
    Cache(#[from] WeightError),
    /// The `gcn` method was asked for without an encoder.
    #[error("importance `gcn` needs a trained encoder")]
    Missing,
}

/// Encoder shape and contrastive training settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcnConfig {
    /// Graph-convolution layers.
    pub depth: usize,
    /// Hidden width.
    pub width: usize,
    /// Embedding dimensions.
    pub embedding: usize,
    /// Training steps.
    pub steps: usize,
    /// Positive (and as many negative) variants per step.
    pub variants: usize,
    /// Softmax temperature of the InfoNCE loss.
    pub temperature: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Least pruning rate of a variant's group.
    pub min_rate: f64,
    /// Largest pruning rate of a variant's group.
    pub max_rate: f64,
    /// Seed of initialisation and variants.
    pub seed: u64,
}

impl Default for GcnConfig {
    fn default() -> Self {
        GcnConfig {
            depth: 2,
            width: 64,
            embedding: 32,
            steps: 150,
            variants: 8,
            temperature: 0.2,
            lr: 0.005,
            min_rate: 0.1,
            max_rate: 0.8,
            seed: 0,
        }
    }
}

/// A trained encoder for one network and its weights.
pub struct Encoder {
    graph: GraphInput,
    model: GcnModel,
    /// The contrastive loss at every training step (empty when loaded from the cache).
    pub losses: Vec<f32>,
    device: Device,
}

/// Integration steps of the importance attribution.
const ATTRIBUTION_STEPS: usize = 8;

fn normalise(z: Tensor<2>) -> Tensor<2> {
    let norm = z.clone().powf_scalar(2.0).sum_dim(1).sqrt().add_scalar(1e-8);
    z / norm
}

/// A mask vector (`GraphInput::total` entries) for a keep-set.
pub fn mask_of(deps: &Dependencies, keep: &[Vec<usize>]) -> Vec<f32> {
    let mut mask = Vec::with_capacity(deps.groups.iter().map(|g| g.size()).sum());
    for (g, kept) in deps.groups.iter().zip(keep) {
        let start = mask.len();
        mask.resize(start + g.size(), 0.0);
        kept.iter().for_each(|&k| mask[start + k] = 1.0);
    }
    mask
}

/// A content hash of a network, its weights and an encoder configuration: the cache key.
pub fn cache_key(net: &Network, weights: &Weights, config: &GcnConfig) -> String {
    let mut hash = Sha256::new();
    hash.update(crate::spec::write_graph_spec(net, None));
    for (name, t) in &weights.tensors {
        hash.update(name.as_bytes());
        t.data.iter().for_each(|v| hash.update(v.to_le_bytes()));
    }
    hash.update(serde_json::to_string(config).expect("a config serialises"));
    hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where the encoder of a weights file is cached: beside it, keyed by the content hash.
pub fn cache_path(weights_file: &Path, key: &str) -> PathBuf {
    let stem = weights_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "weights".into());
    weights_file.with_file_name(format!("{stem}.gcn-{key}.safetensors"))
}

impl Encoder {
    /// Trains an encoder (seconds on a CPU for CIFAR ResNets).
    pub fn train(net: &Network, weights: &Weights, deps: &Dependencies, config: &GcnConfig, device: &Device) -> Encoder {
        let device = device.clone().autodiff();
        let graph = GraphInput::new(net, weights, deps, &device);
        let l1 = crate::channels::l1_scores(net, weights, deps);
        let (model, losses) = contrastive::train(&graph, deps, &l1, config, &device);
        Encoder {
            graph,
            model,
            losses,
            device,
        }
    }

    /// Loads the encoder from `cache` when it is there, else trains it and writes the cache.
    pub fn load_or_train(
        net: &Network,
        weights: &Weights,
        deps: &Dependencies,
        config: &GcnConfig,
        cache: Option<&Path>,
        device: &Device,
    ) -> Result<Encoder, GcnError> {
        if let Some(path) = cache.filter(|p| p.is_file()) {
            let stored = weights::load(path)?;
            let device = device.clone().autodiff();
            let graph = GraphInput::new(net, weights, deps, &device);
            let layer = |name: String| -> Result<model::Dense, GcnError> {
                let get = |kind: &str| {
                    stored.get(&format!("{name}.{kind}")).ok_or_else(|| WeightError::Missing {
                        file: path.display().to_string(),
                        name: format!("{name}.{kind}"),
                        expected: vec![],
                    })
                };
                let (w, b) = (get("weight")?, get("bias")?);
                Ok(model::Dense::from_tensors((&w.shape, &w.data), &b.data, &device))
            };
            let convs = (0..config.depth).map(|i| layer(format!("conv.{i}"))).collect::<Result<_, _>>()?;
            let head = (0..2).map(|i| layer(format!("head.{i}"))).collect::<Result<_, _>>()?;
            return Ok(Encoder {
                graph,
                model: GcnModel { convs, head },
                losses: Vec::new(),
                device,
            });
        }
        let encoder = Encoder::train(net, weights, deps, config, device);
        if let Some(path) = cache {
            let mut stored = Weights::default();
            let layers = encoder
                .model
                .convs
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("conv.{i}"), d))
                .chain(encoder.model.head.iter().enumerate().map(|(i, d)| (format!("head.{i}"), d)));
            for (name, dense) in layers {
                let [(ws, w), (bs, b)] = dense.tensors();
                stored.tensors.insert(format!("{name}.weight"), WeightTensor { shape: ws, data: w });
                stored.tensors.insert(
                    format!("{name}.bias"),
                    WeightTensor {
                        shape: vec![bs[1]],
                        data: b,
                    },
                );
            }
            let metadata = HashMap::from([("config".to_string(), serde_json::to_string(config).expect("a config serialises"))]);
            weights::save_with_metadata(&stored, Some(metadata), path)?;
        }
        Ok(encoder)
    }

    fn embed(&self, masks: Tensor<2>) -> Tensor<2> {
        normalise(self.model.embed(&self.graph.adjacency, self.graph.features(masks)))
    }

    fn masks(&self, rows: &[Vec<f32>]) -> Tensor<2> {
        let data: Vec<f32> = rows.concat();
        Tensor::from_data(TensorData::new(data, [rows.len(), self.graph.total]), &self.device)
    }

    /// Cosine similarity of each mask's embedding to the unpruned network's.
    pub fn similarity(&self, masks: &[Vec<f32>]) -> Vec<f32> {
        let original = self.embed(self.masks(&[vec![1.0; self.graph.total]]));
        let mut out = Vec::with_capacity(masks.len());
        for chunk in masks.chunks(64) {
            let z = self.embed(self.masks(chunk));
            let sim = (z * original.clone()).sum_dim(1);
            out.extend(sim.inner().into_data().try_into_vec::<f32>().expect("f32 similarities"));
        }
        out
    }

    /// Global channel importance: the integrated gradient of the similarity to the original
    /// with respect to each channel's mask, along the straight path from every prunable
    /// channel removed (mask 0) to none removed (mask 1).
    ///
    /// Why this quantity: at the unpruned network the similarity is at its maximum, so its
    /// plain gradient there is zero and says nothing. Integrated gradients attribute the
    /// whole similarity gain between "all removed" and "all kept" to the channels (the
    /// attributions add up to that gain), so a channel's score is the share of "being the
    /// original network" it carries: how far its removal moves the embedding away from the
    /// original. All scores are in one unit, so they rank channels across layers.
    pub fn importance(&self, deps: &Dependencies) -> Result<Scores, GcnError> {
        let original = self.embed(self.masks(&[vec![1.0; self.graph.total]])).detach();
        let rows: Vec<Vec<f32>> = (0..ATTRIBUTION_STEPS)
            .map(|s| {
                let alpha = (s as f32 + 0.5) / ATTRIBUTION_STEPS as f32;
                deps.groups
                    .iter()
                    .flat_map(|g| std::iter::repeat_n(if g.prunable() { alpha } else { 1.0 }, g.size()))
                    .collect()
            })
            .collect();
        let masks = self.masks(&rows).require_grad();
        let similarity = (self.embed(masks.clone()) * original).sum();
        let grads = similarity.backward();
        let gradient = masks.grad(&grads).expect("the masks require a gradient").mean_dim(0);
        let values: Vec<f32> = gradient.into_data().try_into_vec::<f32>().expect("f32 gradients");
        Ok(deps
            .groups
            .iter()
            .zip(&self.graph.offsets)
            .map(|(g, &start)| {
                if g.prunable() {
                    values[start..start + g.size()].to_vec()
                } else {
                    Vec::new()
                }
            })
            .collect())
    }
}
