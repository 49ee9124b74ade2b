//! U-Net inference on the CPU (burn Flex; `VOXFLOW_BENCH_DEVICE=wgpu` with the `wgpu` feature
//! for a GPU): the seed's architecture (5 levels, 16 base filters, batch norm, random
//! weights) on 512x512 CT slices, next to the Keras 3 + JAX peer
//! (`../shared/peers/unet_keras.py`) in the same run when its Python has keras. On the CPU
//! both forward passes run: the fused kernels (`voxflow_unet::cpu`, the default) and burn's
//! modules (the reference), and on the real CT series of `../shared/data` their labels are
//! compared voxel by voxel.
//!
//! `cargo run --release -p voxflow-bench --bin unet_infer -- [SLICES] [REPS]`
//! (defaults 8 slices, 3 repetitions; the median is reported). The peer runs with
//! `VOXFLOW_PYTHON` (or /tmp/peers/bin/python) when `import keras, jax` works.

use std::process::Command;
use std::time::Instant;

use voxflow_engine::{Geometry, Image, Volume};
use voxflow_unet::burn::tensor::{Device, Tensor, TensorData};
use voxflow_unet::cpu::CpuUNet;
use voxflow_unet::infer::{InferError, FORWARD_OWN};
use voxflow_unet::{
    predict_with, write_random_model, Forward, InferOptions, SavedModel, UNetConfig,
};

/// A CT-like volume: air around an elliptic body with a fat rim and noise.
fn ct(n: usize, nz: usize) -> Image {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut v = Vec::with_capacity(n * n * nz);
    for _z in 0..nz {
        for y in 0..n {
            for x in 0..n {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let dx = (x as f64 / n as f64 - 0.5) / 0.42;
                let dy = (y as f64 / n as f64 - 0.5) / 0.34;
                let r = dx * dx + dy * dy;
                let hu = if r > 1.0 {
                    -1000
                } else if r > 0.8 {
                    -100
                } else {
                    45
                };
                v.push(hu + (s % 41) as i16 - 20);
            }
        }
    }
    Image::I16(Volume::from_vec(Geometry::new([n, n, nz], [0.8, 0.8, 3.0]), v).expect("sized"))
}

