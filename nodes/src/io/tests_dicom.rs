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

/// A new folder holding copies of the series' files number `slices` (in name order),
/// and all of the series' files.
fn copy_of_slices(dir: &Path, slices: &[usize]) -> (tempfile::TempDir, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = files(dir);
    for &i in slices {
        std::fs::copy(&src[i], tmp.path().join(src[i].file_name().unwrap())).unwrap();
    }
    (tmp, src)
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
    let (tmp, src) = copy_of_slices(&dir, &[0, 1, 2]);
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
    let (tmp, _) = copy_of_slices(&dir, &[0, 1, 2, 4]);
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
    let (tmp, _) = copy_of_slices(&dir, &[0, 1]);
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

/// A hand-written DICOM file (explicit VR little endian unless the transfer syntax says
/// otherwise): every element is spelt out so hostile variants (bad lengths, deep
/// nesting, NaN strings) can be made that no DICOM library would write.
mod raw {
    /// One element, explicit VR little endian; odd values padded (NUL for UI, OB and OW,
    /// space otherwise).
    pub fn el(out: &mut Vec<u8>, tag: (u16, u16), vr: &str, value: &[u8]) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(if matches!(vr, "UI" | "OB" | "OW") {
                0
            } else {
                b' '
            });
        }
        out.extend(tag.0.to_le_bytes());
        out.extend(tag.1.to_le_bytes());
        out.extend(vr.as_bytes());
        if matches!(vr, "OB" | "OW" | "SQ" | "UN" | "UT") {
            out.extend([0, 0]);
            out.extend((v.len() as u32).to_le_bytes());
        } else {
            out.extend((v.len() as u16).to_le_bytes());
        }
        out.extend(v);
    }

    pub fn us(out: &mut Vec<u8>, tag: (u16, u16), v: u16) {
        el(out, tag, "US", &v.to_le_bytes());
    }

    /// What varies between the test slices.
    #[derive(Clone)]
    pub struct Spec {
        pub ts: String,
        pub uid: String,
        pub number: String,
        pub description: String,
        pub ipp: String,
        pub iop: String,
        pub spacing: String,
        pub slope: String,
        pub intercept: String,
        pub photometric: String,
        pub rows: u16,
        pub cols: u16,
        pub bits_stored: u16,
        pub signed: bool,
        /// Raw bytes placed right after SeriesDescription (0008,103E): tags (0008,1xxx).
        pub extra: Vec<u8>,
        /// Stored values; `pixel_bytes` replaces them when set.
        pub pixels: Vec<u16>,
        /// The whole PixelData element, when it is to be hostile or encapsulated.
        pub pixel_element: Option<Vec<u8>>,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                ts: "1.2.840.10008.1.2.1".into(),
                uid: "1.2.3.4.5".into(),
                number: "3".into(),
                description: "test series".into(),
                ipp: "-10\\-20\\30".into(),
                iop: "1\\0\\0\\0\\1\\0".into(),
                spacing: "0.5\\0.5".into(),
                slope: "1".into(),
                intercept: "-1024".into(),
                photometric: "MONOCHROME2".into(),
                rows: 4,
                cols: 3,
                bits_stored: 16,
                signed: false,
                extra: Vec::new(),
                pixels: (0..12).map(|i| 1000 + 10 * i).collect(),
                pixel_element: None,
            }
        }
    }

    /// The bytes of a Part 10 file for `s`.
    pub fn file(s: &Spec) -> Vec<u8> {
        let mut meta = Vec::new();
        el(&mut meta, (2, 1), "OB", &[0, 1]);
        el(&mut meta, (2, 2), "UI", b"1.2.840.10008.5.1.4.1.1.2");
        el(&mut meta, (2, 3), "UI", b"1.2.3.4.5.6");
        el(&mut meta, (2, 0x10), "UI", s.ts.as_bytes());
        let mut out = vec![0u8; 128];
        out.extend(b"DICM");
        el(&mut out, (2, 0), "UL", &(meta.len() as u32).to_le_bytes());
        out.extend(meta);
        let mut d = Vec::new();
        el(&mut d, (8, 0x60), "CS", b"CT");
        el(&mut d, (8, 0x103E), "LO", s.description.as_bytes());
        d.extend(&s.extra);
        el(&mut d, (0x20, 0x0E), "UI", s.uid.as_bytes());
        el(&mut d, (0x20, 0x11), "IS", s.number.as_bytes());
        el(&mut d, (0x20, 0x32), "DS", s.ipp.as_bytes());
        el(&mut d, (0x20, 0x37), "DS", s.iop.as_bytes());
        us(&mut d, (0x28, 2), 1);
        el(&mut d, (0x28, 4), "CS", s.photometric.as_bytes());
        us(&mut d, (0x28, 0x10), s.rows);
        us(&mut d, (0x28, 0x11), s.cols);
        el(&mut d, (0x28, 0x30), "DS", s.spacing.as_bytes());
        us(&mut d, (0x28, 0x100), 16);
        us(&mut d, (0x28, 0x101), s.bits_stored);
        us(&mut d, (0x28, 0x102), s.bits_stored - 1);
        us(&mut d, (0x28, 0x103), s.signed as u16);
        el(&mut d, (0x28, 0x1052), "DS", s.intercept.as_bytes());
        el(&mut d, (0x28, 0x1053), "DS", s.slope.as_bytes());
        match &s.pixel_element {
            Some(p) => d.extend(p),
            None => {
                let px: Vec<u8> = s.pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
                el(&mut d, (0x7FE0, 0x10), "OW", &px);
            }
        }
        out.extend(d);
        out
    }

    /// `depth` sequences (0008,1115), each holding one item holding the next.
    pub fn nested(depth: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..depth {
            v.extend([0x08, 0x00, 0x15, 0x11]);
            v.extend(b"SQ");
            v.extend([0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            v.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        for _ in 0..depth {
            v.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            v.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        v
    }
}

use raw::Spec;

/// Write `specs` as `s0.dcm`, `s1.dcm`... in a new temporary folder.
fn folder(specs: &[Spec]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (i, s) in specs.iter().enumerate() {
        std::fs::write(tmp.path().join(format!("s{i}.dcm")), raw::file(s)).unwrap();
    }
    tmp
}

/// A series of `n` slices 2 mm apart.
fn stack(n: usize, base: &Spec) -> Vec<Spec> {
    (0..n)
        .map(|k| Spec {
            ipp: format!("-10\\-20\\{}", 30 + 2 * k),
            ..base.clone()
        })
        .collect()
}

#[test]
fn written_series_loads_with_rescale() {
    let tmp = folder(&stack(3, &Spec::default()));
    let img = load_dicom_series(tmp.path()).unwrap();
    assert_eq!(img.geometry().dims, [3, 4, 3]);
    assert!(matches!(img, Image::I16(_)));
    // Stored 1000 + 10 i, intercept -1024.
    assert_eq!(img.get_f64(0), -24.0);
    assert_eq!(img.get_f64(11), 86.0);
    assert!((img.geometry().spacing[2] - 2.0).abs() < 1e-9);
}

/// One bad slice among good ones: the error names that file and what is wrong.
fn bad_slice_error(bad: Spec) -> String {
    let mut specs = stack(3, &Spec::default());
    bad.clone_into(&mut specs[1]);
    specs[1].ipp = "-10\\-20\\32".into();
    if bad.ipp != Spec::default().ipp {
        specs[1].ipp = bad.ipp;
    }
    let tmp = folder(&specs);
    err_of(tmp.path())
}

#[test]
fn non_finite_or_degenerate_geometry_names_the_slice() {
    let cases: [(Spec, &str); 8] = [
        (
            Spec {
                ipp: "NaN\\0\\32".into(),
                ..Spec::default()
            },
            "ImagePositionPatient holds a non-finite value",
        ),
        (
            Spec {
                ipp: "0\\inf\\32".into(),
                ..Spec::default()
            },
            "ImagePositionPatient holds a non-finite value",
        ),
        (
            Spec {
                spacing: "0\\0.5".into(),
                ..Spec::default()
            },
            "PixelSpacing [0.0, 0.5] must be positive",
        ),
        (
            Spec {
                spacing: "-0.5\\0.5".into(),
                ..Spec::default()
            },
            "PixelSpacing [-0.5, 0.5] must be positive",
        ),
        (
            Spec {
                spacing: "NaN\\0.5".into(),
                ..Spec::default()
            },
            "PixelSpacing holds a non-finite value",
        ),
        (
            Spec {
                iop: "1\\0\\0\\NaN\\1\\0".into(),
                ..Spec::default()
            },
            "ImageOrientationPatient holds a non-finite value",
        ),
        (
            Spec {
                iop: "1\\0\\0\\1\\0\\0".into(),
                ..Spec::default()
            },
            "degenerate ImageOrientationPatient",
        ),
        (
            Spec {
                iop: "0\\0\\0\\0\\0\\0".into(),
                ..Spec::default()
            },
            "degenerate ImageOrientationPatient",
        ),
    ];
    for (spec, needle) in cases {
        let e = bad_slice_error(spec);
        assert!(e.contains("s1.dcm") && e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn unusable_rescale_names_the_slice() {
    for (slope, intercept) in [
        ("NaN", "0"),
        ("inf", "0"),
        ("0", "0"),
        ("1e300", "0"),
        ("1", "NaN"),
        ("1", "-inf"),
    ] {
        let e = bad_slice_error(Spec {
            slope: slope.into(),
            intercept: intercept.into(),
            ..Spec::default()
        });
        assert!(
            e.contains("s1.dcm") && (e.contains("RescaleSlope") || e.contains("RescaleIntercept")),
            "{slope} {intercept}: {e}"
        );
    }
    // 1e30 is finite but 1e30 * 2^16 is beyond f32: refused too, as beyond the range.
    let e = bad_slice_error(Spec {
        slope: "1e35".into(),
        ..Spec::default()
    });
    assert!(e.contains("beyond the f32 range"), "{e}");
}

#[test]
fn palette_colour_refused_and_monochrome1_inverted() {
    let e = bad_slice_error(Spec {
        photometric: "PALETTE COLOR".into(),
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm") && e.contains("PhotometricInterpretation PALETTE COLOR"),
        "{e}"
    );
    let tmp = folder(&stack(
        2,
        &Spec {
            photometric: "MONOCHROME1".into(),
            bits_stored: 12,
            ..Spec::default()
        },
    ));
    let img = load_dicom_series(tmp.path()).unwrap();
    // Stored 1000 in 12 bits: (4095 - 1000) - 1024, as SimpleITK gives.
    assert_eq!(img.get_f64(0), 2071.0);
    let e = bad_slice_error(Spec {
        photometric: "MONOCHROME1".into(),
        signed: true,
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm") && e.contains("MONOCHROME1 with signed pixels"),
        "{e}"
    );
}

#[test]
fn signed_values_are_sign_extended_from_bits_stored() {
    // 13-bit two's complement stored without sign extension in 16 bits: 8191 is -1,
    // 4096 is -4096, 4095 stays 4095.
    let spec = Spec {
        bits_stored: 13,
        signed: true,
        intercept: "0".into(),
        pixels: vec![8191, 4096, 4095, 0, 1, 2, 3, 4, 5, 6, 7, 8],
        ..Spec::default()
    };
    let tmp = folder(&stack(1, &spec));
    let img = load_dicom_series(tmp.path()).unwrap();
    assert_eq!(
        (img.get_f64(0), img.get_f64(1), img.get_f64(2)),
        (-1.0, -4096.0, 4095.0)
    );
}

#[test]
fn hostile_structure_is_refused_before_parsing() {
    // 2,000 nested sequences would overflow dicom-object's recursion.
    let e = bad_slice_error(Spec {
        extra: raw::nested(2000),
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm") && e.contains("nested deeper than 64"),
        "{e}"
    );
    // 32 levels are fine (and dicom-object copes).
    let tmp = folder(&stack(
        2,
        &Spec {
            extra: raw::nested(32),
            ..Spec::default()
        },
    ));
    assert_eq!(
        load_dicom_series(tmp.path()).unwrap().geometry().dims,
        [3, 4, 2]
    );
    // A PixelData length of 0xFFFFFFF0 in a tiny file.
    let mut px = vec![0xE0, 0x7F, 0x10, 0x00];
    px.extend(b"OW\0\0");
    px.extend(0xFFFF_FFF0u32.to_le_bytes());
    px.extend([0u8; 24]);
    let e = bad_slice_error(Spec {
        pixel_element: Some(px),
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm") && e.contains("declares 4294967280 bytes but only 24 remain"),
        "{e}"
    );
}

/// Encapsulated PixelData holding one fragment.
fn encapsulated(fragment: &[u8]) -> Vec<u8> {
    let mut px = vec![0xE0, 0x7F, 0x10, 0x00];
    px.extend(b"OB\0\0");
    px.extend(u32::MAX.to_le_bytes());
    px.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    px.extend([0xFE, 0xFF, 0x00, 0xE0]);
    px.extend((fragment.len() as u32).to_le_bytes());
    px.extend(fragment);
    px.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    px
}

#[test]
fn compressed_frame_larger_than_rows_and_columns_is_refused() {
    // A JPEG 2000 codestream whose SIZ says 65535 x 65535 (Rows 4, Columns 3).
    let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
    j2k.extend(65535u32.to_be_bytes());
    j2k.extend(65535u32.to_be_bytes());
    j2k.extend([0u8; 8 + 16]);
    j2k.extend([0x00, 0x01, 0x0F, 0x01, 0x01, 0xFF, 0xD9]);
    let e = bad_slice_error(Spec {
        ts: "1.2.840.10008.1.2.4.90".into(),
        pixel_element: Some(encapsulated(&j2k)),
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm")
            && e.contains("compressed frame is 65535 x 65535 but Columns x Rows say 3 x 4"),
        "{e}"
    );
    // A JPEG whose SOF0 says 40000 lines of 30000 samples, after an APP0 segment.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
    jpeg.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
    jpeg.extend(40000u16.to_be_bytes());
    jpeg.extend(30000u16.to_be_bytes());
    jpeg.extend([0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9]);
    let e = bad_slice_error(Spec {
        ts: "1.2.840.10008.1.2.4.50".into(),
        pixel_element: Some(encapsulated(&jpeg)),
        ..Spec::default()
    });
    assert!(
        e.contains("compressed frame is 30000 x 40000 but Columns x Rows say 3 x 4"),
        "{e}"
    );
}

#[test]
fn unsupported_transfer_syntax_is_named_without_nul() {
    // JPEG-LS, its UID padded with a NUL as files do; encapsulated pixel data.
    let mut px = vec![0xE0, 0x7F, 0x10, 0x00];
    px.extend(b"OB\0\0");
    px.extend(u32::MAX.to_le_bytes());
    px.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
    px.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xD9]);
    px.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    let e = bad_slice_error(Spec {
        ts: "1.2.840.10008.1.2.4.80".into(),
        pixel_element: Some(px),
        ..Spec::default()
    });
    assert!(
        e.contains("s1.dcm")
            && e.contains("transfer syntax 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless")
            && !e.contains('\0'),
        "{e:?}"
    );
}

#[test]
fn several_series_listed_and_chosen() {
    use super::dicom::{list_series, load_dicom_series_choosing, SeriesChoice};
    let a = Spec {
        uid: "1.2.3.1".into(),
        number: "7".into(),
        description: "soft".into(),
        ..Spec::default()
    };
    let b = Spec {
        uid: "1.2.3.2".into(),
        number: "8".into(),
        description: "bone".into(),
        ..Spec::default()
    };
    let mut specs = stack(2, &a);
    specs.extend(stack(3, &b));
    let tmp = folder(&specs);
    let e = err_of(tmp.path());
    assert!(
        e.contains("folder holds 2 series")
            && e.contains("UID 1.2.3.1, number 7, \"soft\", CT, 2 slices of 3 x 4")
            && e.contains("UID 1.2.3.2, number 8, \"bone\", CT, 3 slices of 3 x 4"),
        "{e}"
    );
    let listed = list_series(tmp.path()).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.uid.as_str(), s.number, s.slices.len()))
            .collect::<Vec<_>>(),
        [("1.2.3.1", Some(7), 2), ("1.2.3.2", Some(8), 3)]
    );
    let nz = |c: SeriesChoice| {
        load_dicom_series_choosing(tmp.path(), Some(&c)).map(|i| i.geometry().dims[2])
    };
    assert_eq!(nz(SeriesChoice::Text("1.2.3.1".into())).unwrap(), 2);
    assert_eq!(nz(SeriesChoice::Number(8)).unwrap(), 3);
    assert_eq!(nz(SeriesChoice::Text("largest".into())).unwrap(), 3);
    let e = nz(SeriesChoice::Number(9)).unwrap_err().to_string();
    assert!(
        e.contains("series 9: no such series") && e.contains("1.2.3.2"),
        "{e}"
    );
}

#[test]
fn duplicate_and_missing_slices_name_files_and_positions() {
    let mut specs = stack(3, &Spec::default());
    specs[2].ipp = specs[1].ipp.clone();
    let e = err_of(folder(&specs).path());
    assert!(
        e.contains("same position 32.0000 mm") && e.contains("s1.dcm") && e.contains("s2.dcm"),
        "{e}"
    );
    let mut specs = stack(4, &Spec::default());
    specs.remove(2);
    let e = err_of(folder(&specs).path());
    assert!(
        e.contains("uneven slice spacing")
            && e.contains("at 32.000 mm")
            && e.contains("at 36.000 mm"),
        "{e}"
    );
}

/// Every pydicom test file that voxflow decodes gives pydicom's values (after the
/// modality LUT; SimpleITK's for MONOCHROME1, which voxflow inverts as it does, pydicom
/// not); every file it refuses gets an error without panic or raw NUL. The
/// codec families voxflow claims must each be exercised by at least one file.
#[test]
fn pydicom_test_files_agree() {
    use super::dicom::decode_file;
    let Some(py) = peer_python("pydicom agreement", "pydicom, numpy, SimpleITK") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, os, glob, json, warnings
import numpy as np, pydicom
from pydicom.pixels import apply_modality_lut
warnings.simplefilter("ignore")
d = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
res = []
for i, f in enumerate(sorted(glob.glob(d + "/**/*", recursive=True))):
    if not os.path.isfile(f):
        continue
    try:
        ds = pydicom.dcmread(f)
    except Exception:
        continue
    if "PixelData" not in ds:
        continue
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    try:
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            # pydicom leaves MONOCHROME1 as stored; voxflow inverts it as SimpleITK does.
            import SimpleITK as sitk
            a = sitk.GetArrayFromImage(sitk.ReadImage(f)).astype(np.float64)
        else:
            a = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        p = os.path.join(sys.argv[1], f"{i}.f64")
        a.tofile(p)
        res.append([f, ts, p, ""])
    except Exception as e:
        res.append([f, ts, "", f"{type(e).__name__}: {e}"])
print(json.dumps(res))
"#;
    let out = run_python(&py, script, &[tmp.path().to_str().unwrap()]);
    let files: Vec<(String, String, String, String)> = serde_json::from_str(out.trim()).unwrap();
    assert!(
        files.len() > 50,
        "pydicom ships {} image files",
        files.len()
    );
    let mut compared: Vec<(String, String, f64)> = Vec::new();
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for (path, ts, raw, py_err) in &files {
        let short = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let ours = std::panic::catch_unwind(|| decode_file(Path::new(path)));
        match ours {
            Err(_) => failures.push(format!("{short}: panicked")),
            Ok(Err(e)) => {
                let e = e.to_string();
                if e.contains('\0') {
                    failures.push(format!("{short}: NUL in error {e:?}"));
                }
                refused.push(format!("{short} ({ts}): {e}"));
            }
            Ok(Ok(_)) if raw.is_empty() => {
                eprintln!("skipping {short}: pydicom cannot decode it here ({py_err})");
            }
            Ok(Ok(v)) => {
                let theirs: Vec<f64> = std::fs::read(raw)
                    .unwrap()
                    .chunks(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                if theirs.len() != v.len() {
                    failures.push(format!(
                        "{short}: {} values, pydicom {}",
                        v.len(),
                        theirs.len()
                    ));
                    continue;
                }
                let diff = v
                    .iter()
                    .zip(&theirs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                if diff > 0.0 {
                    failures.push(format!("{short} ({ts}): max difference {diff}"));
                }
                compared.push((short, ts.clone(), diff));
            }
        }
    }
    for (f, ts, d) in &compared {
        eprintln!("agrees: {f} ({ts}), max difference {d}");
    }
    for r in &refused {
        eprintln!("refused: {r}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    for family in [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
    ] {
        assert!(
            compared.iter().any(|c| c.1 == family),
            "no pydicom file of {family} decoded and compared"
        );
    }
    let mismatch = compared.iter().find(|c| c.0 == "J2K_pixelrep_mismatch.dcm");
    assert!(mismatch.is_some(), "J2K_pixelrep_mismatch.dcm not compared");
}

/// Seeded random mutations of small valid files, each loaded as a one-file series: no
/// panic, no abort, whatever the bytes. Bounded to about 15 s; executions and findings
/// are printed.
#[test]
fn mutation_fuzz_of_the_loader() {
    use rand::{Rng, SeedableRng};
    let mut seeds = vec![
        raw::file(&Spec::default()),
        raw::file(&Spec {
            extra: raw::nested(3),
            ..Spec::default()
        }),
    ];
    // A real JPEG 2000 slice, so the codec's parser is fuzzed too (when the data is here).
    if let Some(dir) = series() {
        seeds.push(std::fs::read(&files(&dir)[0]).unwrap());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.dcm");
    let start = std::time::Instant::now();
    let (mut runs, mut loaded, mut findings) = (0usize, 0usize, Vec::new());
    let mut per_seed = vec![0usize; seeds.len()];
    while start.elapsed() < std::time::Duration::from_secs(15) {
        let seed = runs % seeds.len();
        per_seed[seed] += 1;
        let mut f = seeds[seed].clone();
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..f.len());
            match rng.random_range(0..5) {
                0 => f[at] ^= 1 << rng.random_range(0..8),
                1 => f[at] = rng.random(),
                2 => {
                    // A length-like 32-bit word: huge, undefined, zero or random.
                    let w: u32 =
                        [0xFFFF_FFFF, 0xFFFF_FFF0, 0, rng.random()][rng.random_range(0..4)];
                    let end = (at + 4).min(f.len());
                    f[at..end].copy_from_slice(&w.to_le_bytes()[..end - at]);
                }
                3 => f.truncate(at.max(1)),
                _ => {
                    let chunk = f[at..(at + 16).min(f.len())].to_vec();
                    f.splice(at..at, chunk);
                }
            }
        }
        std::fs::write(&path, &f).unwrap();
        match std::panic::catch_unwind(|| load_dicom_series(tmp.path())) {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(_)) => {}
            Err(_) => findings.push(format!("run {runs}: panic on {} bytes", f.len())),
        }
        runs += 1;
    }
    eprintln!(
        "DICOM mutation fuzz: {runs} executions ({per_seed:?} per seed) in {:.1} s, {loaded} \
         still loaded, {} findings",
        start.elapsed().as_secs_f64(),
        findings.len()
    );
    assert!(runs > 100, "only {runs} executions");
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn oversized_file_is_refused_before_reading() {
    use super::dicom::MAX_FILE_BYTES;
    let tmp = folder(&stack(1, &Spec::default()));
    // Sparse: no disk space used, and the size alone is what is checked.
    let big = std::fs::File::create(tmp.path().join("s1.dcm")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();
    let e = err_of(tmp.path());
    assert!(
        e.contains("s1.dcm") && e.contains("larger than the 160 MiB accepted"),
        "{e}"
    );
}
