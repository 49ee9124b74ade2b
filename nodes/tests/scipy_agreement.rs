//! Agreement with scipy.ndimage and the recipes of `sarcopenia_ref.py`, voxel for voxel.
//!
//! Runs only when `VOXFLOW_PYTHON` names a python with numpy and scipy (otherwise it
//! prints why and passes). Random masks (noise plus boxes that stick out of the volume,
//! so objects touch the border) are written as raw x-fastest bytes to a temporary
//! folder; one python run computes every operation there, and each result is compared
//! with voxflow's kernels:
//! - dilation: `binary_dilation` (border 0); erosion: `binary_erosion(border_value=1)`;
//! - closing: `sarcopenia_ref.closing` generalised to any element (pad by the radius
//!   with 0, dilate, erode with border 1, crop); opening: pad with 1, erode, dilate, crop;
//! - boxes including anisotropic ones, and ellipsoids built from the same formula with
//!   anisotropic spacing;
//! - `ndimage.label` with the matching structures, per slice (4, 8) and 3D (6, 18, 26):
//!   counts and label maps (scan order, on the array viewed [z, y, x]);
//! - `sarcopenia_ref.remove_small_per_slice` and its 3D analogue at thresholds that fall
//!   exactly on voxel counts;
//! - `sarcopenia_ref.hu_window` on int16 CTs.
//!
//! When `../shared/peers/sarcopenia_ref.py` is importable its functions are used
//! directly, otherwise verbatim copies.

use std::process::Command;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use voxflow_engine::{Geometry, Image, Mask, Volume};
use voxflow_nodes::components::connectivity::Connectivity;
use voxflow_nodes::components::kernels::{self as cc, Method};
use voxflow_nodes::intensity::kernels::hu_window;
use voxflow_nodes::morphology::element::Element;
use voxflow_nodes::morphology::{kernels, naive};
use voxflow_nodes::testdata;

const SCRIPT: &str = r#"
import json, os, sys
import numpy as np
from scipy import ndimage as ndi

d = sys.argv[1]
sys.path.insert(0, sys.argv[2])
try:
    import sarcopenia_ref as ref
    closing, remove_small_per_slice, hu_window = ref.closing, ref.remove_small_per_slice, ref.hu_window
    print("using sarcopenia_ref from", os.path.dirname(ref.__file__))
