//! Hostile DICOM series: each folder is written here byte by byte (a tiny explicit-VR
//! writer, since no DICOM library writes NaN geometry, 2,000 nested sequences or lengths
//! beyond the file), then `voxflow run` loads it with LoadDicomSeries and saves NIfTI.
//! Each must fail naming the bad file, exit 1, leave no output and stay under 1 GiB.

use std::path::Path;

use crate::support::*;

/// One explicit VR little endian element; odd values padded.
fn el(out: &mut Vec<u8>, group: u16, elem: u16, vr: &str, value: &[u8]) {
    let mut v = value.to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == "UI" { 0 } else { b' ' });
    }
    out.extend(group.to_le_bytes());
    out.extend(elem.to_le_bytes());
    out.extend(vr.as_bytes());
    if matches!(vr, "OB" | "OW" | "SQ") {
        out.extend([0, 0]);
        out.extend((v.len() as u32).to_le_bytes());
    } else {
        out.extend((v.len() as u16).to_le_bytes());
    }
    out.extend(v);
}

/// A 2 x 2 CT slice at height `z`; `set` overrides DS/CS strings by tag element number
/// in group 0020/0028 and the Modality (0008,0060); `extra` is spliced in (after
/// SeriesDescription) and `pixels` replaces the PixelData element when given.
fn slice(z: usize, set: &[(u16, u16, &str)], extra: &[u8], pixels: Option<&[u8]>) -> Vec<u8> {
    let get = |g: u16, e: u16, default: &str| -> String {
        set.iter()
            .find(|s| s.0 == g && s.1 == e)
            .map_or(default.to_string(), |s| s.2.to_string())
    };
    let mut meta = Vec::new();
    el(&mut meta, 2, 1, "OB", &[0, 1]);
    el(&mut meta, 2, 2, "UI", b"1.2.840.10008.5.1.4.1.1.2");
    el(&mut meta, 2, 3, "UI", format!("1.2.3.{z}").as_bytes());
    el(&mut meta, 2, 0x10, "UI", b"1.2.840.10008.1.2.1");
    let mut f = vec![0u8; 128];
    f.extend(b"DICM");
    el(&mut f, 2, 0, "UL", &(meta.len() as u32).to_le_bytes());
    f.extend(meta);
    el(&mut f, 8, 0x60, "CS", get(8, 0x60, "CT").as_bytes());
    el(&mut f, 8, 0x103E, "LO", b"hostile");
    f.extend(extra);
    el(&mut f, 0x20, 0x11, "IS", get(0x20, 0x11, "1").as_bytes());
    el(
        &mut f,
        0x20,
        0x32,
        "DS",
        get(0x20, 0x32, &format!("0\\0\\{}", 2 * z)).as_bytes(),
    );
    el(
        &mut f,
        0x20,
        0x37,
        "DS",
        get(0x20, 0x37, "1\\0\\0\\0\\1\\0").as_bytes(),
    );
    el(&mut f, 0x28, 2, "US", &1u16.to_le_bytes());
    el(
        &mut f,
        0x28,
        4,
        "CS",
        get(0x28, 4, "MONOCHROME2").as_bytes(),
    );
    el(&mut f, 0x28, 0x10, "US", &2u16.to_le_bytes());
    el(&mut f, 0x28, 0x11, "US", &2u16.to_le_bytes());
    el(
        &mut f,
        0x28,
        0x30,
        "DS",
        get(0x28, 0x30, "0.5\\0.5").as_bytes(),
    );
    for (e, v) in [(0x100u16, 16u16), (0x101, 16), (0x102, 15), (0x103, 1)] {
        el(&mut f, 0x28, e, "US", &v.to_le_bytes());
    }
    el(
        &mut f,
        0x28,
        0x1052,
        "DS",
        get(0x28, 0x1052, "-1024").as_bytes(),
    );
    el(
        &mut f,
        0x28,
        0x1053,
        "DS",
        get(0x28, 0x1053, "1").as_bytes(),
    );
    match pixels {
        Some(p) => f.extend(p),
        None => el(&mut f, 0x7FE0, 0x10, "OW", &[1, 0, 2, 0, 3, 0, 4, 0]),
    }
    f
}

/// Three slices in `d/series`, the middle one `bad`; `voxflow run` of a graph loading and
/// saving them, checked for a clean failure naming `bad.dcm` and `needle`.
fn refused(bad: Vec<u8>, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let series = d.join("series");
    std::fs::create_dir(&series).unwrap();
    std::fs::write(series.join("a.dcm"), slice(0, &[], &[], None)).unwrap();
    std::fs::write(series.join("bad.dcm"), bad).unwrap();
    std::fs::write(series.join("c.dcm"), slice(2, &[], &[], None)).unwrap();
    run_and_check(d, &["bad.dcm", needle]);
}

