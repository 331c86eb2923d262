//! The executor's BatchNorm modes and its agreement across backends.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use sacp::exec::{Backend, Executable, NormMode, to_vec};
use sacp::ir::{NetworkBuilder, Op};

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
    // With momentum 1 the running statistics become this batch's (variance unbiased, as
    // PyTorch keeps it): eval now nearly equals train.
    let after = to_vec(exec.forward(x));
    let (gap_before, gap_after) = (max_abs_diff(&before, &train), max_abs_diff(&after, &train));
    assert!(
        gap_after < 0.1 * gap_before,
        "eval after a momentum-1 pass is {gap_after} from train, {gap_before} before"
    );
}

#[test]
fn running_statistics_are_the_batch_mean_and_unbiased_variance() {
    let device = Device::flex();
    let mut b = NetworkBuilder::new();
    let x = b
        .add(
            "input",
            Op::Input {
                channels: 2,
                height: 1,
                width: 2,
            },
            &[],
        )
        .unwrap();
    let bn = b.add("bn", Op::BatchNorm { eps: 1e-5 }, &[x]).unwrap();
    b.add("output", Op::Output, &[bn]).unwrap();
    let net = b.finish().unwrap();
    let exec = Executable::new(&net, &sacp::weights::initialise(&net, 0), &device);
    // Channel 0 sees 1, 2, 3, 6 over the batch of two; channel 1 sees 0, 0, 4, 4.
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(vec![1.0f32, 2.0, 0.0, 0.0, 3.0, 6.0, 4.0, 4.0], [2, 2, 1, 2]),
        &device,
    );
    let out = to_vec(exec.forward_with(x, NormMode::Train { momentum: 1.0 }));
    let w = exec.weights();
    assert_eq!(w.get("bn.running_mean").unwrap().data, vec![3.0, 2.0]);
    let var = &w.get("bn.running_var").unwrap().data;
    assert!((var[0] - 14.0 / 3.0).abs() < 1e-5 && (var[1] - 16.0 / 3.0).abs() < 1e-5, "{var:?}");
    // The train pass itself normalises with the biased variance: channel 1 becomes ±1.
    assert!((out[2] + 1.0).abs() < 1e-3 && (out[6] - 1.0).abs() < 1e-3, "{out:?}");
}

/// The wgpu backend (a GPU, or lavapipe in CI) computes what the CPU backend computes, in
/// eval and in train mode.
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
        // Training-mode BatchNorm (sacp's host kernel on the CPU, burn's on wgpu): the same
        // outputs and running statistics, over maps and, in VGG-8's classifier, vectors.
        let train = |device: &Device| {
            let exec = Executable::new(&net, &w, device);
            let out = to_vec(exec.forward_with(input(&net, device), NormMode::Train { momentum: 0.5 }));
            (out, exec.weights())
        };
        let ((a, wa), (b, wb)) = (train(&cpu), train(&wgpu));
        let diff = max_abs_diff(&a, &b);
        assert!(diff <= 1e-3, "{file}: train-mode outputs differ by {diff}");
        let mut statistics = 0;
        for name in wa
            .tensors
            .keys()
            .filter(|n| n.ends_with("running_mean") || n.ends_with("running_var"))
        {
            let (x, y) = (&wa.get(name).unwrap().data, &wb.get(name).unwrap().data);
            let scale = y.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(x, y) / scale;
            assert!(diff <= 1e-4, "{file}: {name} differs by {diff} (relative)");
            statistics += 1;
        }
        assert!(statistics >= 2 * 7, "{file}: only {statistics} running statistics compared");
    }
}

#[test]
fn folding_batchnorm_into_the_convs_keeps_the_output() {
    let device = Device::flex();
    // The folded bias `(b − mean)·s + β` cancels against the scaled conv output where a
    // channel's |mean| is large against its spread, so folding loses a few ulps there (as
    // PyTorch's and ONNX Runtime's folds do): ≤ 1e-5 on VGG-8 and ResNet-20 (measured 4e-6
    // and 2e-7), 1.2e-5 measured over MobileNetV2's 52 BatchNorm layers.
    for (file, input_shape, tolerance) in [
        ("resnet20_cifar10.toml", None, 1e-5),
        ("mobilenetv2_imagenet.toml", Some([3, 64, 64]), 5e-5),
        ("vgg8_fashion_mnist.toml", None, 1e-5),
    ] {
        let net = zoo(file, input_shape);
        let exec = Executable::new(&net, &random_weights(&net, 4), &device);
        let x = input(&net, &device);
        // Running statistics of this batch, as a trained network's are of its data (random
        // ones let deep networks' activations, and float rounding, grow layer by layer).
        let (calibration, shape) = random_input(&net, 16, 10);
        exec.forward_with(
            Tensor::from_data(TensorData::new(calibration, shape), &device),
            NormMode::Train { momentum: 1.0 },
        );
        let plain = to_vec(exec.forward(x.clone()));
        let folded = exec.folded();
        let out = to_vec(folded.forward(x));
        let scale = plain.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&plain, &out) / scale;
        assert!(diff <= tolerance, "{file}: folded vs unfolded, relative {diff:.2e}");
        // Folding changed the layers (a vacuous fold would pass the comparison too).
        let after_conv = net
            .nodes()
            .filter(|&n| matches!(net.node(n).op, Op::BatchNorm { .. }) && matches!(net.node(net.inputs(n)[0]).op, Op::Conv2d { .. }))
            .count();
        assert!(after_conv > 0);
        assert_eq!(folded.folded_count(), after_conv, "{file}: every BatchNorm after a conv is folded");
    }
}
