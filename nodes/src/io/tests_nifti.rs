//! Tests of NIfTI loading and saving: every dtype, scaling, geometry sources, header
//! extensions, each error, round trips, and the real data in `../shared/data`.

use std::path::{Path, PathBuf};

use voxflow_engine::{Geometry, Image, Mask, NodeContext, NodeError, NodeType, Value, Volume};

use super::nifti::{as_bytes, Dtype, Header, Sample};
use super::nifti_load::{load_image, load_labels, load_mask, LoadLabels, LoadMask, LoadNifti};
use super::nifti_save::{save_image, save_labels, save_mask, save_value, SaveNifti};
use super::test_support::{gzip, peer_python, run_python};
use crate::testdata::{ct_sm_reference, shared_data};

fn geom() -> Geometry {
    let mut g = Geometry::new([4, 3, 2], [0.5, 0.75, 2.0]);
    g.affine[0][0] = -0.5;
    g.affine[0][3] = 12.5;
    g.affine[1][3] = -7.25;
    g.affine[2][3] = 40.0;
    g.spacing = [0.5, 0.75, 2.0];
    g
}

/// The bytes of a single-file NIfTI: header, optional extension, voxels.
fn nii_bytes(h: &Header, voxels: &[u8], extension: &[u8]) -> Vec<u8> {
    let mut h = h.clone();
    h.vox_offset = 352 + extension.len();
    let mut b = h.to_bytes().to_vec();
    if !extension.is_empty() {
        b[348] = 1;
        b.extend_from_slice(extension);
    }
    b.extend_from_slice(voxels);
    b
}

/// Write a file of samples `T` with a scaling, plain or gzip.
fn write_typed<T: Sample>(dir: &Path, name: &str, values: &[T], slope: f32, inter: f32) -> PathBuf {
    let mut h = Header::for_geometry(&geom(), T::DTYPE);
    h.scl_slope = slope;
    h.scl_inter = inter;
    let bytes = nii_bytes(&h, as_bytes(values), &[]);
    let path = dir.join(name);
    let bytes = if name.ends_with(".gz") {
        gzip(&bytes)
    } else {
        bytes
    };
    std::fs::write(&path, bytes).unwrap();
    path
}

fn ramp(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 3.0 - 20.0).collect()
}

fn image_values(img: &Image) -> Vec<f64> {
    (0..img.geometry().len()).map(|i| img.get_f64(i)).collect()
}

fn err_text(e: NodeError) -> String {
    e.to_string()
}

#[test]
fn every_dtype_loads_with_and_without_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let n = geom().len();
    macro_rules! case {
        ($t:ty, $unsigned:expr, $i16:expr) => {{
            let raw: Vec<f64> = ramp(n)
                .iter()
                .map(|v| if $unsigned { v + 20.0 } else { *v })
                .collect();
            let vals: Vec<$t> = raw.iter().map(|&v| v as $t).collect();
            for (slope, inter, ext) in [
                (0.0f32, 0.0f32, "nii"),
                (1.0, 0.0, "nii.gz"),
                (0.5, -3.0, "nii.gz"),
            ] {
                let name = format!("{}_{slope}.{ext}", <$t as Sample>::DTYPE.name());
                let path = write_typed(dir.path(), &name, &vals, slope, inter);
                let img = load_image(&path).unwrap();
                let scaled = slope != 0.0 && !(slope == 1.0 && inter == 0.0);
                let want: Vec<f64> = raw
                    .iter()
                    .map(|&v| {
                        if scaled {
                            (v * slope as f64 + inter as f64) as f32 as f64
                        } else {
                            v
                        }
                    })
                    .collect();
                assert_eq!(image_values(&img), want, "{name}");
                let want_type = if $i16 && !scaled { "i16" } else { "f32" };
                assert_eq!(img.dtype(), want_type, "{name}");
                assert_eq!(img.geometry(), &geom(), "{name}");
            }
        }};
    }
    case!(u8, true, true);
    case!(i8, false, true);
    case!(i16, false, true);
    case!(u16, true, false);
    case!(i32, false, false);
    case!(u32, true, false);
    case!(f32, false, false);
    case!(f64, false, false);
}

#[test]
fn integral_scaling_stays_i16_when_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<u8> = (0..24).map(|i| i * 10).collect();
    // A whole slope and intercept with results inside i16: stays i16.
    let p = write_typed(dir.path(), "fits.nii", &vals, 2.0, -1024.0);
    let img = load_image(&p).unwrap();
    assert_eq!(img.dtype(), "i16");
    assert_eq!(
        image_values(&img),
        vals.iter()
            .map(|&v| v as f64 * 2.0 - 1024.0)
            .collect::<Vec<_>>()
    );
    // Results beyond i16: f32.
    let big: Vec<i16> = (0..24).map(|i| i * 1000).collect();
    let p = write_typed(dir.path(), "overflows.nii", &big, 4.0, 0.0);
    let img = load_image(&p).unwrap();
    assert_eq!(img.dtype(), "f32");
    assert_eq!(img.get_f64(23), 23.0 * 4000.0);
}

#[test]
fn masks_are_nonzero_and_labels_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<f32> = (0..24).map(|i| [0.0, 2.0, f32::NAN, -1.5][i % 4]).collect();
    let p = write_typed(dir.path(), "m.nii.gz", &vals, 0.0, 0.0);
    let m = load_mask(&p).unwrap();
    assert_eq!(
        m.to_bytes(),
        &(0..24).map(|i| [0, 1, 0, 1][i % 4]).collect::<Vec<u8>>()[..]
    );

    let labels: Vec<f32> = (0..24).map(|i| (i % 5) as f32 * 100.0).collect();
    let p = write_typed(dir.path(), "l.nii", &labels, 0.0, 0.0);
    let l = load_labels(&p).unwrap();
    assert_eq!(
        l.as_slice(),
        &labels.iter().map(|&v| v as u16).collect::<Vec<_>>()[..]
    );

    let wide: Vec<i32> = (0..24).map(|i| i * 2800).collect();
    let p = write_typed(dir.path(), "wide.nii", &wide, 0.0, 0.0);
    assert_eq!(load_labels(&p).unwrap().as_slice()[23], 64400);
}

