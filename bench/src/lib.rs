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
    voxflow_nodes::testdata::median(&mut times)
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

/// The burn device the U-Net benches run on: `VOXFLOW_BENCH_DEVICE` = `cpu` (default, burn
/// Flex) or `wgpu` (needs the `wgpu` feature and a GPU), with its description.
pub fn bench_device(
) -> Result<(voxflow_unet::burn::tensor::Device, String), Box<dyn std::error::Error>> {
    let choice = std::env::var("VOXFLOW_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    Ok(voxflow_train::device::pick(choice.parse()?)?)
}

/// The peer scripts' folder: `VOXFLOW_PEERS`, else `../shared/peers` beside the repository.
pub fn peers_dir() -> std::path::PathBuf {
    std::env::var_os("VOXFLOW_PEERS")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers")
        })
}

/// CPU time (user + system, every thread) this process has used, in seconds, from
/// /proc/self/stat (Linux; 0 elsewhere). Printed beside wall time: the machine may be shared.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ = 100 on Linux
}
