//! Mask kernels against their definitions, and the nodes' checks.

use std::sync::Arc;

use proptest::prelude::*;
use voxflow_engine::{Geometry, Labels, Mask, NodeError, NodeType, Value};

use super::*;

fn mask(g: &Geometry, v: &[u8]) -> Mask {
    Mask::from_bytes(g.clone(), v).unwrap()
}

proptest! {
    #[test]
    fn logic_matches_definition(pairs in proptest::collection::vec((0u8..3, 0u8..3), 1..200)) {
        let g = Geometry::new([pairs.len(), 1, 1], [1.0; 3]);
        let a = mask(&g, &pairs.iter().map(|p| p.0).collect::<Vec<_>>());
        let b = mask(&g, &pairs.iter().map(|p| p.1).collect::<Vec<_>>());
        let (and, or, sub, not) = (kernels::and(&a, &b), kernels::or(&a, &b), kernels::subtract(&a, &b), kernels::not(&a));
        for (i, &(x, y)) in pairs.iter().enumerate() {
            let (x, y) = (x != 0, y != 0);
            prop_assert_eq!(and.to_bytes()[i], (x && y) as u8);
            prop_assert_eq!(or.to_bytes()[i], (x || y) as u8);
            prop_assert_eq!(sub.to_bytes()[i], (x && !y) as u8);
            prop_assert_eq!(not.to_bytes()[i], (!x) as u8);
        }
    }

    #[test]
    fn select_and_merge_match_definition(
        labels in proptest::collection::vec(0u16..6, 1..300),
        which in proptest::collection::vec(0u16..6, 1..4),
        out_labels in proptest::collection::vec(0u16..9, 1..4),
    ) {
        let g = Geometry::new([labels.len(), 1, 1], [1.0; 3]);
        let lm = Labels::from_vec(g.clone(), labels.clone()).unwrap();
        let sel = kernels::select_labels(&lm, &which);
        for (i, l) in labels.iter().enumerate() {
            prop_assert_eq!(sel.to_bytes()[i], which.contains(l) as u8);
        }
        // mask k = voxels with label k or k+1 (so consecutive masks overlap)
        let masks: Vec<Mask> = (0..out_labels.len() as u16).map(|k| kernels::select_labels(&lm, &[k, k + 1])).collect();
        let refs: Vec<&Mask> = masks.iter().collect();
        let merged = kernels::merge(&refs, &out_labels);
        for (i, _) in labels.iter().enumerate() {
            let want = masks.iter().zip(&out_labels).filter(|(m, _)| m.to_bytes()[i] != 0).map(|(_, &l)| l).next_back().unwrap_or(0);
            prop_assert_eq!(merged.as_slice()[i], want);
        }
    }
}

fn run(
    t: &dyn NodeType,
    params: serde_json::Value,
    inputs: Vec<(&str, Value)>,
) -> Result<Value, NodeError> {
    let outputs = crate::testdata::run_node(t, params, "default", inputs)?;
    Ok(outputs.into_values().next().expect("one output"))
}

fn mv(m: Mask) -> Value {
    Value::Mask(Arc::new(m))
}

#[test]
fn nodes_compute_and_check_grids() {
    let g = Geometry::new([4, 1, 1], [1.0; 3]);
    let a = mask(&g, &[1, 1, 0, 0]);
    let b = mask(&g, &[1, 0, 1, 0]);
    for (t, want) in [
        (&MaskAnd as &dyn NodeType, [1, 0, 0, 0]),
        (&MaskOr, [1, 1, 1, 0]),
        (&MaskSubtract, [0, 1, 0, 0]),
    ] {
        match run(
            t,
            serde_json::json!({}),
            vec![("a", mv(a.clone())), ("b", mv(b.clone()))],
        )
        .unwrap()
        {
            Value::Mask(m) => assert_eq!(m.to_bytes(), &want),
            _ => panic!("not a mask"),
        }
        let other = Mask::zeros(Geometry::new([4, 1, 1], [1.5, 1.0, 1.0]));
        let err = run(
            t,
            serde_json::json!({}),
            vec![("a", mv(a.clone())), ("b", mv(other))],
        )
        .unwrap_err();
        assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
        assert!(t.build(&serde_json::json!({"x": 1}), "default").is_err());
    }
    match run(
        &MaskNot,
        serde_json::json!({}),
        vec![("mask", mv(a.clone()))],
    )
    .unwrap()
    {
        Value::Mask(m) => assert_eq!(m.to_bytes(), &[0, 0, 1, 1]),
        _ => panic!("not a mask"),
    }
}

