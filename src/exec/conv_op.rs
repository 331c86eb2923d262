//! The host convolution (`host_conv`'s kernels) as a burn operation on the CPU device, for
//! inference and for training: a backend extension implemented for burn-flex, and for burn's
//! autodiff over burn-flex with a backward pass of its own. burn-flex differentiates its conv
//! through a transposed convolution (the input gradient, a direct loop) and a second
//! convolution (the weight gradient); these are the same unfolding and matrix multiplies as
//! the forward pass.

use super::host::{elements, flex_tensor};
use super::host_conv::{self, ConvShape};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

/// Dense (ungrouped, undilated) 2-D convolution computed on the host.
#[backend_extension(Flex, Autodiff)]
pub trait HostConvOps: Backend {
    /// `x` `[N, C, H, W]` convolved with `weight` `[O, C, kh, kw]`, plus `bias` `[O]`, at
    /// `stride` with `padding` zeros on each side.
    fn host_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// The geometry of convolving `x` with `weight`.
fn geometry(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>, stride: [usize; 2], padding: [usize; 2]) -> (usize, ConvShape) {
    let [n, c, h, w] = x.shape().dims();
    let [_, _, kh, kw] = weight.shape().dims();
    let shape = ConvShape {
        input: [c, h, w],
        kernel: [kh, kw],
        stride,
        padding,
    };
    (n, shape)
}

impl HostConvOps for Flex {
    fn host_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let (n, shape) = geometry(&x, &weight, stride, padding);
        let out = host_conv::forward(&elements(&x), &elements(&weight), &elements(&bias), n, &shape);
        let [oh, ow] = shape.output();
        flex_tensor(out, [n, bias.shape().dims::<1>()[0], oh, ow])
    }
}

/// The backward step of `host_conv2d` under autodiff; its state is the checkpointed input
/// and weight with the stride and padding.
#[derive(Debug)]
struct HostConv2dBackward;

impl Backward<Flex, 3> for HostConv2dBackward {
    type State = (NodeId, NodeId, [usize; 2], [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, weight_id, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(x_id);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<Flex>>(weight_id);
        let (n, shape) = geometry(&x, &weight, stride, padding);
        let (input_grad, weight_grad, bias_grad) =
            host_conv::backward(&elements(&x), &elements(&weight), &elements(&grad), n, &shape, node_x.is_some());
        if let (Some(node), Some(values)) = (node_x, input_grad) {
            grads.register::<Flex>(node.id, flex_tensor(values, x.shape()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, flex_tensor(weight_grad, weight.shape()));
        }
        if let Some(node) = node_bias {
            let o = bias_grad.len();
            grads.register::<Flex>(node.id, flex_tensor(bias_grad, [o]));
        }
    }
}

impl<C: CheckpointStrategy> HostConvOps for Autodiff<Flex, C> {
    fn host_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let prep = HostConv2dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight), stride, padding);
                let out = Flex::host_conv2d(x.into_primitive(), weight.into_primitive(), bias.into_primitive(), stride, padding);
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::host_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
}

