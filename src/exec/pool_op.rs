//! 2-D max pooling on the host as a burn operation for burn-flex, with and without autodiff.
//! burn-flex pools through its 3-D kernel and computes the index of every maximum even when
//! only the values are wanted: on the 28×28 VGG-8 that was a fifth of a candidate's
//! evaluation. Here each output is the maximum of its window read straight from the NCHW
//! planes. Under autodiff the forward pass also notes where each maximum is (the first of
//! equal ones in the window), and the backward pass adds each output's gradient there.

use super::host::{elements, flex_tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Max pooling with the same padding on both sides of each axis, computed on the host.
#[backend_extension(Flex, Autodiff)]
pub trait HostPoolOps: Backend {
    /// `x` `[N, C, H, W]` max-pooled over `kernel` windows `stride` apart, with `padding`
    /// (`[ph, pw]`, on each side) that never wins; `ceil_mode` keeps a last partial window.
    fn host_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self>;
}

/// One max-pooling's geometry.
#[derive(Clone, Copy, Debug)]
struct Window {
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    output: [usize; 2],
}

impl Window {
    fn new(input: [usize; 2], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool) -> Window {
        let size = |axis: usize| {
            let (size, k, s, p) = (input[axis], kernel[axis], stride[axis], padding[axis]);
            let span = (size + 2 * p).saturating_sub(k);
            if !ceil_mode {
                return span / s + 1;
            }
            // As PyTorch: a last window that starts in the trailing padding is dropped.
            let out = span.div_ceil(s) + 1;
            if (out - 1) * s >= size + p { out - 1 } else { out }
        };
        Window {
            input,
            kernel,
            stride,
            padding,
            output: [size(0), size(1)],
        }
    }

    /// The input rows (axis 0) or columns (axis 1) of output position `o`'s window.
    #[inline]
    fn span(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride[axis]) as isize - self.padding[axis] as isize;
        let end = (start + self.kernel[axis] as isize).clamp(0, self.input[axis] as isize) as usize;
        (start.max(0) as usize).min(end)..end
    }
}

/// The maxima of every `H × W` plane of `x` (planes one after another): `planes · OH · OW`.
/// Per output row, the elementwise maximum of its window's input rows first (a pass the
/// compiler vectorises), then of each window's columns in that row.
fn forward(x: &[f32], window: &Window) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (window.input, window.output);
    let mut out = vec![0.0f32; x.len() / (h * w) * oh * ow];
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(8).for_each_init(
        || vec![0.0f32; w],
        |rows_max, (out, plane)| {
            for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let mut rows = window.span(0, oy);
                match rows.next() {
                    Some(first) => rows_max.copy_from_slice(&plane[first * w..][..w]),
                    None => rows_max.fill(f32::NEG_INFINITY),
                }
                for y in rows {
                    for (m, &v) in rows_max.iter_mut().zip(&plane[y * w..][..w]) {
                        *m = m.max(v);
                    }
                }
                let maximum = |values: &[f32]| values.iter().copied().reduce(f32::max).unwrap_or(f32::NEG_INFINITY);
                // Side-by-side windows without padding (VGG's 2×2 halving) are the
                // chunks of the row; the others, and a last partial window, are spans.
                let tiled = if window.kernel[1] == window.stride[1] && window.padding[1] == 0 {
                    for (o, values) in out_row.iter_mut().zip(rows_max.chunks_exact(window.kernel[1])) {
                        *o = maximum(values);
                    }
                    w / window.kernel[1]
                } else {
                    0
                };
                for (ox, o) in out_row.iter_mut().enumerate().skip(tiled) {
                    *o = maximum(&rows_max[window.span(1, ox)]);
                }
            }
        },
    );
    out
}

/// As `forward`, and for each output where in its plane its maximum is: the first of
/// equal maxima, row by row; `u32::MAX` for a window wholly in the padding.
fn forward_with_indices(x: &[f32], window: &Window) -> (Vec<f32>, Vec<u32>) {
    let ([h, w], [oh, ow]) = (window.input, window.output);
    let outputs = x.len() / (h * w) * oh * ow;
    let (mut out, mut at) = (vec![0.0f32; outputs], vec![0u32; outputs]);
    out.par_chunks_mut(oh * ow)
        .zip(at.par_chunks_mut(oh * ow))
        .zip(x.par_chunks(h * w))
        .with_min_len(8)
        .for_each(|((out, at), plane)| {
            for (oy, (out_row, at_row)) in out.chunks_exact_mut(ow).zip(at.chunks_exact_mut(ow)).enumerate() {
                let rows = window.span(0, oy);
                for (ox, (o, a)) in out_row.iter_mut().zip(at_row.iter_mut()).enumerate() {
                    let columns = window.span(1, ox);
                    let (mut best, mut best_at) = (f32::NEG_INFINITY, u32::MAX);
                    for y in rows.clone() {
                        for (i, &v) in plane[y * w..][columns.clone()].iter().enumerate() {
                            if best_at == u32::MAX || v > best {
                                (best, best_at) = (v, (y * w + columns.start + i) as u32);
                            }
                        }
                    }
                    (*o, *a) = (best, best_at);
                }
            }
        });
    (out, at)
}

