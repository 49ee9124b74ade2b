//! Fast kernels against the naive definitions, border conventions, and the nodes.

use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxflow_engine::{Geometry, Mask, NodeContext, NodeType, Value};

use super::bits::BitVolume;
use super::element::Element;
use super::{kernels, naive, Closing, Dilation, Erosion, Opening};

/// A random mask: salt noise of the given density plus a few boxes, some of them
/// sticking out of the volume (so objects touch the border).
pub(crate) fn random_mask(
    dims: [usize; 3],
    spacing: [f64; 3],
    seed: u64,
    density: f64,
    boxes: usize,
) -> Mask {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = Geometry::new(dims, spacing);
    let mut data: Vec<u8> = (0..g.len())
        .map(|_| rng.random_bool(density) as u8)
        .collect();
    crate::testdata::random_boxes(&mut rng, &g, &mut data, boxes);
    Mask::from_bytes(g, &data).unwrap()
}

fn not(m: &Mask) -> Mask {
    crate::masks::kernels::not(m)
}

fn subset(a: &Mask, b: &Mask) -> bool {
    a.to_bytes()
        .iter()
        .zip(b.to_bytes().iter())
        .all(|(&x, &y)| x <= y)
}

prop_compose! {
    fn mask_case()(
        nx in 1usize..=20, ny in 1usize..=20, nz in 1usize..=8,
        seed in any::<u64>(), density in 0.0f64..0.9, boxes in 0usize..4,
    ) -> Mask {
        random_mask([nx, ny, nz], [1.0, 1.0, 1.0], seed, density, boxes)
    }
}

