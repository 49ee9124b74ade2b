//! Tests of `MuscleAreaAtLevel` (and the phantom's vertebra map it is shown with): the
//! level slice and areas computed independently from the volumes, SMI, refusals, oblique
//! grids, and the real CT's L1/L2 against the reference per-slice muscle areas and a numpy
//! peer.

use std::process::Command;
use std::sync::Arc;

use voxflow_engine::{Cell, Geometry, Labels, Mask, NodeContext, NodeType, Table, Value, Volume};

use super::{find_level, pixel_area_mm2, si_axis, vertebra_name, LevelError, MuscleAreaAtLevel};
use crate::io::nifti_load::{load_labels, load_mask};
use crate::phantom::{generate, phantom_geometry, vertebra_label_at, vertebrae, PhantomParams};
use crate::testdata::{ct_sm_reference, python};

/// Run the node on `muscle` and `vertebrae` with `params`; the table or the error text.
fn run(muscle: Value, spine: Labels, params: serde_json::Value) -> Result<Table, String> {
    let node = MuscleAreaAtLevel
        .build(&params, "native")
        .map_err(|e| format!("{e:?}"))?;
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = NodeContext::standalone("MuscleAreaAtLevel", dir.path())
        .with_input("muscle", muscle)
        .with_input("vertebrae", Value::Labels(Arc::new(spine)));
    node.run(&mut ctx).map_err(|e| e.to_string())?;
    match ctx.take_outputs().remove("table") {
        Some(Value::Table(t)) => Ok((*t).clone()),
        v => panic!("table output, got {v:?}"),
    }
}

fn cell<'a>(t: &'a Table, name: &str) -> &'a Cell {
    assert_eq!(t.rows.len(), 1, "one row");
    &t.rows[0][t.column(name).unwrap_or_else(|| panic!("column {name}"))]
}

fn num(t: &Table, name: &str) -> f64 {
    cell(t, name)
        .as_f64()
        .unwrap_or_else(|| panic!("{name} numeric"))
}

fn params() -> PhantomParams {
    PhantomParams {
        dims: (96, 80, 24),
        ..PhantomParams::default()
    }
}

/// Voxels of `labels` with a non-zero value in axial slice `z`, counted directly.
fn count_in_slice(labels: &Labels, z: usize, want: impl Fn(u16) -> bool) -> u64 {
    let [nx, ny, _] = labels.dims();
    labels.as_slice()[z * nx * ny..(z + 1) * nx * ny]
        .iter()
        .filter(|&&l| want(l))
        .count() as u64
}

#[test]
fn phantom_vertebrae_are_stacked_l4_l3_l2_on_the_spine_bone() {
    let p = params();
    let spine = vertebrae(&p);
    let g = phantom_geometry(&p);
    let ct = generate(&p).ct;
    let [nx, ny, nz] = g.dims;
    for z in 0..nz {
        let z_mm = g.origin()[2] + z as f64 * g.spacing[2];
        // Level by world height: L3 (29) spans -14..14 mm, discs 14..22 mm, L2 above.
        let want = if z_mm.abs() <= 14.0 {
            29
        } else if (22.0..=50.0).contains(&z_mm) {
            30
        } else if (-50.0..=-22.0).contains(&z_mm) {
            28
        } else {
            0
        };
        assert_eq!(vertebra_label_at(z_mm), want, "slice {z} at {z_mm} mm");
        let slice = &spine.as_slice()[z * nx * ny..(z + 1) * nx * ny];
        let labelled = slice.iter().filter(|&&l| l != 0).count();
        assert!(slice.iter().all(|&l| l == 0 || l == want), "slice {z}");
        if want != 0 {
            assert!(labelled > 50, "slice {z}: {labelled} bone voxels");
            // Labelled voxels are bone in the CT (cortical 700, cancellous 250 HU, sd 15).
            let ct = &ct.as_slice()[z * nx * ny..(z + 1) * nx * ny];
            let hu: Vec<i16> = ct
                .iter()
                .zip(slice)
                .filter(|(_, &l)| l != 0)
                .map(|(&v, _)| v)
                .collect();
            assert!(hu.iter().all(|&v| v > 180), "slice {z}: bone HU {hu:?}");
        } else {
            assert_eq!(labelled, 0, "disc slice {z}");
        }
    }
    // Same params, same map; the phantom's own outputs are untouched by it (its snapshot
    // tests pin their bytes).
    assert_eq!(vertebrae(&p), spine);
}

