use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxflow_engine::axes::{permuted_affine, AxisMap};
use voxflow_engine::{Geometry, Image, Labels, Value, Volume};

use super::kernels::{grid_with_spacing, resample_linear, resample_nearest};
use super::{Reorient, Resample, ResampleLabels};
use crate::testdata;
use crate::testdata::run_default as run;

fn labels_out(out: &BTreeMap<String, Value>) -> Arc<Labels> {
    match &out["labels"] {
        Value::Labels(l) => l.clone(),
        other => panic!("labels is {}", other.port_type()),
    }
}

/// Random labels 0..4 on an anisotropic grid away from the world origin.
fn random_labels(dims: [usize; 3], seed: u64) -> Labels {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut g = Geometry::new(dims, [0.8, 1.2, 2.5]);
    g.affine[0][3] = -40.0;
    g.affine[1][3] = 12.5;
    g.affine[2][3] = 300.0;
    let n = g.len();
    Volume::from_vec(g, (0..n).map(|_| rng.random_range(0..4u16)).collect()).unwrap()
}

fn reordered_grid(g: &Geometry, map: &AxisMap) -> Geometry {
    let (dims, affine) = permuted_affine(g, map);
    Geometry::from_affine(dims, affine)
}

#[test]
fn reorient_undoes_flips_and_permutations_exactly() {
    let labels = random_labels([7, 5, 4], 1);
    let g = labels.geometry().clone();
    for map in [
        [(0, false), (1, true), (2, false)],
        [(1, true), (2, false), (0, true)],
        [(0, true), (1, true), (2, true)],
    ] {
        // `labels` taken in another axis order, then reoriented back onto the original.
        let other_grid = reordered_grid(&g, &map);
        let other = super::kernels::reorient(&labels, &map, other_grid.clone());
        // Every voxel centre is where it was in the world.
        for (i, &v) in other.as_slice().iter().enumerate() {
            let [nx, ny, _] = other_grid.dims;
            let ijk = [i % nx, (i / nx) % ny, i / (nx * ny)].map(|c| c as f64);
            let w = other_grid.to_world(ijk);
            let src: Vec<usize> = (0..3)
                .map(|a| ((w[a] - g.affine[a][3]) / g.spacing[a]).round() as usize)
                .collect();
            assert_eq!(v, labels.as_slice()[g.index(src[0], src[1], src[2])]);
        }
        let out = run(
            &Reorient,
            serde_json::json!({}),
            vec![
                ("labels", Value::Labels(Arc::new(other))),
                ("like", Value::Labels(Arc::new(labels.clone()))),
            ],
        )
        .unwrap();
        let back = labels_out(&out);
        assert_eq!(back.as_slice(), labels.as_slice(), "{map:?}");
        assert!(back.geometry().same_grid(&g));
    }
}

#[test]
fn reorient_refuses_grids_it_cannot_map_exactly() {
    let labels = random_labels([6, 5, 4], 2);
    let g = labels.geometry().clone();
    let try_onto = |like: Geometry| {
        let like = Volume::filled(like, 0u16);
        run(
            &Reorient,
            serde_json::json!({}),
            vec![
                ("labels", Value::Labels(Arc::new(labels.clone()))),
                ("like", Value::Labels(Arc::new(like))),
            ],
        )
        .unwrap_err()
        .to_string()
    };
    let mut shifted = g.clone();
    shifted.affine[2][3] += 5.0;
    let e = try_onto(shifted);
    assert!(e.contains("5 mm apart") && e.contains("Resample"), "{e}");
    let finer = grid_with_spacing(&g, [0.4, 1.2, 2.5]).unwrap();
    let e = try_onto(finer);
    assert!(
        e.contains("dims differ") && e.contains("spacing differs"),
        "{e}"
    );
    let mut rotated = g.clone();
    let (c, s) = (0.6, 0.8);
    rotated.affine[0][0] = 0.8 * c;
    rotated.affine[1][0] = 0.8 * s;
    rotated.affine[0][1] = -1.2 * s;
    rotated.affine[1][1] = 1.2 * c;
    let e = try_onto(rotated);
    assert!(e.contains("rotated"), "{e}");
}

