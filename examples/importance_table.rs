//! The comparison table of importance methods on the real Fashion-MNIST network: for each
//! method at each share of the MACs removed, held-out accuracy after BatchNorm
//! recalibration and after the same short fine-tune, and the time scoring took.
//!
//! `importance_table [FINE_TUNE_STEPS] [METHODS] [TARGETS] [ALLOCATION] [MAGNITUDE_PRIOR] [EPISODES]`, e.g.
//! `importance_table 100 gcn-rl,gcn,l1,similarity,random 0.5,0.7 global` (the defaults;
//! `all` for every method; `uniform` to give every group the same pruning rate, so that
//! only the choice of channels inside a group differs between methods; MAGNITUDE_PRIOR is
//! gcn-rl's `magnitude_prior`, default 1; EPISODES its `episodes`, default 96).
//! `benches/importance.sh` runs it. Trains the base network for one epoch first and caches
//! it in `target/importance_table/`. gcn-rl's reward is measured on the first 256 held-out
//! images; the table's accuracies are on the other 4 744, which steer nothing.

use burn::tensor::Device;
use clap::ValueEnum;
use sacp::channels::Allocation;
use sacp::deps::Dependencies;
use sacp::exec::Executable;
use sacp::gcn::GcnConfig;
use sacp::gcn_rl::{GcnRlConfig, Setup};
use sacp::importance::Method;
use sacp::pipeline::Workbench;
use sacp::prune::{Request, one_shot};
use sacp::train::{self, TrainConfig};
use sacp::{data, spec, weights};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let steps: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let methods: Vec<Method> = match args.get(2).map(String::as_str) {
        None => vec![Method::GcnRl, Method::Gcn, Method::L1, Method::Similarity, Method::Random],
        Some("all") => Method::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|m| Method::from_str(m, true).map_err(|e| anyhow::anyhow!(e)))
            .collect::<Result<_, _>>()?,
    };
    let targets: Vec<f64> = match args.get(3) {
        None => vec![0.5, 0.7],
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
    };
    let allocation = match args.get(4) {
        None => Allocation::Global,
        Some(a) => Allocation::from_str(a, true).map_err(|e| anyhow::anyhow!(e))?,
    };
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
    let (train_split, heldout_all) = set.split(5000, 0);
    let (mut reward_images, mut heldout) = (heldout_all.clone(), heldout_all);
    reward_images.indices.truncate(256);
    heldout.indices.drain(..256);
    let deps = Dependencies::analyse(&net);
    let rl = GcnRlConfig {
        magnitude_prior: args
            .get(5)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(GcnRlConfig::default().magnitude_prior),
        episodes: args
            .get(6)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(GcnRlConfig::default().episodes),
        ..GcnRlConfig::default()
    };
    let bench = Workbench::new(&net, &base, &deps, &set, 5000, 64, 0, &device);
    let reward = bench.keep_evaluator(&reward_images, rl.recalibration_batches)?;
    let accuracy = |keep: &[Vec<usize>]| Ok(sacp::pipeline::reward_accuracy(reward.accuracy(keep)));
    let base_acc = train::evaluate(&Executable::new(&net, &base, &device), &heldout, &batcher, 500, 10, &device)?.top1;
    println!(
        "base held-out accuracy {:.2}%; {allocation:?} allocation; fine-tune: {steps} steps of 64 images (SGD, cosine from 0.01)\n",
        100.0 * base_acc
    );
    println!("| method | MACs removed | params removed | recalibrated | fine-tuned | scoring time |");
    println!("|---|---|---|---|---|---|");
    let probe_positions: Vec<usize> = (0..256).collect();
    let probe = batcher.batch(&train_split, &probe_positions, None, &device)?.images;
    for &target in &targets {
        for &method in &methods {
            let started = Instant::now();
            let request = Request {
                net: &net,
                weights: &base,
                method,
                target,
                allocation,
                max_ratio: 0.9,
                round_to: 1,
                seed: 0,
                device: &device,
                probe: Some(probe.clone()),
                gcn: GcnConfig::default(),
                gcn_cache: None,
                gcn_rl: Some(Setup {
                    config: &rl,
                    target,
                    accuracy: &accuracy,
                    progress: None,
                }),
            };
            let pruned = one_shot(&request)?;
            let scoring = started.elapsed().as_secs_f64();
            let exec = Executable::new(&pruned.network, &pruned.weights, &device);
            train::recalibrate(&exec, &train::recalibration_batches(&train_split, &batcher, 50, 64, 0, &device)?);
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
