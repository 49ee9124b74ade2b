//! Benchmark of the CompareMasks kernels on a 512x512x200 pair of masks.
//!
//! ```text
//! cargo run --release -p voxflow-nodes --example bench_metrics [DIR] [REPS]
//! ```
//!
//! Loads `DIR/mask_a.nii(.gz)` and `DIR/mask_b.nii(.gz)` (default DIR `/tmp/peerdata`,
//! written by `peers.py --data DIR`), or synthesises a similar pair (a muscle-like ring
//! with holes and speckle, and the same shifted with extra blobs) when they are absent.
//! Prints the median time of: Dice/volumes (one fused counting pass), surface
//! distances (Hausdorff, HD95, ASSD and voxel Hausdorff from two exact distance
//! transforms), and the whole CompareMasks node. Compare with peers.py's `dice` (numpy)
//! and `hausdorff` (SimpleITK) rows, run on the same files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use voxflow_engine::{Geometry, Mask, NodeContext, NodeType, Value};
use voxflow_nodes::io::nifti::{read_samples, NiftiReader};
use voxflow_nodes::metrics::kernels::{
    binary_overlap, binary_surface_distances, mask_pair_codes, surface_distances,
    surface_distances_with, with_surfaces, VoxelBox,
};
use voxflow_nodes::metrics::CompareMasks;
use voxflow_nodes::shared::edt::EdtMethod;

fn median(mut v: Vec<f64>) -> f64 {
    voxflow_nodes::testdata::median(&mut v)
}

/// CPU time (user + system, all threads) of this process in ms, from /proc (Linux);
/// the machine may be shared, so CPU time is printed beside wall time.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ = 100 on Linux
}

/// Median wall time (ms) over `reps` runs after a warm-up, the mean CPU time per run
/// (ms, all threads), and the last result.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f(); // warm-up
    let mut ts = Vec::with_capacity(reps);
    let c0 = cpu_ms();
    for _ in 0..reps {
        let t = Instant::now();
        out = f();
        ts.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if let (Some(c0), Some(c1)) = (c0, cpu_ms()) {
        eprintln!("    (cpu {:.0} ms per run)", (c1 - c0) / reps as f64);
    }
    (median(ts), out)
}

