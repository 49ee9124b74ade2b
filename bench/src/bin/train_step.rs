//! Training throughput on the CPU (burn Flex; `VOXFLOW_BENCH_DEVICE=wgpu` with the `wgpu`
//! feature for a GPU): the seed's architecture (5 levels, 16 base
//! filters, no batch norm), batch 8 of 128x128 patches, soft Dice + cross-entropy, Adam —
//! served by a real PatchServer over loopback from phantom cases, so the numbers include
//! the protocol and show how long the trainer waits for data. Next to the Keras 3 + JAX
//! peer (`../shared/peers/unet_keras.py 8 nobn`: same network, batch, patch and loss) in
//! the same run when its Python has keras.
//!
//! `cargo run --release -p voxflow-bench --bin train_step -- [STEPS]` (default 20; the
//! first 2 are warm-up and not counted in the median).

use std::process::Command;
use std::time::Duration;

use voxflow_engine::Image;
use voxflow_nodes::phantom::{generate, PhantomParams};
use voxflow_train::{
    train, Client, Hyper, PatchServer, Sampler, ServerOptions, TrainCase, TrainOptions,
    TrainingConfig, ValidationSet,
};
use voxflow_unet::UNetConfig;

fn main() {
    let steps: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let (device, device_name) = voxflow_bench::bench_device().expect("device");
    println!(
        "U-Net training step on {device_name} ({}; rayon threads {})",
        voxflow_bench::machine(),
        rayon::current_num_threads()
    );
    let mut arch = UNetConfig::seed();
    arch.batch_norm = false;
    let cfg = TrainingConfig {
        architecture: arch,
        hyper: Hyper {
            batch_size: 8,
            patch_size: 128,
            iterations: steps,
            validate_every: steps,
            ..Hyper::default()
        },
    };
    let cases: Vec<TrainCase> = (1..=2)
        .map(|seed| {
            let v = generate(&PhantomParams {
                seed,
                ..PhantomParams::default()
            });
            TrainCase::new(
                &format!("phantom{seed}"),
                &Image::I16(v.ct),
                &v.truth,
                None,
                3,
                &cfg.hyper.normalization,
            )
            .expect("case")
        })
        .collect();
    let validation = ValidationSet::from_cases(&cases[..1]);
    let sampler = Sampler::new(cases, cfg.clone()).expect("sampler");
    let server = PatchServer::start(
        sampler,
        validation,
        ServerOptions {
            bind: "127.0.0.1:0".into(),
            token: "bench".into(),
            prefetch: 8,
            workers: 2,
            limits: Default::default(),
        },
    )
    .expect("server");
    let mut client = Client::connect(&server.addr().to_string(), "bench", Duration::from_secs(5))
        .expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = train(
        &mut client,
        TrainOptions {
            out: dir.path().join("run"),
            device,
            device_name,
            resume: false,
            architecture: None,
            hyper: None,
            progress: None,
        },
    )
    .expect("train");
    client.bye();
    // The step times of metrics.jsonl by iteration; the median leaves out the 2 warm-up
    // steps, whose time (kernel tuning and compilation on a GPU, unless the kernel cache
    // already holds them) is printed apart.
    let steps: Vec<(u64, f64)> = std::fs::read_to_string(dir.path().join("run/metrics.jsonl"))
        .expect("metrics")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["iteration"].as_u64()?, v["step_s"].as_f64()?)))
        .collect();
    let warm_up: f64 = steps.iter().filter(|(i, _)| *i <= 2).map(|(_, t)| t).sum();
    println!("burn: the 2 warm-up steps took {warm_up:.2} s");
    let mut step_s: Vec<f64> = steps
        .iter()
        .filter(|(i, _)| *i > 2)
        .map(|(_, t)| *t)
        .collect();
    step_s.sort_by(f64::total_cmp);
    let median = step_s[step_s.len() / 2];
    println!(
        "burn: train step (B=8, 128x128, 5 levels, base 16, no BN): median {:.1} ms over {} \
         steps; waiting for batches {:.2}% of the training time; loss {:.4} -> {:.4}",
        median * 1e3,
        step_s.len(),
        s.wait_share * 100.0,
        s.first_loss,
        s.last_loss
    );

    let py = match voxflow_bench::keras_python() {
        Ok(py) => py,
        Err(why) => {
            println!("peer: skipped ({why})");
            return;
        }
    };
    let out = Command::new(&py)
        .arg(voxflow_bench::peers_dir().join("unet_keras.py"))
        .args(["8", "nobn"])
        .env("KERAS_BACKEND", "jax")
        .output()
        .expect("run peer");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut peer = None;
    for line in text.lines() {
        if line.starts_with("keras") || line.starts_with("train step (") {
            println!("peer: {line}");
        }
        if let Some(rest) = line.strip_prefix("train step (B=8): median ") {
            peer = rest.split(' ').next().and_then(|v| v.parse::<f64>().ok());
        }
    }
    match peer {
        Some(ms) => println!(
            "ratio burn / keras+jax train step: {:.2} (lower is better for burn)",
            median * 1e3 / ms
        ),
        None => println!("peer failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}
