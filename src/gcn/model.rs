//! The encoder: graph convolutions, mean + max readout, a projection head.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A dense layer `x·W + b`, `W` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
}

impl Dense {
    pub(crate) fn new(inputs: usize, outputs: usize, rng: &mut StdRng, device: &Device) -> Dense {
        // Glorot-uniform, drawn on the host so the same seed gives the same encoder everywhere.
        let bound = (6.0 / (inputs + outputs) as f32).sqrt();
        let w: Vec<f32> = (0..inputs * outputs).map(|_| rng.random_range(-bound..bound)).collect();
        Dense {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [inputs, outputs]), device)),
            bias: Param::from_tensor(Tensor::zeros([outputs], device)),
        }
    }

    /// A layer whose weight is zero and every bias `bias`: it outputs `bias` whatever its
    /// input until it is trained.
    pub(crate) fn constant(inputs: usize, outputs: usize, bias: f32, device: &Device) -> Dense {
        Dense {
            weight: Param::from_tensor(Tensor::zeros([inputs, outputs], device)),
            bias: Param::from_tensor(Tensor::full([outputs], bias, device)),
        }
    }

    pub(crate) fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let w = self.weight.val().unsqueeze::<D>();
        let b = self.bias.val().unsqueeze::<D>();
        x.matmul(w) + b
    }

    /// The weight and bias as host tensors, for the cache file.
    pub fn tensors(&self) -> [(Vec<usize>, Vec<f32>); 2] {
        let host = |t: Tensor<2>| (t.dims().to_vec(), t.into_data().try_into_vec::<f32>().expect("f32"));
        [host(self.weight.val()), host(self.bias.val().unsqueeze::<2>())]
    }

    /// Rebuilds a layer from [`Dense::tensors`].
    pub fn from_tensors(weight: (&[usize], &[f32]), bias: &[f32], device: &Device) -> Dense {
        Dense {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight.1.to_vec(), weight.0.to_vec()), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias.to_vec(), [bias.len()]), device)),
        }
    }
}

/// The graph encoder.
#[derive(Module, Debug)]
pub struct GcnModel {
    pub(super) convs: Vec<Dense>,
    pub(super) head: Vec<Dense>,
}

impl GcnModel {
    /// `depth` graph convolutions of `width` channels, a head to `embedding` dimensions.
    pub fn new(features: usize, depth: usize, width: usize, embedding: usize, seed: u64, device: &Device) -> GcnModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let convs = (0..depth)
            .map(|i| Dense::new(if i == 0 { features } else { width }, width, &mut rng, device))
            .collect();
        let head = vec![
            Dense::new(2 * width, width, &mut rng, device),
            Dense::new(width, embedding, &mut rng, device),
        ];
        GcnModel { convs, head }
    }

    /// Embeds a batch of graphs: `adjacency` `[n, n]`, features `[B, n, F]` → `[B, embedding]`.
    pub fn embed(&self, adjacency: &Tensor<2>, features: Tensor<3>) -> Tensor<2> {
        let a = adjacency.clone().unsqueeze::<3>();
        let mut h = features;
        for conv in &self.convs {
            h = relu(conv.apply(a.clone().matmul(h)));
        }
        let [batch, _, width] = h.dims();
        let mean = h.clone().mean_dim(1).reshape([batch, width]);
        let max = h.max_dim(1).reshape([batch, width]);
        let x = Tensor::cat(vec![mean, max], 1);
        let x = relu(self.head[0].apply(x));
        self.head[1].apply(x)
    }
}
