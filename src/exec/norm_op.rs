//! Training-mode BatchNorm on the host as a burn operation for burn-flex, with and without
//! autodiff: one pass for the batch statistics, one for the output, and a backward pass of
//! two more, where burn's composite of tensor operations transposes the batch to put the
//! channels first (burn-flex's `copy_2d_tiled`) and materialises every intermediate.

use super::host::{elements, flex_tensor};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// BatchNorm with batch statistics, computed on the host.
#[backend_extension(Flex, Autodiff)]
pub trait HostNormOps: Backend {
    /// `x` (`[N, C, ...]`) normalised per channel with its batch mean and biased variance,
    /// scaled by `gamma` and shifted by `beta` (`[C]`); returns the output, the mean and the
    /// variance.
    fn host_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `[N, C, L]`: batch, channels, and the values per channel of one sample.
fn layout(x: &FloatTensor<Flex>) -> [usize; 3] {
    let dims = x.shape();
    let (n, c) = (dims[0], dims[1]);
    [n, c, dims.num_elements() / (n * c).max(1)]
}

/// Per channel of an `[N, C, L]` buffer, the sum over its N runs of L values of
/// `f(channel, offset)`, `offset` being where a run starts, for two sums at once.
fn per_channel([n, c, l]: [usize; 3], f: impl Fn(usize, usize) -> (f64, f64) + Sync) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n).fold((0.0, 0.0), |(a, b), run| {
                let (da, db) = f(ch, (run * c + ch) * l);
                (a + da, b + db)
            })
        })
        .collect()
}

/// Per channel of an `[N, C, L]` buffer, the mean and the biased variance of its N·L values,
/// in one pass over memory: per run a centre `a` (its f32 mean) and, in a second pass over
/// the run while it is in cache, the deviations from it, `d = Σ(v − a)` and `q = Σ(v − a)²`,
/// merged exactly: `μ = Σ(L·a + d) / (N·L)`, `Σ(v − μ)² = Σ over runs of q + 2(a − μ)·d +
/// L(a − μ)²`. Small deviations keep their precision however far the values are from zero.
fn moments(values: &[f32], [n, c, l]: [usize; 3]) -> Vec<(f64, f64)> {
    let count = (n * l) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let runs: Vec<(f64, f64, f64)> = (0..n)
                .map(|b| {
                    let run = &values[(b * c + ch) * l..][..l];
                    let a = (sum(run) / l as f64) as f32;
                    let (d, q) = gradient_sums(run, run, a, |v| v - a);
                    (a as f64, d, q)
                })
                .collect();
            let mean = runs.iter().map(|&(a, d, _)| l as f64 * a + d).sum::<f64>() / count;
            let m2: f64 = runs
                .iter()
                .map(|&(a, d, q)| q + 2.0 * (a - mean) * d + l as f64 * (a - mean) * (a - mean))
                .sum();
            (mean, m2 / count)
        })
        .collect()
}

/// An `[N, C, L]` buffer whose run at `offset` (channel `ch`) is `f(ch, offset, run)`
/// applied in place, in parallel.
fn per_run(dims: [usize; 3], f: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let [n, c, l] = dims;
    let mut out = vec![0.0f32; n * c * l];
    for_each_run(&mut out, dims, f);
    out
}

/// Calls `f(channel, offset, run)` on every run of an `[N, C, L]` buffer, in parallel.
fn for_each_run(values: &mut [f32], [_, c, l]: [usize; 3], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    // A task per sample, its channels' runs in turn: the runs of a small map are too short
    // to be tasks of their own.
    values.par_chunks_mut((c * l).max(1)).enumerate().for_each(|(b, sample)| {
        for (ch, run) in sample.chunks_exact_mut(l.max(1)).enumerate() {
            f(ch, (b * c + ch) * l, run);
        }
    });
}

/// `Σ f(a[i], b[i])` over two runs of the same length, in eight f32 lanes (which the
/// compiler vectorises; a run is one sample's map, short enough for f32) added up in f64.
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let (pairs, rest) = (a.chunks_exact(LANES).zip(b.chunks_exact(LANES)), a.len() / LANES * LANES);
    for (ca, cb) in pairs {
        for j in 0..LANES {
            lanes[j] += f(ca[j], cb[j]);
        }
    }
    let tail: f64 = a[rest..].iter().zip(&b[rest..]).map(|(&x, &y)| f(x, y) as f64).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail
}

/// `(Σ w(g), Σ w(g)·(x − m))` over one run of `g` and `x`, in eight f32 lanes each (as
/// `lane_sum`), added up in f64: with `w` the identity, a BatchNorm's `Σ dy` and
/// `Σ dy·(x − μ)`; with `g = x` and `w(v) = v − m`, a run's deviations from `m` and their
/// squares.
fn gradient_sums(g: &[f32], x: &[f32], m: f32, w: impl Fn(f32) -> f32) -> (f64, f64) {
    const LANES: usize = 8;
    let (mut first, mut second) = ([0.0f32; LANES], [0.0f32; LANES]);
    let rest = g.len() / LANES * LANES;
    for (cg, cx) in g.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for j in 0..LANES {
            let wg = w(cg[j]);
            first[j] += wg;
            second[j] += wg * (cx[j] - m);
        }
    }
    let total = |lanes: [f32; LANES]| lanes.iter().map(|&v| v as f64).sum::<f64>();
    let tail = g[rest..].iter().zip(&x[rest..]).fold((0.0, 0.0), |(a, b), (&gv, &xv)| {
        let wg = w(gv);
        (a + wg as f64, b + (wg * (xv - m)) as f64)
    });
    (total(first) + tail.0, total(second) + tail.1)
}