fn median(mut v: Vec<f64>) -> f64 {
    voxflow_nodes::testdata::median(&mut v)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let slices = args.first().copied().unwrap_or(8);
    let reps = args.get(1).copied().unwrap_or(3).max(1);
    let threads = rayon::current_num_threads();
    let (device, device_name) = voxflow_bench::bench_device().expect("device");
    println!(
        "U-Net inference on {device_name} ({}; rayon threads {threads}; load average {})",
        voxflow_bench::machine(),
        load_average()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = UNetConfig::seed();
    let path = dir.path().join("seed.vxmodel");
    write_random_model(&path, &cfg, 1).expect("model");
    let model = SavedModel::load(&path, &device).expect("load");
    println!(
        "model: {:?}, {} parameters",
        model.meta.architecture, model.meta.parameters
    );

    // 1. The peer's measurement: forward of a batch of 8 x 1 x 128 x 128.
    let x = vec![0.1f32; 8 * 128 * 128];
    let fwd = |x: &Vec<f32>| {
        let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [8, 1, 128, 128]), &device);
        model.net.forward(t).into_data()
    };
    let t128 = voxflow_bench::median_secs(reps.max(5), || fwd(&x));
    println!(
        "forward, batch 8 of 1x128x128 (the peer's setting), burn modules: median {:.1} ms",
        t128 * 1e3
    );
    if let Some(cpu) = CpuUNet::for_device(&model.net, &device) {
        let t = voxflow_bench::median_secs(reps.max(5), || cpu.forward(&x, 8, 128, 128));
        println!(
            "forward + softmax, batch 8 of 1x128x128, {FORWARD_OWN}: median {:.1} ms",
            t * 1e3
        );
    }

    // 2. Whole 512x512 slices through the node's pipeline: the fused CPU kernels by batch
    // size, and burn's modules (the path before them) at batch 8.
    let image = ct(512, slices);
    let on_gpu = device_name.starts_with("gpu");
    // A GPU wants bigger batches; the CPU gains nothing past 8.
    let runs: Vec<(usize, Forward)> = if on_gpu {
        vec![(1, Forward::Auto), (8, Forward::Auto), (32, Forward::Auto)]
    } else {
        vec![(1, Forward::Auto), (8, Forward::Auto), (8, Forward::Burn)]
    };
    let mut peer_batches: Vec<usize> = runs.iter().map(|r| r.0).collect();
    peer_batches.dedup();
    let mut ours = Vec::new();
    for &(bs, forward) in &runs {
        let (t, n, what) = time_predict(&model, &device, &image, bs, forward, reps);
        println!(
            "{slices} slices of 512x512, batch {bs}, {what}: median {:.2} s ({:.0} ms/slice, \
             {:.2} slices/s, network {:.0} %), 512x512x200 extrapolated {:.0} s",
            t,
            t / slices as f64 * 1e3,
            slices as f64 / t,
            n / t * 100.0,
            t / slices as f64 * 200.0
        );
        ours.push((bs, what, t / slices as f64));
    }

    // Label agreement and whole-CT throughput on the real 512x512 CT series, when present.
    real_ct(
        &model,
        &device,
        on_gpu,
        &path,
        &voxflow_bench::peers_dir().join("../data/dicom/ct_series"),
    );

    // 3. The peer, same run.
    let py = match voxflow_bench::keras_python() {
        Ok(py) => py,
        Err(why) => {
            println!("peer: skipped ({why})");
            return;
        }
    };
    let peers = voxflow_bench::peers_dir();
    let out = Command::new(&py)
        .arg(peers.join("unet_keras.py"))
        .args(["8", "bn"])
        .env("KERAS_BACKEND", "jax")
        .output()
        .expect("run peer");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if line.starts_with("keras") || line.starts_with("params") || line.starts_with("forward (")
        {
            println!("peer: {line}");
        }
    }
    if !out.status.success() {
        println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    // The same 512x512 workload: the peer's network (its build_unet, HW set to 512, batch
    // norm on) predicting the slices in batches, after a compile call.
    let code = format!(
        r#"
import sys, time, statistics, numpy as np
sys.path.insert(0, {peers:?})
sys.argv = ["unet_keras.py", "8", "bn"]
import unet_keras as u
u.HW = 512
m = u.build_unet()
for bs in {batches:?}:
    x = np.random.default_rng(0).standard_normal(({slices}, 512, 512, 1), dtype=np.float32)
    def run():
        for i in range(0, {slices}, bs):
            np.asarray(m.predict_on_batch(x[i:i + bs]))
    run()
    ts = []
    for _ in range({reps}):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
    t = statistics.median(ts)
    print(f"{slices} slices of 512x512, batch {{bs}}: median {{t:.2f}} s ({{t / {slices} * 1e3:.0f}} ms/slice)")
"#,
        peers = peers.display().to_string(),
        batches = peer_batches,
    );
    let out = Command::new(&py)
        .args(["-c", &code])
        .env("KERAS_BACKEND", "jax")
        .output()
        .expect("run peer");
    let mut peer = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("peer (keras 3 + jax): {line}");
        // "N slices of 512x512, batch B: median T s (M ms/slice)"
        let batch = line
            .split("batch ")
            .nth(1)
            .and_then(|r| r.split(':').next()?.parse::<usize>().ok());
        let ms = line
            .split('(')
            .nth(1)
            .and_then(|r| r.split(" ms/slice").next()?.parse::<f64>().ok());
        if let (Some(b), Some(ms)) = (batch, ms) {
            peer.push((b, ms / 1e3));
        }
    }
    if !out.status.success() {
        println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    for (bs, what, t) in ours {
        if let Some((_, p)) = peer.iter().find(|(b, _)| *b == bs) {
            println!(
                "ratio, batch {bs}, {what}: Keras+JAX {:.0} ms / voxflow {:.0} ms per slice = \
                 {:.2}x",
                p * 1e3,
                t * 1e3,
                p / t
            );
        }
    }
    println!("load average at the end: {}", load_average());
}

