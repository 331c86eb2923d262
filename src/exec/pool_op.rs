//! 2-D max pooling on the host as a burn operation for burn-flex, with and without autodiff.
//! burn-flex pools through its 3-D kernel and computes the index of every maximum even when
//! only the values are wanted: on the 28×28 VGG-8 that was a fifth of a candidate's
//! evaluation. Here each output is the maximum of its window read straight from the NCHW
//! planes; the backward pass finds the maximum again (the first of equal ones in the
//! window) and adds the output gradient to it, so nothing is stored.

use super::host::{elements, flex_tensor};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

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

    /// Where in `plane` output `(oy, ox)`'s maximum is (the first of equal maxima, row by
    /// row), and its value; `None` for a window wholly in the padding.
    fn argmax(&self, plane: &[f32], oy: usize, ox: usize) -> Option<(usize, f32)> {
        let w = self.input[1];
        let columns = self.span(1, ox);
        let mut best: Option<(usize, f32)> = None;
        for y in self.span(0, oy) {
            for (i, &v) in plane[y * w..][columns.clone()].iter().enumerate() {
                if best.is_none_or(|(_, b)| v > b) {
                    best = Some((y * w + columns.start + i, v));
                }
            }
        }
        best
    }
}

/// The maxima of every `H × W` plane of `x` (planes one after another): `planes · OH · OW`.
/// Per output row, the elementwise maximum of its window's input rows first (a pass the
/// compiler vectorises), then of each window's columns in that row.
fn forward(x: &[f32], window: &Window) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (window.input, window.output);
    let mut out = vec![0.0f32; x.len() / (h * w) * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .with_min_len(8)
        .for_each_init(
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

/// The gradient of `x` given the gradient of the pooled output: each output's gradient
/// added at its window's maximum.
fn backward(x: &[f32], grad: &[f32], window: &Window) -> Vec<f32> {
    let ([h, w], [oh, ow]) = (window.input, window.output);
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w).zip(grad.par_chunks(oh * ow)))
        .with_min_len(8)
        .for_each(|(dx, (plane, g))| {
            for (oy, row) in g.chunks_exact(ow).enumerate() {
                for (ox, &gv) in row.iter().enumerate() {
                    if let Some((at, _)) = window.argmax(plane, oy, ox) {
                        dx[at] += gv;
                    }
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

/// The backward step of `host_max_pool2d` under autodiff; its state is the checkpointed
/// input and the pooling's options.
#[derive(Debug)]
struct HostMaxPoolBackward;

impl Backward<Flex, 1> for HostMaxPoolBackward {
    type State = (NodeId, [usize; 2], [usize; 2], [usize; 2], bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, kernel, stride, padding, ceil_mode) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(x_id);
        if let Some(node) = node_x {
            let (_, window) = geometry(&x, kernel, stride, padding, ceil_mode);
            let dx = backward(&elements(&x), &elements(&grad), &window);
            grads.register::<Flex>(node.id, flex_tensor(dx, x.shape()));
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
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), kernel, stride, padding, ceil_mode);
                prep.finish(state, Flex::host_max_pool2d(x.into_primitive(), kernel, stride, padding, ceil_mode))
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