/// The sum of a run.
fn sum(run: &[f32]) -> f64 {
    lane_sum(run, run, |v, _| v)
}

impl HostNormOps for Flex {
    fn host_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let dims = layout(&x);
        let (values, gamma, beta) = (elements(&x), elements(&gamma), elements(&beta));
        let (mean, variance): (Vec<f64>, Vec<f64>) = moments(&values, dims).into_iter().unzip();
        // out = x · scale + shift, scale = γ/σ, shift = β − μ · scale
        let scale: Vec<f32> = (0..dims[1]).map(|ch| gamma[ch] / (variance[ch] + epsilon).sqrt() as f32).collect();
        let shift: Vec<f32> = (0..dims[1]).map(|ch| beta[ch] - mean[ch] as f32 * scale[ch]).collect();
        drop(values);
        // The output overwrites the input when nothing else holds it (a conv's output on its
        // way to this layer in inference), else a copy of it.
        let dense = x.as_slice::<f32>().map(<[f32]>::len) == Some(x.storage::<f32>().len());
        let mut out = if x.is_unique() && dense {
            x
        } else {
            flex_tensor(elements(&x).into_owned(), x.shape())
        };
        for_each_run(out.storage_mut::<f32>(), dims, |ch, _, run| {
            let (scale, shift) = (scale[ch], shift[ch]);
            for v in run {
                *v = *v * scale + shift;
            }
        });
        let stat = |v: Vec<f64>| flex_tensor(v.into_iter().map(|s| s as f32).collect(), Shape::new([dims[1]]));
        (out, stat(mean), stat(variance))
    }
}

/// The gradients of `host_batch_norm_train` with respect to its input, `gamma` and `beta`.
fn backward(x: &[f32], gamma: &[f32], mean: &[f32], variance: &[f32], epsilon: f64, grad: &[f32], dims: [usize; 3]) -> [Vec<f32>; 3] {
    let [n, c, l] = dims;
    let count = (n * l) as f64;
    let inv_std: Vec<f64> = variance.iter().map(|&v| 1.0 / (v as f64 + epsilon).sqrt()).collect();
    // Σ dy and Σ dy · x̂ with x̂ = (x − μ)/σ, in one pass.
    let (beta_grad, gamma_grad): (Vec<f64>, Vec<f64>) =
        per_channel(dims, |ch, at| gradient_sums(&grad[at..at + l], &x[at..at + l], mean[ch], |g| g))
            .into_iter()
            .zip(&inv_std)
            .map(|((dy, dy_x), s)| (dy, dy_x * s))
            .unzip();
    // dx = γ/σ · (dy − Σdy/M − x̂ · Σ(dy·x̂)/M) = a·dy + b·x + d per channel
    let coefficients: Vec<[f32; 3]> = (0..c)
        .map(|ch| {
            let (g, s, mu) = (gamma[ch] as f64, inv_std[ch], mean[ch] as f64);
            let (a, b) = (g * s, -g * s * s * gamma_grad[ch] / count);
            [a as f32, b as f32, (-a * beta_grad[ch] / count - b * mu) as f32]
        })
        .collect();
    let x_grad = per_run(dims, |ch, at, run| {
        let [a, b, d] = coefficients[ch];
        let len = run.len();
        for ((o, &g), &v) in run.iter_mut().zip(&grad[at..at + len]).zip(&x[at..at + len]) {
            *o = a * g + b * v + d;
        }
    });
    let narrow = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect();
    [x_grad, narrow(gamma_grad), narrow(beta_grad)]
}

/// The backward step of `host_batch_norm_train` under autodiff: the checkpointed input and
/// gamma, the batch statistics and epsilon.
#[derive(Debug)]
struct HostBatchNormBackward;

impl Backward<Flex, 3> for HostBatchNormBackward {
    type State = (NodeId, NodeId, FloatTensor<Flex>, FloatTensor<Flex>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, gamma_id, mean, variance, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(x_id);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(gamma_id);
        let [x_grad, gamma_grad, beta_grad] = backward(
            &elements(&x),
            &elements(&gamma),
            &elements(&mean),
            &elements(&variance),
            epsilon,
            &elements(&grad),
            layout(&x),
        );
        for (node, values, shape) in [
            (node_x, x_grad, x.shape()),
            (node_gamma, gamma_grad, gamma.shape()),
            (node_beta, beta_grad, gamma.shape()),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(values, shape));
            }
        }
    }
}

