//! Time the sarcopenia-chain kernels on a 512x512x200 volume, and check them against the
//! reference recipes when `bench/peer_ops.py` has written its results.
//!
//! ```text
//! /tmp/peers/bin/python bench/peer_ops.py /tmp/peerdata      # optional: data, references, peer times
//! cargo run --release -p voxflow-nodes --example bench_ops [-- DIR=/tmp/peerdata] [REPS=7]
//! ```
//!
//! Data: `DIR/ct.nii` and `DIR/mask_a.nii` (written by `../shared/peers/peers.py --data DIR`
//! or by `bench/peer_ops.py`) when present, else a synthetic CT-like volume of the same
//! size and spacing (0.8 x 0.8 x 2.5 mm). Prints one line per operation: median and
//! minimum wall time, voxels set, agreement with `DIR/ref_<op>.bin` and the speed-up over
//! the peer times in `DIR/ref_times.json` when those exist.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxflow_engine::{Geometry, Image, Mask, Volume};
use voxflow_nodes::components::connectivity::Connectivity;
use voxflow_nodes::components::kernels::{self as cc, Method};
use voxflow_nodes::intensity::kernels::hu_window;
use voxflow_nodes::io::nifti_load::{load_image, load_mask};
use voxflow_nodes::morphology::element::Element;
use voxflow_nodes::morphology::kernels;

fn median_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(reps);
    let mut out = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    let median = voxflow_nodes::testdata::median(&mut times);
    (median, times[0], out.expect("reps >= 1"))
}

/// A CT-like volume: an elliptical muscle ring (42 HU) with fat blobs (-90 HU) in
/// fat (-100 HU), and a ring-shaped prediction mask with holes and speckles.
fn synthetic() -> (Image, Mask) {
    let g = Geometry::new([512, 512, 200], [0.8, 0.8, 2.5]);
    let [nx, ny, nz] = g.dims;
    let mut rng = ChaCha8Rng::seed_from_u64(20240611);
    let mut ct = vec![-1000i16; g.len()];
    let mut a = vec![0u8; g.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let u = (x as f64 - 256.0) / 210.0;
                let v = (y as f64 - 256.0) / 160.0;
                let r = (u * u + v * v).sqrt();
                let i = g.index(x, y, z);
                ct[i] = if r < 0.76 {
                    -85
                } else if r < 0.9 {
                    42 + rng.random_range(-40..40)
                } else if r < 1.0 {
                    -100
                } else {
                    -1000
                };
                a[i] = ((0.755..0.91).contains(&r) && (5..nz - 5).contains(&z)) as u8;
            }
        }
    }
    // fat blobs in the muscle, holes and speckles in the mask
    for k in 0..6000 {
        let (cx, cy, cz) = (
            rng.random_range(0..nx),
            rng.random_range(0..ny),
            rng.random_range(0..nz),
        );
        let rad = rng.random_range(1..5usize);
        for y in cy.saturating_sub(rad)..(cy + rad).min(ny) {
            for x in cx.saturating_sub(rad)..(cx + rad).min(nx) {
                let i = g.index(x, y, cz);
                match k % 3 {
                    0 => ct[i] = -90,
                    1 => a[i] = 0,
                    _ => a[i] = 1,
                }
            }
        }
    }
    let img = Image::I16(Volume::from_vec(g.clone(), ct).expect("dims"));
    (img, Mask::from_bytes(g, &a).expect("dims"))
}

