//! The append-only candidate log (`candidates.jsonl`): a header line naming the search it
//! belongs to, then one JSON line per evaluated candidate, each written with a single
//! `write` as soon as the candidate is done. A search killed at any moment (even `kill -9`)
//! leaves at worst a partial last line, which resuming drops.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version written in the header.
const VERSION: u32 = 1;

/// One evaluated candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Search round that proposed it.
    pub round: usize,
    /// Pruning rate per rate group (names in the header).
    pub rates: Vec<f64>,
    /// Channels kept per channel group.
    pub widths: Vec<usize>,
    /// MACs of the pruned network.
    pub macs: u64,
    /// Parameters of the pruned network.
    pub params: u64,
    /// Share of MACs removed.
    pub macs_reduction: f64,
    /// Share of parameters removed.
    pub params_reduction: f64,
    /// Predicted latency of one batch (a search with a latency target), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_latency_ms: Option<f64>,
    /// The ranking's score when the candidate was chosen: the GCN predictor's (trained on
    /// the rounds before) or the embedding similarity; absent for `ranking = "none"`.
    #[serde(default, alias = "gcn_similarity")]
    pub predicted: Option<f32>,
    /// Held-out accuracy after BatchNorm recalibration (0 when the evaluation failed).
    pub heldout_accuracy: f64,
    /// Why the candidate could not be scored (it never wins); absent when it was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Seconds its evaluation took.
    pub seconds: f64,
}

/// The first line: which search the records belong to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Log format version.
    pub sacp_search: u32,
    /// Fingerprint of the search settings and base weights.
    pub fingerprint: String,
    /// Names of the rate groups, in `rates` order.
    pub rate_groups: Vec<String>,
}

impl Header {
    /// A header of this format version.
    pub fn new(fingerprint: String, rate_groups: Vec<String>) -> Self {
        Header {
            sacp_search: VERSION,
            fingerprint,
            rate_groups,
        }
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The log.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A log exists and resuming was not asked for.
    #[error("{path} already holds a search: pass --resume to continue it, or write elsewhere (--out or [output] folder)")]
    Exists {
        /// The log.
        path: String,
    },
    /// The log belongs to other settings.
    #[error(
        "{path} was written by a different search (settings or base weights changed since); remove it or write elsewhere to start afresh"
    )]
    Mismatch {
        /// The log.
        path: String,
    },
    /// A line other than the last is not a record.
    #[error("{path}:{line}: not a candidate record: {message}")]
    Corrupt {
        /// The log.
        path: String,
        /// 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
}

/// An open log, appending.
pub struct Log {
    path: PathBuf,
    file: File,
}

impl Log {
    /// Opens the log at `path`: creates it with `header`, or with `resume` reads the
    /// records already there (dropping a partial last line) and appends after them.
    pub fn open(path: &Path, header: &Header, resume: bool) -> Result<(Log, Vec<Record>), LogError> {
        let name = path.display().to_string();
        let io = |source| LogError::Io {
            path: name.clone(),
            source,
        };
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let records = match existing {
            Some(text) if !text.trim().is_empty() => {
                if !resume {
                    return Err(LogError::Exists { path: name });
                }
                let (records, good_bytes) = parse(&text, header, &name)?;
                if good_bytes < text.len() {
                    // A line cut short by a kill: drop it so appends start on a fresh line.
                    OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(good_bytes as u64))
                        .map_err(io)?;
                }
                records
            }
            _ => {
                let line = serde_json::to_string(header).expect("a header serialises") + "\n";
                crate::weights::write_atomic(path, line.as_bytes()).map_err(io)?;
                Vec::new()
            }
        };
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok((
            Log {
                path: path.to_path_buf(),
                file,
            },
            records,
        ))
    }

    /// Appends one record as one line, in one write.
    pub fn append(&mut self, record: &Record) -> Result<(), LogError> {
        let line = serde_json::to_string(record).expect("a record serialises") + "\n";
        self.file.write_all(line.as_bytes()).map_err(|source| LogError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}

/// The records of a log's text and the length of its complete, valid prefix.
fn parse(text: &str, header: &Header, name: &str) -> Result<(Vec<Record>, usize), LogError> {
    let mut records = Vec::new();
    let mut offset = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let complete = line.ends_with('\n');
        if i == 0 {
            let found: Header = serde_json::from_str(line).map_err(|_| LogError::Mismatch { path: name.to_string() })?;
            if &found != header {
                return Err(LogError::Mismatch { path: name.to_string() });
            }
        } else {
            match serde_json::from_str::<Record>(line) {
                Ok(r) if complete => records.push(r),
                Ok(_) => break,
                Err(_) if last => break,
                Err(e) => {
                    return Err(LogError::Corrupt {
                        path: name.to_string(),
                        line: i + 1,
                        message: e.to_string(),
                    });
                }
            }
        }
        offset += line.len();
    }
    Ok((records, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(round: usize) -> Record {
        Record {
            predicted_latency_ms: None,
            round,
            rates: vec![0.5],
            widths: vec![3, round + 1],
            macs: 10,
            params: 20,
            macs_reduction: 0.5,
            params_reduction: 0.4,
            predicted: Some(0.9),
            heldout_accuracy: 0.8,
            failed: (round == 1).then(|| "non-finite logits".to_string()),
            seconds: 1.0,
        }
    }

    #[test]
    fn a_partial_last_line_is_dropped_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("candidates.jsonl");
        let header = Header::new("abc".into(), vec!["g".into()]);
        let (mut log, old) = Log::open(&path, &header, false).unwrap();
        assert!(old.is_empty());
        log.append(&record(0)).unwrap();
        log.append(&record(1)).unwrap();
        drop(log);
        // Simulate a kill in the middle of the third write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"round\":2,\"rat").unwrap();
        drop(f);
        assert!(matches!(Log::open(&path, &header, false), Err(LogError::Exists { .. })));
        let other = Header::new("xyz".into(), vec!["g".into()]);
        assert!(matches!(Log::open(&path, &other, true), Err(LogError::Mismatch { .. })));
        let (mut log, old) = Log::open(&path, &header, true).unwrap();
        assert_eq!(old, vec![record(0), record(1)]);
        log.append(&record(2)).unwrap();
        drop(log);
        let (_, all) = Log::open(&path, &header, true).unwrap();
        assert_eq!(all, vec![record(0), record(1), record(2)]);
    }
}