#[test]
fn label_maps_with_bad_values_are_errors_naming_file_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut vals = vec![1.0f32; 24];
    vals[5] = 2.5; // voxel (1, 1, 0)
    vals[9] = 0.25;
    let p = write_typed(dir.path(), "frac.nii.gz", &vals, 0.0, 0.0);
    let e = err_text(load_labels(&p).unwrap_err());
    assert!(
        e.contains("frac.nii.gz") && e.contains("non-integral label value 2.5 at voxel (1, 1, 0)"),
        "{e}"
    );

    let mut neg = vec![3i16; 24];
    neg[23] = -1;
    let p = write_typed(dir.path(), "neg.nii", &neg, 0.0, 0.0);
    let e = err_text(load_labels(&p).unwrap_err());
    assert!(
        e.contains("neg.nii")
            && e.contains("label value -1 at voxel (3, 2, 1) is outside 0..=65535"),
        "{e}"
    );
}

#[test]
fn geometry_from_sform_then_qform_then_pixdim() {
    let dir = tempfile::tempdir().unwrap();
    let g = geom();
    let vals = vec![0i16; g.len()];
    let mut h = Header::for_geometry(&g, Dtype::I16);
    // sform wins over a different qform.
    h.qoffset = [1.0, 2.0, 3.0];
    let p = dir.path().join("s.nii");
    std::fs::write(&p, nii_bytes(&h, as_bytes(&vals), &[])).unwrap();
    assert_eq!(load_image(&p).unwrap().geometry(), &g);
    // No sform: the qform (a y-flip here through the quaternion) gives the affine.
    let mut flipped = g.clone();
    flipped.affine[1][1] = -0.75;
    let mut h = Header::for_geometry(&flipped, Dtype::I16);
    h.sform_code = 0;
    h.srow = [[0.0; 4]; 3];
    let p = dir.path().join("q.nii");
    std::fs::write(&p, nii_bytes(&h, as_bytes(&vals), &[])).unwrap();
    let got = load_image(&p).unwrap().geometry().clone();
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (got.affine[r][c] - flipped.affine[r][c]).abs() < 1e-6,
                "{got:?}"
            );
        }
    }
    // Neither: pixdim scaling, origin 0.
    h.qform_code = 0;
    let p = dir.path().join("p.nii");
    std::fs::write(&p, nii_bytes(&h, as_bytes(&vals), &[])).unwrap();
    assert_eq!(
        load_image(&p).unwrap().geometry(),
        &Geometry::new(g.dims, g.spacing)
    );
}

#[test]
fn header_extensions_and_4d_single_volume_and_big_endian() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<i16> = (0..24).map(|i| i * 7 - 50).collect();
    let mut ext = vec![0u8; 64];
    ext[..4].copy_from_slice(&64i32.to_le_bytes());
    ext[4..8].copy_from_slice(&6i32.to_le_bytes());
    ext[8..40].copy_from_slice(b"a comment that is not voxel data");
    let mut h = Header::for_geometry(&geom(), Dtype::I16);
    h.dim = [4, 4, 3, 2, 1, 1, 1, 1];
    let p = dir.path().join("ext.nii.gz");
    std::fs::write(&p, gzip(&nii_bytes(&h, as_bytes(&vals), &ext))).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!(
        image_values(&img),
        vals.iter().map(|&v| v as f64).collect::<Vec<_>>()
    );

    // Big-endian: swap the header fields and the voxels.
    let mut b = nii_bytes(
        &Header::for_geometry(&geom(), Dtype::I16),
        as_bytes(&vals),
        &[],
    );
    let swap = |b: &mut Vec<u8>, at: usize, n: usize| b[at..at + n].reverse();
    swap(&mut b, 0, 4);
    for i in 0..8 {
        swap(&mut b, 40 + 2 * i, 2);
        swap(&mut b, 76 + 4 * i, 4);
    }
    for at in [70, 72, 252, 254] {
        swap(&mut b, at, 2);
    }
    for at in [108, 112, 116].into_iter().chain((256..328).step_by(4)) {
        swap(&mut b, at, 4);
    }
    for i in 0..24 {
        swap(&mut b, 352 + 2 * i, 2);
    }
    let p = dir.path().join("be.nii");
    std::fs::write(&p, b).unwrap();
    let img = load_image(&p).unwrap();
    assert_eq!(
        image_values(&img),
        vals.iter().map(|&v| v as f64).collect::<Vec<_>>()
    );
    assert_eq!(img.geometry(), &geom());
}

