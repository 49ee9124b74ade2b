use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use serde_json::json;
use voxflow_engine::{
    Cell, Geometry, Labels, Mask, NodeContext, NodeError, NodeType, Table, Value, Volume,
};

use super::*;
use crate::metrics::test_nifti::load_labels;
use crate::testdata::shared_data;

fn run_node(params: serde_json::Value, inputs: Vec<(&str, Value)>) -> Result<Table, NodeError> {
    run_impl("exact_edt", params, inputs)
}

fn run_impl(
    imp: &str,
    params: serde_json::Value,
    inputs: Vec<(&str, Value)>,
) -> Result<Table, NodeError> {
    let node = CompareMasks
        .build(&params, imp)
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("CompareMasks", Path::new("."));
    for (port, v) in inputs {
        ctx = ctx.with_input(port, v);
    }
    node.run(&mut ctx)?;
    let out = ctx.take_outputs();
    match out.get("table") {
        Some(Value::Table(t)) => Ok((**t).clone()),
        other => panic!("no table output: {other:?}"),
    }
}

fn labels_value(l: Labels) -> Value {
    Value::Labels(Arc::new(l))
}

fn mask_value(m: Mask) -> Value {
    Value::Mask(Arc::new(m))
}

/// Rows of a table keyed by label, each a map column -> cell.
fn rows(t: &Table) -> BTreeMap<i64, BTreeMap<String, Cell>> {
    assert_eq!(
        t.columns,
        COLUMNS.to_vec(),
        "columns must be exactly the documented ones"
    );
    t.rows
        .iter()
        .map(|r| {
            let Cell::Int(label) = r[0] else {
                panic!("label column must be Int")
            };
            (
                label,
                t.columns.iter().cloned().zip(r.iter().cloned()).collect(),
            )
        })
        .collect()
}

fn f(row: &BTreeMap<String, Cell>, col: &str) -> f64 {
    row[col]
        .as_f64()
        .unwrap_or_else(|| panic!("{col} is {:?}", row[col]))
}

fn grid(dims: [usize; 3], spacing: [f64; 3]) -> Geometry {
    Geometry::new(dims, spacing)
}

fn labels_from(
    dims: [usize; 3],
    spacing: [f64; 3],
    fill: impl Fn(usize, usize, usize) -> u16,
) -> Labels {
    let mut v = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                v.push(fill(x, y, z));
            }
        }
    }
    Volume::from_vec(grid(dims, spacing), v).unwrap()
}

// ---------------------------------------------------------------- reference data

/// Every pair of `metrics_reference.json`, reproduced from the files it names:
/// "tissue/NAME: a9427a8 vs c7e4e4b" is `ct_sm_tissue_NAME` (a, the current model)
/// vs `ct_sm_tissue_NAME_v2023` (b); "total normal vs fast: N name" is label N of
/// `ct_sm_total` vs `ct_sm_total_fast`; "muscles 86-89 union" is the union of 86..=89.
/// The voxel counts n_a and n_b confirm which file is which.
#[test]
fn matches_metrics_reference() {
    for imp in ["exact_edt", "separable"] {
        check_reference(imp);
    }
}

