//! The annotation nodes against their definitions: the SPLAT truth table, simulated
//! strokes checked by brute force, slice selection, and the end-to-end property that
//! every weighted training voxel carries the true label.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxflow_engine::{Geometry, Labels, NodeError, NodeType, Value};

use super::kernels::{BACKGROUND, DROPOUT_FRACTION, FOREGROUND};
use super::*;
use crate::phantom::{generate, PhantomParams};
use crate::testdata::run_default as run;

fn lv(l: Labels) -> Value {
    Value::Labels(Arc::new(l))
}

fn labels_out(out: &BTreeMap<String, Value>, port: &str) -> Arc<Labels> {
    match &out[port] {
        Value::Labels(l) => l.clone(),
        other => panic!("{port} is {}", other.port_type()),
    }
}

fn splat_weights(a: &Labels, p: &Labels) -> Result<(Arc<Labels>, Vec<u8>), NodeError> {
    let out = run(
        &SplatWeights,
        serde_json::json!({}),
        vec![
            ("abdominal", lv(a.clone())),
            ("paravertebral", lv(p.clone())),
        ],
    )?;
    let w = match &out["weights"] {
        Value::Mask(m) => m.to_bytes().to_vec(),
        other => panic!("weights is {}", other.port_type()),
    };
    Ok((labels_out(&out, "labels"), w))
}

fn simulate(labels: &Labels, params: serde_json::Value) -> Result<Arc<Labels>, NodeError> {
    let out = run(
        &SimulateSparseAnnotation,
        params,
        vec![("labels", lv(labels.clone()))],
    )?;
    Ok(labels_out(&out, "splat"))
}

#[test]
fn splat_weights_truth_table() {
    // Every (abdominal, paravertebral) pair once, with the expected (label, weight)
    // written from the rules: foreground in exactly one -> that structure; background in
    // both -> background; foreground in both -> conflict, ignored; else ignored.
    let table: [((u16, u16), (u16, u8)); 9] = [
        ((0, 0), (0, 0)),
        ((0, 1), (0, 0)),
        ((0, 2), (2, 1)),
        ((1, 0), (0, 0)),
        ((1, 1), (0, 1)),
        ((1, 2), (2, 1)),
        ((2, 0), (1, 1)),
        ((2, 1), (1, 1)),
        ((2, 2), (0, 0)),
    ];
    let g = Geometry::new([3, 3, 1], [0.8, 0.8, 2.0]);
    let a = Labels::from_vec(g.clone(), table.iter().map(|t| t.0 .0).collect()).unwrap();
    let p = Labels::from_vec(g.clone(), table.iter().map(|t| t.0 .1).collect()).unwrap();
    let (labels, weights) = splat_weights(&a, &p).unwrap();
    assert_eq!(labels.geometry(), &g);
    for (i, ((av, pv), (l, w))) in table.iter().enumerate() {
        assert_eq!(
            (labels.as_slice()[i], weights[i]),
            (*l, *w),
            "abdominal {av}, paravertebral {pv}"
        );
    }
}

#[test]
fn splat_weights_rejects_other_values_naming_the_port_and_value() {
    let g = Geometry::new([4, 2, 1], [1.0; 3]);
    let ok = Labels::from_vec(g.clone(), vec![0, 1, 2, 0, 1, 2, 0, 1]).unwrap();
    let mut bad = ok.as_slice().to_vec();
    bad[5] = 3;
    let bad = Labels::from_vec(g, bad).unwrap();
    for (a, p, port) in [
        (&bad, &ok, "abdominal"),
        (&ok, &bad, "paravertebral"),
        (&bad, &bad, "abdominal"),
    ] {
        match splat_weights(a, p).unwrap_err() {
            NodeError::Input { port: got, message } => {
                assert_eq!(got, port);
                assert!(message.contains("value 3"), "{message}");
                assert!(message.contains("(1, 1, 0)"), "{message}");
            }
            other => panic!("unexpected error {other}"),
        }
    }
}

