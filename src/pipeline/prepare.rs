//! Stage 1, prepare: everything checked before any work. The space and the other stages'
//! settings (`check`), the output folder against the inputs and an existing log, the data
//! set against the network and the batch sizes, the device; then the output folder is made.

use super::workers::connect_all;
use super::{Checked, Options, PipelineError, check, io_error};
use crate::data::{self, DataSet};
use crate::search::latency::LatencyTable;
use crate::search::log::LogError;
use crate::search::space::SearchSpace;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// A checked run: the space, the network and everything opened for it.
pub struct Run {
    /// The checked space, network, rate groups, grid and settings.
    pub checked: Checked,
    /// The output folder.
    pub out: PathBuf,
    /// The candidate log in it.
    pub log_path: PathBuf,
    /// The data set.
    pub data: DataSet,
    /// The device every stage runs on.
    pub device: Device,
    /// The devices of `[evaluate] devices`, connected (empty: candidates run on `device`).
    pub workers: Vec<Device>,
    /// The run-time options.
    pub options: Options,
    /// The latency lookup table (a space with a latency target).
    pub latency: Option<LatencyTable>,
}

impl Run {
    /// Prints a progress message unless the run is quiet.
    pub fn say(&self, message: String) {
        if !self.options.quiet {
            eprintln!("{message}");
        }
    }

    /// The search space.
    pub fn space(&self) -> &SearchSpace {
        &self.checked.space
    }
}

/// Checks the search space at `path` and opens what the run needs; nothing is written
/// before every check has passed.
pub fn prepare(path: &Path, options: &Options) -> Result<Run, PipelineError> {
    let mut checked = check(path)?;
    if let Some(t) = options.threads {
        checked.space.search.threads = t;
    }
    let space = &checked.space;
    let out = options.out.clone().unwrap_or_else(|| space.output_folder());
    checked.inputs.check_folder(&out)?;
    let log_path = out.join("candidates.jsonl");
    if !options.resume && log_path.exists() {
        return Err(LogError::Exists {
            path: log_path.display().to_string(),
        }
        .into());
    }
    let net = &checked.network;
    let input: [usize; 3] = net.shape(net.input()).dims().try_into().expect("a C×H×W input");
    let data = data::open(&space.dataset(), input)?;
    let outputs = net.shape(net.output()).channels();
    if data.num_classes != outputs {
        let message = format!(
            "the data set has {} classes but the network has {outputs} outputs",
            data.num_classes
        );
        return Err(space.error("data.dataset", message).into());
    }
    check_split_sizes(space, &data, space.model.weights.is_none() && checked.embedded.is_none())?;
    let device = checked.settings.backend.device()?;
    let settings = &checked.settings;
    let workers = connect_all(&settings.devices, settings.token.as_deref())
        .map_err(|errors| PipelineError::Workers(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    std::fs::create_dir_all(&out).map_err(io_error(&out))?;
    let mut run = Run {
        checked,
        out,
        log_path,
        data,
        device,
        workers,
        options: options.clone(),
        latency: None,
    };
    super::plan_latency(&mut run)?;
    let c = &run.checked;
    run.say(format!(
        "sacp search: {} rate groups × {} levels, {} feasible grid points; device {:?}",
        c.rate_groups.len(),
        c.space.levels().len(),
        c.grid.len(),
        run.device
    ));
    Ok(run)
}

/// Every split the run uses holds at least one of its batches.
fn check_split_sizes(space: &SearchSpace, data: &DataSet, trains_base: bool) -> Result<(), PipelineError> {
    let (train_split, heldout) = data.split(space.data.heldout, space.search.seed);
    let field = |key: &str, message: String| PipelineError::Spec(space.error(key, message));
    if heldout.len() < space.data.batch_size {
        return Err(field(
            "data.heldout",
            format!(
                "the held-out split of {} holds {} images (at most a fifth of its {} training images), fewer than one batch of {} (`data.batch_size`)",
                data.name,
                heldout.len(),
                data.train.len(),
                space.data.batch_size
            ),
        ));
    }
    let needs = [
        ("train.batch_size", space.train.batch_size, trains_base),
        ("finetune.batch_size", space.finetune.batch_size, space.finetune.epochs > 0),
    ];
    for (key, batch, used) in needs {
        if used && train_split.len() < batch {
            return Err(field(
                key,
                format!(
                    "the training split of {} holds {} images, fewer than one batch of {batch}",
                    data.name,
                    train_split.len()
                ),
            ));
        }
    }
    Ok(())
}
