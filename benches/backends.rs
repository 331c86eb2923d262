//! Which burn CPU backend sacp should use: forward latency of the same networks on
//! burn-flex and burn-ndarray. Run with `cargo bench --features ndarray --bench backends`.

use burn::tensor::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use sacp::exec::{Executable, to_vec};
use sacp::{spec, weights};
use std::path::Path;

fn backends(c: &mut Criterion) {
    #[allow(deprecated)] // burn-ndarray is deprecated; measuring it is the point here
    let devices = [("flex", Device::flex()), ("ndarray", Device::ndarray())];
    let mut group = c.benchmark_group("cpu_backends");
    group.sample_size(10);
    for file in ["vgg8_fashion_mnist.toml", "resnet20_cifar10.toml"] {
        let net = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file))
            .unwrap()
            .network;
        let w = weights::initialise(&net, 0);
        let dims = net.shape(net.input()).dims();
        for (name, device) in &devices {
            let exec = Executable::new(&net, &w, device);
            let x = Tensor::<4>::zeros([64, dims[0], dims[1], dims[2]], device);
            group.bench_function(format!("{}/{name}/batch64", file.trim_end_matches(".toml")), |b| {
                b.iter(|| to_vec(exec.forward(x.clone())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, backends);
criterion_main!(benches);
