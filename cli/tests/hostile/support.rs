//! Running the `voxflow` binary and checking that it failed cleanly.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code; `None` when a signal ended the process (an abort).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory of the process, in MiB (from `wait4`'s rusage).
    pub peak_mib: f64,
}

impl Outcome {
    /// Both streams, for assertion messages.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `voxflow args...` in `cwd`, measuring its peak memory.
// The child is reaped by `wait4` below, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn voxflow(args: &[&str], cwd: &Path) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start voxflow");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    // std's `wait` drops the rusage; wait4 reaps the child and returns its peak RSS.
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; the pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Outcome {
        code,
        stdout: String::from_utf8_lossy(&out_reader.join().expect("stdout reader")).into(),
        stderr: String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into(),
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// The run failed cleanly: exit code 1 (not a panic's 101 or an abort's signal), no
/// panic message, every `needle` in its output, and peak memory under `max_mib`.
pub fn assert_clean_failure(o: &Outcome, needles: &[&str], max_mib: f64) {
    assert_eq!(o.code, Some(1), "expected exit code 1:\n{}", o.text());
    let text = o.text();
    assert!(
        !text.contains("panicked") && !text.contains("internal error"),
        "panicked:\n{text}"
    );
    for n in needles {
        assert!(text.contains(n), "output lacks {n:?}:\n{text}");
    }
    assert!(
        o.peak_mib < max_mib,
        "peak memory {:.0} MiB >= {max_mib} MiB:\n{text}",
        o.peak_mib
    );
}

pub use crate::common::files_under;

/// No output file under `out` except failure records and provenance: nothing
/// half-written, no `.part` left behind.
pub fn assert_no_outputs(out: &Path) {
    let stray: Vec<PathBuf> = files_under(out)
        .into_iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            !s.contains("/failed/") && !s.ends_with("provenance.json") && !s.ends_with("logs.jsonl")
        })
        .collect();
    assert!(stray.is_empty(), "outputs left behind: {stray:?}");
}

/// Makes a FIFO at `path`. Opening one for reading waits for a writer, so should voxflow
/// (wrongly) open it, a thread plays the writer from 20 s on, again and again: the test
/// then fails on its time check instead of hanging.
pub fn fifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("utf-8 path")).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        while path.exists() {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
}
