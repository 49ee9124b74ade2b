//! Tests of `LoadDicomSeries` on the real JPEG 2000 series in `../shared/data/dicom`,
//! against SimpleITK, the segmentation made on it, and broken folders.

use std::path::{Path, PathBuf};

use voxflow_engine::{Geometry, Image};

use super::dicom::load_dicom_series;
use super::nifti_load::load_labels;
use super::test_support::{peer_python, run_python};
use crate::testdata::shared_data;

fn series() -> Option<PathBuf> {
    shared_data("DICOM series tests").map(|d| d.join("dicom/ct_series"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn err_of(dir: &Path) -> String {
    load_dicom_series(dir).map(|_| ()).unwrap_err().to_string()
}

fn invert(a: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    // Affine inverse: [R t]^-1 = [R^-1, -R^-1 t], R^-1 by cofactors.
    let r = |i: usize, j: usize| a[i][j];
    let det = r(0, 0) * (r(1, 1) * r(2, 2) - r(1, 2) * r(2, 1))
        - r(0, 1) * (r(1, 0) * r(2, 2) - r(1, 2) * r(2, 0))
        + r(0, 2) * (r(1, 0) * r(2, 1) - r(1, 1) * r(2, 0));
    let c = |r0: usize, r1: usize, c0: usize, c1: usize| {
        (a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0]) / det
    };
    let inv = [
        [c(1, 2, 1, 2), -c(0, 2, 1, 2), c(0, 1, 1, 2)],
        [-c(1, 2, 0, 2), c(0, 2, 0, 2), -c(0, 1, 0, 2)],
        [c(1, 2, 0, 1), -c(0, 2, 0, 1), c(0, 1, 0, 1)],
    ];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = inv[i][j];
        }
        m[i][3] = -(0..3).map(|j| inv[i][j] * a[j][3]).sum::<f64>();
    }
    m[3][3] = 1.0;
    m
}

fn mul(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..4).map(|k| a[i][k] * b[k][j]).sum()))
}

#[test]
fn real_series_loads_with_ras_geometry() {
    let Some(dir) = series() else { return };
    let img = load_dicom_series(&dir).unwrap();
    assert_eq!(img.dtype(), "i16");
    let g = img.geometry();
    assert_eq!(g.dims, [512, 512, 20]);
    assert!(
        (g.spacing[0] - 0.9765625).abs() < 1e-9 && (g.spacing[2] - 2.0).abs() < 1e-6,
        "{g:?}"
    );
    // First slice (lowest z) at LPS (-249.51, -437.51, -804.5) -> RAS (249.51, 437.51, -804.5).
    let o = g.origin();
    assert!(
        (o[0] - 249.51171875).abs() < 1e-6
            && (o[1] - 437.51171875).abs() < 1e-6
            && (o[2] + 804.5).abs() < 1e-6,
        "{o:?}"
    );
    assert_eq!(
        g.direction(),
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]].map(|c| c.map(|v| v + 0.0))
    );
}

