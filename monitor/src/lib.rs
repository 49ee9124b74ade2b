//! Ordered run logs and the live training monitor.
//!
//! - [`logs`]: every `voxflow run` and `voxflow train` writes `logs.jsonl` in its output
//!   folder, one JSON object per line with a sequence number stamped when the line is
//!   captured. Timestamps tie (many lines per millisecond, two writers at once), sequence
//!   numbers never do, so readers order by `seq` and page by it ("load more", SSE
//!   resume) without losing or repeating a line.
//! - [`decimate`]: MinMax-LTTB decimation of long loss curves that keeps every spike.
//! - [`server`]: `voxflow monitor RUNS_DIR`, one page (uPlot vendored in `static/`,
//!   inlined) with live curves and logs over Server-Sent Events.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let log = voxflow_monitor::logs::RunLog::default();
//! log.open(&dir.path().join("logs.jsonl")).unwrap();
//! log.record("info", "stderr", "step 10/300: loss 0.51");
//! let lines = voxflow_monitor::logs::read(&dir.path().join("logs.jsonl")).unwrap();
//! assert_eq!(lines[0].message, "step 10/300: loss 0.51");
//! ```
#![deny(missing_docs)]

pub mod decimate;
pub mod logs;
pub mod server;
