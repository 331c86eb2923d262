//! The `train`, `eval`, `prune` and `search` commands.

use crate::load_weights;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sacp::channels::Allocation;
use sacp::data;
use sacp::exec::{Backend, Executable};
use sacp::gcn::GcnConfig;
use sacp::gcn_rl::GcnRlConfig;
use sacp::importance::Method;
use sacp::outputs::Inputs;
use sacp::pipeline::Workbench;
use sacp::train::{self, Checkpointing, Distill, Schedule, TrainConfig};
use sacp::{spec, weights};

/// Images per batch of `sacp prune`'s recalibration and held-out scoring.
const PRUNE_BATCH: usize = 64;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// Stop every epoch after this many steps (a short fine-tune).
    #[arg(long)]
    max_steps: Option<usize>,
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

/// A network's input dimensions and number of outputs.
fn io_shapes(net: &sacp::ir::Network) -> (Vec<usize>, usize) {
    (net.shape(net.input()).dims(), net.shape(net.output()).channels())
}

pub fn train(args: TrainArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.label_smoothing) {
        bail!("--label-smoothing {} must be in [0, 1)", args.label_smoothing);
    }
    if args.epochs == 0 || args.batch_size == 0 {
        bail!("--epochs and --batch-size must be positive");
    }
    for (flag, value, positive) in [
        ("--lr", args.lr, true),
        ("--momentum", args.momentum, false),
        ("--weight-decay", args.weight_decay, false),
        ("--step-gamma", args.step_gamma, true),
        ("--temperature", args.temperature, true),
        ("--alpha", args.alpha, false),
    ] {
        if !value.is_finite() || value < 0.0 || (positive && value == 0.0) {
            bail!(
                "{flag} {value} must be a finite {} number",
                if positive { "positive" } else { "non-negative" }
            );
        }
    }
    let spec = spec::load(&args.model)?;
    let net = &spec.network;
    let teacher = args.teacher.as_deref().map(spec::load).transpose()?;
    let mut inputs = Inputs::new()
        .model("model", &spec)
        .add_some("weights", args.weights.as_deref())
        .add_some("teacher weights", args.teacher_weights.as_deref())
        .data(&args.data);
    if let Some(t) = &teacher {
        inputs = inputs.model("teacher", t);
    }
    inputs.check_folder(&args.out)?;
    let initial = load_weights(&spec, args.weights.clone())?.unwrap_or_else(|| weights::initialise(net, args.seed));
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let data = data::open(&args.data, input)?;
    let outputs = net.shape(net.output()).channels();
    data.require_classes(outputs, &args.model.display().to_string())?;
    let device = args.backend.device()?;
    let distill = match &teacher {
        None => None,
        Some(teacher) => {
            let path = &teacher.path;
            let (student_io, teacher_io) = (io_shapes(net), io_shapes(&teacher.network));
            if student_io != teacher_io {
                bail!(
                    "--teacher {}: takes {:?} and gives {} outputs, but the student {} takes {:?} and gives {}; a teacher must see the same images and predict the same classes",
                    path.display(),
                    teacher_io.0,
                    teacher_io.1,
                    args.model.display(),
                    student_io.0,
                    student_io.1
                );
            }
            let w = load_weights(teacher, args.teacher_weights.clone())?
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
        max_steps_per_epoch: args.max_steps,
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
    data.require_classes(net.shape(net.output()).channels(), &model.display().to_string())?;
    let device = backend.device()?;
    let exec = Executable::new(net, &w, &device);
    let batcher = data.batcher();
    if recalibrate > 0 {
        let (train_split, _) = data.split(0, 0);
        train::recalibrate(
            &exec,
            &train::recalibration_batches(&train_split, &batcher, recalibrate, 64, 0, &device)?,
        );
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

/// Flags of `sacp prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Model spec (TOML).
    model: PathBuf,
    /// Trained weights; defaults to the spec's `weights`.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// How channels are scored.
    #[arg(long, value_enum, default_value_t = Method::Gcn)]
    importance: Method,
    /// Share of the MACs to remove, in [0, 1).
    #[arg(long)]
    macs_reduction: f64,
    /// uniform: every group loses the same share; global: one ranking over all channels.
    #[arg(long, value_enum, default_value_t = Allocation::Uniform)]
    allocation: Allocation,
    /// Largest share of one group's channels that may be removed (guards against
    /// emptying single layers under a global ranking).
    #[arg(long, default_value_t = 0.9)]
    max_ratio: f64,
    /// Make every pruned width a multiple of this (or keep the full width): 8 or 16 suit
    /// most CPUs' and GPUs' vector units. 1: any width.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    round_to: u64,
    /// Re-estimate BatchNorm statistics on this many training batches after pruning (needs --data).
    #[arg(long, default_value_t = 0)]
    recalibrate: usize,
    /// Data set as KIND:PATH, for --recalibrate, held-out accuracy and `similarity`.
    #[arg(long)]
    data: Option<String>,
    /// Images of the training set kept out as the held-out split.
    #[arg(long, default_value_t = 5000)]
    heldout: usize,
    /// Training steps of the GCN encoder (for --importance gcn).
    #[arg(long, default_value_t = GcnConfig::default().steps)]
    gcn_steps: usize,
    /// TOML file whose [importance.gcn_rl] table sets the gcn-rl agents (episodes, samples,
    /// lr, actions, hidden, magnitude_prior, recalibration_batches, heldout_batches); a search-space
    /// file works. Defaults apply without it. gcn-rl needs --data.
    #[arg(long, value_name = "FILE")]
    gcn_rl_settings: Option<PathBuf>,
    /// Seed of random choices and of the held-out split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend to run on.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
}

/// `--data` opened and checked against the network: its classes, and a non-empty held-out
/// split.
fn prune_data(args: &PruneArgs, net: &sacp::ir::Network) -> Result<Option<data::DataSet>> {
    let Some(name) = args.data.as_deref() else {
        return Ok(None);
    };
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let d = data::open(name, input)?;
    d.require_classes(net.shape(net.output()).channels(), &args.model.display().to_string())?;
    if d.split(args.heldout, args.seed).1.is_empty() {
        bail!(
            "--heldout {}: the held-out split of {} is empty (at most a fifth of its {} training images are held out); raise --heldout or use a larger data set",
            args.heldout,
            d.name,
            d.train.len()
        );
    }
    Ok(Some(d))
}

pub fn prune(args: PruneArgs) -> Result<()> {
    let spec = spec::load(&args.model)?;
    let net = &spec.network;
    // The trained GCN encoder is cached beside the weights (or the ONNX file holding them).
    let weights_path = args
        .weights
        .clone()
        .or_else(|| spec.weights.clone())
        .or_else(|| spec.onnx.as_ref().map(|(p, _)| p.clone()))
        .with_context(|| format!("{}: no weights to prune (give --weights)", args.model.display()))?;
    Inputs::new()
        .model("model", &spec)
        .add_some("weights", args.weights.as_deref())
        .add_some("gcn-rl settings", args.gcn_rl_settings.as_deref())
        .data(args.data.as_deref().unwrap_or_default())
        .check_folder(&args.out)?;
    let w = load_weights(&spec, args.weights.clone())?.expect("a weights source was found");
    if args.recalibrate > 0 && args.data.is_none() {
        bail!("--recalibrate needs --data KIND:PATH");
    }
    let data = prune_data(&args, net)?;
    let device = args.backend.device()?;
    let rl = match &args.gcn_rl_settings {
        Some(file) => GcnRlConfig::load(file)?,
        None => GcnRlConfig::default(),
    };
    let deps = sacp::deps::Dependencies::analyse(net);
    let bench = data
        .as_ref()
        .map(|d| Workbench::new(net, &w, &deps, d, args.heldout, PRUNE_BATCH, args.seed, &device));
    let gcn = GcnConfig {
        steps: args.gcn_steps,
        seed: args.seed,
        ..GcnConfig::default()
    };
    let gcn_cache = sacp::gcn::cache_path(&weights_path, &sacp::gcn::cache_key(net, &w, &gcn));
    let request = sacp::prune::Request {
        net,
        weights: &w,
        method: args.importance,
        target: args.macs_reduction,
        allocation: args.allocation,
        max_ratio: args.max_ratio,
        round_to: args.round_to as usize,
        seed: args.seed,
        device: &device,
        probe: None,
        gcn,
        gcn_cache: Some(gcn_cache),
        gcn_rl: None,
    };
    let episodes = match args.importance {
        Method::GcnRl => ProgressBar::new(rl.episodes as u64),
        _ => ProgressBar::hidden(),
    };
    episodes.set_style(ProgressStyle::with_template("  gcn-rl episodes [{bar:30}] {pos}/{len} {msg} ETA {eta}")?.progress_chars("=> "));
    let mut pruned = match &bench {
        // gcn-rl's reward: held-out accuracy of a keep-set after BatchNorm recalibration.
        Some(b) => b.with_gcn_rl(&rl, Some(args.macs_reduction), &episodes, |probe, setup| {
            sacp::prune::one_shot(&sacp::prune::Request {
                probe: Some(probe),
                gcn_rl: setup,
                ..request
            })
        })??,
        None => sacp::prune::one_shot(&request)?,
    };
    let (mut heldout_accuracy, mut base_accuracy) = (None, None);
    if let Some(b) = &bench {
        base_accuracy = Some(b.accuracy(net, &w, &b.heldout)?);
        if args.recalibrate > 0 {
            let exec = Executable::new(&pruned.network, &pruned.weights, &device);
            train::recalibrate(
                &exec,
                &train::recalibration_batches(&b.train, &b.batcher, args.recalibrate, PRUNE_BATCH, args.seed, &device)?,
            );
            pruned.weights = exec.weights();
        }
        heldout_accuracy = Some(b.accuracy(&pruned.network, &pruned.weights, &b.heldout)?);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    weights::save(&pruned.weights, &args.out.join("pruned.safetensors"))?;
    weights::write_atomic(
        &args.out.join("pruned.toml"),
        spec::write_graph_spec(&pruned.network, Some("pruned.safetensors")).as_bytes(),
    )?;
    let (before, after) = (net.total_cost(), pruned.network.total_cost());
    let groups: Vec<serde_json::Value> = deps
        .groups
        .iter()
        .zip(&pruned.keep)
        .filter(|(g, _)| g.prunable())
        .map(|(g, k)| serde_json::json!({"name": g.name, "size": g.size(), "kept": k.len()}))
        .collect();
    let report = serde_json::json!({
        "importance": args.importance.name(),
        "allocation": args.allocation,
        "target_macs_reduction": args.macs_reduction,
        "macs_reduction": pruned.macs_reduction,
        "params_reduction": pruned.params_reduction,
        "heldout_accuracy": heldout_accuracy,
        "base": {"macs": before.macs, "params": before.params, "heldout_accuracy": base_accuracy},
        "pruned": {"macs": after.macs, "params": after.params, "heldout_accuracy": heldout_accuracy},
        "recalibration_batches": args.recalibrate,
        "groups": groups,
    });
    weights::write_atomic(&args.out.join("prune.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    eprintln!(
        "removed {:.1}% of MACs and {:.1}% of parameters{}; wrote {}",
        100.0 * pruned.macs_reduction,
        100.0 * pruned.params_reduction,
        heldout_accuracy
            .map(|a| format!(", held-out accuracy {:.2}%", 100.0 * a))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}

/// Reaches every device of `[evaluate] devices`, printing each; an error naming those that
/// cannot be reached or refuse the token.
fn check_devices(settings: &sacp::pipeline::StageSettings) -> Result<()> {
    let mut failed = Vec::new();
    for device in &settings.devices {
        match device.connect(settings.token.as_deref()) {
            Ok(_) => println!("  device {device}: reached"),
            Err(e) => {
                println!("  device {e}");
                failed.push(device.to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "[evaluate] devices: {} of {} cannot be used: {}",
            failed.len(),
            settings.devices.len(),
            failed.join(", ")
        )
    }
}

/// `sacp serve`: hosts the local `devices` on WebSocket (`listen`) or Iroh (`iroh`: the
/// identity file and a UDP port for direct connections) for clients presenting the token in
/// `token_file`, until SIGTERM.
pub fn serve(devices: &str, listen: Option<&str>, iroh: Option<(&Path, Option<u16>)>, token_file: &Path) -> Result<()> {
    use sacp::remote;
    let token = remote::read_token(token_file).map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
    let (specs, devices) = remote::local_devices(devices)?;
    let hosted: Vec<String> = specs.iter().enumerate().map(|(i, s)| format!("#{i} {s}")).collect();
    let listen = match (listen, iroh) {
        (_, Some((path, port))) => {
            let (identity, id) = remote::iroh_identity(path)?;
            let dial = match port {
                None => format!("iroh://{id}#I (through Iroh's public relays)"),
                Some(port) => format!("iroh://{id}@HOST:{port}#I (direct connections only)"),
            };
            println!(
                "sacp serve: hosting {} over Iroh; clients list {dial} in [evaluate] devices",
                hosted.join(", ")
            );
            remote::Listen::Iroh {
                identity: Box::new(identity),
                port,
            }
        }
        (Some(address), None) => {
            let listener = std::net::TcpListener::bind(address).map_err(|e| anyhow::anyhow!("--listen {address}: {e}"))?;
            let bound = listener.local_addr()?;
            println!(
                "sacp serve: hosting {} on ws://{bound} (WebSocket: unencrypted, trusted networks only); clients list ws://HOST:{}#I in [evaluate] devices",
                hosted.join(", "),
                bound.port()
            );
            remote::Listen::WebSocket(listener)
        }
        (None, None) => anyhow::bail!("give --listen HOST:PORT (WebSocket) or --iroh"),
    };
    std::io::stdout().flush()?;
    remote::serve(devices, &token, listen)?;
    println!("sacp serve: stopped");
    Ok(())
}

pub fn search(
    space: &std::path::Path,
    resume: bool,
    out: Option<PathBuf>,
    threads: Option<usize>,
    check: bool,
    quiet: bool,
    json: bool,
) -> Result<()> {
    if check {
        let checked = sacp::pipeline::check(space)?;
        println!(
            "{}: {} rate groups × {} levels = {} combinations, {} within the MACs and parameters constraints",
            space.display(),
            checked.rate_groups.len(),
            checked.space.levels().len(),
            (checked.space.levels().len() as u64).saturating_pow(checked.rate_groups.len() as u32),
            checked.grid.len()
        );
        if checked.space.constraints.has_latency() {
            println!("  the latency target is checked when the search starts: it needs the layers timed on the device");
        }
        for g in &checked.rate_groups {
            let names: Vec<&str> = g.groups.iter().map(|&i| checked.deps.groups[i].name.as_str()).collect();
            println!("  {:<28} {}", g.name, names.join(", "));
        }
        return check_devices(&checked.settings);
    }
    let options = sacp::pipeline::Options {
        resume,
        out,
        threads,
        quiet,
    };
    let report = sacp::pipeline::run(space, &options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
