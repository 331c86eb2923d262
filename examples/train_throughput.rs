//! Training throughput (images/s) on the CPU backend for the 28×28 zoo network (VGG-8) and
//! ResNet-56 (3×32×32), batch 64, SGD with Nesterov momentum, on 1 and 2 threads (a rayon
//! pool of that size: burn-flex's kernels run on the pool they are called from).
//! `benches/speed.sh` runs this and the same networks in PyTorch on the same machine; each
//! result is a line `RESULT train NETWORK THREADS IMAGES_PER_SEC`.
//! Run: `cargo run --example train_throughput [NETWORK [THREADS [STEPS]]]` (both networks
//! and both thread counts by default; one of them to profile it alone; STEPS timed steps
//! instead of the default 40 for VGG-8 and 8 for ResNet-56, the same as the PyTorch side).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sacp::exec::{Executable, NormMode};
use sacp::train::Sgd;
use sacp::{spec, weights};
use std::path::Path;
use std::time::Instant;

fn main() {
    sacp::exec::keep_freed_memory();
    let device = Device::flex().autodiff();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let networks = [("vgg8", "vgg8_fashion_mnist.toml", 40), ("resnet56", "resnet56_cifar10.toml", 8)];
    let steps_given: Option<usize> = args.get(2).map(|s| s.parse().expect("STEPS is a whole number"));
    for (name, file, default_steps) in networks.into_iter().filter(|(name, ..)| args.first().is_none_or(|a| a == name)) {
        let net = spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(file))
            .unwrap()
            .network;
        let steps = steps_given.unwrap_or(default_steps);
        for threads in [1, 2].into_iter().filter(|t| args.get(1).is_none_or(|a| *a == t.to_string())) {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut exec = Executable::new(&net, &weights::initialise(&net, 0), &device).train();
                let dims = net.shape(net.input()).dims();
                let x = Tensor::<4>::random([64, dims[0], dims[1], dims[2]], burn::tensor::Distribution::Default, &device);
                let labels: Tensor<1, Int> =
                    Tensor::from_data(TensorData::new((0..64).map(|i| i % 10).collect::<Vec<i64>>(), [64]), &device);
                let mut sgd = Sgd::new(0.9, true, 5e-4);
                let mut step = |exec: Executable| {
                    let logits = exec.forward_with(x.clone(), NormMode::Train { momentum: 0.1 });
                    let log_p = burn::tensor::activation::log_softmax(logits, 1);
                    let loss = log_p.gather(1, labels.clone().reshape([64, 1])).neg().mean();
                    let grads = loss.backward();
                    exec.map(&mut sgd.step(&grads, 0.01))
                };
                exec = step(exec); // warm-up
                let start = Instant::now();
                for _ in 0..steps {
                    exec = step(exec);
                }
                let seconds = start.elapsed().as_secs_f64();
                println!("RESULT train {name} {threads} {:.1}", 64.0 * steps as f64 / seconds);
            });
        }
    }
}