fn load(dir: &Path, stem: &str) -> Option<Mask> {
    let path = [format!("{stem}.nii"), format!("{stem}.nii.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())?;
    let reader = NiftiReader::open(&path)
        .map_err(|e| eprintln!("{e}"))
        .ok()?;
    let geometry = reader.geometry().clone();
    let voxels: Vec<u8> = read_samples(reader).map_err(|e| eprintln!("{e}")).ok()?;
    eprintln!("loaded {}", path.display());
    Mask::from_bytes(geometry, &voxels).ok()
}

/// A pair like peers.py's: an elliptic ring (muscle-like) with dropout holes and
/// speckle in slices 5..195, and the same shifted by (+2, -1, +1) voxels plus blobs.
fn synthesise() -> (Mask, Mask) {
    let dims = [512usize, 512, 200];
    let g = Geometry::new(dims, [0.8, 0.8, 2.5]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20240611);
    let n = g.len();
    let mut a = vec![0u8; n];
    for z in 5..dims[2] - 5 {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let u = (x as f64 - 256.0) / 210.0;
                let v = (y as f64 - 256.0) / 159.0;
                let r = (u * u + v * v).sqrt();
                let th = v.atan2(u);
                let inside = r > 0.755 && r < 0.91 + 0.03 * (3.0 * th).sin();
                let drop = rng.random_bool(0.03);
                let speckle = r < 1.0 && rng.random_bool(2e-4);
                a[g.index(x, y, z)] = u8::from((inside && !drop) || speckle);
            }
        }
    }
    let mut b = vec![0u8; n];
    for z in 1..dims[2] {
        for y in 0..dims[1] - 1 {
            for x in 2..dims[0] {
                b[g.index(x, y, z)] = a[g.index(x - 2, y + 1, z - 1)];
            }
        }
    }
    for _ in 0..12 {
        let (cx, cy, cz) = (
            rng.random_range(60.0..450.0),
            rng.random_range(60.0..450.0),
            rng.random_range(20.0..180.0),
        );
        let (rx, rz) = (rng.random_range(8.0..16.0), rng.random_range(2.5..5.5));
        for z in (cz - rz) as usize..=(cz + rz) as usize {
            for y in (cy - rx) as usize..=(cy + rx) as usize {
                for x in (cx - rx) as usize..=(cx + rx) as usize {
                    let d = ((x as f64 - cx) / rx).powi(2)
                        + ((y as f64 - cy) / rx).powi(2)
                        + ((z as f64 - cz) / rz).powi(2);
                    if d <= 1.0 {
                        b[g.index(x, y, z)] = 1;
                    }
                }
            }
        }
    }
    (
        Mask::from_bytes(g.clone(), &a).unwrap(),
        Mask::from_bytes(g, &b).unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("/tmp/peerdata"));
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let (a, b) = match (load(&dir, "mask_a"), load(&dir, "mask_b")) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            eprintln!(
                "no masks in {}; synthesising a 512x512x200 pair",
                dir.display()
            );
            synthesise()
        }
    };
    let g = a.geometry().clone();
    let dims = g.dims;
    println!(
        "grid {}x{}x{}, spacing {:?} mm, |A| = {}, |B| = {}, threads = {}",
        dims[0],
        dims[1],
        dims[2],
        g.spacing,
        a.count(),
        b.count(),
        rayon::current_num_threads()
    );

    let (t_dice, o) = time(reps, || binary_overlap(&a, &b, &VoxelBox::all(dims)));
    println!(
        "dice + volumes (fused count + bounding boxes): median {t_dice:8.2} ms   dice = {:.6}, intersection = {}",
        o.dice(),
        o.intersection
    );

    let (t_sd, d) = time(reps.min(5), || binary_surface_distances(&a, &b));
    let d = d.expect("both masks non-empty");
    println!(
        "surface distances (2 exact EDTs):            median {t_sd:8.2} ms   hd = {:.4} mm, hd95 = {:.4} mm, \
         assd = {:.4} mm, voxel hd = {:.4} mm (surfaces {} / {})",
        d.hausdorff_mm,
        d.hd95_mm,
        d.mean_surface_distance_mm,
        d.hausdorff_voxel_mm,
        d.surface_voxels_a,
        d.surface_voxels_b
    );

    // Where the surface-distance time goes.
    let bbox = o
        .bbox_a
        .expect("A not empty")
        .union(&o.bbox_b.expect("B not empty"));
    let (t_codes, codes) = time(reps.min(5), || mask_pair_codes(&a, &b, &bbox));
    let (t_surf, _) = time(reps.min(5), || with_surfaces(&codes, bbox.dims()));
    let (t_edt, _) = time(reps.min(5), || {
        surface_distances(&codes, bbox.dims(), g.spacing)
    });
    let (t_sep, sep) = time(reps.min(3), || {
        surface_distances_with(&codes, bbox.dims(), g.spacing, EdtMethod::Separable)
    });
    let sep = sep.expect("both masks non-empty");
    assert!((sep.hausdorff_mm - d.hausdorff_mm).abs() < 1e-9);
    assert!((sep.mean_surface_distance_mm - d.mean_surface_distance_mm).abs() < 1e-9);
    let bd = bbox.dims();
    println!(
        "  breakdown on the union box {}x{}x{} ({:.1} M voxels): codes {t_codes:.1} ms, surfaces {t_surf:.1} ms, \
         surfaces + both directed transforms {t_edt:.1} ms (impl `separable`: {t_sep:.1} ms)",
        bd[0],
        bd[1],
        bd[2],
        bbox.len() as f64 / 1e6
    );

    let node = CompareMasks
        .build(&serde_json::json!({}), "exact_edt")
        .expect("default params");
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (t_node, _) = time(reps.min(5), || {
        let mut ctx = NodeContext::standalone("CompareMasks", Path::new("."))
            .with_input("a", Value::Mask(a.clone()))
            .with_input("b", Value::Mask(b.clone()));
        node.run(&mut ctx).expect("node runs");
        ctx.take_outputs()
    });
    println!("CompareMasks node (all columns):              median {t_node:8.2} ms");
}
