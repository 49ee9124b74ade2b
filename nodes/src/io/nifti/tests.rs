use std::io::Read;

use voxflow_engine::Geometry;

use super::file::Source;
use super::gzip::parse_index;
use super::*;

fn close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn quaternion_round_trips_rotations_and_flips() {
    // Rotations about several axes, with and without a flipped third axis.
    let cases: Vec<[[f64; 3]; 3]> = vec![
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        {
            let (s, c) = (0.3f64.sin(), 0.3f64.cos());
            [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]]
        },
        {
            let (s, c) = (2.9f64.sin(), 2.9f64.cos());
            [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
        },
    ];
    let spacing = [0.7, 0.8, 2.5];
    for r in cases {
        let mut a = [[0.0; 4]; 4];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] = r[i][j] * spacing[j];
            }
            a[i][3] = 10.0 * i as f64 - 3.0;
        }
        a[3][3] = 1.0;
        let (q, o, qfac) = affine_to_quatern(&a);
        let back = quatern_to_affine(q, o, spacing, qfac);
        assert!(close(&a, &back, 1e-9), "{a:?} -> {back:?}");
    }
}

#[test]
fn header_bytes_parse_back() {
    let mut g = Geometry::new([5, 6, 7], [0.5, 0.75, 3.0]);
    g.affine[0][0] = -0.5;
    g.affine[0][3] = 12.5;
    g.affine[2][3] = -80.0;
    let h = Header::for_geometry(&g, Dtype::I16);
    let parsed = Header::parse(&h.to_bytes()).unwrap();
    assert_eq!(parsed, h);
    assert_eq!(parsed.geometry().unwrap(), g);
    // The qform alone gives the same affine.
    let mut q = parsed.clone();
    q.sform_code = 0;
    assert!(close(&q.affine().unwrap(), &g.affine, 1e-6));
}

#[test]
fn big_endian_headers_parse() {
    let g = Geometry::new([3, 4, 5], [1.0, 2.0, 3.0]);
    let le = Header::for_geometry(&g, Dtype::F32).to_bytes();
    // Byte-swap every multi-byte field we read to fake a big-endian header.
    let mut be = le;
    let swap = |b: &mut [u8; WRITE_VOX_OFFSET], at: usize, n: usize| b[at..at + n].reverse();
    swap(&mut be, 0, 4);
    for i in 0..8 {
        swap(&mut be, 40 + 2 * i, 2);
        swap(&mut be, 76 + 4 * i, 4);
    }
    for at in [70, 72, 252, 254] {
        swap(&mut be, at, 2);
    }
    for at in (108..124)
        .step_by(4)
        .filter(|a| *a != 120)
        .chain((256..328).step_by(4))
    {
        swap(&mut be, at, 4);
    }
    let h = Header::parse(&be).unwrap();
    assert!(h.big_endian);
    assert_eq!(h.dims3(), [3, 4, 5]);
    assert_eq!(h.geometry().unwrap(), g);
}

#[test]
fn parallel_gzip_is_one_valid_stream() {
    let g = Geometry::new([64, 64, 300], [1.0; 3]);
    let h = Header::for_geometry(&g, Dtype::I16);
    let voxels: Vec<i16> = (0..g.len())
        .map(|i| ((i * 7919) % 3001) as i16 - 1000)
        .collect();
    let parts = encode_gzip(&h, &ByteSource::slice(as_bytes(&voxels)));
    let bytes: Vec<u8> = parts.concat();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(&plain[..WRITE_VOX_OFFSET], &h.to_bytes()[..]);
    assert_eq!(&plain[WRITE_VOX_OFFSET..], as_bytes(&voxels));
}

#[test]
fn block_index_describes_written_files_and_damage_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::new([128, 128, 40], [1.0; 3]);
    let h = Header::for_geometry(&g, Dtype::I16);
    let voxels: Vec<i16> = (0..g.len())
        .map(|i| ((i * 7919) % 3001) as i16 - 1000)
        .collect();
    let bytes: Vec<u8> = encode_gzip(&h, &ByteSource::slice(as_bytes(&voxels))).concat();
    let (_, blocks) = parse_index(&bytes, bytes.len()).expect("voxflow files carry an index");
    assert_eq!(
        blocks.len(),
        1 + as_bytes(&voxels).len().div_ceil(GZIP_BLOCK)
    );
    assert_eq!(blocks[0].2, WRITE_VOX_OFFSET);
    assert!(
        parse_index(&bytes, bytes.len() - 1).is_none(),
        "index must match the file length"
    );
    let path = dir.path().join("x.nii.gz");
    std::fs::write(&path, &bytes).unwrap();
    let r = NiftiReader::open(&path).unwrap();
    assert!(matches!(r.source, Source::Indexed(_)));
    assert_eq!(read_samples::<i16>(r).unwrap(), voxels);
    // A damaged byte inside a voxel block: caught by the block decoder or the CRC.
    let mut bad = bytes.clone();
    let (off, len, _) = blocks[2];
    bad[off + len / 2] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();
    let e = read_samples::<i16>(NiftiReader::open(&path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("corrupt gzip data"), "{e}");
    // Truncated: the index no longer fits, the stream reader reports truncation.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let r = NiftiReader::open(&path).unwrap();
    assert!(matches!(r.source, Source::Gzip(_)));
    let e = read_samples::<i16>(r).unwrap_err().to_string();
    assert!(e.contains("truncated gzip stream"), "{e}");
}

#[test]
fn unsupported_dtypes_are_named() {
    assert!(Dtype::from_code(32)
        .unwrap_err()
        .to_string()
        .contains("complex64"));
    assert!(Dtype::from_code(128)
        .unwrap_err()
        .to_string()
        .contains("rgb24"));
    for d in [
        Dtype::U8,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
    ] {
        assert_eq!(Dtype::from_code(d.code()), Ok(d));
    }
}
