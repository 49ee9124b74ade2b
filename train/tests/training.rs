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