/// The dense convolution of a batch `x` (`[N, C, H, W]` on burn-flex, with or without
/// autodiff) with `weight` (`[O, C, kh, kw]`) and an optional bias, computed on the host.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    let bias = bias.unwrap_or_else(|| Tensor::zeros([weight.dims()[0]], &x.device()));
    Tensor::from_dispatch(<Dispatch as HostConvOps>::host_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride,
        padding,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::host::relative_gap;
    use burn::tensor::module::conv2d as burn_conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, Tensor};

    /// (batch, in, out, height, width, kernel, stride, padding, bias)
    type Case = (usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], bool);

    /// Geometries covering every path of the kernels.
    const CASES: [Case; 13] = [
        (2, 3, 4, 9, 7, [3, 3], [1, 1], [1, 1], true),
        (2, 5, 3, 8, 8, [3, 3], [2, 2], [1, 1], false),
        (1, 4, 6, 11, 10, [5, 3], [2, 1], [2, 0], true),
        (3, 8, 8, 6, 6, [1, 1], [1, 1], [0, 0], false),
        (1, 2, 3, 7, 7, [7, 7], [2, 2], [3, 3], true),
        (2, 3, 2, 5, 5, [3, 3], [3, 3], [0, 0], true),
        (1, 3, 4, 4, 4, [3, 3], [1, 1], [3, 3], false),
        // Stride 1 with the output as wide as the input (the shifted-plane copy): taller
        // and shorter outputs, a one-pixel-wide image.
        (2, 3, 5, 9, 6, [5, 3], [1, 1], [0, 1], true),
        (1, 2, 3, 5, 7, [3, 5], [1, 1], [2, 2], false),
        (2, 2, 2, 6, 1, [3, 1], [1, 1], [1, 0], true),
        // Maps of 64 pixels and more go image by image, smaller ones as one batch.
        (3, 4, 5, 8, 8, [3, 3], [1, 1], [1, 1], true),
        (3, 6, 4, 4, 4, [3, 3], [1, 1], [1, 1], true),
        (2, 5, 7, 2, 2, [3, 3], [1, 1], [1, 1], false),
    ];

    /// A case's random input, weight and bias (when it has one) on `device`.
    fn inputs(&(n, c, o, h, w, kernel, _, _, bias): &Case, device: &Device) -> (Tensor<4>, Tensor<4>, Option<Tensor<1>>) {
        let x = Tensor::<4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), device);
        let weight = Tensor::<4>::random([o, c, kernel[0], kernel[1]], Distribution::Normal(0.0, 1.0), device);
        let b = bias.then(|| Tensor::<1>::random([o], Distribution::Normal(0.0, 1.0), device));
        (x, weight, b)
    }

    #[test]
    fn the_host_convolution_equals_burns() {
        let device = Device::flex();
        for case in CASES {
            let (x, weight, b) = inputs(&case, &device);
            let (_, _, _, _, _, kernel, stride, padding, _) = case;
            let expected = burn_conv2d(x.clone(), weight.clone(), b.clone(), ConvOptions::new(stride, padding, [1, 1], 1));
            let gap = relative_gap(super::conv2d(x, weight, b, stride, padding), expected);
            assert!(gap <= 1e-5, "kernel {kernel:?} stride {stride:?} padding {padding:?}: {gap}");
        }
    }

    #[test]
    fn the_host_convolutions_gradients_equal_burns() {
        let device = Device::flex().autodiff();
        for case in CASES {
            let (x, weight, b) = inputs(&case, &device);
            let (n, _, o, h, w, kernel, stride, padding, _) = case;
            // The same random output weighting in both: the loss is Σ out · r.
            let [oh, ow] = [
                (h + 2 * padding[0] - kernel[0]) / stride[0] + 1,
                (w + 2 * padding[1] - kernel[1]) / stride[1] + 1,
            ];
            let r = Tensor::<4>::random([n, o, oh, ow], Distribution::Normal(0.0, 1.0), &device);
            let gradients = |host: bool| {
                let (x, weight) = (x.clone().require_grad(), weight.clone().require_grad());
                let b = b.clone().map(|b| b.require_grad());
                let out = if host {
                    super::conv2d(x.clone(), weight.clone(), b.clone(), stride, padding)
                } else {
                    burn_conv2d(x.clone(), weight.clone(), b.clone(), ConvOptions::new(stride, padding, [1, 1], 1))
                };
                let grads = (out * r.clone()).sum().backward();
                let bias_grad = b.map(|b| b.grad(&grads).expect("a bias gradient"));
                (
                    x.grad(&grads).expect("an input gradient"),
                    weight.grad(&grads).expect("a weight gradient"),
                    bias_grad,
                )
            };
            let ((x_host, w_host, b_host), (x_burn, w_burn, b_burn)) = (gradients(true), gradients(false));
            let what = format!("kernel {kernel:?} stride {stride:?} padding {padding:?}");
            let gap = relative_gap(x_host, x_burn);
            assert!(gap <= 1e-5, "{what}: input gradient {gap}");
            let gap = relative_gap(w_host, w_burn);
            assert!(gap <= 1e-5, "{what}: weight gradient {gap}");
            if let (Some(host), Some(burn)) = (b_host, b_burn) {
                let gap = relative_gap(host, burn);
                assert!(gap <= 1e-5, "{what}: bias gradient {gap}");
            }
        }
    }

    #[test]
    fn an_input_that_needs_no_gradient_gets_none() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let weight = Tensor::<4>::random([4, 3, 3, 3], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let grads = super::conv2d(x.clone(), weight.clone(), None, [1, 1], [1, 1]).sum().backward();
        assert!(x.grad(&grads).is_none());
        let expected = burn_conv2d(x, weight.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1))
            .sum()
            .backward();
        let gap = relative_gap(weight.grad(&grads).unwrap(), weight.grad(&expected).unwrap());
        assert!(gap <= 1e-5, "weight gradient {gap}");
    }
}
