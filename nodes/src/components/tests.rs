//! Runs against flood fill, connectivity cases, thresholds, and the nodes' checks.

use std::sync::Arc;

use proptest::prelude::*;
use voxflow_engine::{Geometry, Mask, NodeContext, NodeError, NodeType, Value};

use super::connectivity::Connectivity;
use super::kernels::{self, label_runs, Method};
use super::*;
use crate::morphology::tests::random_mask;

const ALL: [Connectivity; 5] = [
    Connectivity::Plane4,
    Connectivity::Plane8,
    Connectivity::Face6,
    Connectivity::Edge18,
    Connectivity::Vertex26,
];

fn mask_of(dims: [usize; 3], spacing: [f64; 3], set: &[[usize; 3]]) -> Mask {
    let g = Geometry::new(dims, spacing);
    let mut m = Mask::zeros(g.clone());
    for p in set {
        m.set(p[0], p[1], p[2], true);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn runs_match_flood(
        nx in 1usize..=20, ny in 1usize..=20, nz in 1usize..=8, seed in any::<u64>(),
        density in 0.0f64..0.8, boxes in 0usize..4, min_ml in 0.0f64..0.02, n in 1usize..4,
    ) {
        let m = random_mask([nx, ny, nz], [0.8, 0.8, 2.5], seed, density, boxes);
        for conn in ALL {
            let (r, f) = (kernels::label(&m, conn, Method::Runs), kernels::label(&m, conn, Method::Flood));
            prop_assert_eq!(r.count(), f.count());
            prop_assert_eq!(r.sizes(), f.sizes());
            prop_assert_eq!(r.to_labels(m.geometry()).unwrap(), f.to_labels(m.geometry()).unwrap());
            for z in 0..nz {
                prop_assert_eq!(r.slice_ids(z), f.slice_ids(z));
            }
            prop_assert_eq!(
                kernels::remove_small(&m, conn, min_ml, Method::Runs),
                kernels::remove_small(&m, conn, min_ml, Method::Flood)
            );
            prop_assert_eq!(
                kernels::keep_largest(&m, conn, n, Method::Runs),
                kernels::keep_largest(&m, conn, n, Method::Flood)
            );
        }
    }

    #[test]
    fn wide_rows_runs_match_flood(nx in 60usize..=200, seed in any::<u64>(), density in 0.0f64..0.9) {
        let m = random_mask([nx, 4, 3], [1.0; 3], seed, density, 3);
        for conn in ALL {
            let (r, f) = (label_runs(&m, conn), kernels::label(&m, conn, Method::Flood));
            prop_assert_eq!(r.to_labels(m.geometry()).unwrap(), f.to_labels(m.geometry()).unwrap());
        }
    }
}

#[test]
fn flood_ids_follow_scan_order_and_cover_the_mask() {
    let m = random_mask([15, 12, 5], [1.0; 3], 9, 0.3, 2);
    for conn in ALL {
        let l = kernels::label(&m, conn, Method::Flood)
            .to_labels(m.geometry())
            .unwrap();
        let mut next = 1u16;
        for (&id, &v) in l.as_slice().iter().zip(m.to_bytes().iter()) {
            assert_eq!(id != 0, v != 0);
            assert!(id <= next, "{conn}: id {id} before {next}");
            if id == next {
                next += 1;
            }
        }
    }
}

#[test]
fn diagonal_neighbours_per_connectivity() {
    let d = [3, 3, 2];
    let cases: [([usize; 3], [usize; 2]); 3] = [
        // (offset of the second voxel from (0,0,0), components for [in-plane 4/6, 8/18])
        ([1, 1, 0], [2, 1]),
        ([1, 0, 1], [2, 1]),
        ([1, 1, 1], [2, 2]),
    ];
    for (o, _) in cases {
        let m = mask_of(d, [1.0; 3], &[[0, 0, 0], o]);
        let n = |c| label_runs(&m, c).count();
        let in_plane = o[2] == 0;
        assert_eq!(n(Connectivity::Plane4), 2);
        assert_eq!(n(Connectivity::Plane8), if in_plane { 1 } else { 2 });
        assert_eq!(n(Connectivity::Face6), 2);
        assert_eq!(n(Connectivity::Edge18), if o == [1, 1, 1] { 2 } else { 1 });
        assert_eq!(n(Connectivity::Vertex26), 1);
    }
}

#[test]
fn removal_threshold_is_strictly_below() {
    // 1000 mm³ voxels: 1 ml each, so the threshold falls exactly on voxel counts
    let m = mask_of(
        [9, 1, 1],
        [10.0; 3],
        &[
            [0, 0, 0],
            [1, 0, 0],
            [2, 0, 0],
            [4, 0, 0],
            [5, 0, 0],
            [7, 0, 0],
        ],
    );
    for method in [Method::Runs, Method::Flood] {
        let out = kernels::remove_small(&m, Connectivity::Plane8, 2.0, method);
        assert_eq!(out.to_bytes(), &[1, 1, 1, 0, 1, 1, 0, 0, 0]);
        let out = kernels::remove_small(&m, Connectivity::Plane8, 2.0000001, method);
        assert_eq!(out.to_bytes(), &[1, 1, 1, 0, 0, 0, 0, 0, 0]);
    }
}

#[test]
fn keep_largest_breaks_ties_by_scan_order_and_works_per_slice() {
    // slice 0: sizes 2, 2, 3 ; slice 1: sizes 1, 2
    let set = [
        [0, 0, 0],
        [1, 0, 0],
        [3, 0, 0],
        [4, 0, 0],
        [6, 0, 0],
        [7, 0, 0],
        [8, 0, 0],
        [0, 0, 1],
        [5, 0, 1],
        [6, 0, 1],
    ];
    let m = mask_of([9, 1, 2], [1.0; 3], &set);
    // 3D: (0,0,1) joins {0,1} (size 3), (6,0,1) joins {6,7,8} (size 5)
    let both = kernels::keep_largest(&m, Connectivity::Face6, 2, Method::Runs);
    assert_eq!(both.to_bytes()[..9], [1, 1, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(both.to_bytes()[9..], [1, 0, 0, 0, 0, 1, 1, 0, 0]);
    let one = kernels::keep_largest(&m, Connectivity::Face6, 1, Method::Runs);
    assert_eq!(one.count(), 5);
    // per slice, n = 2: slice 0 keeps the 3 and the first of the two 2s
    let per = kernels::keep_largest(&m, Connectivity::Plane4, 2, Method::Runs);
    assert_eq!(per.to_bytes()[..9], [1, 1, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(per.to_bytes()[9..], [1, 0, 0, 0, 0, 1, 1, 0, 0]);
    let per = kernels::keep_largest(&m, Connectivity::Plane4, 1, Method::Runs);
    assert_eq!(per.to_bytes()[..9], [0, 0, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(per.to_bytes()[9..], [0, 0, 0, 0, 0, 1, 1, 0, 0]);
}

#[test]
fn too_many_components_for_a_label_map() {
    let g = Geometry::new([600, 600, 1], [1.0; 3]);
    let data: Vec<u8> = (0..g.len())
        .map(|i| (i % 2 == 0 && (i / 600) % 2 == 0) as u8)
        .collect();
    let m = Mask::from_bytes(g, &data).unwrap();
    let node = ConnectedComponents
        .build(
            &serde_json::json!({"per_slice": true, "connectivity": 4}),
            "runs",
        )
        .unwrap();
    let mut ctx = NodeContext::standalone("cc", std::path::Path::new("."))
        .with_input("mask", Value::Mask(Arc::new(m)));
    let err = node.run(&mut ctx).unwrap_err().to_string();
    assert!(
        err.contains("90000 components") && err.contains("65535"),
        "{err}"
    );
}

fn param_err(t: &dyn NodeType, p: serde_json::Value) -> Vec<String> {
    match t.build(&p, "runs") {
        Err(e) => e
            .into_iter()
            .map(|e| format!("{}: {}", e.path.join("."), e.message))
            .collect(),
        Ok(_) => panic!("{p} accepted"),
    }
}

#[test]
fn connectivity_must_fit_per_slice() {
    let e = param_err(&ConnectedComponents, serde_json::json!({"connectivity": 8}));
    assert!(e[0].starts_with("connectivity: 8 is an in-plane"), "{e:?}");
    let e = param_err(
        &RemoveSmallComponents,
        serde_json::json!({"connectivity": 26}),
    );
    assert!(e[0].starts_with("connectivity: 26 is a 3D"), "{e:?}");
    let e = param_err(
        &KeepLargestComponents,
        serde_json::json!({"n": 0, "connectivity": 5}),
    );
    assert_eq!(e.len(), 2, "{e:?}");
    let e = param_err(
        &RemoveSmallComponents,
        serde_json::json!({"min_volume_ml": -1.0}),
    );
    assert!(e[0].starts_with("min_volume_ml"), "{e:?}");
}

fn run_mask(
    t: &dyn NodeType,
    p: serde_json::Value,
    imp: &str,
    m: &Mask,
) -> Result<Value, NodeError> {
    let node = t
        .build(&p, imp)
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("t", std::path::Path::new("."))
        .with_input("mask", Value::Mask(Arc::new(m.clone())));
    node.run(&mut ctx)?;
    Ok(ctx.take_outputs().into_values().next().expect("one output"))
}

#[test]
fn nodes_agree_across_impls() {
    let m = random_mask([30, 25, 6], [0.8, 0.8, 2.5], 5, 0.25, 3);
    for (t, p) in [
        (&ConnectedComponents as &dyn NodeType, serde_json::json!({})),
        (&ConnectedComponents, serde_json::json!({"per_slice": true})),
        (
            &RemoveSmallComponents,
            serde_json::json!({"min_volume_ml": 0.01}),
        ),
        (
            &RemoveSmallComponents,
            serde_json::json!({"min_volume_ml": 0.05, "per_slice": false, "connectivity": 6}),
        ),
        (
            &KeepLargestComponents,
            serde_json::json!({"n": 2, "per_slice": true, "connectivity": 4}),
        ),
    ] {
        let a = run_mask(t, p.clone(), "runs", &m).unwrap();
        let b = run_mask(t, p.clone(), "flood", &m).unwrap();
        match (a, b) {
            (Value::Mask(a), Value::Mask(b)) => assert_eq!(a, b, "{p}"),
            (Value::Labels(a), Value::Labels(b)) => assert_eq!(a, b, "{p}"),
            _ => panic!("unexpected outputs"),
        }
    }
}
