//! `logs.jsonl`: a run's log lines in capture order.
//!
//! Each line is `{"seq":N,"ts_ms":T,"level":"info","source":"stderr","message":"..."}`.
//! `seq` comes from one atomic counter per run shared by every source (plain progress
//! lines, warnings, `tracing` events of any level), taken the moment a line is captured,
//! before it waits for the file lock. Timestamps have millisecond resolution and tie
//! often; ordering by timestamp (as a log store indexing by time does) shuffles tied
//! lines. Readers order by `seq` instead, and a cursor is a `seq`.
//!
//! A resumed run appends: [`RunLog::open`] continues after the largest `seq` in the file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Log file errors.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Opening, reading or writing the file.
    #[error("{path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One line of `logs.jsonl`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Capture order within the run (0, 1, 2, ...; continues across resumes).
    pub seq: u64,
    /// Capture time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// Where the line came from: `stdout`, `stderr` (plain output of the command),
    /// `progress` (training progress lines) or `tracing` (other log events).
    pub source: String,
    /// The text.
    pub message: String,
}

/// A run's log: the sequence counter and the file it appends to.
///
/// Lines recorded before [`RunLog::open`] are counted but not kept: the output folder is
/// only known once the arguments are checked.
#[derive(Default)]
pub struct RunLog {
    seq: AtomicU64,
    file: Mutex<Option<(PathBuf, BufWriter<File>)>>,
    /// A fixed timestamp for tests of ordering under tied clocks.
    fixed_ts_ms: Option<u64>,
}

impl RunLog {
    /// A log whose every line carries the timestamp `ts_ms` (for tests).
    pub fn with_fixed_clock(ts_ms: u64) -> RunLog {
        RunLog {
            fixed_ts_ms: Some(ts_ms),
            ..RunLog::default()
        }
    }

    /// Append to `path` from now on (creating it and its folder), continuing the sequence
    /// after the last line already there.
    pub fn open(&self, path: &Path) -> Result<(), LogError> {
        let err = |source| LogError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let next = match read(path) {
            Ok(lines) => lines.last().map_or(0, |l| l.seq + 1),
            Err(_) => 0,
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        self.seq.fetch_max(next, Ordering::SeqCst);
        *guard = Some((path.to_owned(), BufWriter::new(f)));
        Ok(())
    }

    /// Record one line. Never fails: a log that cannot be written must not stop a run,
    /// so a write error closes the file and is reported once on stderr.
    pub fn record(&self, level: &str, source: &str, message: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let ts_ms = self.fixed_ts_ms.unwrap_or_else(now_ms);
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some((path, w)) = guard.as_mut() else {
            return;
        };
        let line = LogLine {
            seq,
            ts_ms,
            level: level.to_string(),
            source: source.to_string(),
            message: message.to_string(),
        };
        let json = serde_json::to_string(&line).expect("a log line serialises");
        // Flushed per line: the monitor tails the file while the run goes on.
        if let Err(e) = writeln!(w, "{json}").and_then(|_| w.flush()) {
            eprintln!("warning: {}: cannot write the log: {e}", path.display());
            *guard = None;
        }
    }

    /// Flush and close the file.
    pub fn close(&self) {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, w)) = guard.as_mut() {
            let _ = w.flush();
        }
        *guard = None;
    }
}

/// The process's run log, which the `tracing` layer and plain output record into.
pub fn global() -> &'static RunLog {
    static LOG: OnceLock<RunLog> = OnceLock::new();
    LOG.get_or_init(RunLog::default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// All lines of a `logs.jsonl`, in `seq` order. Lines that do not parse (a line cut by
/// a kill) are skipped.
pub fn read(path: &Path) -> Result<Vec<LogLine>, LogError> {
    let f = File::open(path).map_err(|source| LogError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut lines: Vec<LogLine> = BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    // Writers take their number before the file lock, so neighbours may be swapped in
    // the file; a stable sort by seq restores capture order.
    lines.sort_by_key(|l| l.seq);
    Ok(lines)
}

/// Set up `tracing` for a command: events that pass `filter` (an `EnvFilter` directive,
/// overridden by `VOXFLOW_LOG`) are printed on stderr; voxflow's own `info` and above and
/// every crate's warnings go into [`global`] whatever is printed, so `logs.jsonl` tells
/// what happened even in a quiet run.
pub fn init_tracing(filter: &str, ansi: bool) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let printed = EnvFilter::try_from_env("VOXFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(filter));
    let kept = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("voxflow", LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .with_filter(printed),
        )
        .with(TracingLayer.with_filter(kept))
        .try_init();
}

/// A `tracing` layer that records every event it is given into [`global`] with source
/// `tracing`; filter it with a per-layer filter.
pub struct TracingLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracingLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let meta = event.metadata();
        let level = meta.level().as_str().to_ascii_lowercase();
        let source = if meta.target() == "voxflow::progress" {
            "progress"
        } else {
            "tracing"
        };
        global().record(&level, source, &v.0);
    }
}

/// The `message` field first, then the other fields as `name=value`.
struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two writers with tied timestamps (100k lines each) are checked through the file
    // and the API in tests/api.rs (`two_writers_tied_timestamps_...`): one setup.

    #[test]
    fn reopening_continues_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/logs.jsonl");
        let log = RunLog::default();
        log.open(&path).unwrap();
        log.record("info", "stderr", "a");
        log.record("warn", "tracing", "b");
        log.close();
        let again = RunLog::default();
        again.record("info", "stderr", "not kept: before open");
        again.open(&path).unwrap();
        again.record("info", "stderr", "c");
        again.close();
        let seqs: Vec<(u64, String)> = read(&path)
            .unwrap()
            .into_iter()
            .map(|l| (l.seq, l.message))
            .collect();
        assert_eq!(
            seqs,
            vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
        );
    }

    #[test]
    fn a_cut_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        std::fs::write(
            &path,
            "{\"seq\":0,\"ts_ms\":1,\"level\":\"info\",\"source\":\"stderr\",\"message\":\"x\"}\n{\"seq\":1,\"ts",
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
    }
}
