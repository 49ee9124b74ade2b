//! Hostile NIfTI files: headers whose dims, offset or geometry lie, each built here in a
//! few hundred bytes, loaded by `voxflow run`; and a batch in which one case's file is a
//! header bomb while the other cases complete.

use std::path::Path;

use crate::support::*;

/// Loads `${f}` as an image and a mask, writes a table and a copy of the image: every
/// kind of output a failure must not leave behind.
const GRAPH: &str = r#"Graph(
    name: "load_nifti",
    params: { "f": None },
    nodes: {
        "img": (node: "LoadNifti", params: (path: "${f}")),
        "mask": (node: "LoadMask", params: (path: "${f}")),
        "stats": (node: "LabelStats", inputs: (labels: "mask", image: "img")),
        "table": (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "stats.csv")),
        "copy": (node: "SaveNifti", inputs: (volume: "img"), params: (path: "copy.nii.gz")),
    },
)
"#;

/// The NIfTI-1 header fields these tests lie about, written independently of voxflow's
/// own header code (so a shared mistake cannot hide).
#[derive(Clone)]
struct Nii {
    dim: [i16; 8],
    pixdim: [f32; 8],
    vox_offset: f32,
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 3],
    qoffset: [f32; 3],
    srow: [[f32; 4]; 3],
    scl: [f32; 2],
}

impl Nii {
    /// A valid 4x3x2 int16 header with 1 mm voxels, both forms set (identity).
    fn good() -> Nii {
        Nii {
            dim: [3, 4, 3, 2, 1, 1, 1, 1],
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            qform_code: 1,
            sform_code: 1,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            scl: [0.0, 0.0],
        }
    }

    /// Header, empty extension flag and 24 int16 voxels (always at byte 352, whatever
    /// vox_offset says).
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 352];
        let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
        put(0, &348i32.to_le_bytes());
        for (i, d) in self.dim.iter().enumerate() {
            put(40 + 2 * i, &d.to_le_bytes());
        }
        put(70, &4i16.to_le_bytes()); // int16
        put(72, &16i16.to_le_bytes());
        for (i, p) in self.pixdim.iter().enumerate() {
            put(76 + 4 * i, &p.to_le_bytes());
        }
        put(108, &self.vox_offset.to_le_bytes());
        put(112, &self.scl[0].to_le_bytes());
        put(116, &self.scl[1].to_le_bytes());
        put(123, &[2]); // mm
        put(252, &self.qform_code.to_le_bytes());
        put(254, &self.sform_code.to_le_bytes());
        for i in 0..3 {
            put(256 + 4 * i, &self.quatern[i].to_le_bytes());
            put(268 + 4 * i, &self.qoffset[i].to_le_bytes());
        }
        for (r, row) in self.srow.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                put(280 + 16 * r + 4 * c, &v.to_le_bytes());
            }
        }
        put(344, b"n+1\0");
        b.extend((0..24i16).flat_map(|v| (v % 3).to_le_bytes()));
        b
    }
}

/// A valid gzip stream of `data` in stored (uncompressed) deflate blocks. By hand so
/// this test binary needs no compression crate: the hostile part is the NIfTI header,
/// not the compression, and stored blocks are three lines of the deflate format.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push((i + 1 == chunks.len()) as u8); // BFINAL, BTYPE 00 (stored)
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(c.len() as u16)).to_le_bytes());
        out.extend_from_slice(c);
    }
    // CRC-32 (IEEE, reflected), bit by bit: a few hundred bytes need no table.
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Run the graph on `file` in `d`, output folder `out`.
fn run(d: &Path, file: &str) -> Outcome {
    std::fs::write(d.join("load.ron"), GRAPH).unwrap();
    voxflow(
        &[
            "run",
            "load.ron",
            "--set",
            &format!("f={file}"),
            "--out",
            "out",
        ],
        d,
    )
}

#[test]
fn the_valid_file_loads() {
    // The baseline the hostile variants below depart from: it runs and writes outputs.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("good.nii.gz"), gzip_stored(&Nii::good().bytes())).unwrap();
    let o = run(d, "good.nii.gz");
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(d.join("out/stats.csv").exists() && d.join("out/copy.nii.gz").exists());
}

