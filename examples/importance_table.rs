//! The comparison table of importance methods on the real Fashion-MNIST network: for each
//! of gcn / l1 / l2 / bn_scale / similarity / random at 30%, 50% and 70% of the MACs
//! removed, held-out accuracy after BatchNorm recalibration and after a short fine-tune.
//!
//! `cargo run --release --example importance_table -- [FINE_TUNE_STEPS]` (default 100
//! steps of 64 images). Trains the base network for one epoch first and caches it in
//! `target/importance_table/`.

use burn::tensor::Device;
use sacp::exec::Executable;
use sacp::gcn::GcnConfig;
use sacp::importance::{Allocation, Method};
use sacp::prune::{Request, one_shot};
use sacp::train::{self, TrainConfig};
use sacp::{data, spec, weights};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let device = Device::flex();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = spec::load(&root.join("models/vgg8_fashion_mnist.toml"))?.network;
    let set = data::open("fashion-mnist:/usr/share/datasets/fashion-mnist", [1, 28, 28])?;
    let cache = root.join("target/importance_table/base.safetensors");
    let base = if cache.is_file() {
        weights::load(&cache)?
    } else {
        let config = TrainConfig {
            epochs: 1,
            heldout: 5000,
            ..TrainConfig::default()
        };
        let trained = train::train(&net, &weights::initialise(&net, 0), &set, &config, None, &device, None, &mut |_| {
            ControlFlow::Continue(())
        })?;
        weights::save(&trained.weights, &cache)?;
        trained.weights
    };
    let batcher = set.batcher();
    let (train_split, heldout) = set.split(5000, 0);
    let base_acc = train::evaluate(&Executable::new(&net, &base, &device), &heldout, &batcher, 500, 10, &device)?.top1;
    println!(
        "base held-out accuracy {:.2}%; fine-tune: {steps} steps of 64 images (SGD, cosine from 0.01)\n",
        100.0 * base_acc
    );
    println!("| method | MACs removed | params removed | recalibrated | fine-tuned | scoring time |");
    println!("|---|---|---|---|---|---|");
    let probe_positions: Vec<usize> = (0..256).collect();
    let probe = batcher.batch(&train_split, &probe_positions, None, &device)?.images;
    for target in [0.3, 0.5, 0.7] {
        for method in Method::ALL {
            let started = Instant::now();
            let request = Request {
                net: &net,
                weights: &base,
                method,
                target,
                allocation: Allocation::Global,
                max_ratio: 0.9,
                seed: 0,
                device: &device,
                probe: Some(probe.clone()),
                gcn: GcnConfig::default(),
                gcn_cache: None,
                gcn_rl: None,
            };
            let pruned = one_shot(&request)?;
            let scoring = started.elapsed().as_secs_f64();
            let exec = Executable::new(&pruned.network, &pruned.weights, &device);
            train::recalibrate(&exec, &train_split, &batcher, 50, 64, 0, &device)?;
            let recalibrated = train::evaluate(&exec, &heldout, &batcher, 500, 10, &device)?.top1;
            let tune = TrainConfig {
                epochs: 1,
                lr: 0.01,
                heldout: 5000,
                max_steps_per_epoch: Some(steps),
                ..TrainConfig::default()
            };
            let tuned = train::train(&pruned.network, &exec.weights(), &set, &tune, None, &device, None, &mut |_| {
                ControlFlow::Continue(())
            })?
            .weights;
            let fine = train::evaluate(
                &Executable::new(&pruned.network, &tuned, &device),
                &heldout,
                &batcher,
                500,
                10,
                &device,
            )?
            .top1;
            println!(
                "| {} | {:.1}% | {:.1}% | {:.2}% | {:.2}% | {:.1} s |",
                method.name(),
                100.0 * pruned.macs_reduction,
                100.0 * pruned.params_reduction,
                100.0 * recalibrated,
                100.0 * fine,
                scoring
            );
        }
    }
    Ok(())
}