except Exception as e:
    print("sarcopenia_ref not importable (%s); using copies" % e)
    def hu_window(mask, ct, lo=-29, hi=150):
        return mask & (ct >= lo) & (ct <= hi)
    def closing(mask, kernel=(3, 3, 1)):
        r = [k // 2 for k in kernel]
        padded = np.pad(mask, [(ri, ri) for ri in r])
        st = np.ones(kernel, bool)
        dd = ndi.binary_dilation(padded, structure=st)
        e = ndi.binary_erosion(dd, structure=st, border_value=1)
        return e[tuple(slice(ri, ri + n) for ri, n in zip(r, mask.shape))]
    def remove_small_per_slice(mask, min_ml, voxel_ml):
        out = np.zeros_like(mask)
        st = np.ones((3, 3), bool)
        for z in range(mask.shape[2]):
            lab, n = ndi.label(mask[:, :, z], structure=st)
            if n == 0:
                continue
            sizes = np.bincount(lab.ravel())
            keep = sizes * voxel_ml >= min_ml
            keep[0] = False
            out[:, :, z] = keep[lab]
        return out

def ellipsoid(r, s):
    def term(a, dd):
        if dd == 0:
            return 0.0
        if r[a] == 0:
            return np.inf
        q = dd * s[a] / r[a]
        return q * q
    R = []
    for a in range(3):
        k = 0
        while term(a, k + 1) <= 1.0:
            k += 1
        R.append(k)
    t = [np.array([term(a, dd) for dd in range(-R[a], R[a] + 1)]) for a in range(3)]
    return (t[0][:, None, None] + t[1][None, :, None]) + t[2][None, None, :] <= 1.0

def structure(op):
    if "kernel" in op:
        return np.ones(op["kernel"], bool)
    return ellipsoid(op["radius_mm"], op["spacing"])

def close_any(m, st):
    r = [k // 2 for k in st.shape]
    p = np.pad(m, [(ri, ri) for ri in r])
    e = ndi.binary_erosion(ndi.binary_dilation(p, structure=st), structure=st, border_value=1)
    return e[tuple(slice(ri, ri + n) for ri, n in zip(r, m.shape))]

def open_any(m, st):
    r = [k // 2 for k in st.shape]
    p = np.pad(m, [(ri, ri) for ri in r], constant_values=True)
    o = ndi.binary_dilation(ndi.binary_erosion(p, structure=st, border_value=1), structure=st)
    return o[tuple(slice(ri, ri + n) for ri, n in zip(r, m.shape))]

def fbytes(a, dtype):
    return np.asfortranarray(a.astype(dtype)).tobytes(order="F")

manifest = json.load(open(os.path.join(d, "manifest.json")))
counts = {}
for case in manifest:
    nx, ny, nz = case["dims"]
    raw = np.fromfile(os.path.join(d, case["name"] + ".bin"), np.uint8)
    zyx = raw.reshape(nz, ny, nx).astype(bool)
    m = zyx.transpose(2, 1, 0)  # indexed [x, y, z] like sarcopenia_ref
    for i, op in enumerate(case["ops"]):
        out = os.path.join(d, "%s_%d.out" % (case["name"], i))
        kind = op["op"]
        if kind in ("dilate", "erode", "close", "open"):
            st = structure(op)
            if kind == "dilate":
                r = ndi.binary_dilation(m, structure=st)
            elif kind == "erode":
                r = ndi.binary_erosion(m, structure=st, border_value=1)
            elif kind == "close":
                r = closing(m, tuple(op["kernel"])) if "kernel" in op else close_any(m, st)
            else:
                r = open_any(m, st)
            open(out, "wb").write(fbytes(r, np.uint8))
        elif kind == "label":
            c = op["connectivity"]
            if c in (4, 8):
                st2 = ndi.generate_binary_structure(2, 1 if c == 4 else 2)
                lab = np.zeros(zyx.shape, np.uint32)
                n = 0
                for z in range(nz):
                    l, k = ndi.label(zyx[z], structure=st2)
                    lab[z] = np.where(l > 0, l + n, 0)
                    n += k
            else:
                lab, n = ndi.label(zyx, structure=ndi.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[c]))
            counts["%s_%d" % (case["name"], i)] = int(n)
            open(out, "wb").write(lab.astype(np.uint32).tobytes(order="C"))
        elif kind == "remove_small":
            # nibabel gives float32 zooms; python floats otherwise
            sp = np.array(case["spacing"], np.float32 if case["nifti_f32"] else np.float64)
            voxel_ml = float(np.prod(sp)) / 1000.0
            if op["per_slice"]:
                r = remove_small_per_slice(m, op["min_ml"], voxel_ml)
            else:
                lab, n = ndi.label(m, structure=np.ones((3, 3, 3), bool))
                sizes = np.bincount(lab.ravel())
                keep = sizes * voxel_ml >= op["min_ml"]
                keep[0] = False
                r = keep[lab]
            open(out, "wb").write(fbytes(r, np.uint8))
        elif kind == "hu_window":
            ct = np.fromfile(os.path.join(d, case["name"] + "_ct.bin"), np.int16).reshape(nz, ny, nx).transpose(2, 1, 0)
            r = hu_window(m, ct, op["min"], op["max"])
            open(out, "wb").write(fbytes(r, np.uint8))
        else:
            raise SystemExit("unknown op " + kind)
json.dump(counts, open(os.path.join(d, "counts.json"), "w"))
"#;

/// Noise of the given density plus a few boxes, some sticking out of the volume.
fn random_mask(rng: &mut ChaCha8Rng, dims: [usize; 3], spacing: [f64; 3]) -> Mask {
    let g = Geometry::new(dims, spacing);
    let density = [0.0, 0.05, 0.2, 0.5, 0.8][rng.random_range(0..5)];
    let mut data: Vec<u8> = (0..g.len())
        .map(|_| rng.random_bool(density) as u8)
        .collect();
    let boxes = rng.random_range(0..5);
    testdata::random_boxes(rng, &g, &mut data, boxes);
    Mask::from_bytes(g, &data).unwrap()
}

#[test]
fn every_op_agrees_with_scipy() {
    let Some(python) = testdata::python("every_op_agrees_with_scipy", &["numpy", "scipy.ndimage"])
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(20240611);
    let boxes: [[usize; 3]; 12] = [
        [3, 3, 1],
        [3, 3, 3],
        [5, 5, 3],
        [5, 3, 1],
        [1, 1, 3],
        [1, 3, 1],
        [7, 1, 3],
        [1, 1, 1],
        [3, 1, 5],
        [1, 11, 1],
        [1, 1, 13],
        [13, 3, 1],
    ];
    let mut cases = Vec::new();
    for c in 0..48 {
        // small volumes including 1-voxel-thick ones, and a few with multi-word rows
        let dims = if c % 8 == 7 {
            [
                rng.random_range(60..140),
                rng.random_range(5..20),
                rng.random_range(14..20),
            ]
        } else {
            [
                rng.random_range(1..=20),
                rng.random_range(1..=20),
                rng.random_range(1..=8),
            ]
        };
        // the last spacing is what nibabel reads from a float32 header (0.8f32 ...)
        let spacing = [
            [1.0, 1.0, 1.0],
            [0.8, 0.8, 2.5],
            [0.7, 1.1, 3.0],
            [0.8f32 as f64, 0.8f32 as f64, 2.5],
        ][c % 4];
        let mask = random_mask(&mut rng, dims, spacing);
        let mut ops = Vec::new();
        for op in ["dilate", "erode", "close", "open"] {
            for k in [boxes[c % boxes.len()], boxes[(c * 5 + 3) % boxes.len()]] {
                ops.push(json!({"op": op, "kernel": k}));
            }
            let r = [
                rng.random_range(0.0..4.0),
                rng.random_range(0.0..4.0),
                rng.random_range(0.0..7.0),
            ];
            ops.push(json!({"op": op, "radius_mm": r, "spacing": spacing}));
        }
        for conn in [4, 8, 6, 18, 26] {
            ops.push(json!({"op": "label", "connectivity": conn}));
        }
        let nominal_ml = [
            [1.0, 1.0, 1.0],
            [0.8, 0.8, 2.5],
            [0.7, 1.1, 3.0],
            [0.8, 0.8, 2.5],
        ][c % 4]
            .iter()
            .product::<f64>()
            / 1000.0;
        let voxel_ml = spacing.iter().product::<f64>() / 1000.0;
        for count in [1.0, 2.0, 3.0, 7.0, 125.0] {
            // thresholds on voxel counts: the last bits of the float formula decide
            ops.push(json!({"op": "remove_small", "per_slice": true, "min_ml": count * voxel_ml}));
            ops.push(
                json!({"op": "remove_small", "per_slice": true, "min_ml": count * nominal_ml}),
            );
            // the product in f32 (what numpy does on nibabel's zooms); for float32
            // spacings it differs from the f64 product in the last bits
            let ref_ml =
                count * (spacing[0] as f32 * spacing[1] as f32 * spacing[2] as f32) as f64 / 1000.0;
            ops.push(json!({"op": "remove_small", "per_slice": true, "min_ml": ref_ml}));
        }
        ops.push(json!({"op": "remove_small", "per_slice": false, "min_ml": 5.0 * voxel_ml}));
        ops.push(json!({"op": "remove_small", "per_slice": true, "min_ml": 0.1}));
        let ct: Vec<i16> = (0..mask.to_bytes().len())
            .map(|_| rng.random_range(-300..300))
            .collect();
        for (lo, hi) in [(-29.0, 150.0), (-0.5, 10.5), (100.0, 100.0)] {
            ops.push(json!({"op": "hu_window", "min": lo, "max": hi}));
        }
        let name = format!("case{c}");
        std::fs::write(dir.path().join(format!("{name}.bin")), mask.to_bytes()).unwrap();
        let ct_bytes: Vec<u8> = ct.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.path().join(format!("{name}_ct.bin")), ct_bytes).unwrap();
        cases.push((name, mask, ct, ops));
    }
    let manifest: Vec<_> = cases
        .iter()
        .map(|(name, m, _, ops)| {
            let sp = m.geometry().spacing;
            let nifti_f32 = sp == [0.8f32 as f64, 0.8f32 as f64, 2.5];
            json!({"name": name, "dims": m.dims(), "spacing": sp, "nifti_f32": nifti_f32, "ops": ops})
        })
        .collect();
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_string(&manifest).unwrap(),
    )
    .unwrap();
    let script = dir.path().join("agree.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .arg(testdata::peers_dir())
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("counts.json")).unwrap())
            .unwrap();

    let mut checked = 0;
    for (name, mask, ct, ops) in &cases {
        let g = mask.geometry();
        for (i, op) in ops.iter().enumerate() {
            let want = std::fs::read(dir.path().join(format!("{name}_{i}.out"))).unwrap();
            let what = format!("{name} {:?} op {op}", mask.dims());
            let kind = op["op"].as_str().unwrap();
            match kind {
                "dilate" | "erode" | "close" | "open" => {
                    let e = match op.get("kernel") {
                        Some(k) => {
                            Element::cuboid(serde_json::from_value(k.clone()).unwrap()).unwrap()
                        }
                        None => Element::ellipsoid(
                            serde_json::from_value(op["radius_mm"].clone()).unwrap(),
                            g.spacing,
                        )
                        .unwrap(),
                    };
                    let (fast, slow) = match kind {
                        "dilate" => (kernels::dilate(mask, &e), naive::dilate(mask, &e)),
                        "erode" => (kernels::erode(mask, &e), naive::erode(mask, &e)),
                        "close" => (kernels::close(mask, &e), naive::close(mask, &e)),
                        _ => (kernels::open(mask, &e), naive::open(mask, &e)),
                    };
                    assert_eq!(fast.to_bytes(), &want[..], "fast {what}");
                    assert_eq!(slow.to_bytes(), &want[..], "naive {what}");
                }
                "label" => {
                    let n = op["connectivity"].as_u64().unwrap() as u8;
                    let conn = Connectivity::from_params(Some(n), n == 4 || n == 8).unwrap();
                    let scipy_n = counts[format!("{name}_{i}")].as_u64().unwrap() as usize;
                    let want: Vec<u32> = want
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                        .collect();
                    for method in [Method::Runs, Method::Flood] {
                        let c = cc::label(mask, conn, method);
                        assert_eq!(c.count(), scipy_n, "{method:?} count {what}");
                        let got: Vec<u32> = c
                            .to_labels(g)
                            .unwrap()
                            .as_slice()
                            .iter()
                            .map(|&v| v as u32)
                            .collect();
                        assert_eq!(got, want, "{method:?} labels {what}");
                    }
                }
                "remove_small" => {
                    let per_slice = op["per_slice"].as_bool().unwrap();
                    let conn = if per_slice {
                        Connectivity::Plane8
                    } else {
                        Connectivity::Vertex26
                    };
                    let min_ml = op["min_ml"].as_f64().unwrap();
                    for method in [Method::Runs, Method::Flood] {
                        let got = cc::remove_small(mask, conn, min_ml, method);
                        assert_eq!(got.to_bytes(), &want[..], "{method:?} {what}");
                    }
                }
                "hu_window" => {
                    let img = Image::I16(Volume::from_vec(g.clone(), ct.clone()).unwrap());
                    let got = hu_window(
                        &img,
                        op["min"].as_f64().unwrap(),
                        op["max"].as_f64().unwrap(),
                        Some(mask),
                    );
                    assert_eq!(got.to_bytes(), &want[..], "{what}");
                }
                other => panic!("unknown op {other}"),
            }
            checked += 1;
        }
    }
    eprintln!(
        "scipy agreement: {checked} operations on {} random masks agree",
        cases.len()
    );
}