#[test]
fn splat_weights_checks_grids_and_params() {
    let a = Labels::filled(Geometry::new([4, 4, 2], [1.0; 3]), 1);
    let p = Labels::filled(Geometry::new([4, 4, 2], [1.0, 1.0, 2.5]), 1);
    let err = splat_weights(&a, &p).unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
    let p = Labels::filled(Geometry::new([4, 4, 3], [1.0; 3]), 1);
    let err = splat_weights(&a, &p).unwrap_err();
    assert!(matches!(err, NodeError::GridMismatch { .. }), "{err}");
    assert!(SplatWeights
        .build(&serde_json::json!({"x": 1}), "default")
        .is_err());
}

/// A label map of random ellipses (label 1) and rectangles (label 2) per slice, some
/// slices empty: shapes with holes, thin parts and edge contact.
fn random_labels(dims: [usize; 3], spacing: [f64; 3], seed: u64) -> Labels {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [nx, ny, nz] = dims;
    let mut v = vec![0u16; nx * ny * nz];
    for z in 0..nz {
        if rng.random_bool(0.2) {
            continue;
        }
        for _ in 0..rng.random_range(1..4) {
            let (cx, cy) = (
                rng.random_range(0..nx) as f64,
                rng.random_range(0..ny) as f64,
            );
            let (rx, ry) = (rng.random_range(0.5..8.0), rng.random_range(0.5..8.0));
            let label = rng.random_range(1..3u16);
            let ellipse = rng.random_bool(0.6);
            for y in 0..ny {
                for x in 0..nx {
                    let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                    let inside = if ellipse {
                        dx * dx + dy * dy <= 1.0
                    } else {
                        dx.abs() <= 1.0 && dy.abs() <= 1.0
                    };
                    if inside {
                        v[x + nx * (y + ny * z)] = label;
                    }
                }
            }
        }
    }
    Labels::from_vec(Geometry::new(dims, spacing), v).unwrap()
}

/// Check one simulated annotation against its definition, by brute force on each slice:
/// foreground = structure eroded by a 3x3 cross (exactly, on annotated slices);
/// background outside the structure, not touching it, within the band (distance to
/// every structure voxel computed directly), and at least 70% of that band. Returns the
/// annotated slices and (band voxels, background voxels) summed over them.
fn check_against_definition(
    labels: &Labels,
    structure_labels: &[u16],
    splat: &Labels,
    band_mm: f64,
) -> (Vec<usize>, (usize, usize)) {
    let [nx, ny, nz] = labels.dims();
    let [sx, sy, _] = labels.geometry().spacing;
    let g = labels.geometry();
    let is_s = |x: isize, y: isize, z: usize| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < nx
            && (y as usize) < ny
            && structure_labels.contains(&labels.as_slice()[g.index(x as usize, y as usize, z)])
    };
    let mut annotated = Vec::new();
    let mut totals = (0, 0);
    for z in 0..nz {
        let s = &splat.as_slice()[z * nx * ny..(z + 1) * nx * ny];
        assert!(s.iter().all(|&v| v <= FOREGROUND), "slice {z}: bad value");
        if s.iter().all(|&v| v == 0) {
            continue;
        }
        annotated.push(z);
        let structure: Vec<(isize, isize)> = (0..ny as isize)
            .flat_map(|y| (0..nx as isize).map(move |x| (x, y)))
            .filter(|&(x, y)| is_s(x, y, z))
            .collect();
        let (mut band, mut painted) = (0, 0);
        for y in 0..ny as isize {
            for x in 0..nx as isize {
                let v = s[x as usize + nx * y as usize];
                let inside = is_s(x, y, z);
                let eroded = inside
                    && is_s(x - 1, y, z)
                    && is_s(x + 1, y, z)
                    && is_s(x, y - 1, z)
                    && is_s(x, y + 1, z);
                assert_eq!(v == FOREGROUND, eroded, "voxel ({x}, {y}, {z}): foreground");
                if inside {
                    assert_ne!(v, BACKGROUND, "voxel ({x}, {y}, {z}): background inside");
                    continue;
                }
                let touches = (-1..=1).any(|dy| (-1..=1).any(|dx| is_s(x + dx, y + dy, z)));
                let d = structure
                    .iter()
                    .map(|&(qx, qy)| {
                        (((x - qx) as f64 * sx).powi(2) + ((y - qy) as f64 * sy).powi(2)).sqrt()
                    })
                    .fold(f64::INFINITY, f64::min);
                let in_band = !touches && d <= band_mm + 1e-9;
                if v == BACKGROUND {
                    assert!(
                        in_band,
                        "voxel ({x}, {y}, {z}): background {d} mm away, touching {touches}"
                    );
                    painted += 1;
                }
                // Voxels within rounding of the band edge may go either way.
                if !touches && d <= band_mm - 1e-9 {
                    band += 1;
                }
            }
        }
        assert!(
            painted as f64 >= (1.0 - DROPOUT_FRACTION.1) * band as f64 - 1.0,
            "slice {z}: only {painted} of {band} band voxels painted"
        );
        totals.0 += band;
        totals.1 += painted;
    }
    (annotated, totals)
}