#[test]
fn select_label_needs_labels() {
    let errs = match SelectLabel.build(&serde_json::json!({}), "default") {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(errs[0].path, ["labels"]);
    let g = Geometry::new([3, 1, 1], [1.0; 3]);
    let lm = Value::Labels(Arc::new(Labels::from_vec(g, vec![86, 87, 5]).unwrap()));
    match run(
        &SelectLabel,
        serde_json::json!({"labels": [86, 87]}),
        vec![("labels", lm)],
    )
    .unwrap()
    {
        Value::Mask(m) => assert_eq!(m.to_bytes(), &[1, 1, 0]),
        _ => panic!("not a mask"),
    }
}

#[test]
fn merge_labels_later_wins_and_checks_lengths_and_grids() {
    let g = Geometry::new([3, 1, 1], [1.0; 3]);
    let a = mv(mask(&g, &[1, 1, 0]));
    let b = mv(mask(&g, &[0, 1, 1]));
    let out = run(
        &MergeLabels,
        serde_json::json!({"labels": [1, 2]}),
        vec![("masks", a.clone()), ("masks", b.clone())],
    );
    match out.unwrap() {
        Value::Labels(l) => assert_eq!(l.as_slice(), &[1, 2, 2]),
        _ => panic!("not labels"),
    }
    let err = run(
        &MergeLabels,
        serde_json::json!({"labels": [1, 2, 3]}),
        vec![("masks", a.clone()), ("masks", b)],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`labels` has 3 entries but 2 masks"),
        "{err}"
    );
    let other = mv(Mask::zeros(Geometry::new([3, 1, 1], [1.0, 2.0, 1.0])));
    let err = run(
        &MergeLabels,
        serde_json::json!({"labels": [1, 2]}),
        vec![("masks", a), ("masks", other)],
    )
    .unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
    assert!(MergeLabels
        .build(&serde_json::json!({"labels": []}), "default")
        .is_err());
}

#[test]
fn slice_range_mask_sets_exactly_the_chosen_slices() {
    let g = Geometry::new([3, 2, 5], [1.0; 3]);
    let like = mv(Mask::zeros(g.clone()));
    let params = serde_json::json!({"first": 1, "last": 3});
    let Value::Mask(m) = run(&SliceRangeMask, params, vec![("like", like.clone())]).unwrap() else {
        panic!()
    };
    for z in 0..5 {
        for y in 0..2 {
            for x in 0..3 {
                assert_eq!(
                    m.to_bytes()[g.index(x, y, z)],
                    u8::from((1..=3).contains(&z))
                );
            }
        }
    }
    let beyond = serde_json::json!({"first": 1, "last": 5});
    let e = run(&SliceRangeMask, beyond, vec![("like", like)]).unwrap_err();
    assert!(
        e.to_string().contains("5 slices") && e.to_string().contains("`last` 5"),
        "{e}"
    );
    let backwards = SliceRangeMask
        .build(&serde_json::json!({"first": 4, "last": 2}), "default")
        .err()
        .unwrap();
    assert!(backwards[0].path == ["first"], "{:?}", backwards[0]);
    assert!(SliceRangeMask
        .build(&serde_json::json!({}), "default")
        .is_err());
}