#[test]
fn resample_labels_round_trips_integer_factor_grids_exactly() {
    let labels = random_labels([9, 7, 5], 3);
    let g = labels.geometry().clone();
    for factor in [[2.0, 2.0, 1.0], [3.0, 1.0, 2.0], [1.0, 1.0, 5.0]] {
        let spacing: [f64; 3] = std::array::from_fn(|a| g.spacing[a] / factor[a]);
        let fine = run(
            &ResampleLabels,
            serde_json::json!({ "spacing_mm": spacing }),
            vec![("labels", Value::Labels(Arc::new(labels.clone())))],
        )
        .unwrap();
        let fine = labels_out(&fine);
        let want: [usize; 3] = std::array::from_fn(|a| g.dims[a] * factor[a] as usize);
        assert_eq!(fine.dims(), want);
        // Each fine voxel carries the label of the coarse voxel containing it.
        let fg = fine.geometry();
        for z in 0..want[2] {
            for y in 0..want[1] {
                for x in 0..want[0] {
                    let c = [x, y, z];
                    let src: [usize; 3] = std::array::from_fn(|a| c[a] / factor[a] as usize);
                    assert_eq!(
                        fine.as_slice()[fg.index(x, y, z)],
                        labels.as_slice()[g.index(src[0], src[1], src[2])]
                    );
                }
            }
        }
        let back = run(
            &ResampleLabels,
            serde_json::json!({}),
            vec![
                ("labels", Value::Labels(fine)),
                ("like", Value::Labels(Arc::new(labels.clone()))),
            ],
        )
        .unwrap();
        assert_eq!(
            labels_out(&back).as_slice(),
            labels.as_slice(),
            "{factor:?}"
        );
    }
    // Neither target grid: the labels pass unchanged (resampling switched off).
    let none = run(
        &ResampleLabels,
        serde_json::json!({}),
        vec![("labels", Value::Labels(Arc::new(labels.clone())))],
    )
    .unwrap();
    assert_eq!(labels_out(&none).as_slice(), labels.as_slice());
    assert_eq!(labels_out(&none).geometry(), labels.geometry());
    // Both: an error naming `like`.
    let both = run(
        &ResampleLabels,
        serde_json::json!({"spacing_mm": [1.0, 1.0, 1.0]}),
        vec![
            ("labels", Value::Labels(Arc::new(labels.clone()))),
            ("like", Value::Labels(Arc::new(labels.clone()))),
        ],
    )
    .unwrap_err();
    assert!(both.to_string().contains("not both"), "{both}");
}

#[test]
fn resample_onto_its_own_grid_is_the_identity() {
    let labels = random_labels([6, 5, 3], 4);
    let image = labels.map(|&v| v as i16 * 100 - 50);
    let g = labels.geometry().clone();
    let same = resample_nearest(&labels, &g).unwrap();
    assert_eq!(same.as_slice(), labels.as_slice());
    let lin = resample_linear(&Image::I16(image.clone()), &g, -1024.0).unwrap();
    let want: Vec<f32> = image.as_slice().iter().map(|&v| v as f32).collect();
    assert_eq!(lin.as_slice(), want);
    // Outside the volume: fill (image) and 0 (labels).
    let mut beyond = g.clone();
    beyond.affine[0][3] += 100.0;
    assert!(resample_nearest(&labels, &beyond)
        .unwrap()
        .as_slice()
        .iter()
        .all(|&v| v == 0));
    assert!(resample_linear(&Image::I16(image), &beyond, -7.0)
        .unwrap()
        .as_slice()
        .iter()
        .all(|&v| v == -7.0));
}

const SCIPY: &str = r#"
import sys, json
import numpy as np
from scipy import ndimage as ndi
d = json.loads(sys.stdin.read())
src = np.array(d["values"], dtype=np.float64).reshape(d["dims"][::-1]).transpose(2, 1, 0)
dims, f = d["target_dims"], d["factor"]
# Target voxel centre i sits at source index (i + 0.5) * f - 0.5 (outer edges kept).
axes = [(np.arange(n) + 0.5) * fa - 0.5 for n, fa in zip(dims, f)]
coords = np.stack(np.meshgrid(*axes, indexing="ij"))
out = ndi.map_coordinates(src, coords, order=1, mode="nearest")
# Where the grids line up, zoom(grid_mode=True) is the same thing.
print(json.dumps(out.transpose(2, 1, 0).ravel().tolist()))
"#;