/// `n` good axial slices `0.dcm`, `1.dcm`, ... in a new folder `d/series`.
fn axial_series(d: &Path, n: usize) {
    series_of(d, n, |z| slice(z, &[], &[], None));
}

/// Slices `make(0)`, `make(1)`, ... as `0.dcm`, `1.dcm`, ... in a new folder `d/series`.
fn series_of(d: &Path, n: usize, make: impl Fn(usize) -> Vec<u8>) {
    std::fs::create_dir(d.join("series")).unwrap();
    for z in 0..n {
        std::fs::write(d.join(format!("series/{z}.dcm")), make(z)).unwrap();
    }
}

/// `voxflow run` of a graph loading the series in `d/series` and saving it as
/// `out/ct.nii.gz`.
fn load_and_save(d: &Path) -> Outcome {
    std::fs::write(
        d.join("g.ron"),
        r#"Graph(
    name: "dicom",
    nodes: {
        "ct": (node: "LoadDicomSeries", params: (dir: "series")),
        "save": (node: "SaveNifti", inputs: (volume: "ct"), params: (path: "ct.nii.gz")),
    },
)"#,
    )
    .unwrap();
    voxflow(&["run", "g.ron", "--out", "out"], d)
}

fn run_and_check(d: &Path, needles: &[&str]) {
    let o = load_and_save(d);
    eprintln!("{needles:?}: exit {:?}, peak {:.0} MiB", o.code, o.peak_mib);
    assert_clean_failure(&o, needles, 1024.0);
    assert_no_outputs(&d.join("out"));
}

#[test]
fn valid_series_loads() {
    // The writer itself is sound: the same three good slices load and save.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    axial_series(d, 3);
    let o = load_and_save(d);
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(files_under(&d.join("out"))
        .iter()
        .any(|p| p.ends_with("ct.nii.gz")));
}

/// An MR series loads (its rescaled values are right), and the run says they are not HU.
#[test]
fn a_series_of_another_modality_loads_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    series_of(d, 3, |z| slice(z, &[(8, 0x60, "MR")], &[], None));
    let o = load_and_save(d);
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(
        o.text()
            .contains("Modality MR: the values are not Hounsfield units"),
        "{}",
        o.text()
    );
    // A CT series says nothing of the kind.
    let tmp = tempfile::tempdir().unwrap();
    axial_series(tmp.path(), 3);
    let o = load_and_save(tmp.path());
    assert!(!o.text().contains("Hounsfield"), "{}", o.text());
}

#[test]
fn a_fifo_in_the_series_folder_is_named_without_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    axial_series(d, 2);
    fifo(&d.join("series/pipe.dcm"));
    let t = std::time::Instant::now();
    run_and_check(d, &["pipe.dcm", "not a regular file"]);
    assert!(t.elapsed().as_secs() < 10, "waited {:?}", t.elapsed());
}

#[test]
fn non_finite_or_degenerate_geometry() {
    for (g, e, v, needle) in [
        (
            0x20,
            0x32,
            "NaN\\0\\2",
            "ImagePositionPatient holds a non-finite value",
        ),
        (
            0x28,
            0x30,
            "0\\0.5",
            "PixelSpacing [0.0, 0.5] must be positive",
        ),
        (
            0x28,
            0x30,
            "-1\\0.5",
            "PixelSpacing [-1.0, 0.5] must be positive",
        ),
        (
            0x28,
            0x30,
            "NaN\\0.5",
            "PixelSpacing holds a non-finite value",
        ),
        (
            0x20,
            0x37,
            "NaN\\0\\0\\0\\1\\0",
            "ImageOrientationPatient holds a non-finite",
        ),
        (
            0x20,
            0x37,
            "1\\0\\0\\1\\0\\0",
            "degenerate ImageOrientationPatient",
        ),
    ] {
        refused(slice(1, &[(g, e, v)], &[], None), needle);
    }
}

#[test]
fn unusable_rescale() {
    for slope in ["NaN", "inf", "0", "1e300"] {
        refused(
            slice(1, &[(0x28, 0x1053, slope)], &[], None),
            "RescaleSlope",
        );
    }
    refused(
        slice(1, &[(0x28, 0x1052, "NaN")], &[], None),
        "RescaleIntercept NaN",
    );
}

#[test]
fn palette_colour() {
    refused(
        slice(1, &[(0x28, 4, "PALETTE COLOR")], &[], None),
        "PhotometricInterpretation PALETTE COLOR is not supported",
    );
}

