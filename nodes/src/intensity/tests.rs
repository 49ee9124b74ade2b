//! HuWindow against the plain definition, and the node's checks.

use std::sync::Arc;

use proptest::prelude::*;
use voxflow_engine::{Geometry, Image, Mask, NodeContext, NodeError, NodeType, Value, Volume};

use super::kernels::{hu_window, i16_bounds};
use super::HuWindow;

fn definition(v: f64, min: f64, max: f64) -> u8 {
    (min <= v && v <= max) as u8
}

proptest! {
    #[test]
    fn i16_window_matches_definition(
        ct in proptest::collection::vec(any::<i16>(), 1..300),
        mask_bits in proptest::collection::vec(0u8..3, 300),
        a in -40000.0f64..40000.0, w in 0.0f64..70000.0, use_mask: bool, frac: bool,
    ) {
        let (min, max) = if frac { (a + 0.25, a + w + 0.5) } else { (a.round(), (a + w).round()) };
        let g = Geometry::new([ct.len(), 1, 1], [1.0; 3]);
        let m = Mask::from_bytes(g.clone(), &mask_bits[..ct.len()]).unwrap();
        let img = Image::I16(Volume::from_vec(g, ct.clone()).unwrap());
        let got = hu_window(&img, min, max, use_mask.then_some(&m));
        for (i, &v) in ct.iter().enumerate() {
            let want = definition(v as f64, min, max) & if use_mask { (m.to_bytes()[i] != 0) as u8 } else { 1 };
            prop_assert_eq!(got.to_bytes()[i], want, "v {} min {} max {}", v, min, max);
        }
    }

    #[test]
    fn f32_window_matches_definition(
        ct in proptest::collection::vec(-2000.0f32..2000.0, 1..200), min in -100.0f64..0.0, max in 0.0f64..100.0,
    ) {
        let g = Geometry::new([ct.len(), 1, 1], [1.0; 3]);
        let img = Image::F32(Volume::from_vec(g, ct.clone()).unwrap());
        let got = hu_window(&img, min, max, None);
        for (i, &v) in ct.iter().enumerate() {
            prop_assert_eq!(got.to_bytes()[i], definition(v as f64, min, max));
        }
    }
}

#[test]
fn bounds_at_the_ends_of_i16() {
    assert_eq!(i16_bounds(-29.0, 150.0), Some((-29, 150)));
    assert_eq!(i16_bounds(-29.5, 150.9), Some((-29, 150)));
    assert_eq!(i16_bounds(-1e9, 1e9), Some((i16::MIN, i16::MAX)));
    assert_eq!(i16_bounds(0.2, 0.8), None);
    assert_eq!(i16_bounds(40000.0, 50000.0), None);
    assert_eq!(i16_bounds(-50000.0, -40000.0), None);
    let g = Geometry::new([3, 1, 1], [1.0; 3]);
    let img = Image::I16(Volume::from_vec(g, vec![i16::MIN, 0, i16::MAX]).unwrap());
    assert_eq!(hu_window(&img, -1e9, 1e9, None).to_bytes(), &[1, 1, 1]);
    assert_eq!(
        hu_window(&img, 32767.0, 32767.0, None).to_bytes(),
        &[0, 0, 1]
    );
    assert_eq!(hu_window(&img, 0.5, 0.7, None).to_bytes(), &[0, 0, 0]);
    let nan =
        Image::F32(Volume::from_vec(Geometry::new([1, 1, 1], [1.0; 3]), vec![f32::NAN]).unwrap());
    assert_eq!(hu_window(&nan, -1e9, 1e9, None).to_bytes(), &[0]);
}

fn run(params: serde_json::Value, image: Image, mask: Option<Mask>) -> Result<Mask, NodeError> {
    let node = HuWindow
        .build(&params, "default")
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("HuWindow", std::path::Path::new("."))
        .with_input("image", Value::Image(Arc::new(image)));
    if let Some(m) = mask {
        ctx = ctx.with_input("mask", Value::Mask(Arc::new(m)));
    }
    node.run(&mut ctx)?;
    match ctx.take_outputs().remove("mask") {
        Some(Value::Mask(m)) => Ok((*m).clone()),
        _ => Err(NodeError::Other("no output".into())),
    }
}

#[test]
fn node_defaults_mask_and_grid_check() {
    let g = Geometry::new([5, 1, 1], [1.0; 3]);
    let ct = Image::I16(Volume::from_vec(g.clone(), vec![-30, -29, 0, 150, 151]).unwrap());
    let out = run(serde_json::json!({}), ct.clone(), None).unwrap();
    assert_eq!(out.to_bytes(), &[0, 1, 1, 1, 0]);
    let m = Mask::from_bytes(g, &[1, 1, 0, 1, 1]).unwrap();
    let out = run(
        serde_json::json!({"min": -100, "max": 100}),
        ct.clone(),
        Some(m),
    )
    .unwrap();
    assert_eq!(out.to_bytes(), &[1, 1, 0, 0, 0]);
    let other = Mask::from_fn(Geometry::new([5, 1, 1], [2.0, 1.0, 1.0]), |_| true);
    let err = run(serde_json::json!({}), ct, Some(other)).unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
}

#[test]
fn min_above_max_is_a_param_error() {
    let errs = match HuWindow.build(&serde_json::json!({"min": 200, "max": 100}), "default") {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(errs[0].path, ["min"]);
    assert!(
        errs[0].message.contains("200 > max 100"),
        "{}",
        errs[0].message
    );
    assert!(HuWindow
        .build(&serde_json::json!({"min": 5, "max": 5}), "default")
        .is_ok());
}
