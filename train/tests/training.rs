//! Training over the real protocol on tiny synthetic data.

mod common;

use burn::tensor::Device;
use voxflow_train::{train, TrainOptions};

fn options(out: &std::path::Path) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        device: Device::flex(),
        device_name: "cpu".into(),
        resume: false,
        architecture: None,
        hyper: None,
        progress: None,
    }
}

#[test]
fn loss_falls_and_validation_dice_rises() {
    let cfg = common::config(200);
    let server = common::server(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let mut client = common::connect(&server);
    let t = std::time::Instant::now();
    let s = train(&mut client, options(dir.path())).unwrap();
    client.bye();
    eprintln!("{s:#?} in {:?}", t.elapsed());
    assert_eq!(s.iterations, 200);
    assert!(
        s.last_loss < 0.5 * s.first_loss,
        "{} -> {}",
        s.first_loss,
        s.last_loss
    );
    let best = s.best.unwrap();
    assert!(best.mean_dice > 0.8, "{best:?}");
    assert!(dir.path().join("best.vxmodel/model.json").is_file());
    assert!(dir.path().join("loss.png").is_file());
    assert!(dir.path().join("checkpoint/state.json").is_file());
}

/// The `iteration -> loss` lines of a run's metrics.jsonl.
fn losses(dir: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| Some((v["iteration"].as_u64()?, v.get("loss")?.as_f64()?)))
        .collect()
}

#[test]
fn a_crashed_run_resumes_on_the_same_curve() {
    let cfg = common::config(40);
    let server = common::server(&cfg);
    // The reference: 40 steps in one go.
    let whole = tempfile::tempdir().unwrap();
    let mut c = common::connect(&server);
    train(&mut c, options(whole.path())).unwrap();
    c.bye();
    // The same run dying at step 27 (after the checkpoint of step 20)...
    let broken = tempfile::tempdir().unwrap();
    let mut c = common::connect(&server);
    let mut opts = options(broken.path());
    opts.progress = Some(Box::new(|p| assert!(p.iteration < 27, "simulated crash")));
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| train(&mut c, opts)));
    assert!(crashed.is_err());
    drop(c);
    assert_eq!(losses(broken.path()).len(), 27);
    // ...without --resume refuses to overwrite it...
    let mut c = common::connect(&server);
    let e = train(&mut c, options(broken.path())).err().unwrap();
    assert!(e.to_string().contains("--resume"), "{e}");
    // ...and with it continues from step 20 to the same losses as the whole run.
    let mut opts = options(broken.path());
    opts.resume = true;
    let s = train(&mut c, opts).unwrap();
    c.bye();
    assert_eq!((s.iterations, s.steps_run), (40, 20));
    let (a, b) = (losses(whole.path()), losses(broken.path()));
    assert_eq!(a.len(), b.len());
    for ((ia, la), (ib, lb)) in a.iter().zip(&b) {
        assert_eq!(ia, ib);
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
            "step {ia}: {la} vs {lb}"
        );
    }
}

#[test]
fn resuming_on_other_data_is_refused() {
    let cfg = common::config(20);
    let (same, other) = (common::server(&cfg), common::server_on(&cfg, [4, 5], 2));
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::connect(&same);
    let data = c.welcome().data_hash.clone();
    assert_eq!(data.len(), 16, "{data:?}");
    train(&mut c, options(dir.path())).unwrap();
    c.bye();
    // Another server over the same data names the same data; over other cases, not.
    assert_eq!(
        common::connect(&common::server(&cfg)).welcome().data_hash,
        data
    );
    let mut c = common::connect(&other);
    assert_ne!(c.welcome().data_hash, data);
    let mut opts = options(dir.path());
    opts.resume = true;
    let e = train(&mut c, opts).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("other data") && text.contains(&data),
        "{text}"
    );
    // The refused attempt left the run as it was: it still resumes on its own data.
    let mut c = common::connect(&same);
    let mut opts = options(dir.path());
    opts.resume = true;
    let s = train(&mut c, opts).unwrap();
    c.bye();
    assert_eq!((s.iterations, s.steps_run), (20, 0));
}

#[test]
fn command_line_architecture_and_config_win_over_the_streamed_ones() {
    let cfg = common::config(20);
    let server = common::server(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let mut arch = cfg.architecture.clone();
    arch.base_filters = 6;
    let mut hyper = cfg.hyper.clone();
    hyper.iterations = 5;
    hyper.validate_every = 5;
    let mut c = common::connect(&server);
    let mut opts = options(dir.path());
    opts.architecture = Some(arch.clone());
    opts.hyper = Some(hyper.clone());
    let s = train(&mut c, opts).unwrap();
    c.bye();
    assert_eq!(s.iterations, 5);
    assert_eq!(s.streamed_config_hash, cfg.hash());
    let effective = voxflow_train::TrainingConfig {
        architecture: arch.clone(),
        hyper,
    };
    assert_eq!(s.config_hash, effective.hash());
    let meta = voxflow_unet::SavedModel::read_meta(&s.best_model).unwrap();
    assert_eq!(meta.architecture, arch);
    let first = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(first["config_hash"], effective.hash());
    assert_eq!(first["streamed_config_hash"], cfg.hash());
}