#[test]
fn multi_member_gzip_loads() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<i16> = (0..24).map(|i| i * 11).collect();
    let bytes = nii_bytes(
        &Header::for_geometry(&geom(), Dtype::I16),
        as_bytes(&vals),
        &[],
    );
    let mut two = gzip(&bytes[..400]);
    two.extend(gzip(&bytes[400..]));
    let p = dir.path().join("two.nii.gz");
    std::fs::write(&p, two).unwrap();
    assert_eq!(
        image_values(&load_image(&p).unwrap()),
        vals.iter().map(|&v| v as f64).collect::<Vec<_>>()
    );
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vals: Vec<i16> = (0..2400).map(|i| (i * 7919 % 4000) as i16).collect();
    let mut big = geom();
    big.dims = [40, 30, 2];
    let good = nii_bytes(
        &Header::for_geometry(&big, Dtype::I16),
        as_bytes(&vals),
        &[],
    );
    let check = |name: &str, bytes: Option<Vec<u8>>, want: &str| {
        let p = d.join(name);
        if let Some(b) = bytes {
            std::fs::write(&p, b).unwrap();
        }
        let e = err_text(load_image(&p).unwrap_err());
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    };
    check("missing.nii.gz", None, "file not found");
    let gz = gzip(&good);
    check(
        "truncated.nii.gz",
        Some(gz[..gz.len() / 2].to_vec()),
        "truncated gzip stream",
    );
    check(
        "no_trailer.nii.gz",
        Some(gz[..gz.len() - 6].to_vec()),
        "truncated gzip stream",
    );
    let mut corrupt = gz.clone();
    let at = corrupt.len() - 3;
    corrupt[at] ^= 0xff; // the length in the trailer
    check("corrupt.nii.gz", Some(corrupt), "corrupt gzip data");
    check("short.nii", Some(good[..1000].to_vec()), "truncated file");
    check(
        "text.nii",
        Some(b"hello, this is not an image".to_vec()),
        "not a NIfTI file",
    );
    check(
        "zeros.nii.gz",
        Some(gzip(&[0u8; 600])),
        "not a NIfTI file: sizeof_hdr is 0",
    );
    let mut magic = good.clone();
    magic[344..348].copy_from_slice(b"abcd");
    check("magic.nii", Some(magic), "bad magic");
    let mut nifti2 = good.clone();
    nifti2[..4].copy_from_slice(&540i32.to_le_bytes());
    check("v2.nii", Some(nifti2), "NIfTI-2");
    let mut four = Header::for_geometry(&geom(), Dtype::I16);
    four.dim = [4, 4, 3, 2, 3, 1, 1, 1];
    let vals4 = vec![0i16; 72];
    check(
        "four.nii.gz",
        Some(gzip(&nii_bytes(&four, as_bytes(&vals4), &[]))),
        "holds 3 volumes",
    );
    for (code, what) in [(32i16, "complex64"), (128, "rgb24")] {
        let mut b = good.clone();
        b[70..72].copy_from_slice(&code.to_le_bytes());
        check(&format!("dtype{code}.nii"), Some(b), what);
    }
}

#[test]
fn round_trip_is_bit_exact_for_every_value_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = geom();
    // An oblique affine with f32-exact values, as a loaded file would have.
    g.affine[0][1] = 0.125;
    g = Geometry::from_affine(g.dims, g.affine);
    let n = g.len();
    let f: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 1000.0).collect();
    let img = Image::F32(Volume::from_vec(g.clone(), f).unwrap());
    for ext in ["nii", "nii.gz"] {
        let p = dir.path().join(format!("f.{ext}"));
        save_image(&p, &img).unwrap();
        assert_eq!(load_image(&p).unwrap(), img);
        let p2 = dir.path().join(format!("f2.{ext}"));
        save_image(&p2, &load_image(&p).unwrap()).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(&p2).unwrap(),
            "same bytes twice"
        );
    }
    let labels = Volume::from_vec(g.clone(), (0..n as u16).map(|i| i * 2000).collect()).unwrap();
    let p = dir.path().join("l.nii.gz");
    save_labels(&p, &labels).unwrap();
    assert_eq!(
        super::nifti::NiftiReader::open(&p).unwrap().header().dtype,
        Dtype::U16
    );
    assert_eq!(load_labels(&p).unwrap(), labels);
    let small = labels.map(|v| v % 200);
    save_labels(&p, &small).unwrap();
    assert_eq!(
        super::nifti::NiftiReader::open(&p).unwrap().header().dtype,
        Dtype::U8
    );
    assert_eq!(load_labels(&p).unwrap(), small);
    let mask = Mask::from_bytes(
        labels.geometry().clone(),
        &labels.map(|v| (v % 3 == 0) as u8).into_vec(),
    )
    .unwrap();
    save_mask(&p, &mask).unwrap();
    assert_eq!(load_mask(&p).unwrap(), mask);
}

#[test]
fn saved_files_read_back_with_the_nifti_crate() {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let dir = tempfile::tempdir().unwrap();
    let g = geom();
    let vals: Vec<i16> = (0..g.len() as i16).map(|i| i * 5 - 30).collect();
    let p = dir.path().join("x.nii.gz");
    save_image(
        &p,
        &Image::I16(Volume::from_vec(g.clone(), vals.clone()).unwrap()),
    )
    .unwrap();
    let obj = ReaderOptions::new().read_file(&p).unwrap();
    let h = obj.header();
    assert_eq!((h.sform_code, h.qform_code, h.datatype), (1, 1, 4));
    assert_eq!(h.srow_x, [-0.5, 0.0, 0.0, 12.5]);
    assert_eq!(&h.pixdim[1..4], &[0.5, 0.75, 2.0]);
    let arr = obj.into_volume().into_ndarray::<i16>().unwrap();
    let flat: Vec<i16> = arr.t().iter().copied().collect::<Vec<_>>();
    // ndarray's logical order is (x, y, z) row-major; transposed iteration is x-fastest.
    assert_eq!(flat, vals);
    // nibabel reads the voxels (past the gzip block index in FEXTRA) and reads the
    // qform (quaternion) and the sform as the same affine.
    let Some(py) = peer_python("nibabel qform check", "nibabel, numpy") else {
        return;
    };
    let script = "import sys, json, numpy as np, nibabel as nib\n\
                  im = nib.load(sys.argv[1]); h = im.header\n\
                  a = np.asarray(im.dataobj)\n\
                  print(json.dumps([h.get_qform().tolist(), h.get_sform().tolist(), \
                  a.ravel(order='F').tolist()]))";
    let out = run_python(&py, script, &[p.to_str().unwrap()]);
    type Forms = (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<i16>);
    let (q, s, data): Forms = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(data, vals);
    let forms = [q, s];
    for form in forms {
        for r in 0..4 {
            for c in 0..4 {
                assert!((form[r][c] - g.affine[r][c]).abs() < 1e-6, "{form:?}");
            }
        }
    }
}

