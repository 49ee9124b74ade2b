//! Printing to stdout that survives a reader that has gone away.
//!
//! Rust starts programs with SIGPIPE ignored, so writing into a closed pipe
//! (`voxflow dot | dot` without graphviz, `voxflow nodes | head`) returns EPIPE and
//! `println!` panics. Restoring the default SIGPIPE instead would kill the process
//! silently wherever it writes to a closed pipe or socket: in the middle of a run, or in
//! `voxflow train`'s patch server when a client disconnects, and a failed run would lose
//! its exit code. So the commands print through [`outln!`]/[`out!`]: once stdout is
//! closed, later output is dropped and the command finishes and exits as it would have.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout cannot be written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout (and the run log); a broken pipe quietly ends all later output, another error is
/// reported once on stderr.
pub fn write(args: fmt::Arguments) {
    // Into the run log too (a no-op before a command opens one).
    voxflow_monitor::logs::global().record("info", "stdout", args.to_string().trim_end());
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to standard output: {e}");
        }
    }
}

/// `print!` that does not panic when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `println!` that does not panic when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