fn check_reference(imp: &str) {
    let Some(dir) = shared_data("metrics reference test") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("metrics_reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pairs = reference["pairs"].as_object().unwrap();
    assert!(
        pairs.len() >= 14,
        "expected the 14 reference pairs, found {}",
        pairs.len()
    );

    let total = load_labels(&dir.join("ct_sm_total.nii.gz"));
    let fast = load_labels(&dir.join("ct_sm_total_fast.nii.gz"));
    // All single-label "total" pairs in one multi-label run.
    let mut total_labels = Vec::new();
    for key in pairs.keys() {
        if let Some(rest) = key.strip_prefix("total normal vs fast: ") {
            if let Ok(l) = rest.split_whitespace().next().unwrap().parse::<u16>() {
                total_labels.push(l);
            }
        }
    }
    let total_table = run_impl(
        imp,
        json!({"labels": total_labels}),
        vec![
            ("a", labels_value(total.clone())),
            ("b", labels_value(fast.clone())),
        ],
    )
    .unwrap();
    let total_rows = rows(&total_table);

    let mut checked = 0;
    for (key, want) in pairs {
        let row: BTreeMap<String, Cell> = if let Some(rest) = key.strip_prefix("tissue/") {
            let name = rest.split(':').next().unwrap();
            let a = load_labels(&dir.join(format!("ct_sm_tissue_{name}.nii.gz")));
            let b = load_labels(&dir.join(format!("ct_sm_tissue_{name}_v2023.nii.gz")));
            // Binary masks: run one as Mask and one as Labels to cover both input kinds.
            let a_mask = Mask::from_fn(a.geometry().clone(), |i| a.as_slice()[i] != 0);
            let t = run_impl(
                imp,
                json!({}),
                vec![("a", mask_value(a_mask)), ("b", labels_value(b))],
            )
            .unwrap();
            let r = rows(&t);
            assert_eq!(r.keys().copied().collect::<Vec<_>>(), vec![1], "{key}");
            r[&1].clone()
        } else if key.ends_with("muscles 86-89 union") {
            let union = |l: &Labels| -> Mask {
                Mask::from_fn(l.geometry().clone(), |i| {
                    (86..=89).contains(&l.as_slice()[i])
                })
            };
            let t = run_impl(
                imp,
                json!({}),
                vec![
                    ("a", mask_value(union(&total))),
                    ("b", mask_value(union(&fast))),
                ],
            )
            .unwrap();
            rows(&t)[&1].clone()
        } else {
            let rest = key
                .strip_prefix("total normal vs fast: ")
                .expect("known key format");
            let label: i64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            total_rows[&label].clone()
        };
        let num = |k: &str| {
            want[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{key}: {k} missing"))
        };
        assert_eq!(row["voxels_a"], Cell::Int(num("n_a") as i64), "{key}: n_a");
        assert_eq!(row["voxels_b"], Cell::Int(num("n_b") as i64), "{key}: n_b");
        let checks = [
            ("dice", "dice", 1e-4),
            ("sitk_dice", "dice", 1e-4),
            ("sitk_jaccard", "jaccard", 1e-4),
            ("sitk_hausdorff_mm", "hausdorff_voxel_mm", 1e-3),
            ("surface_hd_mm", "hausdorff_mm", 1e-3),
            ("surface_hd95_mm", "hd95_mm", 1e-3),
            ("assd_mm", "mean_surface_distance_mm", 1e-3),
        ];
        for (rk, col, tol) in checks {
            let (w, g) = (num(rk), f(&row, col));
            assert!(
                (w - g).abs() <= tol,
                "{imp}: {key}: {col} = {g}, reference {rk} = {w}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, pairs.len());
}

// ---------------------------------------------------------------- semantics

#[test]
fn empty_masks_give_documented_values() {
    let dims = [6, 5, 4];
    let a = labels_from(dims, [1.0; 3], |x, y, z| {
        u16::from((1..4).contains(&x) && y == 2 && z == 1)
    });
    let b = labels_from(dims, [1.0; 3], |_, _, _| 0);
    let t = run_node(
        json!({"labels": [1, 7]}),
        vec![
            ("a", labels_value(a.clone())),
            ("b", labels_value(b.clone())),
        ],
    )
    .unwrap();
    let p = CompareMasksParams {
        labels: Some(vec![1, 7]),
        ..Default::default()
    };
    let (la, lb) = (
        LabelInput::Labels(Arc::new(a)),
        LabelInput::Labels(Arc::new(b)),
    );
    let (_, notes) = compare(
        &la,
        &lb,
        &la.geometry().clone(),
        &VoxelBox::all(dims),
        &p,
        EdtMethod::Hybrid,
    )
    .unwrap();
    let r = rows(&t);
    // One side empty: dice 0, distances Null, a note.
    assert_eq!(f(&r[&1], "dice"), 0.0);
    assert_eq!(f(&r[&1], "jaccard"), 0.0);
    assert_eq!(f(&r[&1], "volume_diff_ml"), -3.0 / 1000.0);
    for c in [
        "hausdorff_mm",
        "hd95_mm",
        "mean_surface_distance_mm",
        "hausdorff_voxel_mm",
    ] {
        assert_eq!(r[&1][c], Cell::Null, "{c}");
    }
    assert!(
        notes.iter().any(|n| n.contains("label 1: empty in b")),
        "{notes:?}"
    );
    // Both empty: dice 1, distances 0.
    assert_eq!(f(&r[&7], "dice"), 1.0);
    assert_eq!(f(&r[&7], "jaccard"), 1.0);
    assert_eq!(f(&r[&7], "hausdorff_mm"), 0.0);
    assert_eq!(f(&r[&7], "hausdorff_voxel_mm"), 0.0);
    // No NaN anywhere.
    assert!(t
        .rows
        .iter()
        .flatten()
        .all(|c| !matches!(c, Cell::Float(v) if !v.is_finite())));
}

#[test]
fn two_empty_masks_give_no_rows_and_say_so() {
    let g = grid([6, 5, 4], [1.0; 3]);
    let mut m = Mask::zeros(g.clone());
    let empty = LabelInput::Mask(Arc::new(m.clone()));
    let (rows, notes) = compare(
        &empty,
        &empty,
        &g,
        &VoxelBox::all(g.dims),
        &CompareMasksParams::default(),
        EdtMethod::Hybrid,
    )
    .unwrap();
    assert!(rows.is_empty());
    assert!(
        notes.iter().any(|n| n.contains("nothing to compare")),
        "{notes:?}"
    );
    // A mask with a voxel outside the region counts as empty there; inside, as label 1.
    m.set(5, 4, 3, true);
    let one = LabelInput::Mask(Arc::new(m));
    let corner = VoxelBox {
        lo: [0, 0, 0],
        hi: [5, 4, 3],
    };
    assert_eq!(one.labels_present(&corner), Vec::<u16>::new());
    assert_eq!(one.labels_present(&VoxelBox::all(g.dims)), vec![1]);
}

#[test]
fn default_labels_are_those_present_in_either() {
    let dims = [8, 8, 3];
    let a = labels_from(dims, [1.0; 3], |x, _, _| if x < 2 { 3 } else { 0 });
    let b = labels_from(dims, [1.0; 3], |x, _, _| if x > 5 { 9 } else { 0 });
    let t = run_node(
        json!({}),
        vec![("a", labels_value(a)), ("b", labels_value(b))],
    )
    .unwrap();
    assert_eq!(rows(&t).keys().copied().collect::<Vec<_>>(), vec![3, 9]);
}

#[test]
fn mapping_pairs_differently_numbered_labels() {
    let dims = [10, 9, 4];
    let sp = [0.7, 0.9, 2.5];
    let shape = |x: usize, y: usize, z: usize| (2..7).contains(&x) && (3..6).contains(&y) && z >= 1;
    let a = labels_from(dims, sp, |x, y, z| if shape(x, y, z) { 86 } else { 0 });
    let b = labels_from(dims, sp, |x, y, z| if shape(x, y, z) { 100 } else { 0 });
    let t = run_node(
        json!({"mapping": [[86, 100]]}),
        vec![
            ("a", labels_value(a.clone())),
            ("b", labels_value(b.clone())),
        ],
    )
    .unwrap();
    let r = rows(&t);
    assert_eq!(r.keys().copied().collect::<Vec<_>>(), vec![86]);
    assert_eq!(f(&r[&86], "dice"), 1.0);
    assert_eq!(f(&r[&86], "hausdorff_mm"), 0.0);
    // Without the mapping, 86 and 100 are two rows with one side empty each.
    let t = run_node(
        json!({}),
        vec![("a", labels_value(a.clone())), ("b", labels_value(b))],
    )
    .unwrap();
    assert_eq!(rows(&t).keys().copied().collect::<Vec<_>>(), vec![86, 100]);
    // Two labels of a on one label of b is an error, not a silent merge.
    let b2 = labels_from(dims, sp, |x, y, z| if shape(x, y, z) { 100 } else { 0 });
    let a2 = labels_from(dims, sp, |x, _, _| if x == 0 { 100 } else { 86 });
    let err = run_node(
        json!({"mapping": [[86, 100]]}),
        vec![("a", labels_value(a2)), ("b", labels_value(b2))],
    )
    .unwrap_err();
    assert!(err.to_string().contains("label 100 of b"), "{err}");
}

#[test]
fn regions_restrict_the_comparison() {
    let dims = [12, 10, 10];
    let sp = [1.0, 1.0, 2.0];
    // Same block in both, except that b has an extra block in slices 7..10.
    let block = |x: usize, y: usize, z: usize| {
        (2..8).contains(&x) && (2..8).contains(&y) && (1..6).contains(&z)
    };
    let a = labels_from(dims, sp, |x, y, z| u16::from(block(x, y, z)));
    let b = labels_from(dims, sp, |x, y, z| {
        u16::from(block(x, y, z) || (z >= 7 && x < 3 && y < 3))
    });
    let va = || labels_value(a.clone());
    let vb = || labels_value(b.clone());
    let t = run_node(json!({}), vec![("a", va()), ("b", vb())]).unwrap();
    assert!(f(&rows(&t)[&1], "dice") < 1.0);

    let t = run_node(
        json!({"region": "slices", "slices": [0, 6]}),
        vec![("a", va()), ("b", vb())],
    )
    .unwrap();
    let r = rows(&t);
    assert_eq!(f(&r[&1], "dice"), 1.0);
    assert_eq!(f(&r[&1], "hausdorff_voxel_mm"), 0.0);

    // Cutting the block at slice 3: the cut face is surface, so both masks still agree,
    // and only slices 2..=3 count.
    let t = run_node(
        json!({"region": "slices", "slices": [2, 3]}),
        vec![("a", va()), ("b", vb())],
    )
    .unwrap();
    assert_eq!(t.rows[0][1], Cell::Int(72));

    // label_slices: slices where the region input has label 5 (z = 1..=4).
    let reg = labels_from(dims, sp, |_, _, z| if (1..5).contains(&z) { 5 } else { 0 });
    let t = run_node(
        json!({"region": "label_slices", "region_labels": [5]}),
        vec![
            ("a", va()),
            ("b", vb()),
            ("region", labels_value(reg.clone())),
        ],
    )
    .unwrap();
    let r = rows(&t);
    assert_eq!(r[&1]["voxels_a"], Cell::Int(36 * 4));
    assert_eq!(f(&r[&1], "dice"), 1.0);

    // bounding_box: the box of the region's non-zero voxels (x, y < 3, z >= 7 here).
    let reg = labels_from(dims, sp, |x, y, z| u16::from(x < 3 && y < 3 && z >= 8));
    let t = run_node(
        json!({"region": "bounding_box"}),
        vec![("a", va()), ("b", vb()), ("region", labels_value(reg))],
    )
    .unwrap();
    let r = rows(&t);
    assert_eq!(r[&1]["voxels_a"], Cell::Int(0));
    assert_eq!(r[&1]["voxels_b"], Cell::Int(9 * 2));

    // Missing region input, or labels not found: errors that say why.
    let err = run_node(
        json!({"region": "bounding_box"}),
        vec![("a", va()), ("b", vb())],
    )
    .unwrap_err();
    assert!(err.to_string().contains("not connected"), "{err}");
    let err = run_node(
        json!({"region": "label_slices", "region_labels": [28, 29]}),
        vec![
            ("a", va()),
            ("b", vb()),
            ("region", labels_value(reg_empty(dims, sp))),
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("none of the region_labels"),
        "{err}"
    );
    let err = run_node(
        json!({"region": "slices", "slices": [3, 10]}),
        vec![("a", va()), ("b", vb())],
    )
    .unwrap_err();
    assert!(err.to_string().contains("past the last slice"), "{err}");
}

fn reg_empty(dims: [usize; 3], sp: [f64; 3]) -> Labels {
    labels_from(dims, sp, |_, _, _| 0)
}

#[test]
fn different_grids_are_rejected() {
    let a = labels_from([4, 4, 4], [1.0; 3], |_, _, _| 1);
    let b = labels_from([4, 4, 4], [1.0, 1.0, 2.0], |_, _, _| 1);
    let err = run_node(
        json!({}),
        vec![("a", labels_value(a)), ("b", labels_value(b))],
    )
    .unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
}

#[test]
fn build_rejects_bad_params() {
    let bad = [
        json!({"labels": []}),
        json!({"labels": [0]}),
        json!({"labels": [3, 3]}),
        json!({"mapping": [[1, 2], [1, 3]]}),
        json!({"mapping": [[1, 2], [4, 2]]}),
        json!({"region": "slices"}),
        json!({"region": "slices", "slices": [5, 2]}),
        json!({"slices": [1, 2]}),
        json!({"region": "label_slices"}),
        json!({"region_labels": [28]}),
        json!({"region": "everything"}),
        json!({"label": [1]}),
    ];
    for p in bad {
        assert!(CompareMasks.build(&p, "exact_edt").is_err(), "accepted {p}");
    }
    assert!(CompareMasks
        .build(
            &json!({"region": "label_slices", "region_labels": [28, 29, 30, 31]}),
            "exact_edt"
        )
        .is_ok());
}

// ---------------------------------------------------------------- peers

/// Random masks: a few anisotropic ellipsoids, speckle and holes; b is a with some
/// ellipsoids moved and its own noise. Some touch the grid border.
fn random_pair(rng: &mut rand_chacha::ChaCha8Rng, dims: [usize; 3]) -> (Vec<u8>, Vec<u8>) {
    let n: usize = dims.iter().product();
    let blobs = |rng: &mut rand_chacha::ChaCha8Rng, k: usize| -> Vec<([f64; 3], [f64; 3])> {
        (0..k)
            .map(|_| {
                let c = std::array::from_fn(|a| rng.random_range(0.0..dims[a] as f64));
                let r =
                    std::array::from_fn(|a| rng.random_range(1.0..(dims[a] as f64 / 2.5).max(1.5)));
                (c, r)
            })
            .collect()
    };
    let paint =
        |bl: &[([f64; 3], [f64; 3])], rng: &mut rand_chacha::ChaCha8Rng, noise: f64| -> Vec<u8> {
            let mut m = vec![0u8; n];
            for z in 0..dims[2] {
                for y in 0..dims[1] {
                    for x in 0..dims[0] {
                        let p = [x as f64, y as f64, z as f64];
                        let inside = bl.iter().any(|(c, r)| {
                            (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() <= 1.0
                        });
                        let flip = rng.random_bool(noise);
                        m[x + dims[0] * (y + dims[1] * z)] = u8::from(inside ^ flip);
                    }
                }
            }
            m
        };
    let k = rng.random_range(1..4);
    let mut bl = blobs(rng, k);
    let a = paint(&bl, rng, 0.01);
    for (c, _) in bl.iter_mut() {
        if rng.random_bool(0.5) {
            for (a, v) in c.iter_mut().enumerate() {
                *v += rng.random_range(-2.0..2.0) * (dims[a] as f64 / 20.0).max(1.0);
            }
        }
    }
    let b = paint(&bl, rng, 0.01);
    (a, b)
}

const PEER_SCRIPT: &str = r#"
import json, sys, numpy as np
from scipy import ndimage
import SimpleITK as sitk
cases = json.load(open(sys.argv[1]))
C6 = ndimage.generate_binary_structure(3, 1)
def surf(m): return m & ~ndimage.binary_erosion(m, structure=C6, border_value=0)
out = []
for c in cases:
    dims, sp = tuple(c["dims"]), tuple(c["spacing"])
    A = np.fromfile(c["a"], np.uint8).reshape(dims, order="F").astype(bool)
    B = np.fromfile(c["b"], np.uint8).reshape(dims, order="F").astype(bool)
    sa, sb = surf(A), surf(B)
    da = ndimage.distance_transform_edt(~sa, sampling=sp)
    db = ndimage.distance_transform_edt(~sb, sampling=sp)
    d_ab, d_ba = db[sa], da[sb]
    allv = np.concatenate([d_ab, d_ba])
    ia = sitk.GetImageFromArray(A.T.astype(np.uint8).copy()); ia.SetSpacing(sp)
    ib = sitk.GetImageFromArray(B.T.astype(np.uint8).copy()); ib.SetSpacing(sp)
    h = sitk.HausdorffDistanceImageFilter(); h.Execute(ia, ib)
    out.append({"dice": 2.0 * np.count_nonzero(A & B) / (A.sum() + B.sum()),
                "hausdorff_mm": float(max(d_ab.max(), d_ba.max())),
                "hd95_mm": float(np.percentile(allv, 95)),
                "mean_surface_distance_mm": float(allv.mean()),
                "hausdorff_voxel_mm": h.GetHausdorffDistance()})
print(json.dumps(out))
"#;

/// Agreement with scipy (surface metrics) and SimpleITK (voxel Hausdorff) on random
/// anisotropic masks. Skips unless `VOXFLOW_PYTHON` names a python with numpy, scipy
/// and SimpleITK.
#[test]
fn agrees_with_scipy_and_simpleitk() {
    let Some(python) = crate::testdata::python(
        "agrees_with_scipy_and_simpleitk",
        &["numpy", "scipy", "SimpleITK"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20240611);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    while cases.len() < 40 {
        let dims = [
            rng.random_range(3..40),
            rng.random_range(3..40),
            rng.random_range(2..25),
        ];
        let spacing: [f64; 3] =
            std::array::from_fn(|_| (rng.random_range(0.3..3.5f64) * 1000.0).round() / 1000.0);
        let (a, b) = random_pair(&mut rng, dims);
        if !a.contains(&1) || !b.contains(&1) {
            continue;
        }
        let i = cases.len();
        let (pa, pb) = (
            dir.path().join(format!("{i}.a")),
            dir.path().join(format!("{i}.b")),
        );
        std::fs::write(&pa, &a).unwrap();
        std::fs::write(&pb, &b).unwrap();
        cases.push(json!({"dims": dims, "spacing": spacing, "a": pa, "b": pb}));
        let g = grid(dims, spacing);
        let ma = Mask::from_bytes(g.clone(), &a).unwrap();
        let mb = Mask::from_bytes(g, &b).unwrap();
        let by_impl: Vec<_> = ["exact_edt", "separable"]
            .into_iter()
            .map(|imp| {
                let inputs = vec![("a", mask_value(ma.clone())), ("b", mask_value(mb.clone()))];
                (
                    imp,
                    rows(&run_impl(imp, json!({}), inputs).unwrap())[&1].clone(),
                )
            })
            .collect();
        ours.push(by_impl);
    }
    let manifest = dir.path().join("cases.json");
    std::fs::write(&manifest, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(PEER_SCRIPT)
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peer script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: Vec<BTreeMap<String, f64>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(peers.len(), ours.len());
    for (i, (p, by_impl)) in peers.iter().zip(&ours).enumerate() {
        for (imp, o) in by_impl {
            for (k, want) in p {
                let got = f(o, k);
                assert!(
                    (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "case {i} ({}), {imp}: {k} = {got}, peer {want}",
                    cases[i]
                );
            }
        }
    }
    eprintln!(
        "{} random cases agree with scipy and SimpleITK",
        peers.len()
    );
}