#[test]
fn save_rejects_unknown_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let img = Value::Image(std::sync::Arc::new(Image::I16(Volume::filled(geom(), 0))));
    let p = dir.path().join("x.nrrd");
    let e = err_text(save_value(&p, &img).unwrap_err());
    assert!(
        e.contains("x.nrrd") && e.contains("unknown extension"),
        "{e}"
    );
    assert!(!p.exists());
    let errs = SaveNifti
        .build(&serde_json::json!({"path": "out.mha"}), "native")
        .err()
        .unwrap();
    assert_eq!(errs[0].path, vec!["path".to_string()]);
    assert!(errs[0].message.contains("unknown extension"));
    assert!(
        LoadNifti.build(&serde_json::json!({}), "native").is_err(),
        "path is required"
    );
}

#[test]
fn nodes_load_and_save_through_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let labels = Volume::from_vec(geom(), (0..24u16).map(|i| i % 4).collect()).unwrap();
    let save = SaveNifti
        .build(&serde_json::json!({"path": "sub/l.nii.gz"}), "native")
        .unwrap();
    let mut ctx = NodeContext::standalone("SaveNifti", dir.path())
        .with_input("volume", Value::Labels(std::sync::Arc::new(labels.clone())));
    save.run(&mut ctx).unwrap();
    let path = dir.path().join("sub/l.nii.gz");
    let p = path.to_str().unwrap();
    for (ty, port) in [
        (&LoadLabels as &dyn NodeType, "labels"),
        (&LoadMask, "mask"),
        (&LoadNifti, "image"),
    ] {
        let node = ty
            .build(&serde_json::json!({ "path": p }), "native")
            .unwrap();
        let mut ctx = NodeContext::standalone("Load", dir.path());
        node.run(&mut ctx).unwrap();
        let out = ctx.take_outputs();
        let v = &out[port];
        assert_eq!(v.geometry(), Some(&geom()));
        match v {
            Value::Labels(l) => assert_eq!(**l, labels),
            Value::Mask(m) => assert_eq!(m.to_bytes(), labels.map(|&v| (v != 0) as u8).as_slice()),
            Value::Image(i) => assert_eq!(i.dtype(), "i16"),
            _ => unreachable!(),
        }
    }
}

// ---- real data -------------------------------------------------------------------

#[test]
fn real_ct_matches_reference_and_the_nifti_crate() {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let Some((data, refs)) = ct_sm_reference("real CT load") else {
        return;
    };
    let path = data.join("ct_sm.nii.gz");
    let img = load_image(&path).unwrap();
    let Image::I16(v) = &img else {
        panic!("ct_sm is int16, got {}", img.dtype())
    };
    let shape: Vec<usize> = serde_json::from_value(refs["ct_sm"]["shape"].clone()).unwrap();
    assert_eq!(v.dims().to_vec(), shape);
    let (lo, hi) = super::nifti::par_min_max(v.as_slice()).unwrap();
    assert_eq!(
        (lo as f64, hi as f64),
        (
            refs["ct_sm"]["min"].as_f64().unwrap(),
            refs["ct_sm"]["max"].as_f64().unwrap()
        )
    );
    let mean = v.as_slice().iter().map(|&x| x as f64).sum::<f64>() / v.as_slice().len() as f64;
    let want = refs["ct_sm"]["mean"].as_f64().unwrap();
    assert!((mean - want).abs() <= 1e-9 * want.abs(), "{mean} vs {want}");
    // The nifti crate, an independent reader, agrees on voxels and the sform.
    let obj = ReaderOptions::new().read_file(&path).unwrap();
    let h = obj.header().clone();
    for (r, row) in [h.srow_x, h.srow_y, h.srow_z].iter().enumerate() {
        for (c, x) in row.iter().enumerate() {
            assert_eq!(v.geometry().affine[r][c], *x as f64);
        }
    }
    let arr = obj.into_volume().into_ndarray::<i16>().unwrap();
    assert!(arr.t().iter().copied().eq(v.as_slice().iter().copied()));
}

#[test]
fn real_files_round_trip_bit_exact() {
    let Some(data) = shared_data("real round trip") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ct = load_image(&data.join("ct_sm.nii.gz")).unwrap();
    let p = dir.path().join("ct.nii.gz");
    save_image(&p, &ct).unwrap();
    assert_eq!(load_image(&p).unwrap(), ct);
    let total = load_labels(&data.join("ct_sm_total.nii.gz")).unwrap();
    let p = dir.path().join("total.nii");
    save_labels(&p, &total).unwrap();
    assert_eq!(load_labels(&p).unwrap(), total);
    let seg = load_labels(&data.join("dicom/ct_series_seg.nii.gz")).unwrap();
    let p = dir.path().join("seg.nii.gz");
    save_labels(&p, &seg).unwrap();
    assert_eq!(load_labels(&p).unwrap(), seg);
    let muscle = load_mask(&data.join("ct_sm_tissue_skeletal_muscle.nii.gz")).unwrap();
    assert_eq!(muscle.count(), 35293);
    let p = dir.path().join("m.nii.gz");
    save_mask(&p, &muscle).unwrap();
    assert_eq!(load_mask(&p).unwrap(), muscle);
}

#[test]
fn total_map_with_header_extension_has_nibabel_label_counts() {
    let Some(data) = shared_data("ct_sm_total label counts") else {
        return;
    };
    let path = data.join("ct_sm_total.nii.gz");
    assert_eq!(
        super::nifti::NiftiReader::open(&path)
            .unwrap()
            .header()
            .vox_offset,
        13168
    );
    let labels = load_labels(&path).unwrap();
    let counts = voxflow_engine::volume::value_counts(labels.as_slice());
    assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), 122 * 101 * 30);
    for l in [1u16, 5, 86, 87] {
        assert!(
            counts.iter().any(|c| c.0 == l && c.1 > 0),
            "label {l} present"
        );
    }
    let Some(py) = peer_python("nibabel label counts", "nibabel, numpy") else {
        return;
    };
    let script = "import sys, json, numpy as np, nibabel as nib\n\
                  a = np.asarray(nib.load(sys.argv[1]).dataobj)\n\
                  v, c = np.unique(a, return_counts=True)\n\
                  print(json.dumps([[int(x), int(y)] for x, y in zip(v, c)]))";
    let out = run_python(&py, script, &[path.to_str().unwrap()]);
    let want: Vec<(u16, usize)> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(counts, want);
}

