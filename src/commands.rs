//! The `train` and `eval` commands.

use crate::load_weights;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sacp::data;
use sacp::exec::{Backend, Executable};
use sacp::train::{self, Checkpointing, Distill, Schedule, TrainConfig};
use sacp::{spec, weights};
use std::path::PathBuf;

/// Flags of `sacp train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Model spec (TOML).
    model: PathBuf,
    /// Data set as KIND:PATH, e.g. fashion-mnist:/usr/share/datasets/fashion-mnist.
    #[arg(long)]
    data: String,
    /// Passes over the training split.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Output folder: weights.safetensors, metrics.json, checkpoint.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Initial weights (fine-tuning); defaults to the spec's `weights`, else seeded random.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Continue from OUT/checkpoint.safetensors, written after every finished epoch.
    #[arg(long)]
    resume: bool,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Base learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// SGD momentum (0 for plain SGD).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Use classical instead of Nesterov momentum.
    #[arg(long)]
    no_nesterov: bool,
    /// L2 weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Learning-rate schedule: cosine, step or constant.
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// For --schedule step: epochs between decays.
    #[arg(long, default_value_t = 30)]
    step_every: usize,
    /// For --schedule step: decay factor.
    #[arg(long, default_value_t = 0.1)]
    step_gamma: f64,
    /// Label smoothing ε in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Distil from this teacher model spec (its weights: --teacher-weights or the spec's).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Weights of the teacher.
    #[arg(long)]
    teacher_weights: Option<PathBuf>,
    /// Distillation temperature.
    #[arg(long, default_value_t = 4.0)]
    temperature: f64,
    /// Weight of the distillation term.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Images of the training set kept out as the held-out split.
    #[arg(long, default_value_t = 5000)]
    heldout: usize,
    /// Seed of initialisation, shuffling, augmentation and the held-out split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
}

fn schedule(args: &TrainArgs) -> Result<Schedule> {
    Ok(match args.schedule.as_str() {
        "cosine" => Schedule::Cosine,
        "constant" => Schedule::Constant,
        "step" => Schedule::Step {
            every: args.step_every,
            gamma: args.step_gamma,
        },
        other => bail!("--schedule {other}: valid values are cosine, step, constant"),
    })
}

pub fn train(args: TrainArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.label_smoothing) {
        bail!("--label-smoothing {} must be in [0, 1)", args.label_smoothing);
    }
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be positive");
    }
    let spec = spec::load(&args.model)?;
    let net = &spec.network;
    let initial = load_weights(&spec, args.weights.clone())?.unwrap_or_else(|| weights::initialise(net, args.seed));
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let data = data::open(&args.data, input)?;
    let outputs = net.shape(net.output()).channels();
    if outputs != data.num_classes {
        bail!(
            "{} has {outputs} outputs but {} has {} classes",
            args.model.display(),
            args.data,
            data.num_classes
        );
    }
    let device = args.backend.device()?;
    let distill = match &args.teacher {
        None => None,
        Some(path) => {
            let teacher = spec::load(path)?;
            let w = load_weights(&teacher, args.teacher_weights.clone())?
                .with_context(|| format!("{}: the teacher needs weights (--teacher-weights)", path.display()))?;
            Some(Distill {
                teacher: Executable::new(&teacher.network, &w, &device),
                temperature: args.temperature,
                alpha: args.alpha,
            })
        }
    };
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        nesterov: !args.no_nesterov,
        weight_decay: args.weight_decay,
        schedule: schedule(&args)?,
        label_smoothing: args.label_smoothing,
        seed: args.seed,
        heldout: args.heldout,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let checkpoint = Checkpointing {
        path: args.out.join("checkpoint.safetensors"),
        resume: args.resume,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let summary = train::train(
        net,
        &initial,
        &data,
        &config,
        distill.as_ref(),
        &device,
        Some(&checkpoint),
        &mut |r| {
            bar.set_length(r.steps_per_epoch as u64);
            bar.set_prefix(format!("{}/{}", r.epoch, config.epochs));
            bar.set_position(r.step as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% {:.0} img/s",
                r.loss,
                100.0 * r.accuracy,
                r.images_per_sec
            ));
            std::ops::ControlFlow::Continue(())
        },
    )?;
    bar.finish();
    let exec = Executable::new(net, &summary.weights, &device);
    let test = train::evaluate(&exec, &data.test_split(), &data.batcher(), 256, data.num_classes, &device)?;
    let weights_path = args.out.join("weights.safetensors");
    weights::save(&summary.weights, &weights_path)?;
    let metrics = serde_json::json!({
        "test_accuracy": test.top1,
        "test_top5": test.top5,
        "heldout_accuracy": summary.heldout_accuracy,
        "epochs": summary.epochs,
        "train_loss": summary.train_loss,
        "images_per_sec": summary.images_per_sec,
        "seconds": started.elapsed().as_secs_f64(),
    });
    weights::write_atomic(&args.out.join("metrics.json"), serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    eprintln!(
        "test accuracy {:.2}% (top-5 {:.2}%); wrote {}",
        100.0 * test.top1,
        100.0 * test.top5,
        weights_path.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn eval(
    model: &std::path::Path,
    weights: Option<PathBuf>,
    data_name: &str,
    recalibrate: usize,
    batch_size: usize,
    backend: Backend,
    json: bool,
) -> Result<()> {
    let spec = spec::load(model)?;
    let net = &spec.network;
    let w = load_weights(&spec, weights)?
        .with_context(|| format!("{}: no weights (give --weights or `weights` in the spec)", model.display()))?;
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let data = data::open(data_name, input)?;
    let device = backend.device()?;
    let exec = Executable::new(net, &w, &device);
    let batcher = data.batcher();
    if recalibrate > 0 {
        let (train_split, _) = data.split(0, 0);
        train::recalibrate(&exec, &train_split, &batcher, recalibrate, 64, 0, &device)?;
    }
    let result = train::evaluate(&exec, &data.test_split(), &batcher, batch_size, data.num_classes, &device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "top-1 {:.2}%  top-5 {:.2}%  ({} test images)",
            100.0 * result.top1,
            100.0 * result.top5,
            result.images
        );
        for (class, acc) in result.per_class.iter().enumerate() {
            println!("  class {class:>3}: {:.2}%", 100.0 * acc);
        }
    }
    Ok(())
}