impl<C: CheckpointStrategy> HostNormOps for Autodiff<Flex, C> {
    fn host_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = HostBatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (output, mean, variance) = match prep {
            OpsKind::Tracked(mut prep) => {
                let (x_id, gamma_id) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let (out, mean, variance) =
                    Flex::host_batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                let state = (x_id, gamma_id, mean.clone(), variance.clone(), epsilon);
                (prep.finish(state, out), mean, variance)
            }
            OpsKind::UnTracked(prep) => {
                let (out, mean, variance) =
                    Flex::host_batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                (prep.finish(out), mean, variance)
            }
        };
        (output, Self::from_inner(mean), Self::from_inner(variance))
    }
}

/// Training-mode BatchNorm of `x` (`[N, C, ...]` on burn-flex, with or without autodiff):
/// the output, and the batch mean and biased variance per channel (`[C]`, not differentiated).
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let (out, mean, variance) =
        <Dispatch as HostNormOps>::host_batch_norm_train(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), epsilon);
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

#[cfg(test)]
mod tests {
    use super::super::host::relative_gap;
    use burn::tensor::module::batch_norm_train as burn_batch_norm_train;
    use burn::tensor::{Device, Distribution, Tensor};

    #[test]
    fn host_batch_norm_and_its_gradients_equal_burns() {
        let device = Device::flex().autodiff();
        for dims in [[4, 3, 5, 6], [8, 5, 1, 1], [2, 7, 3, 9]] {
            let x = Tensor::<4>::random(dims, Distribution::Normal(1.5, 2.0), &device);
            let gamma = Tensor::<1>::random([dims[1]], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([dims[1]], Distribution::Normal(0.0, 1.0), &device);
            let r = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let run = |host: bool| {
                let (x, gamma, beta) = (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());
                let (out, mean, variance) = if host {
                    super::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5)
                } else {
                    let o = burn_batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
                    (o.output, o.mean, o.variance)
                };
                let grads = (out.clone() * r.clone()).sum().backward();
                let grad = |t: &Tensor<1>| t.grad(&grads).expect("a gradient");
                (
                    out,
                    mean,
                    variance,
                    x.grad(&grads).expect("an input gradient"),
                    grad(&gamma),
                    grad(&beta),
                )
            };
            let (host, burn) = (run(true), run(false));
            for (what, gap) in [
                ("output", relative_gap(host.0, burn.0)),
                ("mean", relative_gap(host.1, burn.1)),
                ("variance", relative_gap(host.2, burn.2)),
                ("input gradient", relative_gap(host.3, burn.3)),
                ("gamma gradient", relative_gap(host.4, burn.4)),
                ("beta gradient", relative_gap(host.5, burn.5)),
            ] {
                assert!(gap <= 1e-4, "{dims:?}: {what} {gap}");
            }
        }
    }

    #[test]
    fn an_unshared_input_is_normalised_in_place_to_the_same_values() {
        let device = Device::flex();
        let x = Tensor::<4>::random([3, 4, 5, 5], Distribution::Normal(2.0, 3.0), &device);
        let gamma = Tensor::<1>::random([4], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([4], Distribution::Normal(0.0, 1.0), &device);
        let read = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        // `x` shared (a clone outlives the call): written to a copy; then `x` itself, the
        // last handle on its memory: overwritten.
        let (copied, ..) = super::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let input = read(x.clone());
        let (in_place, ..) = super::batch_norm_train(x, gamma, beta, 1e-5);
        let (copied, in_place) = (read(copied), read(in_place));
        assert_ne!(copied, input, "the output is normalised, not the input");
        assert!(copied.iter().all(|v| v.is_finite()));
        assert_eq!(copied, in_place);
    }

    #[test]
    fn batch_statistics_hold_far_from_zero() {
        // Values around 1000 with a spread of 0.01 (a 1e-10 share of their mean square): a
        // one-pass sum of squares in f32 loses the variance to cancellation entirely; the
        // run-wise merge keeps it within 1e-6 of the f64 figure computed from the same values.
        let device = Device::flex();
        let x = Tensor::<4>::random([4, 3, 5, 6], Distribution::Normal(1000.0, 0.01), &device);
        let (gamma, beta) = (Tensor::<1>::ones([3], &device), Tensor::<1>::zeros([3], &device));
        let (_, mean, variance) = super::batch_norm_train(x.clone(), gamma, beta, 1e-5);
        let values = x.into_data().try_into_vec::<f32>().unwrap();
        let (mean, variance) = (
            mean.into_data().try_into_vec::<f32>().unwrap(),
            variance.into_data().try_into_vec::<f32>().unwrap(),
        );
        for ch in 0..3 {
            let channel: Vec<f64> = (0..4)
                .flat_map(|b| values[(b * 3 + ch) * 30..][..30].iter().map(|&v| v as f64))
                .collect();
            let m = channel.iter().sum::<f64>() / channel.len() as f64;
            let v = channel.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / channel.len() as f64;
            let (mean_gap, variance_gap) = (((mean[ch] as f64) - m).abs() / m, ((variance[ch] as f64) - v).abs() / v);
            assert!(
                mean_gap <= 1e-6 && variance_gap <= 1e-4,
                "channel {ch}: mean {mean_gap}, variance {variance_gap}"
            );
        }
    }
}