#[test]
fn large_files_stream_through_the_read_pipeline() {
    // Larger than one read chunk (4 MiB compressed) and several output steps (8 MiB),
    // so reading, page touching and inflating overlap across many steps.
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([256, 256, 100], [0.75, 0.75, 2.5]);
    let mut state = 12345u64;
    let vals: Vec<i16> = (0..g.len())
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Smooth ramp plus noise: compresses to roughly half, like CT.
            ((i % 256) as i16 - 1000) + (state >> 58) as i16
        })
        .collect();
    let img = Image::I16(Volume::from_vec(g.clone(), vals.clone()).unwrap());
    // Written by voxflow (parallel blocks) and by a plain single-stream gzip encoder.
    let ours = dir.path().join("ours.nii.gz");
    save_image(&ours, &img).unwrap();
    assert_eq!(load_image(&ours).unwrap(), img);
    let bytes = nii_bytes(&Header::for_geometry(&g, Dtype::I16), as_bytes(&vals), &[]);
    let gz = gzip(&bytes);
    assert!(
        gz.len() > 8 << 20,
        "spans several read chunks: {}",
        gz.len()
    );
    let plain = dir.path().join("plain.nii.gz");
    std::fs::write(&plain, &gz).unwrap();
    assert_eq!(load_image(&plain).unwrap(), img);
    let raw = dir.path().join("raw.nii");
    std::fs::write(&raw, &bytes).unwrap();
    assert_eq!(load_image(&raw).unwrap(), img);
    // Cut in the middle of a later chunk: still reported as truncated.
    let cut = dir.path().join("cut.nii.gz");
    std::fs::write(&cut, &gz[..gz.len() * 3 / 4]).unwrap();
    let e = err_text(load_image(&cut).unwrap_err());
    assert!(
        e.contains("cut.nii.gz") && e.contains("truncated gzip stream"),
        "{e}"
    );
}

// ---- hostile headers (issue 16) ---------------------------------------------------

/// Bytes of a small valid file on `geom()` (int16), header built by `edit`.
fn hostile(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let vals: Vec<i16> = (0..24).map(|i| i * 3 - 30).collect();
    let mut h = Header::for_geometry(&geom(), Dtype::I16);
    edit(&mut h);
    let mut b = nii_bytes(&h, as_bytes(&vals), &[]);
    // nii_bytes sets vox_offset; the edit may have meant another one.
    b[108..112].copy_from_slice(&(h.vox_offset as f32).to_le_bytes());
    b
}

/// Load `bytes` written as `name`, expecting an error naming the file and `want`.
fn load_err(dir: &Path, name: &str, bytes: &[u8], want: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let e = err_text(load_image(&p).unwrap_err());
    assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    e
}

#[test]
fn header_claims_beyond_the_file_fail_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 32767^3 int16 (64 TiB) in a file of a few hundred bytes: plain, gzip, and a gzip
    // with voxflow's block index (whose totals then disagree with the header).
    let bomb = hostile(|h| h.dim = [3, 32767, 32767, 32767, 1, 1, 1, 1]);
    let e = load_err(d, "bomb.nii", &bomb, "truncated file or bad header");
    assert!(e.contains("dims 32767x32767x32767 of int16"), "{e}");
    let e = load_err(
        d,
        "bomb.nii.gz",
        &gzip(&bomb),
        "bad header or truncated file",
    );
    assert!(e.contains("1032:1"), "{e}");
    // voxflow's own gzip layout, whose block index lists 48 voxel bytes.
    let mut h = Header::for_geometry(&geom(), Dtype::I16);
    h.dim = [3, 32767, 32767, 32767, 1, 1, 1, 1];
    let vals = [0u8; 48];
    let ix = super::nifti::encode_gzip(&h, &super::nifti::ByteSource::slice(&vals)).concat();
    load_err(d, "indexed.nii.gz", &ix, "block index holds 48");
    // A plausible claim (64 MiB of int16 voxels) within deflate's ratio for this
    // compressed size, but a stream that ends short: a clean truncation error, with
    // memory only for what the stream held (the buffer's pages are never written).
    let mut noise = 1u64;
    let filler: Vec<u8> = (0..80_000)
        .map(|_| {
            noise = noise.wrapping_mul(6364136223846793005).wrapping_add(1);
            (noise >> 56) as u8
        })
        .collect();
    let mut claim = hostile(|h| h.dim = [3, 1024, 1024, 32, 1, 1, 1, 1]);
    claim.extend_from_slice(&filler);
    load_err(d, "short.nii.gz", &gzip(&claim), "gzip stream ended");
}

#[test]
fn bad_vox_offsets_are_bad_headers() {
    let dir = tempfile::tempdir().unwrap();
    for (i, v) in [
        3.4e38f32,
        f32::NAN,
        f32::INFINITY,
        -352.0,
        348.0,
        0.0,
        400.5,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = hostile(|_| {});
        b[108..112].copy_from_slice(&v.to_le_bytes());
        for gz in [false, true] {
            let name = format!("vox{i}.nii{}", if gz { ".gz" } else { "" });
            let bytes = if gz { gzip(&b) } else { b.clone() };
            load_err(dir.path(), &name, &bytes, "bad header: vox_offset");
        }
    }
    // Beyond the file (a valid number, but no voxels there).
    let b = hostile(|h| h.vox_offset = 1 << 30);
    load_err(dir.path(), "far.nii", &b, "truncated file or bad header");
    load_err(
        dir.path(),
        "far.nii.gz",
        &gzip(&b),
        "bad header or truncated file",
    );
}