/// Median seconds (total, network) of `reps` runs of `predict` after a warm-up, and what
/// ran the forward pass.
fn time_predict(
    model: &SavedModel,
    device: &Device,
    image: &Image,
    batch_size: usize,
    forward: Forward,
    reps: usize,
) -> (f64, f64, &'static str) {
    let opts = InferOptions {
        batch_size,
        tile: None,
        overlap: 0.25,
    };
    let _ = predict_with(model, device, image, &opts, forward).expect("predict"); // warm-up
    let mut total = Vec::new();
    let mut net = Vec::new();
    let mut what = "";
    for _ in 0..reps {
        let t = Instant::now();
        let p = predict_with(model, device, image, &opts, forward).expect("predict");
        total.push(t.elapsed().as_secs_f64());
        net.push(p.stats.network_s);
        what = p.stats.forward;
    }
    (median(total), median(net), what)
}

/// The real CT series (512x512 slices): whole-CT throughput of the default forward pass on
/// `device`, and how many voxels' labels differ from a reference: on the CPU, burn's
/// modules (the fused kernels sum in another order); on a GPU, the CPU's default path with
/// the same weights (`model_path`), so a GPU run reports CPU-vs-GPU agreement.
fn real_ct(
    model: &SavedModel,
    device: &Device,
    on_gpu: bool,
    model_path: &std::path::Path,
    dir: &std::path::Path,
) {
    let image = match voxflow_nodes::io::dicom::load_dicom_series(dir) {
        Ok(image) => image,
        Err(e) => {
            println!("real CT: skipped ({}: {e})", dir.display());
            return;
        }
    };
    let [nx, ny, nz] = image.geometry().dims;
    // The node's default batch, halved while the device runs out of memory (a software
    // Vulkan driver such as llvmpipe caps buffers at 256 MiB); the error names the cause.
    let run = |model: &SavedModel, device: &Device, forward| {
        let mut opts = InferOptions::default();
        loop {
            let t = Instant::now();
            match predict_with(model, device, &image, &opts, forward) {
                Ok(p) => return (p, t.elapsed().as_secs_f64()),
                Err(e @ InferError::Device { .. }) if opts.batch_size > 1 => {
                    println!("real CT, batch {}: {e}", opts.batch_size);
                    opts.batch_size /= 2;
                }
                Err(e) => panic!("predict: {e}"),
            }
        }
    };
    let (fast, t_fast) = run(model, device, Forward::Auto);
    let (reference, t_ref) = if on_gpu {
        let cpu = Device::flex();
        let on_cpu = SavedModel::load(model_path, &cpu).expect("load the model on the CPU");
        run(&on_cpu, &cpu, Forward::Auto)
    } else {
        run(model, device, Forward::Burn)
    };
    let (this, other) = if on_gpu { ("gpu ", "cpu ") } else { ("", "") };
    let differing = fast
        .labels
        .as_slice()
        .iter()
        .zip(reference.labels.as_slice())
        .filter(|(a, b)| a != b)
        .count();
    let max_dp = fast
        .max_probability
        .as_slice()
        .iter()
        .zip(reference.max_probability.as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "real CT {nx}x{ny}x{nz} ({}): {this}{} {:.2} s ({:.2} slices/s), {other}{} {:.2} s \
         ({:.2} slices/s); labels differ in {differing} of {} voxels, max |dp| {max_dp:.1e}",
        dir.display(),
        fast.stats.forward,
        t_fast,
        nz as f64 / t_fast,
        reference.stats.forward,
        t_ref,
        nz as f64 / t_ref,
        nx * ny * nz
    );
}

/// /proc/loadavg's first three fields (the machine is shared; say how busy it was).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