#[test]
fn phantom_l3_level_sma_and_smi() {
    let p = params();
    let spine = vertebrae(&p);
    let truth = generate(&p).truth;
    let g = phantom_geometry(&p);
    let nz = g.dims[2];

    // Expected level slice, independently: the rounded mean z index of the L3 voxels.
    let (mut n, mut sum) = (0u64, 0u64);
    for z in 0..nz {
        let c = count_in_slice(&spine, z, |l| l == 29);
        n += c;
        sum += c * z as u64;
    }
    let expected = (sum as f64 / n as f64 + 0.5).floor() as usize;
    // L3's mid-height is at world z = 0: the level slice is within half a slice of it.
    let z_mm = g.origin()[2] + expected as f64 * g.spacing[2];
    assert!(z_mm.abs() <= g.spacing[2] / 2.0 + 1e-9, "{z_mm}");

    let h = 1.72;
    let t = run(
        Value::Labels(Arc::new(truth.clone())),
        spine.clone(),
        serde_json::json!({ "height_m": h }),
    )
    .unwrap();
    assert_eq!(cell(&t, "level"), &Cell::Text("L3".into()));
    assert_eq!(num(&t, "vertebra_label"), 29.0);
    assert_eq!(num(&t, "slice"), expected as f64);
    assert!((num(&t, "z_mm") - z_mm).abs() < 1e-9);
    assert_eq!(cell(&t, "truncated"), &Cell::Text("no".into()));
    let pixel_cm2 = g.spacing[0] * g.spacing[1] / 100.0;
    let total = count_in_slice(&truth, expected, |l| l != 0);
    let abd = count_in_slice(&truth, expected, |l| l == 1);
    let para = count_in_slice(&truth, expected, |l| l == 2);
    assert!(abd > 100 && para > 100, "{abd} {para}");
    let sma = total as f64 * pixel_cm2;
    assert!((num(&t, "sma_cm2") - sma).abs() < 1e-9, "{t:?} vs {sma}");
    assert!((num(&t, "area_cm2_label_1") - abd as f64 * pixel_cm2).abs() < 1e-9);
    assert!((num(&t, "area_cm2_label_2") - para as f64 * pixel_cm2).abs() < 1e-9);
    assert_eq!(num(&t, "height_m"), h);
    assert!((num(&t, "smi_cm2_m2") - sma / (h * h)).abs() < 1e-9);

    // A mask of the same voxels: the same SMA, no per-label columns; no height, no SMI.
    let mask = Mask::from_fn(truth.geometry().clone(), |i| truth.as_slice()[i] != 0);
    let t = run(Value::Mask(Arc::new(mask)), spine, serde_json::json!({})).unwrap();
    assert!((num(&t, "sma_cm2") - sma).abs() < 1e-9);
    assert!(t.column("area_cm2_label_1").is_none());
    assert_eq!(cell(&t, "height_m"), &Cell::Null);
    assert_eq!(cell(&t, "smi_cm2_m2"), &Cell::Null);
}

#[test]
fn level_touching_the_grid_edge_is_flagged_truncated() {
    let p = params();
    let t = run(
        Value::Labels(Arc::new(generate(&p).truth)),
        vertebrae(&p),
        serde_json::json!({ "label": 30, "level_name": "second lumbar" }),
    )
    .unwrap();
    assert_eq!(cell(&t, "level"), &Cell::Text("second lumbar".into()));
    assert_eq!(cell(&t, "truncated"), &Cell::Text("yes".into()));
    assert_eq!(num(&t, "vertebra_last_slice"), 23.0);
}