fn odd(max: usize) -> impl Strategy<Value = usize> {
    (0..=max / 2).prop_map(|h| 2 * h + 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn fast_box_matches_naive(m in mask_case(), kx in odd(11), ky in odd(11), kz in odd(7)) {
        let e = Element::cuboid([kx, ky, kz]).unwrap();
        prop_assert_eq!(kernels::dilate(&m, &e), naive::dilate(&m, &e));
        prop_assert_eq!(kernels::erode(&m, &e), naive::erode(&m, &e));
        prop_assert_eq!(kernels::close(&m, &e), naive::close(&m, &e));
        prop_assert_eq!(kernels::open(&m, &e), naive::open(&m, &e));
    }

    #[test]
    fn fast_box_matches_naive_with_wide_rows(
        nx in 60usize..=140, seed in any::<u64>(), density in 0.0f64..0.5, kx in odd(9), kz in odd(3),
    ) {
        // rows of more than one packed word, and windows longer than the direct limit
        let m = random_mask([nx, 5, 3], [1.0; 3], seed, density, 2);
        for k in [[kx, 1, kz], [kx, 11, 1], [3, 3, 3]] {
            let e = Element::cuboid(k).unwrap();
            prop_assert_eq!(kernels::dilate(&m, &e), naive::dilate(&m, &e));
            prop_assert_eq!(kernels::close(&m, &e), naive::close(&m, &e));
            prop_assert_eq!(kernels::open(&m, &e), naive::open(&m, &e));
        }
    }

    #[test]
    fn fast_ellipsoid_matches_naive(
        m in mask_case(),
        r in (0.0f64..6.0, 0.0f64..6.0, 0.0f64..6.0),
        s in (0.3f64..2.0, 0.3f64..2.0, 0.5f64..3.0),
    ) {
        let e = Element::ellipsoid([r.0, r.1, r.2], [s.0, s.1, s.2]).unwrap();
        prop_assert_eq!(kernels::dilate(&m, &e), naive::dilate(&m, &e));
        prop_assert_eq!(kernels::erode(&m, &e), naive::erode(&m, &e));
        prop_assert_eq!(kernels::close(&m, &e), naive::close(&m, &e));
        prop_assert_eq!(kernels::open(&m, &e), naive::open(&m, &e));
    }

    #[test]
    fn box_by_rows_equals_separable_box(m in mask_case(), kx in odd(5), ky in odd(13), kz in odd(13)) {
        // the span path (used for ellipsoids) and the separable path agree on boxes,
        // including the van Herk windows (> 9 rows or slices)
        let e = Element::cuboid([kx, ky, kz]).unwrap();
        let b = BitVolume::from_mask(&m, [0; 3], false);
        prop_assert_eq!(b.dilate(&e), b.dilate_spans_for_test(e.spans()));
    }

    #[test]
    fn closing_extensive_opening_dual(m in mask_case(), kx in odd(5), ky in odd(5), kz in odd(3)) {
        let e = Element::cuboid([kx, ky, kz]).unwrap();
        let c = kernels::close(&m, &e);
        let o = kernels::open(&m, &e);
        prop_assert!(subset(&m, &c));
        prop_assert!(subset(&o, &m));
        prop_assert_eq!(o, not(&kernels::close(&not(&m), &e)));
        prop_assert_eq!(kernels::erode(&m, &e), not(&kernels::dilate(&not(&m), &e)));
    }
}

#[test]
fn closing_is_not_dilate_then_erode_on_the_unpadded_grid() {
    // 1 x 5 x 1: an object one voxel away from the border at y = 0.
    let g = Geometry::new([1, 5, 1], [1.0; 3]);
    let m = Mask::from_bytes(g, &[0, 1, 0, 0, 0]).unwrap();
    let e = Element::cuboid([1, 3, 1]).unwrap();
    let closed = kernels::close(&m, &e);
    assert_eq!(closed.to_bytes(), &[0, 1, 0, 0, 0]);
    // dilation (outside background) then erosion (outside foreground) fills voxel 0
    let composed = kernels::erode(&kernels::dilate(&m, &e), &e);
    assert_eq!(composed.to_bytes(), &[1, 1, 0, 0, 0]);
}

#[test]
fn border_conventions_on_a_border_slab() {
    // a 2-voxel-thick slab on the x = 0 face of a 6x4x3 volume
    let g = Geometry::new([6, 4, 3], [1.0; 3]);
    let data: Vec<u8> = (0..g.len()).map(|i| (i % 6 < 2) as u8).collect();
    let m = Mask::from_bytes(g, &data).unwrap();
    let e = Element::cuboid([3, 3, 3]).unwrap();
    // erosion: outside is foreground, so only the inner face (x = 1) is eroded
    let er = kernels::erode(&m, &e);
    assert!(er
        .to_bytes()
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i % 6 == 0) as u8));
    // dilation: grows by one voxel in x only (nothing comes in from outside)
    let di = kernels::dilate(&m, &e);
    assert!(di
        .to_bytes()
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i % 6 < 3) as u8));
    // opening keeps the border-touching slab, closing leaves it unchanged
    assert_eq!(kernels::open(&m, &e), m);
    assert_eq!(kernels::close(&m, &e), m);
}

#[test]
fn non_binary_input_bytes_count_as_set() {
    let g = Geometry::new([70, 2, 1], [1.0; 3]);
    let mut data = vec![0u8; g.len()];
    data[65] = 7;
    let m = Mask::from_bytes(g, &data).unwrap();
    let e = Element::cuboid([3, 1, 1]).unwrap();
    let d = kernels::dilate(&m, &e);
    assert_eq!(d, naive::dilate(&m, &e));
    assert_eq!(d.to_bytes()[64..67], [1, 1, 1]);
}

#[test]
fn empty_volumes_pass_through() {
    let m = Mask::zeros(Geometry::new([0, 4, 2], [1.0; 3]));
    let e = Element::cuboid([3, 3, 3]).unwrap();
    assert_eq!(kernels::close(&m, &e), m);
    assert_eq!(kernels::open(&m, &e), m);
    assert_eq!(naive::close(&m, &e), m);
}

fn run(t: &dyn NodeType, params: serde_json::Value, imp: &str, m: Mask) -> Result<Mask, String> {
    let node = t.build(&params, imp).map_err(|e| format!("{e:?}"))?;
    let mut ctx = NodeContext::standalone("t", std::path::Path::new("."))
        .with_input("mask", Value::Mask(Arc::new(m)));
    node.run(&mut ctx).map_err(|e| e.to_string())?;
    match ctx.take_outputs().remove("mask") {
        Some(Value::Mask(m)) => Ok((*m).clone()),
        _ => Err("no mask output".into()),
    }
}

