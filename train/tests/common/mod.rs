//! Small synthetic training data and a server over it, shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use voxflow_engine::{Geometry, Image, Volume};
use voxflow_train::{
    Client, ConnectionLimits, Hyper, PatchServer, Sampler, ServerOptions, TrainCase,
    TrainingConfig, ValidationSet,
};
use voxflow_unet::{Normalization, UNetConfig};

pub const TOKEN: &str = "s3cret-token";

/// A tiny 2-level U-Net and a config that trains it in seconds.
pub fn config(iterations: u64) -> TrainingConfig {
    let mut arch = UNetConfig::seed();
    arch.levels = 2;
    arch.base_filters = 4;
    TrainingConfig {
        architecture: arch,
        hyper: Hyper {
            learning_rate: 1e-2,
            batch_size: 4,
            patch_size: 16,
            iterations,
            validate_every: 10,
            normalization: Normalization {
                clip_min_hu: -200.0,
                clip_max_hu: 200.0,
                center_hu: 0.0,
                scale_hu: 100.0,
            },
            ..Hyper::default()
        },
    }
}

/// 32x32 slices: a bright disc (class 1, 100 HU) on the left, a dark square (class 2,
/// -100 HU) on the right, background 0 HU, with seeded noise; weights on every other
/// slice only (sparse).
pub fn case(seed: u64, cfg: &TrainingConfig, sparse: bool) -> TrainCase {
    let g = Geometry::new([32, 32, 4], [1.0; 3]);
    let mut hu = vec![0i16; g.len()];
    let mut lab = vec![0u16; g.len()];
    let mut w = vec![0u8; g.len()];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for z in 0..4 {
        let (cx, cy) = (8.0 + z as f64, 14.0 + (seed % 5) as f64);
        for y in 0..32 {
            for x in 0..32 {
                let i = g.index(x, y, z);
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((state >> 33) % 41) as i16 - 20;
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                let (v, l) = if d < 5.0 {
                    (100, 1)
                } else if (20..28).contains(&x) && (10..20).contains(&y) {
                    (-100, 2)
                } else {
                    (0, 0)
                };
                hu[i] = v + noise;
                lab[i] = l;
                w[i] = u8::from(!sparse || z % 2 == 0);
            }
        }
    }
    let image = Image::I16(Volume::from_vec(g.clone(), hu).unwrap());
    let labels = Volume::from_vec(g.clone(), lab).unwrap();
    let weights = voxflow_engine::Mask::from_bytes(g, &w).unwrap();
    TrainCase::new(
        &format!("case{seed}"),
        &image,
        &labels,
        Some(&weights),
        cfg.architecture.classes,
        &cfg.hyper.normalization,
    )
    .unwrap()
}

pub fn server(cfg: &TrainingConfig) -> PatchServer {
    server_with(cfg, 2)
}

/// A server with `workers` sampler threads per connection.
pub fn server_with(cfg: &TrainingConfig, workers: usize) -> PatchServer {
    server_on(cfg, [1, 2], workers)
}

/// A server training on the cases of `seeds` (the validation case stays the same).
pub fn server_on(cfg: &TrainingConfig, seeds: [u64; 2], workers: usize) -> PatchServer {
    server_limited(cfg, seeds, workers, ConnectionLimits::default())
}

/// [`server_on`] with its own connection limits.
pub fn server_limited(
    cfg: &TrainingConfig,
    seeds: [u64; 2],
    workers: usize,
    limits: ConnectionLimits,
) -> PatchServer {
    let cases = seeds.iter().map(|&s| case(s, cfg, true)).collect();
    let sampler = Sampler::new(cases, cfg.clone()).unwrap();
    let validation = ValidationSet::from_cases(&[case(3, cfg, false)]);
    PatchServer::start(
        sampler,
        validation,
        ServerOptions {
            bind: "127.0.0.1:0".into(),
            token: TOKEN.into(),
            prefetch: 4,
            workers,
            limits,
        },
    )
    .unwrap()
}

pub fn connect(server: &PatchServer) -> Client {
    Client::connect(&server.addr().to_string(), TOKEN, Duration::from_secs(5)).unwrap()
}
