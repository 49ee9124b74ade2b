//! Shared helpers of the benchmark programs: medians, peer discovery, printing.

use std::time::Instant;

/// Run `f` once to warm up, then `reps` times; returns the median wall time in seconds.
pub fn median_secs<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// A one-line description of this machine (CPU model and core count) for reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

/// The peers' Python (`VOXFLOW_PYTHON`, else /tmp/peers/bin/python) when it can import
/// keras and jax (the U-Net peer, `KERAS_BACKEND=jax`); `Err` says why not.
pub fn keras_python() -> Result<String, String> {
    let py = std::env::var("VOXFLOW_PYTHON").unwrap_or_else(|_| "/tmp/peers/bin/python".into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import keras, jax"])
        .env("KERAS_BACKEND", "jax")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Ok(py)
    } else {
        Err(format!("{py} cannot import keras and jax"))
    }
}