#[test]
fn simulated_strokes_match_their_definition() {
    let mut totals = (0, 0);
    for seed in 0..6u64 {
        let spacing = [0.7 + 0.2 * seed as f64, 0.9, 2.5];
        let labels = random_labels([40, 33, 6], spacing, seed);
        for (structure, band) in [(vec![1u16], 4.0), (vec![1, 2], 2.5)] {
            let splat = simulate(
                &labels,
                serde_json::json!({"labels": structure, "slices_every": 1,
                    "background_band_mm": band, "seed": seed}),
            )
            .unwrap();
            let (annotated, t) = check_against_definition(&labels, &structure, &splat, band);
            assert!(!annotated.is_empty());
            totals.0 += t.0;
            totals.1 += t.1;
        }
    }
    // Roughly 10-30% of the band left out over all slices.
    let left = 1.0 - totals.1 as f64 / totals.0 as f64;
    assert!(
        (0.08..=0.30).contains(&left),
        "{left} of the band left unannotated ({totals:?})"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn simulated_strokes_match_their_definition_for_any_volume(
        nx in 3usize..30, ny in 3usize..30, nz in 1usize..4,
        sx in 0.3f64..2.0, sy in 0.3f64..2.0,
        band in 0.5f64..8.0,
        seed in any::<u64>(),
    ) {
        let labels = random_labels([nx, ny, nz], [sx, sy, 3.0], seed);
        let splat = simulate(
            &labels,
            serde_json::json!({"labels": [2], "slices_every": 1,
                "background_band_mm": band, "seed": seed}),
        )
        .unwrap();
        check_against_definition(&labels, &[2], &splat, band);
    }
}

#[test]
fn simulation_is_deterministic_per_seed() {
    let labels = random_labels([48, 40, 10], [0.8, 0.8, 2.0], 3);
    let params = |seed: u64| serde_json::json!({"labels": [1], "slices_every": 2, "seed": seed});
    let a = simulate(&labels, params(5)).unwrap();
    let b = simulate(&labels, params(5)).unwrap();
    assert_eq!(a.as_slice(), b.as_slice());
    let c = simulate(&labels, params(6)).unwrap();
    assert_ne!(a.as_slice(), c.as_slice());
    // Also on one thread: results do not depend on scheduling.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let d = pool.install(|| simulate(&labels, params(5)).unwrap());
    assert_eq!(a.as_slice(), d.as_slice());
}

#[test]
fn only_every_nth_slice_within_the_range_is_annotated() {
    // The structure (a square) lies on slices 2..=17 of 20, except slice 9.
    let (nx, ny, nz) = (24, 24, 20);
    let mut v = vec![0u16; nx * ny * nz];
    let present: Vec<usize> = (2..=17).filter(|&z| z != 9).collect();
    for &z in &present {
        for y in 6..18 {
            for x in 5..19 {
                v[x + nx * (y + ny * z)] = 3;
            }
        }
    }
    let labels = Labels::from_vec(Geometry::new([nx, ny, nz], [1.0, 1.0, 2.0]), v).unwrap();
    let mut offsets = std::collections::BTreeSet::new();
    for seed in 0..12u64 {
        for (every, range) in [
            (3usize, Some((4usize, 15usize))),
            (4, None),
            (1, Some((0, 5))),
        ] {
            let mut params =
                serde_json::json!({"labels": [3], "slices_every": every, "seed": seed});
            if let Some((a, b)) = range {
                params["slice_range"] = serde_json::json!([a, b]);
            }
            let splat = simulate(&labels, params).unwrap();
            let (lo, hi) = range.unwrap_or((0, nz - 1));
            let candidates: Vec<usize> = present
                .iter()
                .copied()
                .filter(|&z| (lo..=hi).contains(&z))
                .collect();
            let annotated: Vec<usize> = (0..nz)
                .filter(|&z| {
                    splat.as_slice()[z * nx * ny..(z + 1) * nx * ny]
                        .iter()
                        .any(|&v| v != 0)
                })
                .collect();
            // Positions of the annotated slices among the candidates: an arithmetic
            // sequence with step `every`, starting below `every`, running to the end.
            let pos: Vec<usize> = annotated
                .iter()
                .map(|z| {
                    candidates
                        .iter()
                        .position(|c| c == z)
                        .unwrap_or_else(|| panic!("slice {z} annotated outside {candidates:?}"))
                })
                .collect();
            assert!(!pos.is_empty(), "seed {seed}: nothing annotated");
            assert!(pos[0] < every);
            assert!(pos.windows(2).all(|w| w[1] - w[0] == every), "{pos:?}");
            assert!(pos[pos.len() - 1] + every >= candidates.len(), "{pos:?}");
            if every == 3 {
                offsets.insert(pos[0]);
            }
        }
    }
    assert!(
        offsets.len() > 1,
        "the seed picks the first slice: {offsets:?}"
    );
}

#[test]
fn a_structure_on_fewer_slices_than_slices_every_still_gets_one() {
    let (nx, ny, nz) = (16, 16, 8);
    let mut v = vec![0u16; nx * ny * nz];
    for y in 4..12 {
        for x in 4..12 {
            v[x + nx * (y + ny * 5)] = 1;
        }
    }
    let labels = Labels::from_vec(Geometry::new([nx, ny, nz], [1.0; 3]), v).unwrap();
    for seed in 0..8u64 {
        let splat = simulate(
            &labels,
            serde_json::json!({"slices_every": 6, "background_band_mm": 3.0, "seed": seed}),
        )
        .unwrap();
        let s = &splat.as_slice()[5 * nx * ny..6 * nx * ny];
        assert!(
            s.contains(&FOREGROUND) && s.contains(&BACKGROUND),
            "seed {seed}"
        );
    }
    // No structure at all: nothing annotated, no error.
    let empty = simulate(&labels, serde_json::json!({"labels": [9]})).unwrap();
    assert!(empty.as_slice().iter().all(|&v| v == 0));
}

#[test]
fn simulate_params_are_checked() {
    let cases = [
        (serde_json::json!({"labels": []}), "labels"),
        (serde_json::json!({"slices_every": 0}), "slices_every"),
        (serde_json::json!({"slice_range": [5, 2]}), "slice_range"),
        (
            serde_json::json!({"background_band_mm": 0.0}),
            "background_band_mm",
        ),
        (
            serde_json::json!({"background_band_mm": -3.0}),
            "background_band_mm",
        ),
        (serde_json::json!({"nope": 1}), ""),
    ];
    for (params, field) in cases {
        let errs = match SimulateSparseAnnotation.build(&params, "default") {
            Err(e) => e,
            Ok(_) => panic!("{params} accepted"),
        };
        if !field.is_empty() {
            assert_eq!(errs[0].path, [field], "{params}: {errs:?}");
        }
    }
    // A range past the last slice is found when the node runs.
    let labels = Labels::filled(Geometry::new([8, 8, 4], [1.0; 3]), 1);
    let err = simulate(&labels, serde_json::json!({"slice_range": [1, 4]})).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`slice_range`") && msg.contains("4 slices"),
        "{msg}"
    );
    assert!(simulate(&labels, serde_json::json!({"slice_range": [1, 3]})).is_ok());
}