#[test]
fn unusable_geometry_falls_back_to_the_qform_or_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let load = |name: &str, b: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, b).unwrap();
        load_image(&p).map(|i| i.geometry().clone())
    };
    // A NaN or infinite sform element, or a zero or singular sform, with a sound qform:
    // the qform (here the same affine) places the voxels.
    type Edit = fn(&mut Header);
    let bad_sforms: [(&str, Edit); 4] = [
        ("nan", |h| h.srow[0][1] = f32::NAN),
        ("inf", |h| h.srow[2][3] = f32::INFINITY),
        ("zero", |h| h.srow = [[0.0; 4]; 3]),
        ("singular", |h| h.srow[1] = h.srow[0]),
    ];
    for (name, edit) in bad_sforms {
        let g = load(&format!("{name}.nii"), &hostile(edit)).unwrap();
        assert!(g.same_grid(&geom()), "{name}: {g:?}");
    }
    // Without a qform to fall back to: an error naming the field.
    let no_q = |h: &mut Header| {
        h.qform_code = 0;
        h.quatern = [f32::NAN; 3];
    };
    let cases: [(&str, Edit, &str); 7] = [
        ("s_nan.nii", |h| h.srow[0][1] = f32::NAN, "srow_x[1] is NaN"),
        ("s_zero.nii", |h| h.srow[1] = [0.0; 4], "is zero"),
        (
            "s_sing.nii",
            |h| h.srow.iter_mut().for_each(|r| r[2] = r[0] + r[1]),
            "singular",
        ),
        ("q_nan.nii", |h| h.quatern[1] = f32::NAN, "quatern_c is NaN"),
        (
            "q_off.nii",
            |h| h.qoffset[2] = f32::NEG_INFINITY,
            "qoffset_z is -inf",
        ),
        ("q_pix.nii", |h| h.pixdim[2] = f32::NAN, "pixdim[2] is NaN"),
        (
            "p_pix.nii",
            |h| h.pixdim[3] = f32::INFINITY,
            "pixdim[3] is inf",
        ),
    ];
    for (name, edit, want) in cases {
        let b = hostile(|h| {
            edit(h);
            if name.starts_with("s_") {
                no_q(h);
            } else {
                h.sform_code = 0;
                if name.starts_with("p_") {
                    h.qform_code = 0;
                }
            }
        });
        let e = err_text(load(name, &b).unwrap_err());
        assert!(
            e.contains(name) && e.contains("bad header") && e.contains(want),
            "{name}: {e}"
        );
    }
    // Both forms bad: the error names both.
    let b = hostile(|h| {
        h.srow[0][0] = f32::NAN;
        h.quatern[0] = f32::INFINITY;
    });
    let e = err_text(load("both.nii", &b).unwrap_err());
    assert!(
        e.contains("srow_x[0]") && e.contains("quatern_b is inf"),
        "{e}"
    );
    // pixdim is irrelevant when the sform places the voxels.
    let g = load("pix_ignored.nii", &hostile(|h| h.pixdim[1] = f32::NAN)).unwrap();
    assert_eq!(g, geom());
}

#[test]
fn sheared_affines_get_no_qform() {
    use nifti::{NiftiObject, ReaderOptions};
    let dir = tempfile::tempdir().unwrap();
    let mut sheared = geom();
    sheared.affine[0][2] = 0.75; // z moves along x: not a rotation times zooms
    let sheared = Geometry::from_affine(sheared.dims, sheared.affine);
    let mut rotated = geom();
    let (s, c) = (0.3f64.sin(), 0.3f64.cos());
    rotated.affine[0][0] = -0.5 * c;
    rotated.affine[1][0] = -0.5 * s;
    rotated.affine[0][1] = -0.75 * s;
    rotated.affine[1][1] = 0.75 * c;
    for (name, g, want_q) in [("shear", sheared, 0), ("rotated", rotated, 1)] {
        let p = dir.path().join(format!("{name}.nii"));
        save_image(&p, &Image::I16(Volume::filled(g.clone(), 1))).unwrap();
        let h = ReaderOptions::new().read_file(&p).unwrap().header().clone();
        assert_eq!((h.sform_code, h.qform_code), (1, want_q), "{name}");
        if want_q == 0 {
            assert_eq!([h.quatern_b, h.quatern_c, h.quatern_d], [0.0; 3]);
        } else {
            // The qform alone gives the affine.
            let mut ours = super::nifti::NiftiReader::open(&p)
                .unwrap()
                .header()
                .clone();
            ours.sform_code = 0;
            let q = ours.affine().unwrap();
            for r in 0..3 {
                for c in 0..4 {
                    assert!((q[r][c] - g.affine[r][c]).abs() < 1e-6, "{name}: {q:?}");
                }
            }
        }
        assert!(load_image(&p).unwrap().geometry().same_grid(&g), "{name}");
    }
}

/// Splitmix64: a seeded generator for the mutation loop (no dependency needed for a
/// stream of reproducible numbers).
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutate a copy of `base`: flip bytes, or write hostile values (0, -1, extremes, NaN,
/// infinities, huge floats) at the header's field offsets, or cut the file.
fn mutate(base: &[u8], rng: &mut Mix) -> Vec<u8> {
    const I16_AT: &[usize] = &[40, 42, 44, 46, 48, 50, 52, 54, 56, 70, 72, 252, 254];
    const F32_AT: &[usize] = &[
        76, 80, 84, 88, 92, 108, 112, 116, 124, 128, 256, 260, 264, 268, 272, 276, 280, 284, 288,
        292, 296, 300, 304, 308, 312, 316, 320, 324,
    ];
    const F32S: &[f32] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        348.0,
        352.0,
        353.0,
        3.4e38,
        -3.4e38,
        1e-45,
        65536.0,
        2.1e9,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    const I16S: &[i16] = &[
        0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 256, 512, 768, 1024, 32767, -32768,
    ];
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(352.min(b.len()));
                b[at] = rng.next() as u8;
            }
            2 if b.len() >= 352 => {
                let at = F32_AT[rng.below(F32_AT.len())];
                b[at..at + 4].copy_from_slice(&F32S[rng.below(F32S.len())].to_le_bytes());
            }
            3 | 4 if b.len() >= 352 => {
                let at = I16_AT[rng.below(I16_AT.len())];
                b[at..at + 2].copy_from_slice(&I16S[rng.below(I16S.len())].to_le_bytes());
            }
            5 => {
                let keep = rng.below(b.len() + 1);
                b.truncate(keep.max(1));
            }
            _ => {} // a field write into a file already cut short
        }
    }
    b
}

