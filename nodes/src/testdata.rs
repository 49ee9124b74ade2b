//! Where the real CT test data lives (`../shared/data` beside the repository), for tests
//! and benchmarks. Tests that need it skip with a printed reason when it is absent.

use std::path::PathBuf;

/// The shared data folder: `$VOXFLOW_SHARED_DATA`, else `../shared/data` next to the
/// repository root. `None` (with a message on stderr naming `why`) when absent.
pub fn shared_data(why: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("VOXFLOW_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        eprintln!("skipping {why}: shared data not found at {}", dir.display());
        None
    }
}