#[test]
fn lying_headers_fail_cleanly_naming_the_file() {
    type Edit = fn(&mut Nii);
    let cases: Vec<(&str, Edit, &str)> = vec![
        // 32767^3 int16 (64 TiB) in a few hundred bytes.
        (
            "bomb",
            |h| h.dim = [3, 32767, 32767, 32767, 1, 1, 1, 1],
            "dims 32767x32767x32767 of int16",
        ),
        (
            "vox_huge",
            |h| h.vox_offset = 3.4e38,
            "bad header: vox_offset",
        ),
        (
            "vox_nan",
            |h| h.vox_offset = f32::NAN,
            "bad header: vox_offset is NaN",
        ),
        (
            "vox_negative",
            |h| h.vox_offset = -352.0,
            "bad header: vox_offset",
        ),
        (
            "vox_348",
            |h| h.vox_offset = 348.0,
            "bad header: vox_offset",
        ),
        ("vox_far", |h| h.vox_offset = 1e9, "bad header"),
        (
            "sform_nan",
            |h| {
                h.srow[1][2] = f32::NAN;
                h.qform_code = 0;
            },
            "srow_y[2] is NaN",
        ),
        (
            "sform_zero",
            |h| {
                h.srow = [[0.0; 4]; 3];
                h.qform_code = 0;
            },
            "is zero",
        ),
        (
            "sform_singular",
            |h| {
                h.srow[2] = [1.0, 1.0, 0.0, 0.0];
                h.srow[0] = [2.0, 2.0, 0.0, 0.0];
                h.qform_code = 0;
            },
            "singular",
        ),
        (
            "quatern_inf",
            |h| {
                h.quatern[2] = f32::INFINITY;
                h.sform_code = 0;
            },
            "quatern_d is inf",
        ),
        (
            "qoffset_nan",
            |h| {
                h.qoffset[0] = f32::NAN;
                h.sform_code = 0;
            },
            "qoffset_x is NaN",
        ),
        // nibabel refuses it too ("Valid slope but invalid intercept").
        (
            "scl_inter_nan",
            |h| h.scl = [2.0, f32::NAN],
            "scl_slope is 2 but scl_inter is NaN",
        ),
        (
            "pixdim_nan",
            |h| {
                h.pixdim[1] = f32::NAN;
                h.sform_code = 0;
                h.qform_code = 0;
            },
            "pixdim[1] is NaN",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut peaks = Vec::new();
    for (name, edit, want) in cases {
        let mut h = Nii::good();
        edit(&mut h);
        for gz in [false, true] {
            let file = format!("{name}.nii{}", if gz { ".gz" } else { "" });
            let bytes = if gz {
                gzip_stored(&h.bytes())
            } else {
                h.bytes()
            };
            std::fs::write(d.join(&file), bytes).unwrap();
            let _ = std::fs::remove_dir_all(d.join("out"));
            let o = run(d, &file);
            // The bomb's message differs by form (file size vs deflate's ratio).
            let want = if name == "bomb" && gz { "1032:1" } else { want };
            assert_clean_failure(&o, &[&file, want], 1024.0);
            assert_no_outputs(&d.join("out"));
            peaks.push(format!("{file} {:.0} MiB", o.peak_mib));
        }
    }
    println!("peak memory: {}", peaks.join(", "));
}

#[test]
fn a_fifo_or_device_as_the_file_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    fifo(&d.join("ct.nii"));
    let t = std::time::Instant::now();
    let o = run(&d, "ct.nii");
    assert!(
        t.elapsed().as_secs() < 10,
        "waited {:?} on the FIFO",
        t.elapsed()
    );
    assert_clean_failure(&o, &["ct.nii", "is not a regular file"], 1024.0);
    // With a cache, whose key hashes the input file's content, as well.
    let o = voxflow(
        &[
            "run", "load.ron", "--set", "f=ct.nii", "--out", "out", "--cache", "cache",
        ],
        &d,
    );
    assert!(
        t.elapsed().as_secs() < 10,
        "waited {:?} on the FIFO",
        t.elapsed()
    );
    assert_clean_failure(&o, &["ct.nii", "is not a regular file"], 1024.0);
    let o = run(&d, "/dev/zero");
    assert_clean_failure(&o, &["/dev/zero", "is not a regular file"], 1024.0);
}

#[test]
fn a_gzip_stream_shorter_than_its_header_claims_fails_in_little_memory() {
    // 512x512x256 int16 (128 MiB) claimed, 48 bytes of voxels held: within deflate's
    // ratio for the file size (stored blocks are large), so only reading finds it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut h = Nii::good();
    h.dim = [3, 512, 512, 256, 1, 1, 1, 1];
    let mut bytes = h.bytes();
    bytes.resize(400_000, 1);
    std::fs::write(d.join("short.nii.gz"), gzip_stored(&bytes)).unwrap();
    let o = run(d, "short.nii.gz");
    assert_clean_failure(&o, &["short.nii.gz", "gzip stream ended"], 1024.0);
    assert_no_outputs(&d.join("out"));
    // The claimed buffer is never written beyond what the stream held.
    assert!(o.peak_mib < 100.0, "peak {:.0} MiB", o.peak_mib);
    println!("short gzip stream: peak {:.0} MiB", o.peak_mib);
}

#[test]
fn a_header_bomb_in_one_case_leaves_the_batch_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("load.ron"), GRAPH).unwrap();
    let good = gzip_stored(&Nii::good().bytes());
    let mut bomb = Nii::good();
    bomb.dim = [3, 32767, 32767, 32767, 1, 1, 1, 1];
    std::fs::write(d.join("a.nii.gz"), &good).unwrap();
    std::fs::write(d.join("bomb.nii"), bomb.bytes()).unwrap();
    std::fs::write(d.join("c.nii.gz"), &good).unwrap();
    std::fs::write(
        d.join("cases.tsv"),
        "case\tf\nc1\ta.nii.gz\nc2\tbomb.nii\nc3\tc.nii.gz\n",
    )
    .unwrap();
    let o = voxflow(
        &["run", "load.ron", "--cases", "cases.tsv", "--out", "out"],
        d,
    );
    assert_clean_failure(&o, &["bomb.nii"], 1024.0);
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    for case in ["c1", "c3"] {
        assert!(
            summary.lines().any(|l| l.starts_with(&format!("{case},"))),
            "{case} missing from summary:\n{summary}"
        );
        assert!(d.join(format!("out/{case}/copy.nii.gz")).exists());
    }
    assert!(!summary.lines().any(|l| l.starts_with("c2,")), "{summary}");
    let json = crate::common::read_json(&d.join("out/summary.json"));
    let failed = json["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{json}");
    assert_eq!(failed[0]["case"], "c2");
    assert!(failed[0]["error"].as_str().unwrap().contains("bomb.nii"));
    println!("batch with a header bomb: peak {:.0} MiB", o.peak_mib);
}
