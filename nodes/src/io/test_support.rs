//! Helpers shared by the I/O and stats tests: the Python peer and small file writers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python peer (`$VOXFLOW_PYTHON`) when it is set and imports `modules`; otherwise
/// prints why the caller skips and returns `None`.
pub fn peer_python(why: &str, modules: &str) -> Option<PathBuf> {
    let Some(py) = std::env::var_os("VOXFLOW_PYTHON").map(PathBuf::from) else {
        eprintln!("skipping {why}: VOXFLOW_PYTHON is not set");
        return None;
    };
    let ok = Command::new(&py)
        .arg("-c")
        .arg(format!("import {modules}"))
        .output();
    match ok {
        Ok(o) if o.status.success() => Some(py),
        Ok(o) => {
            eprintln!(
                "skipping {why}: {} cannot import {modules}: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("skipping {why}: cannot run {}: {e}", py.display());
            None
        }
    }
}

/// Run a Python script with arguments; panics with its stderr when it fails (the peer
/// was found working, so a failure is a test bug).
pub fn run_python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Gzip bytes (one member).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}
