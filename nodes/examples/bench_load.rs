//! Time loading a NIfTI file with `LoadNifti`'s reader, for comparison with the peers
//! (SimpleITK, nibabel; see ../shared/peers/peers.py).
//!
//! ```text
//! cargo run --release -p voxflow-nodes --example bench_load -- FILE.nii.gz [REPS] [image|mask|labels]
//! ```
//! Prints one line: `bench_load kind=image reps=N median_s=... min_s=... mvox_per_s=... path=...`.

use std::path::PathBuf;
use std::time::Instant;

use voxflow_nodes::io::nifti_load::{load_image, load_labels, load_mask};

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
    let mut times = Vec::with_capacity(reps);
    let mut voxels = 0;
    for _ in 0..reps {
        let t = Instant::now();
        voxels = match kind.as_str() {
            "image" => load_image(&path).map(|v| v.geometry().len()),
            "mask" => load_mask(&path).map(|v| v.geometry().len()),
            "labels" => load_labels(&path).map(|v| v.geometry().len()),
            other => {
                eprintln!("unknown kind {other}: expected image, mask or labels");
                std::process::exit(2);
            }
        }
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1);
        });
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