/// Seeded mutation fuzzing of the header parser and reader through the real loaders,
/// ~6 s per form (plain, gzip, voxflow's indexed gzip): every mutated file must load or
/// fail with an error, never panic. Counts are printed (`--nocapture`).
#[test]
fn mutated_headers_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let plain = hostile(|_| {});
    let ix_path = dir.path().join("base_ix.nii.gz");
    save_image(
        &ix_path,
        &Image::I16(Volume::from_vec(geom(), (0..24).map(|i| i * 9).collect()).unwrap()),
    )
    .unwrap();
    let indexed = std::fs::read(&ix_path).unwrap();
    let mut rng = Mix(0x5eed_0016);
    for (form, name) in [
        ("plain", "m.nii"),
        ("gzip", "m.nii.gz"),
        ("indexed", "i.nii.gz"),
    ] {
        let (mut runs, mut ok) = (0usize, 0usize);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let p = dir.path().join(name);
        while std::time::Instant::now() < until {
            let bytes = match form {
                "plain" => mutate(&plain, &mut rng),
                // Mutate the header, then compress: the parser sees hostile fields.
                "gzip" => gzip(&mutate(&plain, &mut rng)),
                // Mutate the compressed bytes and the block index in the gzip header.
                _ => {
                    let mut b = indexed.clone();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(b.len().min(64));
                        b[at] = rng.next() as u8;
                    }
                    b
                }
            };
            std::fs::write(&p, &bytes).unwrap();
            let result = std::panic::catch_unwind(|| {
                (
                    load_image(&p).is_ok(),
                    load_labels(&p).is_ok(),
                    load_mask(&p).is_ok(),
                )
            });
            match result {
                Ok(r) => ok += r.0 as usize,
                Err(_) => panic!("{form}: a mutated file panicked the loader: {bytes:02x?}"),
            }
            runs += 1;
        }
        println!("nifti mutation fuzz, {form}: {runs} files, {ok} loaded as images");
        assert!(runs > 100, "{form}: only {runs} executions");
    }
}

// ---- header meaning kept through load and save (issue 16) --------------------------

/// A header with every kept field set to something other than voxflow's defaults.
fn rich_header() -> Header {
    let mut h = Header::for_geometry(&geom(), Dtype::I16);
    h.dim = [4, 4, 3, 2, 1, 1, 1, 1];
    h.sform_code = 2;
    h.qform_code = 1;
    h.xyzt_units = 2 | 8; // mm, s
    h.pixdim[4] = 2.5; // TR
    h.dim_info = 1 | (2 << 2) | (3 << 4);
    h.cal = [0.0, 100.0];
    h.intent_code = 3; // t test
    h.intent_params = [12.0, 0.0, 0.0];
    h.intent_name = b"tstat".to_vec();
    h.descrip = b"round trip source".to_vec();
    h
}

#[test]
fn saving_a_loaded_volume_keeps_the_header_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let vals: Vec<i16> = (0..24).map(|i| i * 5).collect();
    let src = dir.path().join("src.nii");
    std::fs::write(&src, nii_bytes(&rich_header(), as_bytes(&vals), &[])).unwrap();
    let img = load_image(&src).unwrap();
    // Through the cache codec too: a cached value must save like a fresh one.
    let mut bytes = Vec::new();
    voxflow_engine::codec::encode(&Value::Image(std::sync::Arc::new(img.clone())), &mut bytes)
        .unwrap();
    let Value::Image(cached) = voxflow_engine::codec::decode(&mut &bytes[..]).unwrap() else {
        panic!("an image")
    };
    assert_eq!(cached.geometry().nifti, img.geometry().nifti);
    let out = dir.path().join("out.nii.gz");
    save_image(&out, &cached).unwrap();
    let back = super::nifti::NiftiReader::open(&out)
        .unwrap()
        .header()
        .clone();
    let want = rich_header();
    assert_eq!(
        (
            back.sform_code,
            back.qform_code,
            back.xyzt_units,
            back.dim_info
        ),
        (
            want.sform_code,
            want.qform_code,
            want.xyzt_units,
            want.dim_info
        )
    );
    assert_eq!(back.pixdim[4], 2.5);
    assert_eq!(back.cal, want.cal);
    assert_eq!(
        (
            back.intent_code,
            back.intent_params,
            &back.intent_name,
            &back.descrip
        ),
        (
            want.intent_code,
            want.intent_params,
            &want.intent_name,
            &want.descrip
        )
    );
    // A mask derived on the same grid keeps the codes and units but not the CT's
    // display range, which would be wrong for 0/1 values.
    let mask = Mask::from_bytes(img.geometry().clone(), &[1u8; 24]).unwrap();
    let mp = dir.path().join("mask.nii");
    save_mask(&mp, &mask).unwrap();
    let mh = super::nifti::NiftiReader::open(&mp)
        .unwrap()
        .header()
        .clone();
    assert_eq!((mh.sform_code, mh.qform_code, mh.xyzt_units), (2, 1, 10));
    assert_eq!(mh.cal, [0.0, 0.0]);
    // A grid moved by a node: both forms are rewritten from the new affine, so the
    // source's codes still hold.
    let mut moved = img.geometry().clone();
    moved.affine[0][3] += 10.0;
    let mut h = Header::for_geometry(&moved, Dtype::I16);
    assert_eq!((h.sform_code, h.qform_code), (2, 1));
    assert_eq!(h.affine().unwrap()[0][3], moved.affine[0][3]);
    // Both codes 0 in the source (pixdim only): kept while the affine is pixdim's,
    // else the sform is written (code 1) so the moved origin is not lost.
    let mut meta = (**img.geometry().nifti.as_ref().unwrap()).clone();
    meta.sform_code = 0;
    meta.qform_code = 0;
    let mut plain = Geometry::new(geom().dims, [0.5, 0.75, 2.0]);
    plain.nifti = Some(std::sync::Arc::new(meta));
    h = Header::for_geometry(&plain, Dtype::I16);
    assert_eq!((h.sform_code, h.qform_code), (0, 0));
    plain.affine[2][3] = 5.0;
    h = Header::for_geometry(&plain, Dtype::I16);
    assert_eq!(h.sform_code, 1);
    assert_eq!(h.affine().unwrap(), plain.affine);
}