fn reference(dir: &Path, name: &str, len: usize) -> Option<Vec<u8>> {
    std::fs::read(dir.join(format!("ref_{name}.bin")))
        .ok()
        .filter(|r| r.len() == len)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/peerdata".into()));
    let reps: usize = args
        .next()
        .map(|s| s.parse().expect("REPS is a number"))
        .unwrap_or(7)
        .max(1);
    let (ct, a, source) = match (
        load_image(&dir.join("ct.nii")),
        load_mask(&dir.join("mask_a.nii")),
    ) {
        (Ok(ct), Ok(a)) => (ct, a, format!("{}/ct.nii + mask_a.nii", dir.display())),
        _ => {
            let (ct, a) = synthetic();
            (ct, a, "synthetic (no peer data found)".to_string())
        }
    };
    let peer: Option<serde_json::Value> = std::fs::read_to_string(dir.join("ref_times.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    let g = ct.geometry().clone();
    println!(
        "bench_ops: {} ({}x{}x{}, {:?} mm), {} threads, {reps} reps",
        source,
        g.dims[0],
        g.dims[1],
        g.dims[2],
        g.spacing,
        rayon::current_num_threads()
    );
    println!(
        "{:<42} {:>10} {:>10} {:>10}  check / peer",
        "operation", "median_ms", "min_ms", "voxels"
    );

    let report = |name: &str, key: Option<(&str, &str)>, t: (f64, f64), m: &Mask| {
        let mut extra = String::new();
        if let Some((ref_name, peer_key)) = key {
            if let Some(r) = reference(&dir, ref_name, m.geometry().len()) {
                let diff = r
                    .iter()
                    .zip(m.to_bytes().iter())
                    .filter(|(a, b)| a != b)
                    .count();
                extra += &if diff == 0 {
                    "= sarcopenia_ref".to_string()
                } else {
                    format!("DIFFERS in {diff} voxels")
                };
            }
            if let Some(times) = peer
                .as_ref()
                .and_then(|p| p["seconds"][peer_key].as_object())
            {
                for (lib, s) in times {
                    if let Some(s) = s.as_f64() {
                        extra += &format!("; {lib} {:.0} ms ({:.0}x)", s * 1e3, s * 1e3 / t.0);
                    }
                }
            }
        }
        println!(
            "{name:<42} {:>10.1} {:>10.1} {:>10}  {extra}",
            t.0,
            t.1,
            m.count()
        );
    };

    let (t0, t1, thr) = median_ms(reps, || hu_window(&ct, -29.0, 150.0, Some(&a)));
    report(
        "hu_window -29..150 (i16, with mask)",
        Some(("thr", "hu_window")),
        (t0, t1),
        &thr,
    );

    let b331 = Element::cuboid([3, 3, 1]).expect("odd");
    let b333 = Element::cuboid([3, 3, 3]).expect("odd");
    let b553 = Element::cuboid([5, 5, 3]).expect("odd");
    let (t0, t1, closed) = median_ms(reps, || kernels::close(&thr, &b331));
    report(
        "closing (3,3,1)",
        Some(("close331", "closing_331")),
        (t0, t1),
        &closed,
    );
    let (t0, t1, d) = median_ms(reps, || kernels::dilate(&thr, &b333));
    report(
        "dilation (3,3,3)",
        Some(("dil333", "dilation_333")),
        (t0, t1),
        &d,
    );
    let (t0, t1, d) = median_ms(reps, || kernels::dilate(&thr, &b553));
    report(
        "dilation (5,5,3)",
        Some(("dil553", "dilation_553")),
        (t0, t1),
        &d,
    );
    let (t0, t1, cleaned) = median_ms(reps, || {
        cc::remove_small(&closed, Connectivity::Plane8, 0.5, Method::Runs)
    });
    report(
        "remove_small per slice (0.5 ml, 8-conn)",
        Some(("cc2d", "remove_small_per_slice")),
        (t0, t1),
        &cleaned,
    );

    // more, without references
    let (t0, t1, m) = median_ms(reps, || kernels::erode(&thr, &b333));
    report("erosion (3,3,3)", None, (t0, t1), &m);
    let (t0, t1, m) = median_ms(reps, || kernels::open(&thr, &b331));
    report("opening (3,3,1)", None, (t0, t1), &m);
    let (t0, t1, m) = median_ms(reps, || kernels::close(&thr, &b333));
    report("closing (3,3,3)", None, (t0, t1), &m);
    let ell = Element::ellipsoid([4.0, 4.0, 5.0], g.spacing).expect("valid");
    let (t0, t1, m) = median_ms(reps, || kernels::dilate(&thr, &ell));
    report("dilation ellipsoid (4,4,5) mm", None, (t0, t1), &m);
    let (t0, t1, m) = median_ms(reps, || {
        cc::remove_small(&closed, Connectivity::Vertex26, 0.5, Method::Runs)
    });
    report("remove_small 3D (0.5 ml, 26-conn)", None, (t0, t1), &m);
    let (t0, t1, c) = median_ms(reps, || cc::label_runs(&thr, Connectivity::Vertex26));
    println!(
        "{:<42} {:>10.1} {:>10.1} {:>10}  components",
        "label 3D 26-conn (runs)",
        t0,
        t1,
        c.count()
    );
}