#[test]
fn nodes_run_both_impls_and_agree_with_kernels() {
    let m = random_mask([17, 13, 6], [0.8, 0.8, 2.5], 3, 0.2, 3);
    let box_e = Element::cuboid([3, 3, 1]).unwrap();
    let ell = Element::ellipsoid([2.0, 2.0, 2.5], [0.8, 0.8, 2.5]).unwrap();
    type Kernel = fn(&Mask, &Element) -> Mask;
    let types: [(&dyn NodeType, Kernel); 4] = [
        (&Dilation, kernels::dilate),
        (&Erosion, kernels::erode),
        (&Closing, kernels::close),
        (&Opening, kernels::open),
    ];
    for (t, f) in types {
        for imp in ["fast", "naive"] {
            let got = run(t, serde_json::json!({}), imp, m.clone()).unwrap();
            assert_eq!(got, f(&m, &box_e), "{} {imp}", t.spec().name);
            let got = run(
                t,
                serde_json::json!({"radius_mm": [2.0, 2.0, 2.5]}),
                imp,
                m.clone(),
            )
            .unwrap();
            assert_eq!(got, f(&m, &ell), "{} {imp} ellipsoid", t.spec().name);
        }
    }
}

#[test]
fn bad_params_are_param_errors() {
    for (params, field, says) in [
        (
            serde_json::json!({"kernel": [2, 3, 1]}),
            "kernel",
            "must be odd",
        ),
        (
            serde_json::json!({"kernel": [3, 3, 0]}),
            "kernel",
            "along z must be odd",
        ),
        (
            serde_json::json!({"radius_mm": [1.0, -2.0, 1.0]}),
            "radius_mm",
            "along y",
        ),
    ] {
        let errs = match Closing.build(&params, "fast") {
            Err(e) => e,
            Ok(_) => panic!("{params} accepted"),
        };
        assert_eq!(errs[0].path, vec![field.to_string()], "{params}");
        assert!(errs[0].message.contains(says), "{}", errs[0].message);
    }
    let errs = match Dilation.build(&serde_json::json!({"kernal": [3, 3, 3]}), "fast") {
        Err(e) => e,
        Ok(_) => panic!("unknown field accepted"),
    };
    assert!(errs[0].message.contains("kernal"));
}

#[test]
fn huge_ellipsoid_is_a_run_error() {
    let m = random_mask([4, 4, 2], [0.001, 0.001, 0.001], 1, 0.5, 0);
    let err = run(
        &Dilation,
        serde_json::json!({"radius_mm": [10.0, 1.0, 1.0]}),
        "fast",
        m,
    )
    .unwrap_err();
    assert!(err.contains("radius_mm"), "{err}");
}

#[test]
fn naive_refuses_work_past_its_limit_and_fast_does_it() {
    // Radius 400 voxels on a 32x32x4 mask: 2.2e12 pairs for naive (tens of minutes).
    let m = random_mask([32, 32, 4], [1.0, 1.0, 1.0], 1, 0.5, 0);
    let params = serde_json::json!({"radius_mm": [400.0, 400.0, 400.0]});
    let t = std::time::Instant::now();
    let err = run(&Dilation, params.clone(), "naive", m.clone()).unwrap_err();
    assert!(
        err.contains("801x801x801 element on this 32x32x4 mask") && err.contains("fast"),
        "{err}"
    );
    assert!(
        t.elapsed().as_secs() < 5,
        "refused only after {:?}",
        t.elapsed()
    );
    // The same on the fast kernels: every voxel within reach of a set one is set, and a
    // radius this large reaches across the whole mask.
    let out = run(&Dilation, params, "fast", m.clone()).unwrap();
    assert_eq!(out.count(), if m.count() > 0 { 32 * 32 * 4 } else { 0 });
    // Small elements still run on naive, closing included (padded, two passes).
    let small = serde_json::json!({"kernel": [3, 3, 1]});
    assert_eq!(
        run(&Closing, small.clone(), "naive", m.clone()).unwrap(),
        run(&Closing, small, "fast", m).unwrap()
    );
}