#[test]
fn missing_vertebra_is_an_error_listing_the_labels_present() {
    let p = params();
    let err = run(
        Value::Labels(Arc::new(generate(&p).truth)),
        vertebrae(&p),
        serde_json::json!({ "label": 27 }),
    )
    .unwrap_err();
    for want in ["L5", "label 27 (L5) is absent", "28 L4, 29 L3, 30 L2"] {
        assert!(err.contains(want), "`{want}` in: {err}");
    }
    // The port is named once, right before the cause (it was "input `vertebrae`: L5
    // (input `vertebrae`): label 27 ...").
    assert!(
        err.starts_with("input `vertebrae`: label 27 (L5) is absent"),
        "{err}"
    );
    assert_eq!(err.matches("vertebrae`").count(), 1, "{err}");
    // A level name of the user's own is kept.
    let err = run(
        Value::Labels(Arc::new(generate(&p).truth)),
        vertebrae(&p),
        serde_json::json!({ "label": 99, "level_name": "lowest" }),
    )
    .unwrap_err();
    assert!(err.contains("level `lowest`: label 99 is absent"), "{err}");
    // A map that is not a vertebra map says so, and shows what it holds.
    let truth = generate(&p).truth;
    match find_level(&truth, 29) {
        Err(e @ LevelError::Absent { .. }) => {
            let s = e.to_string();
            assert!(
                s.contains("holds no vertebra label") && s.contains("1, 2"),
                "{s}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn height_out_of_range_is_refused_with_a_hint() {
    for (h, hint) in [
        (172.0, "in centimetres? 172 cm is 1.72 m"),
        (0.3, "got 0.3"),
        (-1.7, "got -1.7"),
        (3.0, "got 3"),
    ] {
        let err = match MuscleAreaAtLevel.build(&serde_json::json!({ "height_m": h }), "native") {
            Err(e) => format!("{e:?}"),
            Ok(_) => panic!("height {h} accepted"),
        };
        assert!(err.contains("height_m") && err.contains(hint), "{h}: {err}");
    }
    assert!(MuscleAreaAtLevel
        .build(&serde_json::json!({ "label": 0 }), "native")
        .is_err());
    for h in [0.0, 0.5, 1.72, 2.5] {
        assert!(MuscleAreaAtLevel
            .build(&serde_json::json!({ "height_m": h }), "native")
            .is_ok());
    }
}

#[test]
fn names_follow_totalsegmentator_v2() {
    let names: Vec<String> = (26..=50).filter_map(vertebra_name).collect();
    assert_eq!(
        names[..8],
        ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"]
    );
    assert_eq!(names[names.len() - 1], "C1");
    assert_eq!(vertebra_name(43).as_deref(), Some("T1"));
    assert_eq!(vertebra_name(44).as_deref(), Some("C7"));
    assert_eq!(vertebra_name(25), None);
}

/// A grid whose superior-inferior axis is voxel axis 0, with sheared in-plane axes: the
/// level is found along axis 0 and the pixel area is the parallelogram's.
#[test]
fn permuted_and_sheared_grids() {
    // Axis 0 -> world z (2 mm), axis 1 -> world x (0.8 mm), axis 2 -> world y with a shear
    // towards x (0.3 mm per voxel) and 1.1 mm along y.
    let mut affine = [[0.0; 4]; 4];
    affine[2][0] = 2.0;
    affine[0][1] = 0.8;
    affine[0][2] = 0.3;
    affine[1][2] = 1.1;
    affine[3][3] = 1.0;
    let dims = [10, 6, 5];
    let g = Geometry::from_affine(dims, affine);
    assert_eq!(si_axis(&g), 0);
    // |(0.8,0,0) x (0.3,1.1,0)| = 0.8 * 1.1.
    assert!((pixel_area_mm2(&g, 0) - 0.88).abs() < 1e-12);
    // Vertebra 29 on axis-0 slices 3..=6 (centroid 4.5 -> slice 5), muscle: 7 voxels on
    // slice 5 (4 of label 1, 3 of label 2), a few elsewhere.
    let idx = |x: usize, y: usize, z: usize| x + dims[0] * (y + dims[1] * z);
    let mut spine = vec![0u16; 300];
    let mut muscle = vec![0u16; 300];
    for x in 3..=6 {
        spine[idx(x, 2, 2)] = 29;
    }
    for k in 0..7 {
        muscle[idx(5, k % 6, k / 6)] = 1 + (k % 2) as u16;
    }
    for k in 0..11 {
        muscle[idx(k % 5, 5, k % 5)] = 1;
    }
    let spine = Volume::from_vec(g.clone(), spine).unwrap();
    let muscle = Volume::from_vec(g.clone(), muscle).unwrap();
    let t = run(
        Value::Labels(Arc::new(muscle)),
        spine,
        serde_json::json!({ "height_m": 2.0 }),
    )
    .unwrap();
    assert_eq!(num(&t, "slice"), 5.0);
    assert!((num(&t, "sma_cm2") - 7.0 * 0.0088).abs() < 1e-12);
    assert!((num(&t, "area_cm2_label_1") - 4.0 * 0.0088).abs() < 1e-12);
    assert!((num(&t, "smi_cm2_m2") - 7.0 * 0.0088 / 4.0).abs() < 1e-12);
    // World z of slice 5 (axis 0) at the centroid's in-plane position.
    assert!((num(&t, "z_mm") - 10.0).abs() < 1e-12);
}

/// The real CT (ct_sm, 3 mm): TotalSegmentator's map holds L1 and L2 (no L3). The level
/// slices and the muscle areas there must equal the reference per-slice skeletal muscle
/// areas (scipy/numpy, reference_values_ct_sm.json) and a numpy peer's centroid slice.
#[test]
fn real_ct_l1_l2_match_reference_areas_and_numpy() {
    let Some((data, refs)) = ct_sm_reference("MuscleAreaAtLevel on ct_sm L1/L2") else {
        return;
    };
    let per_slice: Vec<f64> = refs["skeletal_muscle"]["per_slice_area_cm2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let total = load_labels(&data.join("ct_sm_total.nii.gz")).unwrap();
    let muscle_path = data.join("ct_sm_tissue_skeletal_muscle.nii.gz");
    let muscle = Value::Mask(Arc::new(load_mask(&muscle_path).unwrap()));
    // The L3 the users want is not in this crop: the error names it and what is there.
    let err = run(muscle.clone(), total.clone(), serde_json::json!({})).unwrap_err();
    assert!(
        err.contains("label 29 (L3) is absent") && err.contains("30 L2, 31 L1, 32 T12, 33 T11"),
        "{err}"
    );

    let py = python("MuscleAreaAtLevel on ct_sm vs numpy", &["numpy", "nibabel"]);
    for (label, name) in [(31u16, "L1"), (30, "L2")] {
        let t = run(
            muscle.clone(),
            total.clone(),
            serde_json::json!({ "label": label, "height_m": 1.75 }),
        )
        .unwrap();
        let slice = num(&t, "slice") as usize;
        let sma = num(&t, "sma_cm2");
        eprintln!(
            "ct_sm {name}: slice {slice} (z {:.1} mm, vertebra slices {}..={}, truncated {:?}), SMA {sma:.2} cm2 vs reference {:.2}, SMI {:.2} cm2/m2 at 1.75 m",
            num(&t, "z_mm"),
            num(&t, "vertebra_first_slice"),
            num(&t, "vertebra_last_slice"),
            cell(&t, "truncated"),
            per_slice[slice],
            num(&t, "smi_cm2_m2")
        );
        assert_eq!(cell(&t, "level"), &Cell::Text(name.into()));
        // The reference rounds to 0.01 cm² (one 3 mm voxel is 0.09 cm²).
        assert!(
            (sma - per_slice[slice]).abs() <= 0.005 + 1e-9,
            "{name}: {sma} vs {}",
            per_slice[slice]
        );
        assert!((num(&t, "smi_cm2_m2") - sma / (1.75 * 1.75)).abs() < 1e-9);
        if let Some(py) = &py {
            let script = format!(
                "import nibabel as nib, numpy as np\n\
                 t = nib.load(r'{}'); a = np.asarray(t.dataobj); A = t.affine[:3, :3]\n\
                 m = np.asarray(nib.load(r'{}').dataobj) != 0\n\
                 ax = int(np.argmax(np.abs(A[2] / np.linalg.norm(A, axis=0))))\n\
                 c = np.argwhere(a == {label}).mean(axis=0)\n\
                 s = int(np.floor(c[ax] + 0.5))\n\
                 o = [i for i in range(3) if i != ax]\n\
                 px = np.linalg.norm(np.cross(A[:, o[0]], A[:, o[1]]))\n\
                 print(s, np.take(m, s, axis=ax).sum() * px / 100.0)",
                data.join("ct_sm_total.nii.gz").display(),
                muscle_path.display()
            );
            let out = Command::new(py).args(["-c", &script]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).unwrap();
            let mut it = text.split_whitespace();
            let s: usize = it.next().unwrap().parse().unwrap();
            let area: f64 = it.next().unwrap().parse().unwrap();
            assert_eq!(s, slice, "{name}: numpy slice");
            assert!((area - sma).abs() < 1e-9, "{name}: numpy {area} vs {sma}");
        }
    }
}
