//! Tests of the phantom: determinism, anatomy plausibility, orientation, the size of the
//! simulated prediction errors, geometry and parameter checks.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use voxflow_engine::{Image, NodeContext, NodeType, Value};

use super::{generate, phantom_geometry, Phantom, PhantomParams, PhantomVolumes};

fn small(seed: u64) -> PhantomParams {
    PhantomParams {
        seed,
        dims: (96, 80, 6),
        spacing_mm: (3.0, 3.0, 3.0),
    }
}

/// Dice of `label` between two label maps, computed directly.
fn dice(a: &[u16], b: &[u16], label: u16) -> f64 {
    let (mut both, mut na, mut nb) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        na += (x == label) as usize;
        nb += (y == label) as usize;
        both += (x == label && y == label) as usize;
    }
    2.0 * both as f64 / (na + nb).max(1) as f64
}

#[test]
fn same_seed_gives_identical_volumes() {
    let p = PhantomParams::default();
    assert_eq!(generate(&p), generate(&p));
}

#[test]
fn different_seeds_give_different_volumes() {
    let (a, b) = (generate(&small(1)), generate(&small(2)));
    assert_ne!(a.ct, b.ct);
    assert_ne!(a.truth, b.truth, "the anatomy itself varies with the seed");
    assert_ne!(a.prediction, b.prediction);
}

#[test]
fn thread_count_does_not_change_the_result() {
    let p = small(5);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| generate(&p))
    };
    let one = run(1);
    assert_eq!(one, run(3));
    assert_eq!(one, run(8));
}

#[test]
fn both_labels_on_every_slice_and_abdominal_larger() {
    for seed in [1, 2, 3] {
        let v = generate(&PhantomParams {
            seed,
            ..PhantomParams::default()
        });
        let [nx, ny, nz] = v.truth.dims();
        let (mut abd, mut para) = (0usize, 0usize);
        for (z, slice) in v.truth.as_slice().chunks(nx * ny).enumerate() {
            let a = slice.iter().filter(|&&l| l == 1).count();
            let p = slice.iter().filter(|&&l| l == 2).count();
            assert!(
                a > 0 && p > 0,
                "seed {seed} slice {z}: abdominal {a}, paravertebral {p}"
            );
            assert!(
                slice.iter().all(|&l| l <= 2),
                "only labels 0, 1, 2 are used"
            );
            abd += a;
            para += p;
        }
        assert_eq!(nz, 24);
        assert!(
            abd > para,
            "seed {seed}: abdominal {abd} <= paravertebral {para}"
        );
        // Muscles are a sizeable but minor part of the body.
        let body = v.ct.as_slice().iter().filter(|&&h| h > -500).count();
        let frac = (abd + para) as f64 / body as f64;
        assert!(
            (0.05..0.35).contains(&frac),
            "seed {seed}: muscle fraction {frac}"
        );
    }
}

#[test]
fn truth_voxels_are_mostly_in_the_muscle_hu_window() {
    let v = generate(&PhantomParams::default());
    let hu = v.ct.as_slice();
    let (mut inside, mut total) = (0usize, 0usize);
    for (i, &l) in v.truth.as_slice().iter().enumerate() {
        if l != 0 {
            total += 1;
            inside += (-29..=150).contains(&hu[i]) as usize;
        }
    }
    let frac = inside as f64 / total as f64;
    assert!(
        frac > 0.9,
        "only {frac:.3} of truth voxels within -29..150 HU"
    );
    // And fat looks like fat: voxels near -100 HU exist in quantity.
    let fat = hu.iter().filter(|&&h| (-150..=-50).contains(&h)).count();
    assert!(fat as f64 > 0.2 * hu.len() as f64, "fat voxels {fat}");
}

#[test]
fn liver_is_on_the_patients_right_which_is_high_x() {
    let p = PhantomParams::default();
    let v = generate(&p);
    let g = v.ct.geometry();
    let [nx, ny, nz] = g.dims;
    // RAS+ with identity direction: high x indices are at positive world x (patient right).
    assert!(g.to_world([(nx - 1) as f64, 0.0, 0.0])[0] > 0.0);
    // Soft tissue outside the labelled muscles (liver, kidneys, bowel wall, psoas) per
    // half; the liver makes the right half clearly heavier.
    let (mut right, mut left) = (0usize, 0usize);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = g.index(x, y, z);
                let h = v.ct.as_slice()[i];
                if v.truth.as_slice()[i] == 0 && (45..=100).contains(&h) {
                    if 2 * x + 1 > nx {
                        right += 1;
                    } else {
                        left += 1;
                    }
                }
            }
        }
    }
    assert!(
        right as f64 > 1.5 * left as f64,
        "right {right} vs left {left}"
    );
}