#[test]
fn real_series_matches_simpleitk() {
    let Some(dir) = series() else { return };
    let Some(py) = peer_python("SimpleITK series comparison", "SimpleITK, numpy") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("hu.f64");
    let script = "import sys, json, numpy as np, SimpleITK as sitk\n\
                  r = sitk.ImageSeriesReader()\n\
                  r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))\n\
                  im = r.Execute()\n\
                  sitk.GetArrayFromImage(im).astype(np.float64).tofile(sys.argv[2])\n\
                  print(json.dumps([im.GetSize(), im.GetOrigin(), im.GetSpacing(), im.GetDirection()]))";
    let out = run_python(&py, script, &[dir.to_str().unwrap(), raw.to_str().unwrap()]);
    let (size, origin, spacing, direction): (Vec<usize>, Vec<f64>, Vec<f64>, Vec<f64>) =
        serde_json::from_str(out.trim()).unwrap();
    let img = load_dicom_series(&dir).unwrap();
    let g = img.geometry();
    assert_eq!(size, g.dims.to_vec());
    let hu: Vec<f64> = std::fs::read(&raw)
        .unwrap()
        .chunks(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(hu.len(), g.len());
    let max_diff = (0..g.len())
        .map(|i| (img.get_f64(i) - hu[i]).abs())
        .fold(0.0, f64::max);
    assert_eq!(max_diff, 0.0, "HU differ from SimpleITK");
    // SimpleITK is LPS: our RAS origin and direction have x and y negated.
    let flip = [-1.0, -1.0, 1.0];
    for r in 0..3 {
        assert!(
            (g.origin()[r] - flip[r] * origin[r]).abs() < 1e-6,
            "origin {:?} vs {origin:?}",
            g.origin()
        );
        assert!(
            (g.spacing[r] - spacing[r]).abs() < 1e-6,
            "spacing {:?} vs {spacing:?}",
            g.spacing
        );
        for c in 0..3 {
            // SimpleITK's direction is row-major, columns are the voxel axes.
            assert!(
                (g.direction()[c][r] - flip[r] * direction[3 * r + c]).abs() < 1e-9,
                "direction"
            );
        }
    }
}

#[test]
fn segmentation_stored_las_lands_on_the_right_voxels() {
    let Some(dir) = series() else { return };
    let seg = load_labels(&dir.parent().unwrap().join("ct_series_seg.nii.gz")).unwrap();
    let ct = load_dicom_series(&dir).unwrap();
    let (gs, gc): (&Geometry, &Geometry) = (seg.geometry(), ct.geometry());
    assert_eq!(gs.dims, gc.dims);
    // seg voxel -> world -> CT voxel: a permutation/flip of axes plus whole offsets.
    let m = mul(&invert(&gc.affine), &gs.affine);
    for row in m.iter().take(3) {
        for v in row {
            assert!(
                (v - v.round()).abs() < 1e-3,
                "not a voxel permutation: {m:?}"
            );
        }
    }
    let m = m.map(|row| row.map(|v| v.round() as i64));
    let mut sums = [(0.0f64, 0usize); 2]; // spleen (1), liver (5)
    let [nx, ny, nz] = gs.dims;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let l = seg.as_slice()[gs.index(x, y, z)];
                let slot = match l {
                    1 => 0,
                    5 => 1,
                    _ => continue,
                };
                let ijk = [x as i64, y as i64, z as i64];
                let c: [usize; 3] = std::array::from_fn(|r| {
                    (m[r][3] + (0..3).map(|k| m[r][k] * ijk[k]).sum::<i64>()) as usize
                });
                sums[slot].0 += ct.get_f64(gc.index(c[0], c[1], c[2]));
                sums[slot].1 += 1;
            }
        }
    }
    let spleen = sums[0].0 / sums[0].1 as f64;
    let liver = sums[1].0 / sums[1].1 as f64;
    eprintln!(
        "spleen {spleen:.2} HU ({} voxels), liver {liver:.2} HU ({} voxels)",
        sums[0].1, sums[1].1
    );
    assert!((liver - 89.0).abs() < 4.0, "liver mean {liver} HU");
    assert!((spleen - 80.0).abs() < 4.0, "spleen mean {spleen} HU");
    // Without the y flip (reading the seg as if it were on the CT grid) liver HU is wrong.
    let naive: f64 = (0..seg.as_slice().len())
        .filter(|&i| seg.as_slice()[i] == 5)
        .map(|i| ct.get_f64(i))
        .sum::<f64>()
        / sums[1].1 as f64;
    assert!((naive - 89.0).abs() > 20.0, "flip matters: {naive}");
}

#[test]
fn folder_with_two_series_is_an_error() {
    use dicom_core::VR;
    use dicom_dictionary_std::tags;
    let Some(dir) = series() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = files(&dir);
    for f in &src[..3] {
        std::fs::copy(f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let mut obj = dicom_object::open_file(&src[3]).unwrap();
    obj.put_str(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\0\\-1");
    obj.write_to_file(tmp.path().join("coronal.dcm")).unwrap();
    let e = err_of(tmp.path());
    assert!(
        e.contains("folder holds 2 series") && e.contains("coronal.dcm"),
        "{e}"
    );
    // A different (non-empty) SeriesInstanceUID is another series too.
    std::fs::remove_file(tmp.path().join("coronal.dcm")).unwrap();
    let mut obj = dicom_object::open_file(&src[3]).unwrap();
    obj.put_str(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.4");
    obj.write_to_file(tmp.path().join("other_uid.dcm")).unwrap();
    let e = err_of(tmp.path());
    assert!(
        e.contains("folder holds 2 series") && e.contains("UID 1.2.3.4"),
        "{e}"
    );
}

#[test]
fn uneven_spacing_is_an_error_giving_positions() {
    let Some(dir) = series() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = files(&dir);
    for i in [0, 1, 2, 4] {
        std::fs::copy(&src[i], tmp.path().join(src[i].file_name().unwrap())).unwrap();
    }
    let e = err_of(tmp.path());
    assert!(
        e.contains("uneven slice spacing")
            && e.contains("4.000 mm apart")
            && e.contains("all positions"),
        "{e}"
    );
}

#[test]
fn hidden_files_are_skipped_and_other_files_named() {
    let Some(dir) = series() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = files(&dir);
    for f in &src[..2] {
        std::fs::copy(f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(tmp.path().join(".DS_Store"), b"junk").unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    let img = load_dicom_series(tmp.path()).unwrap();
    assert_eq!(img.geometry().dims, [512, 512, 2]);
    assert!(matches!(img, Image::I16(_)));
    std::fs::write(tmp.path().join("notes.txt"), b"not dicom").unwrap();
    let e = err_of(tmp.path());
    assert!(
        e.contains("notes.txt") && e.contains("not a DICOM file"),
        "{e}"
    );
}

#[test]
fn empty_and_missing_folders_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err_of(tmp.path());
    assert!(e.contains("no DICOM files in folder"), "{e}");
    let e = err_of(&tmp.path().join("nope"));
    assert!(e.contains("nope") && e.contains("folder not found"), "{e}");
}