#[test]
fn resample_linear_matches_scipy_map_coordinates() {
    let Some(py) = testdata::python(
        "Resample vs scipy.ndimage.map_coordinates order=1",
        &["numpy", "scipy"],
    ) else {
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let g = Geometry::new([7, 6, 4], [1.0, 1.5, 3.0]);
    let values: Vec<f32> = (0..g.len())
        .map(|_| rng.random_range(-1000.0..1000.0))
        .collect();
    let image = Image::F32(Volume::from_vec(g.clone(), values.clone()).unwrap());
    for spacing in [[0.4, 0.9, 2.0], [2.5, 1.5, 5.0], [0.7, 2.2, 1.3]] {
        let out = run(
            &Resample,
            serde_json::json!({ "spacing_mm": spacing }),
            vec![("image", Value::Image(Arc::new(image.clone())))],
        )
        .unwrap();
        let Value::Image(img) = &out["image"] else {
            panic!()
        };
        let Image::F32(ours) = img.as_ref() else {
            panic!("Resample gives f32")
        };
        let target = ours.geometry();
        // The grid covers the source's field of view: the factor per axis is n*s/(n'*s')
        // only when the counts divide evenly; scipy gets the exact index scale used here.
        let factor: Vec<f64> = (0..3).map(|a| spacing[a] / g.spacing[a]).collect();
        let input = serde_json::json!({
            "values": values, "dims": g.dims, "target_dims": target.dims, "factor": factor,
        });
        let mut child = std::process::Command::new(&py)
            .args(["-c", SCIPY])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        let theirs: Vec<f64> = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(theirs.len(), ours.as_slice().len());
        // Target centres beyond the source's outer edge take `fill` in voxflow; scipy
        // clamps them. Compare where the centre lies inside.
        let mut compared = 0;
        for (i, (&a, &b)) in ours.as_slice().iter().zip(&theirs).enumerate() {
            let [nx, ny, _] = target.dims;
            let t = [i % nx, (i / nx) % ny, i / (nx * ny)];
            let inside = (0..3).all(|ax| {
                let s = (t[ax] as f64 + 0.5) * factor[ax] - 0.5;
                s >= -0.5 && s <= g.dims[ax] as f64 - 0.5
            });
            if inside {
                assert!(
                    (a as f64 - b).abs() <= 1e-3,
                    "voxel {t:?}: {a} vs scipy {b}"
                );
                compared += 1;
            } else {
                assert_eq!(a, -1024.0);
            }
        }
        assert!(
            compared > target.len() / 2,
            "{compared} of {}",
            target.len()
        );
    }
}

/// The DICOM series and its NIfTI segmentation (stored LAS) only combine after Reorient.
#[test]
fn dicom_series_and_its_nifti_segmentation_combine_after_reorient() {
    let Some(data) = testdata::shared_data("Reorient on the DICOM series and its segmentation")
    else {
        return;
    };
    let ct = crate::io::dicom::load_dicom_series(&data.join("dicom/ct_series")).unwrap();
    let seg = crate::io::nifti_load::load_labels(&data.join("dicom/ct_series_seg.nii.gz")).unwrap();
    // Without reorienting, the grids differ and the error says how.
    let hu = crate::stats::label_stats::LabelStats;
    let err = run(
        &hu,
        serde_json::json!({}),
        vec![
            ("labels", Value::Labels(Arc::new(seg.clone()))),
            ("image", Value::Image(Arc::new(ct.clone()))),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("axis flipped: `image`'s y runs opposite to `labels`'s")
            && err.contains("Reorient (labels) with `like`"),
        "{err}"
    );
    let out = run(
        &Reorient,
        serde_json::json!({}),
        vec![
            ("labels", Value::Labels(Arc::new(seg.clone()))),
            ("like", Value::Image(Arc::new(ct.clone()))),
        ],
    )
    .unwrap();
    let onto_ct = labels_out(&out);
    assert!(onto_ct.geometry().same_grid(ct.geometry()));
    // Same voxels per label (nothing interpolated)...
    let counts = voxflow_engine::volume::value_counts;
    assert_eq!(counts(onto_ct.as_slice()), counts(seg.as_slice()));
    // ... now over the right tissue: mean HU of the liver (5, contrast-enhanced), the
    // vertebrae T11/T12 (33, 32, bone) and the aorta (52, contrast).
    let Image::I16(ct_v) = &ct else {
        panic!("the series is integer HU")
    };
    let mean_hu = |labels: &Labels, label: u16| {
        let (sum, n) = labels
            .as_slice()
            .iter()
            .zip(ct_v.as_slice())
            .filter(|(l, _)| **l == label)
            .fold((0.0, 0usize), |(s, n), (_, &v)| (s + v as f64, n + 1));
        sum / n as f64
    };
    // The segmentation read as if it were on the CT's grid, y flipped: the wrong tissue.
    let misread = seg.clone().with_geometry(ct.geometry().clone()).unwrap();
    for (label, lo, hi) in [(5, 60.0, 250.0), (33, 150.0, 1000.0), (52, 120.0, 500.0)] {
        let (right, wrong) = (mean_hu(&onto_ct, label), mean_hu(&misread, label));
        eprintln!("label {label}: mean {right:.0} HU after Reorient, {wrong:.0} HU misread");
        assert!(right > lo && right < hi, "label {label}: {right} HU");
    }
    // LabelStats now runs on the pair.
    run(
        &hu,
        serde_json::json!({}),
        vec![
            ("labels", Value::Labels(onto_ct)),
            ("image", Value::Image(Arc::new(ct))),
        ],
    )
    .unwrap();
}