#[test]
fn header_round_trip_matches_nibabel_field_by_field() {
    let Some(py) = peer_python("nibabel header round trip", "nibabel, numpy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // nibabel writes the sources: (a) sform aligned + qform scanner, TR, units, dim_info,
    // intent, descrip, a display range that fits the data; (b) no sform, an aligned
    // rotated qform, and a display range that misses the data (dropped on save).
    let make = "import sys, numpy as np, nibabel as nib\n\
        d = sys.argv[1]\n\
        data = (np.arange(24).reshape((4, 3, 2, 1), order='F') * 5).astype(np.int16)\n\
        aff = np.array([[-0.5, 0, 0, 12.5], [0, 0.75, 0, -7.25], [0, 0, 2, 40], [0, 0, 0, 1]])\n\
        img = nib.Nifti1Image(data, aff); h = img.header\n\
        h.set_sform(aff, code=2); h.set_qform(aff, code=1)\n\
        h.set_xyzt_units('mm', 'sec'); pd = h['pixdim']; pd[4] = 2.5; h['pixdim'] = pd\n\
        h.set_dim_info(freq=0, phase=1, slice=2)\n\
        h.set_intent('t test', (12.0,), name='tstat')\n\
        h['descrip'] = b'round trip source a'; h['cal_min'] = 0; h['cal_max'] = 100\n\
        nib.save(img, d + '/a.nii')\n\
        c, s = np.cos(0.3), np.sin(0.3)\n\
        rot = np.array([[c * 0.5, -s * 0.75, 0, 3], [s * 0.5, c * 0.75, 0, -4], [0, 0, 2, 5], [0, 0, 0, 1]])\n\
        img = nib.Nifti1Image(data[..., 0], rot); h = img.header\n\
        h.set_qform(rot, code=2); h.set_sform(None, code=0)\n\
        h['descrip'] = b'source b'; h['cal_min'] = -500; h['cal_max'] = -400\n\
        nib.save(img, d + '/b.nii.gz')\n";
    run_python(&py, make, &[d]);
    for (src, saved) in [("a.nii", "a_out.nii.gz"), ("b.nii.gz", "b_out.nii")] {
        let img = load_image(&dir.path().join(src)).unwrap();
        save_image(&dir.path().join(saved), &img).unwrap();
    }
    let read = "import sys, json, numpy as np, nibabel as nib\n\
        def f(p):\n\
        \x20   im = nib.load(p); h = im.header\n\
        \x20   t = lambda k: h[k].tobytes().rstrip(b'\\0').decode()\n\
        \x20   return dict(sform_code=int(h['sform_code']), qform_code=int(h['qform_code']),\n\
        \x20       xyzt_units=int(h['xyzt_units']), tr=float(h['pixdim'][4]),\n\
        \x20       dim_info=int(h['dim_info']), intent_code=int(h['intent_code']),\n\
        \x20       intent_p=[float(h['intent_p%d' % i]) for i in (1, 2, 3)],\n\
        \x20       intent_name=t('intent_name'), descrip=t('descrip'),\n\
        \x20       cal=[float(h['cal_min']), float(h['cal_max'])], affine=im.affine.tolist(),\n\
        \x20       data=np.asarray(im.dataobj).ravel(order='F').tolist())\n\
        print(json.dumps([f(p) for p in sys.argv[1:]]))\n";
    let paths: Vec<String> = ["a.nii", "a_out.nii.gz", "b.nii.gz", "b_out.nii"]
        .iter()
        .map(|n| format!("{d}/{n}"))
        .collect();
    let args: Vec<&str> = paths.iter().map(|s| s.as_str()).collect();
    let out = run_python(&py, read, &args);
    let v: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    for (pair, cal_kept) in [((0, 1), true), ((2, 3), false)] {
        let (src, saved) = (&v[pair.0], &v[pair.1]);
        for key in [
            "sform_code",
            "qform_code",
            "xyzt_units",
            "tr",
            "dim_info",
            "intent_code",
            "intent_p",
            "intent_name",
            "descrip",
            "data",
        ] {
            assert_eq!(src[key], saved[key], "{key}: {src} vs {saved}");
        }
        let want_cal = if cal_kept {
            src["cal"].clone()
        } else {
            serde_json::json!([0.0, 0.0])
        };
        assert_eq!(saved["cal"], want_cal, "cal: {saved}");
        let (a, b) = (
            src["affine"].as_array().unwrap(),
            saved["affine"].as_array().unwrap(),
        );
        for (ra, rb) in a.iter().zip(b) {
            for (x, y) in ra.as_array().unwrap().iter().zip(rb.as_array().unwrap()) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() < 1e-5, "affine: {src} vs {saved}");
            }
        }
    }
    // Source (a) really has non-default values, so the comparison above means something.
    assert_eq!(
        (
            v[0]["sform_code"].as_i64(),
            v[0]["tr"].as_f64(),
            v[0]["intent_code"].as_i64()
        ),
        (Some(2), Some(2.5), Some(3))
    );
    assert_eq!(
        (v[2]["sform_code"].as_i64(), v[2]["qform_code"].as_i64()),
        (Some(0), Some(2))
    );
}