/// The gradient of `x` (`planes` planes of `H × W`) given the gradient of the pooled
/// output and where each output's maximum was: each output's gradient added there.
fn backward(grad: &[f32], at: &[u32], window: &Window, planes: usize) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (window.input, window.output);
    let mut dx = vec![0.0f32; planes * h * w];
    dx.par_chunks_mut(h * w)
        .zip(grad.par_chunks(oh * ow).zip(at.par_chunks(oh * ow)))
        .with_min_len(8)
        .for_each(|(dx, (g, at))| {
            for (&g, &a) in g.iter().zip(at) {
                if let Some(d) = dx.get_mut(a as usize) {
                    *d += g;
                }
            }
        });
    dx
}

/// The geometry of pooling `x`, and its number of planes.
fn geometry(x: &FloatTensor<Flex>, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool) -> ([usize; 2], Window) {
    let [n, c, h, w] = x.shape().dims();
    ([n, c], Window::new([h, w], kernel, stride, padding, ceil_mode))
}

impl HostPoolOps for Flex {
    fn host_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        let ([n, c], window) = geometry(&x, kernel, stride, padding, ceil_mode);
        let [oh, ow] = window.output;
        flex_tensor(forward(&elements(&x), &window), [n, c, oh, ow])
    }
}

/// The backward step of `host_max_pool2d` under autodiff; its state is where each output's
/// maximum was, the input's shape and the pooling's geometry.
#[derive(Debug)]
struct HostMaxPoolBackward;

impl Backward<Flex, 1> for HostMaxPoolBackward {
    type State = (Arc<Vec<u32>>, Shape, Window);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (at, shape, window) = ops.state;
        if let Some(node) = node_x {
            let planes = shape[0] * shape[1];
            grads.register::<Flex>(node.id, flex_tensor(backward(&elements(&grad), &at, &window, planes), shape));
        }
    }
}

impl<C: CheckpointStrategy> HostPoolOps for Autodiff<Flex, C> {
    fn host_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
    ) -> FloatTensor<Self> {
        let prep = HostMaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let ([n, c], window) = geometry(&x, kernel, stride, padding, ceil_mode);
                let (out, at) = forward_with_indices(&elements(&x), &window);
                let [oh, ow] = window.output;
                prep.finish((Arc::new(at), x.shape(), window), flex_tensor(out, [n, c, oh, ow]))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::host_max_pool2d(x.into_primitive(), kernel, stride, padding, ceil_mode)),
        }
    }
}

/// Max pooling of a batch `x` (`[N, C, H, W]` on burn-flex, with or without autodiff) over
/// `kernel` windows `stride` apart, with `padding` on each side, computed on the host.
pub fn max_pool2d(x: Tensor<4>, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostPoolOps>::host_max_pool2d(
        x.into_dispatch(),
        kernel,
        stride,
        padding,
        ceil_mode,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::host::relative_gap;
    use burn::tensor::module::max_pool2d as burn_max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;
    use burn::tensor::{Device, Distribution, Tensor};

    /// (height, width, kernel, stride, padding, ceil mode)
    type Case = (usize, usize, [usize; 2], [usize; 2], [usize; 2], bool);

    /// VGG's 2×2 halving (even and odd maps, floor and ceil), ResNet's 1×1 subsampling,
    /// overlapping 3×3 windows with padding, and a window wider than it is tall.
    const CASES: [Case; 7] = [
        (8, 8, [2, 2], [2, 2], [0, 0], false),
        (7, 7, [2, 2], [2, 2], [0, 0], false),
        (7, 9, [2, 2], [2, 2], [0, 0], true),
        (8, 8, [1, 1], [2, 2], [0, 0], false),
        (9, 10, [3, 3], [2, 2], [1, 1], false),
        (9, 10, [3, 3], [2, 2], [1, 1], true),
        (6, 11, [2, 3], [1, 2], [1, 1], false),
    ];

    fn burns(x: Tensor<4>, (_, _, kernel, stride, padding, ceil_mode): Case) -> Tensor<4> {
        let options = MaxPoolOptions::new(kernel)
            .with_stride(stride)
            .with_padding_pairs([(padding[0], padding[0]), (padding[1], padding[1])])
            .with_ceil_mode(ceil_mode);
        burn_max_pool2d(x, options)
    }

    #[test]
    fn the_host_max_pool_and_its_gradient_equal_burns() {
        let device = Device::flex().autodiff();
        for case in CASES {
            let (h, w, kernel, stride, padding, ceil_mode) = case;
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
            let expected = burns(x.clone(), case);
            let got = super::max_pool2d(x.clone(), kernel, stride, padding, ceil_mode);
            assert_eq!(got.dims(), expected.dims(), "{case:?}");
            let r = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
            let gradient = |host: bool| {
                let x = x.clone().require_grad();
                let out = if host {
                    super::max_pool2d(x.clone(), kernel, stride, padding, ceil_mode)
                } else {
                    burns(x.clone(), case)
                };
                x.grad(&(out * r.clone()).sum().backward()).expect("an input gradient")
            };
            let gap = relative_gap(got, expected);
            assert!(gap == 0.0, "{case:?}: output {gap}");
            let gap = relative_gap(gradient(true), gradient(false));
            assert!(gap <= 1e-6, "{case:?}: gradient {gap}");
        }
    }

    #[test]
    fn the_host_max_pool_runs_without_autodiff() {
        let device = Device::flex();
        let case = CASES[4];
        let x = Tensor::<4>::random([3, 2, case.0, case.1], Distribution::Normal(0.0, 1.0), &device);
        let gap = relative_gap(super::max_pool2d(x.clone(), case.2, case.3, case.4, case.5), burns(x, case));
        assert!(gap == 0.0, "{gap}");
    }
}