/// The key property of the training path: phantom truth -> simulated annotation of
/// each muscle -> SplatWeights gives labels that are right wherever the weight is 1.
#[test]
fn weighted_training_labels_equal_the_truth() {
    for (phantom_seed, every, band) in [(1u64, 4usize, 10.0), (2, 2, 6.0), (3, 1, 15.0)] {
        let v = generate(&PhantomParams {
            seed: phantom_seed,
            dims: (96, 80, 10),
            ..PhantomParams::default()
        });
        let truth = v.truth;
        for seeds in [(1u64, 1u64), (4, 9)] {
            let params = |label: u16, seed: u64| {
                serde_json::json!({"labels": [label], "slices_every": every,
                    "background_band_mm": band, "seed": seed})
            };
            let abd = simulate(&truth, params(1, seeds.0)).unwrap();
            let para = simulate(&truth, params(2, seeds.1)).unwrap();
            let (labels, weights) = splat_weights(&abd, &para).unwrap();
            let mut weighted = [0usize; 3];
            for (i, &w) in weights.iter().enumerate() {
                if w == 1 {
                    let l = labels.as_slice()[i];
                    assert_eq!(l, truth.as_slice()[i], "voxel {i}");
                    weighted[l as usize] += 1;
                } else {
                    assert_eq!(labels.as_slice()[i], 0);
                }
            }
            // Background needs both annotations, so slices annotated for both: with one
            // seed both structures (on the same slices here) share their slices.
            let need = if seeds.0 == seeds.1 { 0 } else { 1 };
            assert!(
                weighted[need..].iter().all(|&n| n > 0),
                "phantom {phantom_seed}, seeds {seeds:?}: weighted voxels per label {weighted:?}"
            );
        }
    }
}

