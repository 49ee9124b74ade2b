//! Helpers shared by the I/O and stats tests: the Python peer and small file writers.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python peer (`$VOXFLOW_PYTHON`) when it imports `modules` (comma-separated);
/// otherwise the skip is recorded ([`crate::testdata::python`]) and `None` returned.
pub fn peer_python(why: &str, modules: &str) -> Option<PathBuf> {
    let modules: Vec<&str> = modules.split(',').map(str::trim).collect();
    crate::testdata::python(why, &modules)
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
