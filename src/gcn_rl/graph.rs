//! One layer's channel graph: nodes are the channels of a dependency group, edges weighted
//! by how alike their global-average-pooled activations over a batch are.
//!
//! Similarity is measured with the symmetric Kullback–Leibler divergence between the
//! channels' activations normalised to distributions over the batch, turned into an edge
//! weight `exp(−D / mean D)`.

/// Features per node (see [`ChannelGraph::new`]).
pub const NODE_FEATURES: usize = 5;

/// A channel graph ready for a graph convolution.
#[derive(Clone, Debug)]
pub struct ChannelGraph {
    /// Channels (nodes).
    pub size: usize,
    /// `D^-1/2 (W + I) D^-1/2`, row-major `[size, size]`.
    pub adjacency: Vec<f32>,
    /// Node features, row-major `[size, NODE_FEATURES]`, each column standardised over the
    /// group.
    pub features: Vec<f32>,
}

/// A channel's activations as a distribution over the batch: shifted to be non-negative
/// when they are not, smoothed, summing to one (uniform for a dead channel).
fn distribution(activations: &[f32]) -> Vec<f64> {
    let low = activations.iter().copied().fold(0.0f32, f32::min) as f64;
    let shifted: Vec<f64> = activations.iter().map(|&a| a as f64 - low).collect();
    let total: f64 = shifted.iter().sum();
    let n = activations.len().max(1) as f64;
    if total <= 0.0 {
        return vec![1.0 / n; activations.len()];
    }
    let eps = 1e-6 * total / n;
    shifted.iter().map(|&v| (v + eps) / (total + eps * n)).collect()
}

/// ½ (KL(p‖q) + KL(q‖p)).
fn symmetric_kl(p: &[f64], q: &[f64]) -> f64 {
    0.5 * p.iter().zip(q).map(|(&a, &b)| (a - b) * (a / b).ln()).sum::<f64>()
}

fn standardise_columns(rows: &mut [[f32; NODE_FEATURES]]) {
    let n = rows.len().max(1) as f32;
    for f in 0..NODE_FEATURES {
        let mean = rows.iter().map(|r| r[f]).sum::<f32>() / n;
        let std = (rows.iter().map(|r| (r[f] - mean).powi(2)).sum::<f32>() / n).sqrt();
        for r in rows.iter_mut() {
            r[f] = if std > 1e-12 { (r[f] - mean) / std } else { 0.0 };
        }
    }
}

impl ChannelGraph {
    /// The graph of one group from each channel's pooled activations over the batch and
    /// its filter magnitude (L1 norm). Node features combine both: magnitude, mean and
    /// spread of the pooled activations, redundancy (1 − the strongest edge) and the mean
    /// edge weight.
    pub fn new(activations: &[Vec<f32>], magnitude: &[f32]) -> ChannelGraph {
        let n = activations.len();
        let dists: Vec<Vec<f64>> = activations.iter().map(|a| distribution(a)).collect();
        let mut divergence = vec![0.0f64; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let d = symmetric_kl(&dists[i], &dists[j]);
                divergence[i * n + j] = d;
                divergence[j * n + i] = d;
            }
        }
        let pairs = (n * n.saturating_sub(1)).max(1) as f64;
        let mean = divergence.iter().sum::<f64>() / pairs;
        let scale = if mean > 0.0 { mean } else { 1.0 };
        let mut weight = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                weight[i * n + j] = if i == j { 1.0 } else { (-divergence[i * n + j] / scale).exp() };
            }
        }
        let degree: Vec<f64> = (0..n).map(|i| weight[i * n..(i + 1) * n].iter().sum()).collect();
        let adjacency = (0..n * n)
            .map(|k| (weight[k] / (degree[k / n] * degree[k % n]).sqrt()) as f32)
            .collect();
        let mut rows: Vec<[f32; NODE_FEATURES]> = (0..n)
            .map(|i| {
                let a = &activations[i];
                let len = a.len().max(1) as f32;
                let mean = a.iter().sum::<f32>() / len;
                let spread = (a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / len).sqrt();
                let others = || (0..n).filter(move |&j| j != i).map(|j| weight[i * n + j]);
                let strongest = others().fold(0.0f64, f64::max);
                let average = others().sum::<f64>() / n.saturating_sub(1).max(1) as f64;
                [magnitude[i], mean, spread, (1.0 - strongest) as f32, average as f32]
            })
            .collect();
        standardise_columns(&mut rows);
        ChannelGraph {
            size: n,
            adjacency,
            features: rows.concat(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_channels_are_joined_more_strongly_than_unlike_ones() {
        let activations = vec![vec![1.0, 2.0, 3.0, 4.0], vec![1.1, 2.0, 3.1, 4.0], vec![4.0, 3.0, 2.0, 0.5]];
        let g = ChannelGraph::new(&activations, &[1.0, 2.0, 3.0]);
        assert!(g.adjacency[1] > g.adjacency[2], "{:?}", g.adjacency);
        // Symmetric normalisation keeps the matrix symmetric.
        for i in 0..3 {
            for j in 0..3 {
                assert!((g.adjacency[i * 3 + j] - g.adjacency[j * 3 + i]).abs() < 1e-6);
            }
        }
        // The magnitude column is standardised: mean 0.
        let column: f32 = (0..3).map(|i| g.features[i * NODE_FEATURES]).sum();
        assert!(column.abs() < 1e-5);
    }

    #[test]
    fn kl_is_zero_for_equal_distributions_and_dead_channels_are_uniform() {
        let p = distribution(&[1.0, 3.0]);
        assert!(symmetric_kl(&p, &p).abs() < 1e-12);
        assert_eq!(distribution(&[0.0, 0.0]), vec![0.5, 0.5]);
        assert!(symmetric_kl(&p, &distribution(&[3.0, 1.0])) > 0.1);
    }
}