#[test]
fn painting_to_the_edges_keeps_the_whole_structure_and_no_gap() {
    let labels = random_labels([40, 32, 6], [3.0, 3.0, 3.0], 5);
    let params = serde_json::json!({"labels": [1], "slices_every": 1, "background_band_mm": 9.0,
                                    "paint_to_edges": true});
    let out = simulate(&labels, params).unwrap();
    let g = labels.geometry();
    let [nx, ny, nz] = g.dims;
    let (mut touching_background, mut annotated) = (0, 0);
    for z in 0..nz {
        let slice = |x: usize, y: usize| labels.as_slice()[g.index(x, y, z)] == 1;
        if !(0..ny).any(|y| (0..nx).any(|x| slice(x, y))) {
            continue;
        }
        annotated += 1;
        for y in 0..ny {
            for x in 0..nx {
                let o = out.as_slice()[g.index(x, y, z)];
                // Every structure voxel is foreground; nothing else is.
                assert_eq!(o == 2, slice(x, y), "({x},{y},{z})");
                let touches = (x.saturating_sub(1)..=(x + 1).min(nx - 1))
                    .any(|xx| (y.saturating_sub(1)..=(y + 1).min(ny - 1)).any(|yy| slice(xx, yy)));
                if o == 1 && touches {
                    touching_background += 1;
                }
            }
        }
    }
    assert!(annotated > 0);
    assert!(
        touching_background > 0,
        "no background next to the structure"
    );
}
