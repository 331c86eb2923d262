//! The zoo reproduces the parameter and MAC counts the pruning literature reports
//! (sources in README.md), within 2%.

use sacp::models::{ZooConfig, build};
use sacp::spec;
use std::path::Path;

fn within(found: u64, reference: f64, what: &str) {
    let error = (found as f64 - reference).abs() / reference;
    assert!(
        error <= 0.02,
        "{what}: {found} is {:.2}% away from the reference {reference}",
        error * 100.0
    );
}

fn check(spec_file: &str, params: f64, macs: f64) {
    let spec = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(spec_file)).unwrap();
    let total = spec.network.total_cost();
    within(total.params, params, &format!("{spec_file} params"));
    within(total.macs, macs, &format!("{spec_file} MACs"));
}

#[test]
fn vgg16_cifar10() {
    check("vgg16_cifar10.toml", 14.98e6, 313.7e6);
}

#[test]
fn resnet_cifar10() {
    check("resnet20_cifar10.toml", 0.27e6, 41.0e6);
    check("resnet56_cifar10.toml", 0.85e6, 125.5e6);
    check("resnet110_cifar10.toml", 1.73e6, 252.9e6);
}

#[test]
fn resnet_imagenet() {
    check("resnet18_imagenet.toml", 11.69e6, 1.82e9);
    check("resnet50_imagenet.toml", 25.56e6, 4.11e9);
}

#[test]
fn mobilenet_v2_imagenet() {
    check("mobilenetv2_imagenet.toml", 3.50e6, 300.0e6);
}

#[test]
fn small_net_has_eight_weight_layers() {
    let spec = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/vgg8_fashion_mnist.toml")).unwrap();
    let net = &spec.network;
    let weighted = net
        .nodes()
        .filter(|&n| matches!(net.node(n).op.kind(), "conv2d" | "linear"))
        .count();
    assert_eq!(weighted, 8);
    assert_eq!(net.shape(net.output()).channels(), 10);
}

#[test]
fn unknown_depth_is_refused() {
    let err = build(&ZooConfig {
        arch: "resnet".into(),
        depth: Some(57),
        num_classes: 10,
        input: [3, 32, 32],
    })
    .unwrap_err();
    assert!(err.to_string().contains("no depth 57"), "{err}");
}
