//! Progress display: a bar on a terminal (indicatif), plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use voxflow_engine::run::{Event, Status};

/// Shows node progress of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    /// A bar for `total` nodes on a terminal; plain lines when stderr is not a terminal;
    /// nothing when quiet.
    pub fn new(total: usize, quiet: bool) -> Self {
        if quiet {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} nodes {msg}",
                )
                .expect("template"),
            );
            Progress {
                bar: Some(bar),
                plain: false,
            }
        } else {
            Progress {
                bar: None,
                plain: true,
            }
        }
    }

    /// The callback the scheduler calls. Every node's end also goes into the run log.
    pub fn observer(&self) -> Arc<dyn Fn(&Event) + Send + Sync> {
        let bar = self.bar.clone();
        let plain = self.plain;
        Arc::new(move |e: &Event| match (e, &bar) {
            (Event::Started { id }, Some(b)) => b.set_message(id.clone()),
            (
                Event::Finished {
                    id,
                    status,
                    wall_ms,
                },
                b,
            ) => {
                let line = format!("node {id}: {} ({wall_ms:.1} ms)", describe(status));
                let level = match status {
                    Status::Failed(_) => "error",
                    _ => "info",
                };
                voxflow_monitor::logs::global().record(level, "stderr", &line);
                match b {
                    Some(b) => b.inc(1),
                    None if plain => eprintln!("{line}"),
                    None => {}
                }
            }
            _ => {}
        })
    }

    /// Clear the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A node's end in words (the error itself is printed at the end of the run).
fn describe(status: &Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Failed(_) => "FAILED",
        Status::Skipped(_) => "skipped",
        Status::NotNeeded => "not needed",
        Status::Cached => "reused from the cache",
    }
}

/// Progress of a batch: cases done, failed and running, with an ETA.
pub struct BatchBar {
    bar: Option<ProgressBar>,
}

impl BatchBar {
    /// A bar on a terminal; nothing otherwise (cases are listed at the end).
    pub fn new(total: usize, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return BatchBar { bar: None };
        }
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} cases, {msg}, ETA {eta}",
            )
            .expect("template"),
        );
        BatchBar { bar: Some(bar) }
    }

    /// The callback the batch runner calls.
    pub fn callback(&self) -> Arc<dyn Fn(voxflow_engine::batch::BatchProgress) + Send + Sync> {
        let bar = self.bar.clone();
        Arc::new(move |p| {
            if let Some(b) = &bar {
                b.set_position((p.done + p.failed) as u64);
                b.set_message(format!(
                    "{} done, {} failed, {} running",
                    p.done, p.failed, p.running
                ));
            }
        })
    }

    /// Clear the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