#[test]
fn prediction_differs_moderately_from_truth() {
    for seed in [1, 2, 3, 4] {
        let v = generate(&PhantomParams {
            seed,
            ..PhantomParams::default()
        });
        for label in [1, 2] {
            let d = dice(v.truth.as_slice(), v.prediction.as_slice(), label);
            assert!(
                (0.75..=0.95).contains(&d),
                "seed {seed} label {label}: dice {d:.3}"
            );
        }
    }
}

#[test]
fn prediction_errors_are_mostly_removable_by_the_hu_window() {
    // Among false positives of the prediction, most lie outside -29..150 HU (fat).
    let v = generate(&PhantomParams::default());
    let (hu, t, p) = (v.ct.as_slice(), v.truth.as_slice(), v.prediction.as_slice());
    let fp: Vec<usize> = (0..p.len()).filter(|&i| p[i] != 0 && t[i] == 0).collect();
    let outside = fp
        .iter()
        .filter(|&&i| !(-29..=150).contains(&hu[i]))
        .count();
    assert!(
        outside as f64 > 0.7 * fp.len() as f64,
        "{outside} of {} false positives outside the window",
        fp.len()
    );
}

#[test]
fn geometry_follows_dims_and_spacing_centred_on_origin() {
    let p = PhantomParams {
        seed: 1,
        dims: (40, 30, 5),
        spacing_mm: (0.8, 1.2, 2.5),
    };
    let v = generate(&p);
    for vol_geom in [v.ct.geometry(), v.truth.geometry(), v.prediction.geometry()] {
        assert_eq!(vol_geom.dims, [40, 30, 5]);
        assert_eq!(vol_geom.spacing, [0.8, 1.2, 2.5]);
        assert_eq!(vol_geom, &phantom_geometry(&p));
        assert_eq!(
            vol_geom.direction(),
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        );
        let centre = vol_geom.to_world([19.5, 14.5, 2.0]);
        assert!(
            centre.iter().all(|c| c.abs() < 1e-9),
            "centre at {centre:?}"
        );
    }
    assert_eq!(v.ct.as_slice().len(), 40 * 30 * 5);
}

/// Area in mm² of voxels matching `f` on slice `z`.
fn area_mm2(v: &PhantomVolumes, z: usize, f: impl Fn(i16, u16) -> bool) -> f64 {
    let g = v.ct.geometry();
    let plane = g.dims[0] * g.dims[1];
    let (ct, truth) = (v.ct.as_slice(), v.truth.as_slice());
    let n = (z * plane..(z + 1) * plane)
        .filter(|&i| f(ct[i], truth[i]))
        .count();
    n as f64 * g.spacing[0] * g.spacing[1]
}

#[test]
fn anatomy_is_in_millimetres_not_voxels() {
    // The same field of view at two spacings gives the same anatomy (up to sampling).
    let coarse = generate(&PhantomParams {
        seed: 4,
        dims: (96, 80, 3),
        spacing_mm: (3.0, 3.0, 3.0),
    });
    let fine = generate(&PhantomParams {
        seed: 4,
        dims: (192, 160, 3),
        spacing_mm: (1.5, 1.5, 3.0),
    });
    let fov = 288.0 * 240.0;
    let body_c = area_mm2(&coarse, 1, |h, _| h > -500);
    let body_f = area_mm2(&fine, 1, |h, _| h > -500);
    assert!((body_c / body_f - 1.0).abs() < 0.03, "{body_c} vs {body_f}");
    // An ellipse at 85% of the field of view covers pi/4 * 0.85^2 of it.
    let expect = std::f64::consts::FRAC_PI_4 * 0.85 * 0.85;
    assert!(
        (body_f / fov - expect).abs() < 0.08,
        "body covers {}",
        body_f / fov
    );
    for label in [1, 2] {
        let c = area_mm2(&coarse, 1, |_, l| l == label);
        let f = area_mm2(&fine, 1, |_, l| l == label);
        assert!((c / f - 1.0).abs() < 0.15, "label {label}: {c} vs {f} mm2");
    }
}

#[test]
fn slices_differ_along_z() {
    let v = generate(&small(1));
    let [nx, ny, _] = v.truth.dims();
    let t = v.truth.as_slice();
    let (first, last) = (&t[..nx * ny], &t[5 * nx * ny..6 * nx * ny]);
    assert_ne!(first, last);
}

fn build_errors(params: serde_json::Value) -> Vec<voxflow_engine::ParamError> {
    match Phantom.build(&params, "native") {
        Ok(_) => panic!("params {params} should be rejected"),
        Err(e) => e,
    }
}

