//! Time loading a NIfTI file with `LoadNifti`'s reader, for comparison with the peers
//! (SimpleITK, nibabel; see ../shared/peers/peers.py).
//!
//! ```text
//! cargo run --release -p voxflow-nodes --example bench_load -- FILE.nii.gz [REPS] [KIND] [OUT]
//! ```
//! KIND is `image` (default), `mask` or `labels` to time loading as that type, or
//! `save-image` / `save-mask` to load once and time saving to OUT (`.nii` or `.nii.gz`).
//! Prints one line: `bench_load kind=image reps=N median_s=... min_s=... mvox_per_s=... path=...`.

use std::path::PathBuf;
use std::time::Instant;

use voxflow_nodes::io::nifti_load::{load_image, load_labels, load_mask};
use voxflow_nodes::io::nifti_save::{save_image, save_mask};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: bench_load FILE.nii[.gz] [REPS=5] [image|mask|labels]");
        std::process::exit(2);
    };
    let reps: usize = args
        .next()
        .map(|s| s.parse().expect("REPS is a number"))
        .unwrap_or(5)
        .max(1);
    let kind = args.next().unwrap_or_else(|| "image".into());
    let out = args.next().map(PathBuf::from);
    let fail = |e: voxflow_engine::NodeError| -> ! {
        eprintln!("{e}");
        std::process::exit(1);
    };
    let (image, mask) = match kind.as_str() {
        "save-image" => (Some(load_image(&path).unwrap_or_else(|e| fail(e))), None),
        "save-mask" => (None, Some(load_mask(&path).unwrap_or_else(|e| fail(e)))),
        _ => (None, None),
    };
    if image.is_some() || mask.is_some() {
        assert!(out.is_some(), "save-* needs OUT");
    }
    let mut times = Vec::with_capacity(reps);
    let mut voxels = 0;
    for _ in 0..reps {
        let t = Instant::now();
        voxels = match kind.as_str() {
            "image" => load_image(&path).map(|v| v.geometry().len()),
            "mask" => load_mask(&path).map(|v| v.geometry().len()),
            "labels" => load_labels(&path).map(|v| v.geometry().len()),
            "save-image" => {
                let img = image.as_ref().expect("loaded");
                save_image(out.as_ref().expect("OUT"), img).map(|_| img.geometry().len())
            }
            "save-mask" => {
                let m = mask.as_ref().expect("loaded");
                save_mask(out.as_ref().expect("OUT"), m).map(|_| m.geometry().len())
            }
            other => {
                eprintln!("unknown kind {other}: expected image, mask or labels");
                std::process::exit(2);
            }
        }
        .unwrap_or_else(|e| fail(e));
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = if reps % 2 == 1 {
        times[reps / 2]
    } else {
        (times[reps / 2 - 1] + times[reps / 2]) / 2.0
    };
    println!(
        "bench_load kind={kind} reps={reps} median_s={median:.4} min_s={:.4} mvox_per_s={:.1} path={}",
        times[0],
        voxels as f64 / median / 1e6,
        path.display()
    );
}
