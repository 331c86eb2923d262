//! Physical pruning equals masking: for every zoo model and many random keep-sets, the
//! pruned network's output equals the original's with the removed channels zeroed where
//! they are made (conv/linear rows, BatchNorm affine terms; eval-mode BatchNorm, random
//! input), so they carry zeros through every layer.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sacp::deps::Dependencies;
use sacp::exec::{Executable, NormMode, to_vec};
use sacp::surgery;

fn check_model(file: &str, input: Option<[usize; 3]>, keep_sets: usize) {
    check_network(file, &zoo(file, input), keep_sets);
}

fn check_network(file: &str, net: &sacp::ir::Network, keep_sets: usize) {
    let net = net.clone();
    let device = Device::flex();
    let deps = Dependencies::analyse(&net);
    let (x, shape) = random_input(&net, 2, 11);
    let x: Tensor<4> = Tensor::from_data(TensorData::new(x, shape), &device);
    // Random weights, with BatchNorm statistics set from this input's batch so that deep
    // ResNets keep outputs of order one and an absolute tolerance means something.
    let calibrating = Executable::new(&net, &random_weights(&net, 7), &device);
    calibrating.forward_with(x.clone(), NormMode::Train { momentum: 1.0 });
    let weights = calibrating.weights();
    weights.check(&net, "exported").unwrap();
    let original = Executable::new(&net, &weights, &device);
    let full = to_vec(original.forward(x.clone()));
    let mut rng = StdRng::seed_from_u64(3);
    for round in 0..keep_sets {
        // A keep-set that removes something (small networks draw "keep all" now and then).
        let keep = std::iter::repeat_with(|| random_keep(&deps, &mut rng))
            .find(|keep| *keep != surgery::keep_all(&deps))
            .unwrap();
        let (pruned_net, pruned_weights) = surgery::prune(&net, &weights, &deps, &keep).unwrap();
        pruned_weights.check(&pruned_net, "pruned").unwrap();
        assert_eq!(
            pruned_weights.parameter_count(),
            pruned_net.total_cost().params,
            "{file}: weights and IR disagree on the parameter count"
        );
        assert!(
            pruned_net.total_cost().macs < net.total_cost().macs,
            "{file}: pruning must remove MACs"
        );

        let pruned = to_vec(Executable::new(&pruned_net, &pruned_weights, &device).forward(x.clone()));
        let masked_net = Executable::new(&net, &masked_weights(&net, &deps, &keep, &weights), &device);
        let masked = to_vec(masked_net.forward(x.clone()));
        let diff = max_abs_diff(&pruned, &masked);
        let scale = masked.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        eprintln!("{file} round {round}: max |output| {scale}, diff {diff}");
        assert!(diff <= 1e-4, "{file} round {round}: pruned and masked outputs differ by {diff}");
        assert!(
            max_abs_diff(&full, &masked) > 1e-3,
            "{file} round {round}: masking changed nothing, the check would be vacuous"
        );
    }
}

#[test]
fn small_vgg_on_28x28() {
    check_model("vgg8_fashion_mnist.toml", None, 12);
}

#[test]
fn vgg16_cifar() {
    check_model("vgg16_cifar10.toml", None, 3);
}

#[test]
fn resnet_cifar_with_zero_pad_shortcuts() {
    check_model("resnet20_cifar10.toml", None, 6);
    check_model("resnet56_cifar10.toml", None, 2);
    check_model("resnet110_cifar10.toml", None, 1);
}

#[test]
fn resnet_imagenet_with_projection_shortcuts() {
    check_model("resnet18_imagenet.toml", Some([3, 64, 64]), 2);
    check_model("resnet50_imagenet.toml", Some([3, 64, 64]), 2);
}

#[test]
fn mobilenet_v2_with_depthwise_convs() {
    check_model("mobilenetv2_imagenet.toml", Some([3, 64, 64]), 3);
}

#[test]
fn shufflenet_unit_with_grouped_convs_and_a_shuffle() {
    // Every group of a grouped conv keeps as many channels as the others, at different
    // positions: each output row reads its own group's kept inputs.
    let net = sacp::spec::load(&root().join("tests/common/shufflenet_unit.toml")).unwrap().network;
    check_network("shufflenet_unit.toml", &net, 8);
}

#[test]
fn keeping_everything_is_the_identity() {
    let net = zoo("resnet20_cifar10.toml", None);
    let deps = Dependencies::analyse(&net);
    let weights = random_weights(&net, 1);
    let (pruned_net, pruned_weights) = surgery::prune(&net, &weights, &deps, &surgery::keep_all(&deps)).unwrap();
    assert_eq!(pruned_weights, weights);
    assert_eq!(pruned_net.total_cost(), net.total_cost());
}

#[test]
fn invalid_keep_sets_are_refused() {
    let net = zoo("resnet20_cifar10.toml", None);
    let deps = Dependencies::analyse(&net);
    let weights = random_weights(&net, 1);
    let mut keep = surgery::keep_all(&deps);
    let pinned = deps.groups.iter().position(|g| !g.prunable()).unwrap();
    keep[pinned].pop();
    let e = surgery::prune(&net, &weights, &deps, &keep).unwrap_err().to_string();
    assert!(e.contains("may not be pruned"), "{e}");
    let mut keep = surgery::keep_all(&deps);
    let prunable = deps.groups.iter().position(|g| g.prunable()).unwrap();
    keep[prunable] = vec![];
    let e = surgery::prune(&net, &weights, &deps, &keep).unwrap_err().to_string();
    assert!(e.contains("non-empty"), "{e}");
    keep[prunable] = vec![2, 1];
    assert!(surgery::prune(&net, &weights, &deps, &keep).is_err());
    assert!(surgery::prune(&net, &weights, &deps, &keep[1..]).is_err());
}
