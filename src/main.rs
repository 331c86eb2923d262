//! The `sacp` command line.

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use sacp::exec::{Backend, Executable};
use sacp::outputs::Inputs;
use sacp::{inspect, spec, weights};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod commands;
use commands::TrainArgs;

/// Structure-aware automatic channel pruning of convolutional networks.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a network's layers (channels, output shapes, params, MACs), totals and the
    /// dependency groups that must be pruned together.
    Inspect {
        /// Model spec (TOML), e.g. models/resnet56_cifar10.toml.
        model: PathBuf,
        /// Weights (safetensors) to check against the network; defaults to the spec's `weights`.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print one JSON object `{"layers", "groups", "totals"}` instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write seeded random (Kaiming) weights for a model spec.
    Init {
        /// Model spec (TOML).
        model: PathBuf,
        /// Seed of the random initialisation; the same seed gives the same weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output safetensors file (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train (or fine-tune) a network: SGD with momentum, cosine or step schedule, a
    /// checkpoint after every epoch; writes DIR/weights.safetensors and DIR/metrics.json.
    Train(TrainArgs),
    /// Evaluate a network: top-1, top-5 and per-class accuracy on the test split.
    Eval {
        /// Model spec (TOML).
        model: PathBuf,
        /// Weights (safetensors); defaults to the spec's `weights`.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Data set as KIND:PATH (kinds: mnist, fashion-mnist, cifar10, cifar100, folder, synthetic).
        #[arg(long)]
        data: String,
        /// Re-estimate BatchNorm statistics from this many training batches first (adaptive BN).
        #[arg(long, default_value_t = 0)]
        recalibrate: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Backend to run on.
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// Print `{"top1", "top5", "per_class", "images"}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prune a trained network once to a MAC target with an importance method; writes
    /// DIR/pruned.safetensors, DIR/pruned.toml and DIR/prune.json.
    Prune(commands::PruneArgs),
    /// The main job: run a search-space file (TOML) end to end — train the base network if
    /// no weights are given, search pruning-rate combinations (GCN-ranked, evaluated in
    /// parallel), fine-tune the winner, and write pruned.safetensors, pruned.toml,
    /// candidates.jsonl and report.json to the output folder.
    Search {
        /// Search-space file, e.g. search_spaces/quickstart.toml (fields: README.md).
        space: PathBuf,
        /// Continue the search logged in the output folder (after a crash or kill); logged
        /// candidates are not evaluated again.
        #[arg(long)]
        resume: bool,
        /// Output folder, instead of the file's `[output] folder`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Candidates evaluated at once, instead of `[search] threads` (0: one per core).
        /// Results do not depend on it.
        #[arg(long)]
        threads: Option<usize>,
        /// Only check the file (keys, types, ranges, paths, space size, reachable targets),
        /// print the space's size and reach every device of `[evaluate] devices` (each one
        /// unreachable or refusing the token is reported); do no work.
        #[arg(long)]
        check: bool,
        /// No progress bars or messages (errors still go to stderr).
        #[arg(long)]
        quiet: bool,
        /// Print report.json to stdout when done.
        #[arg(long)]
        json: bool,
    },
    /// Host this machine's devices for searches on other machines: candidates are evaluated
    /// here when a search space lists this server in `[evaluate] devices`. Runs until SIGTERM
    /// or Ctrl+C.
    Serve {
        /// Devices to host, comma-separated, all of one backend: `cpu`, or `wgpu`/`wgpu:N`
        /// (the N-th discrete GPU). A client names them `ws://HOST:PORT#I`, I their position here.
        #[arg(long, default_value = "cpu")]
        devices: String,
        /// WebSocket address to listen on, e.g. 0.0.0.0:4000 (port 0: any free port, printed).
        /// WebSocket is unencrypted: trusted networks only.
        #[arg(long, conflicts_with = "iroh")]
        listen: Option<String>,
        /// Serve over Iroh instead (authenticated and encrypted, through Iroh's public relays):
        /// the endpoint id clients dial (`iroh://ID#I`) is printed.
        #[arg(long)]
        iroh: bool,
        /// With --iroh: bind this UDP port and take direct connections only (no relays);
        /// clients dial `iroh://ID@HOST:PORT#I`.
        #[arg(long, requires = "iroh")]
        iroh_port: Option<u16>,
        /// The Iroh identity (a secret key file, made on first use), so the id survives restarts.
        #[arg(long, default_value = "sacp-serve.key", requires = "iroh")]
        identity: PathBuf,
        /// File whose first line is the token clients must present (`SACP_REMOTE_TOKEN`
        /// or `[evaluate] token_file` on their side).
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Write a network with its weights as ONNX (opset 14, weights as initializers, batch
    /// dimension `N`) or as a safetensors file.
    Export {
        /// Model spec (TOML).
        model: PathBuf,
        /// Weights (safetensors); defaults to the spec's `weights`.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// onnx or safetensors.
        #[arg(long, value_enum, default_value_t = ExportFormat::Onnx)]
        format: ExportFormat,
        /// Output file (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Time forward passes of a network on a backend.
    Bench {
        /// Model spec (TOML).
        model: PathBuf,
        /// Weights (safetensors); random weights when neither this nor the spec names any.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Backend to run on: cpu (burn-flex) or wgpu (GPU, or lavapipe on a CPU).
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// Images per forward pass.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed forward passes (after one untimed warm-up).
        #[arg(long, default_value_t = 10)]
        iters: usize,
    },
}

/// File formats of `sacp export`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// ONNX model with the weights inside.
    Onnx,
    /// The weights alone, PyTorch names and layout.
    Safetensors,
}

/// Runs the command; an error is printed as one message (with its causes), never as a
/// panic or a backtrace, and the exit code is 1.
fn main() -> std::process::ExitCode {
    sacp::exec::keep_freed_memory();
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Inspect { model, weights, json } => inspect_model(&model, weights, json),
        Command::Init { model, seed, out } => {
            let spec = spec::load(&model)?;
            Inputs::new().model("model", &spec).check_file(&out)?;
            let w = weights::initialise(&spec.network, seed);
            weights::save(&w, &out)?;
            eprintln!(
                "wrote {} ({} tensors, {} parameters)",
                out.display(),
                w.tensors.len(),
                w.parameter_count()
            );
            Ok(())
        }
        Command::Bench {
            model,
            weights,
            backend,
            batch,
            iters,
        } => bench(&model, weights, backend, batch, iters),
        Command::Prune(args) => commands::prune(args),
        Command::Export {
            model,
            weights,
            format,
            out,
        } => {
            let spec = spec::load(&model)?;
            Inputs::new()
                .model("model", &spec)
                .add_some("weights", weights.as_deref())
                .check_file(&out)?;
            let w = load_weights(&spec, weights)?
                .ok_or_else(|| anyhow::anyhow!("{}: no weights (give --weights or `weights` in the spec)", model.display()))?;
            match format {
                ExportFormat::Onnx => weights::write_atomic(&out, &sacp::onnx::to_bytes(&spec.network, &w))
                    .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?,
                ExportFormat::Safetensors => weights::save(&w, &out)?,
            }
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Search {
            space,
            resume,
            out,
            threads,
            check,
            quiet,
            json,
        } => commands::search(&space, resume, out, threads, check, quiet, json),
        Command::Serve {
            devices,
            listen,
            iroh,
            iroh_port,
            identity,
            token_file,
        } => commands::serve(
            &devices,
            listen.as_deref(),
            iroh.then_some((identity.as_path(), iroh_port)),
            &token_file,
        ),
        Command::Train(args) => commands::train(args),
        Command::Eval {
            model,
            weights,
            data,
            recalibrate,
            batch_size,
            backend,
            json,
        } => commands::eval(&model, weights, &data, recalibrate, batch_size, backend, json),
    }
}

pub(crate) fn load_weights(spec: &spec::ModelSpec, explicit: Option<PathBuf>) -> Result<Option<weights::Weights>> {
    let Some(path) = explicit.or_else(|| spec.weights.clone()) else {
        return Ok(spec.embedded_weights().cloned());
    };
    let w = weights::load(&path)?;
    w.check(&spec.network, &path.display().to_string())?;
    Ok(Some(w))
}

fn inspect_model(model: &Path, weights: Option<PathBuf>, json: bool) -> Result<()> {
    let spec = spec::load(model)?;
    let loaded = load_weights(&spec, weights)?;
    let report = inspect::inspect(&spec.network);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if let Some(w) = loaded {
            println!(
                "\nweights: {} tensors, {} parameters, all shapes match",
                w.tensors.len(),
                w.parameter_count()
            );
        }
    }
    Ok(())
}

fn bench(model: &Path, weights: Option<PathBuf>, backend: Backend, batch: usize, iters: usize) -> Result<()> {
    if batch == 0 || iters == 0 {
        bail!("--batch and --iters must be positive");
    }
    let spec = spec::load(model)?;
    let w = load_weights(&spec, weights)?.unwrap_or_else(|| weights::initialise(&spec.network, 0));
    let device = backend.device()?;
    let exec = Executable::new(&spec.network, &w, &device);
    let dims = spec.network.shape(spec.network.input()).dims();
    let x = burn::tensor::Tensor::<4>::zeros([batch, dims[0], dims[1], dims[2]], &device);
    let warm = Instant::now();
    sacp::exec::to_vec(exec.forward(x.clone()));
    let warm = warm.elapsed();
    let start = Instant::now();
    for _ in 0..iters {
        sacp::exec::to_vec(exec.forward(x.clone()));
    }
    let per = start.elapsed() / iters as u32;
    let cost = spec.network.total_cost();
    println!(
        "{}: {:?} backend, batch {batch}: {:.2} ms per forward ({:.1} images/s; warm-up {:.2} s); {} MACs per image",
        model.display(),
        backend,
        per.as_secs_f64() * 1e3,
        batch as f64 / per.as_secs_f64(),
        warm.as_secs_f64(),
        inspect::human(cost.macs)
    );
    Ok(())
}
