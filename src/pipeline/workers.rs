//! The workers of a search: one per device of `[evaluate] devices` (local, or hosted by a
//! `sacp serve` on another machine), each holding its recalibration and held-out batches
//! resident on its device (uploaded once) and evaluating one candidate at a time. A candidate
//! goes to the lowest-numbered free worker; a worker that fails mid-candidate (its server
//! killed, its connection dropped: burn-remote panics on the lost session) is retired with
//! the reason and the candidate goes to another worker, so nothing is evaluated twice into
//! the log and the search finishes on the workers left.

use super::evaluate::KeepEvaluator;
use super::workbench::Workbench;
use super::{PipelineError, Run};
use crate::data::Split;
use crate::remote::{DeviceError, DeviceSpec};
use crate::search::Score;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, Once};

/// What became of one worker.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkerSummary {
    /// The device's name as listed.
    pub device: String,
    /// Candidates it evaluated.
    pub evaluated: usize,
    /// Why it was retired, if it was.
    pub lost: Option<String>,
}

impl std::fmt::Display for WorkerSummary {
    /// `  worker DEVICE: N candidates[, then lost (REASON)]`, as the search prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "  worker {}: {} candidates", self.device, self.evaluated)?;
        match &self.lost {
            Some(reason) => write!(f, ", then lost ({reason})"),
            None => Ok(()),
        }
    }
}

/// The workers of a search and which of them are free.
pub struct Workers<'a> {
    evaluators: Vec<Option<KeepEvaluator<'a>>>,
    state: Mutex<Vec<WorkerState>>,
    freed: Condvar,
    names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Status {
    Free,
    Busy,
    Lost(String),
}

#[derive(Clone, Debug)]
struct WorkerState {
    status: Status,
    evaluated: usize,
}

/// Reaches every device; the error lists each one that cannot be reached or refuses the token.
pub fn connect_all(devices: &[DeviceSpec], token: Option<&str>) -> Result<Vec<burn::tensor::Device>, Vec<DeviceError>> {
    let (mut reached, mut failed) = (Vec::new(), Vec::new());
    for device in devices {
        match device.connect(token) {
            Ok(d) => reached.push(d),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() { Ok(reached) } else { Err(failed) }
}

impl<'a> Workers<'a> {
    /// Uploads `heldout` and the recalibration batches to each of the run's connected
    /// `[evaluate] devices`.
    pub fn start(run: &Run, bench: &'a Workbench<'a>, heldout: &Split, recalibration_batches: usize) -> Result<Self, PipelineError> {
        let settings = &run.checked.settings;
        let evaluators = run
            .workers
            .iter()
            .map(|device| KeepEvaluator::new(bench, device, heldout, recalibration_batches).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<String> = settings.devices.iter().map(ToString::to_string).collect();
        Ok(Workers {
            state: Mutex::new(
                names
                    .iter()
                    .map(|_| WorkerState {
                        status: Status::Free,
                        evaluated: 0,
                    })
                    .collect(),
            ),
            evaluators,
            freed: Condvar::new(),
            names,
        })
    }

    /// How many workers there are (lost ones included).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Runs `work` on a free worker, waiting for one; when the worker fails (panics), it is
    /// retired, `lost` hears its name and why, and `work` runs again on another. An error
    /// when every worker is lost.
    pub fn evaluate(&self, work: impl Fn(&KeepEvaluator) -> Score, lost: &(dyn Fn(&str, &str) + Sync)) -> Result<Score, String> {
        loop {
            let worker = self.acquire()?;
            let evaluator = self.evaluators[worker].as_ref().expect("a free worker has its evaluator");
            match catch_panic(|| work(evaluator)) {
                Ok(score) => {
                    self.release(worker, Status::Free);
                    return Ok(score);
                }
                Err(reason) => {
                    lost(&self.names[worker], &reason);
                    self.release(worker, Status::Lost(reason));
                }
            }
        }
    }

    /// The lowest-numbered free worker, marked busy; waits while all live ones are busy.
    fn acquire(&self) -> Result<usize, String> {
        let mut state = self.state.lock().expect("no worker panicked holding the lock");
        loop {
            if let Some(i) = state.iter().position(|w| w.status == Status::Free) {
                state[i].status = Status::Busy;
                return Ok(i);
            }
            if !state.iter().any(|w| w.status == Status::Busy) {
                let reasons: Vec<String> = state
                    .iter()
                    .zip(&self.names)
                    .filter_map(|(w, name)| match &w.status {
                        Status::Lost(reason) => Some(format!("{name}: {reason}")),
                        _ => None,
                    })
                    .collect();
                return Err(format!("every evaluation worker was lost ({})", reasons.join("; ")));
            }
            state = self.freed.wait(state).expect("no worker panicked holding the lock");
        }
    }

    fn release(&self, worker: usize, status: Status) {
        let mut state = self.state.lock().expect("no worker panicked holding the lock");
        if status == Status::Free {
            state[worker].evaluated += 1;
        }
        state[worker].status = status;
        self.freed.notify_all();
    }

    /// Every worker: candidates evaluated, and why it was lost.
    pub fn summary(&self) -> Vec<WorkerSummary> {
        let state = self.state.lock().expect("no worker panicked holding the lock");
        state
            .iter()
            .zip(&self.names)
            .map(|(w, name)| WorkerSummary {
                device: name.clone(),
                evaluated: w.evaluated,
                lost: match &w.status {
                    Status::Lost(reason) => Some(reason.clone()),
                    _ => None,
                },
            })
            .collect()
    }
}

impl Drop for Workers<'_> {
    /// A lost worker's tensors live on a device that is gone: they are forgotten, not freed
    /// (freeing them would talk to a dead server).
    fn drop(&mut self) {
        let state = self.state.get_mut().map(|s| s.clone()).unwrap_or_default();
        for (evaluator, w) in self.evaluators.iter_mut().zip(state) {
            if matches!(w.status, Status::Lost(_) | Status::Busy) {
                std::mem::forget(evaluator.take());
            }
        }
    }
}

thread_local! {
    /// Set while this thread runs a worker's evaluation: its panics are caught and reported
    /// as the worker's loss, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The message of the panic caught last on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `work`, turning a panic into its message (printed by nobody: the caller reports it).
fn catch_panic<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CATCHING.get() {
                let message = info.payload_as_str().unwrap_or("a panic without a message");
                CAUGHT.set(Some(message.to_string()));
            } else {
                previous(info);
            }
        }));
    });
    CATCHING.set(true);
    let result = panic::catch_unwind(AssertUnwindSafe(work));
    CATCHING.set(false);
    result.map_err(|_| CAUGHT.take().unwrap_or_else(|| "a panic without a message".into()))
}

#[cfg(test)]
mod tests {
    use super::catch_panic;

    #[test]
    fn a_caught_panic_becomes_its_message_and_the_thread_goes_on() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let caught = catch_panic(|| -> usize { panic!("the session to ws://h:1 closed") });
        assert_eq!(caught, Err("the session to ws://h:1 closed".to_string()));
        assert_eq!(catch_panic(|| 8), Ok(8));
    }
}