#[test]
fn bad_dims_are_rejected_naming_the_field() {
    for (dims, axis) in [
        (json!([8, 64, 4]), "x size"),
        (json!([64, 15, 4]), "y size"),
        (json!([64, 64, 0]), "z size"),
        (json!([2000, 64, 4]), "x size"),
        (json!([64, 64, 1025]), "z size"),
    ] {
        let errs = build_errors(json!({ "dims": dims }));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, vec!["dims".to_string()]);
        assert!(errs[0].message.contains(axis), "{}", errs[0].message);
    }
    // Edge values are fine.
    assert!(Phantom
        .build(&json!({ "dims": [16, 16, 1] }), "native")
        .is_ok());
}

#[test]
fn bad_spacing_is_rejected_naming_the_field() {
    for spacing in [
        json!([0.0, 1.0, 1.0]),
        json!([1.0, -1.0, 1.0]),
        json!([1.0, 1.0, 10.5]),
    ] {
        let errs = build_errors(json!({ "spacing_mm": spacing }));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, vec!["spacing_mm".to_string()]);
        assert!(errs[0].message.contains("spacing"), "{}", errs[0].message);
    }
    assert!(Phantom
        .build(&json!({ "spacing_mm": [10.0, 0.1, 10.0] }), "native")
        .is_ok());
}

#[test]
fn unknown_and_ill_typed_params_are_rejected() {
    let errs = build_errors(json!({ "sed": 3 }));
    assert!(errs[0].message.contains("sed"), "{:?}", errs);
    let errs = build_errors(json!({ "seed": "three" }));
    assert_eq!(errs[0].path, vec!["seed".to_string()]);
}

#[test]
fn node_outputs_ct_truth_and_prediction() {
    let node = Phantom
        .build(&json!({ "seed": 3, "dims": [64, 64, 8] }), "native")
        .unwrap();
    let mut ctx = NodeContext::standalone("Phantom", Path::new("/nonexistent"));
    node.run(&mut ctx).unwrap();
    let out = ctx.take_outputs();
    let expected = generate(&PhantomParams {
        seed: 3,
        dims: (64, 64, 8),
        ..PhantomParams::default()
    });
    match &out["ct"] {
        Value::Image(img) => assert_eq!(**img, Image::I16(expected.ct)),
        other => panic!("ct is {other:?}"),
    }
    match (&out["truth"], &out["prediction"]) {
        (Value::Labels(t), Value::Labels(p)) => {
            assert_eq!(*t, Arc::new(expected.truth));
            assert_eq!(*p, Arc::new(expected.prediction));
        }
        other => panic!("labels are {other:?}"),
    }
    assert_eq!(out.len(), 3);
}

/// The sarcopenia post-processing reference (numpy + scipy) applied to the phantom must
/// clearly improve Dice: the errors are the kind it is designed to remove. Needs the
/// Python peer (VOXFLOW_PYTHON) and the shared peers folder; skipped otherwise.
#[test]
fn reference_postprocessing_improves_dice() {
    let test = "reference_postprocessing_improves_dice";
    let Some(python) = crate::testdata::python(test, &["numpy", "scipy", "nibabel"]) else {
        return;
    };
    let Some(data) = crate::testdata::shared_data(test) else {
        return;
    };
    let peers = data.join("../peers");
    if !peers.join("sarcopenia_ref.py").exists() {
        crate::testdata::skip(
            test,
            &format!("no sarcopenia_ref.py in {}", peers.display()),
        );
        return;
    }
    let p = PhantomParams::default();
    let v = generate(&p);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
    write(
        "ct.raw",
        v.ct.as_slice()
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect(),
    );
    write(
        "truth.raw",
        v.truth
            .as_slice()
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect(),
    );
    write(
        "pred.raw",
        v.prediction
            .as_slice()
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect(),
    );
    let script = r#"
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from sarcopenia_ref import postprocess
d, nx, ny, nz = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sp = [float(x) for x in sys.argv[6:9]]
rd = lambda n, t: np.fromfile(f"{d}/{n}", t).reshape((nz, ny, nx)).transpose(2, 1, 0)
ct, tr, pr = rd("ct.raw", "<i2"), rd("truth.raw", "<u2"), rd("pred.raw", "<u2")
out = postprocess(ct, pr.astype(np.int32), sp)
for l in (1, 2):
    t = tr == l
    print(2 * (t & (out == l)).sum() / (t.sum() + (out == l).sum()))
"#;
    let (nx, ny, nz) = p.dims;
    let (sx, sy, sz) = p.spacing_mm;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&peers)
        .arg(dir.path())
        .args([nx, ny, nz].map(|n| n.to_string()))
        .args([sx, sy, sz].map(|s| s.to_string()))
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "skipping: the Python peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let after: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    for (k, label) in [1u16, 2].into_iter().enumerate() {
        let before = dice(v.truth.as_slice(), v.prediction.as_slice(), label);
        eprintln!("label {label}: dice {before:.3} -> {:.3}", after[k]);
        assert!(
            after[k] > before + 0.04,
            "label {label}: dice {before:.3} -> {:.3}",
            after[k]
        );
    }
}
