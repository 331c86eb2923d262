//! The executor's BatchNorm modes and its agreement across backends.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use sacp::exec::{Backend, Executable, NormMode, to_vec};

fn input(net: &sacp::ir::Network, device: &Device) -> Tensor<4> {
    let (x, shape) = random_input(net, 4, 9);
    Tensor::from_data(TensorData::new(x, shape), device)
}

#[test]
fn train_mode_uses_batch_statistics_and_updates_running_ones() {
    let device = Device::flex();
    let net = zoo("resnet20_cifar10.toml", None);
    let exec = Executable::new(&net, &random_weights(&net, 2), &device);
    let x = input(&net, &device);
    let before = to_vec(exec.forward(x.clone()));
    let train = to_vec(exec.forward_with(x.clone(), NormMode::Train { momentum: 1.0 }));
    assert!(
        max_abs_diff(&before, &train) > 1e-2,
        "batch statistics must differ from the random running ones"
    );
    // With momentum 1 the running statistics become this batch's: eval now equals train.
    let after = to_vec(exec.forward(x));
    let diff = max_abs_diff(&after, &train);
    assert!(diff < 1e-3, "eval after a momentum-1 pass differs from the train pass by {diff}");
}

/// The wgpu backend (a GPU, or lavapipe in CI) computes what the CPU backend computes.
/// No adapter is a failure, not a skip: CI installs mesa-vulkan-drivers.
#[test]
fn cpu_and_wgpu_agree() {
    let wgpu = Backend::Wgpu.device().expect("a wgpu adapter (CI installs mesa-vulkan-drivers)");
    let cpu = Backend::Cpu.device().unwrap();
    for file in ["vgg8_fashion_mnist.toml", "resnet20_cifar10.toml"] {
        let net = zoo(file, None);
        let w = random_weights(&net, 4);
        let a = to_vec(Executable::new(&net, &w, &cpu).forward(input(&net, &cpu)));
        let b = to_vec(Executable::new(&net, &w, &wgpu).forward(input(&net, &wgpu)));
        let diff = max_abs_diff(&a, &b);
        assert!(diff <= 1e-3, "{file}: cpu and wgpu differ by {diff}");
    }
}