#[test]
fn nested_sequences_2000_deep() {
    let mut extra = Vec::new();
    for _ in 0..2000 {
        extra.extend([
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        extra.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
    for _ in 0..2000 {
        extra.extend([
            0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0,
        ]);
    }
    refused(
        slice(1, &[], &extra, None),
        "sequences nested deeper than 64",
    );
}

#[test]
fn pixel_data_length_beyond_the_file() {
    let mut px = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
    px.extend(0xFFFF_FFF0u32.to_le_bytes());
    px.extend([0u8; 8]);
    refused(
        slice(1, &[], &[], Some(&px)),
        "declares 4294967280 bytes but only 8 remain",
    );
}

#[test]
fn several_series_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    axial_series(d, 2);
    let coronal = slice(0, &[(0x20, 0x37, "1\\0\\0\\0\\0\\-1")], &[], None);
    std::fs::write(d.join("series/cor.dcm"), coronal).unwrap();
    run_and_check(
        d,
        &[
            "folder holds 2 series",
            "2 slices of 2 x 2",
            "1 slices of 2 x 2 (first file cor.dcm)",
        ],
    );
}

#[test]
fn several_series_listed_by_dicom_ls_and_chosen_by_param() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    axial_series(d, 3);
    for z in 0..2 {
        // Coronal slices stack along y.
        let position = format!("0\\{}\\0", 2 * z);
        let coronal = slice(
            z,
            &[
                (0x20, 0x37, "1\\0\\0\\0\\0\\-1"),
                (0x20, 0x11, "2"),
                (0x20, 0x32, &position),
            ],
            &[],
            None,
        );
        std::fs::write(d.join(format!("series/cor{z}.dcm")), coronal).unwrap();
    }
    let o = voxflow(&["dicom", "ls", "series"], d);
    assert_eq!(o.code, Some(0), "{}", o.text());
    let rows: Vec<Vec<&str>> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("(none)"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", o.stdout);
    // (number, slices) of each series.
    let mut found: Vec<(&str, &str)> = rows.iter().map(|r| (r[1], r[2])).collect();
    found.sort();
    assert_eq!(found, [("1", "3"), ("2", "2")], "{}", o.stdout);
    for (choice, nz) in [("\"largest\"", "3"), ("2", "2")] {
        let graph = format!(
            r#"Graph(name: "pick", nodes: {{
            "ct": (node: "LoadDicomSeries", params: (dir: "series", series: {choice})),
            "save": (node: "SaveNifti", inputs: (volume: "ct"), params: (path: "ct.nii")),
        }})"#
        );
        std::fs::write(d.join("pick.ron"), graph).unwrap();
        let o = voxflow(&["run", "pick.ron", "--out", "out"], d);
        assert_eq!(o.code, Some(0), "{choice}: {}", o.text());
        let raw = std::fs::read(d.join("out/ct.nii")).unwrap();
        // NIfTI-1 dim[3] at byte 46.
        let dim3 = i16::from_le_bytes([raw[46], raw[47]]);
        assert_eq!(dim3.to_string(), nz, "{choice}");
    }
    std::fs::write(
        d.join("pick.ron"),
        r#"Graph(name: "pick", nodes: {
            "ct": (node: "LoadDicomSeries", params: (dir: "series", series: 9)),
            "save": (node: "SaveNifti", inputs: (volume: "ct"), params: (path: "ct.nii.gz")),
        })"#,
    )
    .unwrap();
    std::fs::remove_dir_all(d.join("out")).unwrap();
    let o = voxflow(&["run", "pick.ron", "--out", "out"], d);
    assert_clean_failure(
        &o,
        &["series 9: no such series", "number 1", "number 2"],
        1024.0,
    );
}

#[test]
fn series_param_of_the_wrong_type_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("series")).unwrap();
    std::fs::write(
        d.join("g.ron"),
        r#"Graph(name: "pick", nodes: {
            "ct": (node: "LoadDicomSeries", params: (dir: "series", series: 2.5)),
        })"#,
    )
    .unwrap();
    let o = voxflow(&["run", "g.ron", "--out", "out"], d);
    assert_clean_failure(
        &o,
        &[
            "series",
            "a SeriesInstanceUID string, a whole SeriesNumber or \"largest\"",
        ],
        1024.0,
    );
    assert_no_outputs(&d.join("out"));
}

#[test]
fn a_slice_off_the_stack_or_of_another_pixel_size_is_named() {
    // Both used to load silently, every slice placed like the first: the middle slice's
    // voxels 1 mm (two pixels) or a factor of two in size from where they were scanned.
    refused(
        slice(1, &[(0x20, 0x32, "0\\1\\2")], &[], None),
        "lies 0.000 mm along the rows and 1.000 mm along the columns from a.dcm",
    );
    refused(
        slice(1, &[(0x28, 0x30, "0.25\\0.25")], &[], None),
        "PixelSpacing [0.25, 0.25] differs from [0.5, 0.5] of a.dcm",
    );
    // A gantry tilt: every slice shifted a little further along the columns.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    series_of(d, 4, |z| {
        let ipp = format!("0\\{}\\{}", 0.4 * z as f64, 2 * z);
        slice(z, &[(0x20, 0x32, &ipp)], &[], None)
    });
    run_and_check(d, &["series/1.dcm", "not stacked along their normal"]);
}
