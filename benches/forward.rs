//! Forward latency per zoo model on the CPU backend, original vs uniformly 50%-pruned
//! (every prunable group keeps half its channels). Run with `cargo bench --bench forward`;
//! the MAC ratio of each pair is printed next to it so speed-up and MAC reduction can be
//! compared.

use burn::tensor::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use sacp::deps::Dependencies;
use sacp::exec::{Executable, to_vec};
use sacp::{spec, surgery, weights};
use std::path::Path;

const MODELS: &[(&str, usize)] = &[
    ("vgg8_fashion_mnist.toml", 32),
    ("vgg16_cifar10.toml", 8),
    ("resnet20_cifar10.toml", 8),
    ("resnet56_cifar10.toml", 8),
    ("resnet110_cifar10.toml", 8),
    ("resnet18_imagenet.toml", 1),
    ("resnet50_imagenet.toml", 1),
    ("mobilenetv2_imagenet.toml", 1),
];

fn forward(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for &(file, batch) in MODELS {
        let spec = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file)).unwrap();
        let net = spec.network;
        let w = weights::initialise(&net, 0);
        let deps = Dependencies::analyse(&net);
        let keep: Vec<Vec<usize>> = deps
            .groups
            .iter()
            .map(|g| (0..if g.prunable() { g.size().div_ceil(2) } else { g.size() }).collect())
            .collect();
        let (small, small_w) = surgery::prune(&net, &w, &deps, &keep).unwrap();
        let ratio = net.total_cost().macs as f64 / small.total_cost().macs as f64;
        eprintln!(
            "{file}: MACs {} → {} ({ratio:.2}× fewer)",
            net.total_cost().macs,
            small.total_cost().macs
        );
        let dims = net.shape(net.input()).dims();
        let x = Tensor::<4>::zeros([batch, dims[0], dims[1], dims[2]], &device);
        let name = file.trim_end_matches(".toml");
        for (label, n, wt) in [("original", &net, &w), ("pruned50", &small, &small_w)] {
            let exec = Executable::new(n, wt, &device);
            group.bench_function(format!("{name}/{label}/batch{batch}"), |b| {
                b.iter(|| to_vec(exec.forward(x.clone())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
