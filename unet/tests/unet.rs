//! Inference behaviour of voxflow-unet on small random-weight models: determinism, saved
//! models, tiling, and clear errors.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::Device;
use voxflow_engine::{Geometry, Image, NodeContext, NodeError, NodeType, Value, Volume};
use voxflow_unet::config::{ModelKind, Upsampling};
use voxflow_unet::infer::InferError;
use voxflow_unet::{predict, write_random_model, InferOptions, SavedModel, UNetConfig};

fn small(kernel: usize, levels: usize, classes: usize) -> UNetConfig {
    UNetConfig {
        kind: ModelKind::Unet2d,
        in_channels: 1,
        classes,
        levels,
        base_filters: 4,
        kernel,
        batch_norm: true,
        upsampling: Upsampling::Transposed,
    }
}

/// A CT-like volume: air, an elliptic body of soft tissue with a fat layer and a bright
/// "bone", plus deterministic noise (xorshift), so the network sees structure and edges.
fn ct(nx: usize, ny: usize, nz: usize) -> Image {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let noise = (s % 61) as i16 - 30;
                let dx = (x as f64 - nx as f64 / 2.0) / (nx as f64 * 0.42);
                let dy = (y as f64 - ny as f64 / 2.0) / (ny as f64 * 0.38);
                let r = dx * dx + dy * dy;
                let bone = ((x as f64 - nx as f64 * 0.5).powi(2)
                    + (y as f64 - ny as f64 * (0.65 + 0.01 * z as f64)).powi(2))
                    < (nx.min(ny) as f64 * 0.08).powi(2);
                let hu = if r > 1.0 {
                    -1000
                } else if bone {
                    700
                } else if r > 0.8 {
                    -100
                } else {
                    45
                };
                v.push(hu + noise);
            }
        }
    }
    let g = Geometry::new([nx, ny, nz], [0.8, 0.8, 3.0]);
    Image::I16(Volume::from_vec(g, v).unwrap())
}

fn load(dir: &Path) -> SavedModel {
    SavedModel::load(dir, &Device::flex()).unwrap()
}

fn random(dir: &Path, cfg: &UNetConfig, seed: u64) -> SavedModel {
    write_random_model(dir, cfg, seed).unwrap();
    load(dir)
}

fn opts(batch_size: usize, tile: Option<usize>, overlap: f64) -> InferOptions {
    InferOptions {
        batch_size,
        tile,
        overlap,
    }
}

#[test]
fn labels_are_identical_across_runs_and_batch_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random(&tmp.path().join("m.vxmodel"), &small(3, 3, 3), 7);
    let image = ct(60, 44, 5);
    let dev = Device::flex();
    let reference = predict(&model, &dev, &image, &opts(1, None, 0.25)).unwrap();
    // A random network still responds to the image's structure.
    let mut distinct: Vec<u32> = reference
        .max_probability
        .as_slice()
        .iter()
        .map(|p| p.to_bits())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() > 100,
        "{} distinct probabilities",
        distinct.len()
    );
    assert_eq!(reference.labels.geometry(), image.geometry());
    for (bs, tile) in [
        (1, None),
        (2, None),
        (5, None),
        (8, None),
        (3, Some(32)),
        (7, Some(32)),
    ] {
        let a = predict(&model, &dev, &image, &opts(bs, tile, 0.5)).unwrap();
        let b = predict(&model, &dev, &image, &opts(bs, tile, 0.5)).unwrap();
        assert_eq!(
            a.labels, b.labels,
            "two runs differ, batch {bs} tile {tile:?}"
        );
        assert_eq!(a.max_probability, b.max_probability);
        if tile.is_none() {
            assert_eq!(
                a.labels, reference.labels,
                "batch {bs} differs from batch 1"
            );
            assert_eq!(a.max_probability, reference.max_probability);
        } else {
            let r = predict(&model, &dev, &image, &opts(1, tile, 0.5)).unwrap();
            assert_eq!(a.labels, r.labels, "tiled batch {bs} differs from batch 1");
            assert_eq!(a.max_probability, r.max_probability);
        }
    }
}

#[test]
fn saved_then_loaded_model_gives_bit_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small(3, 3, 3);
    let dev = Device::flex();
    let net = voxflow_unet::UNet::seeded(&cfg, &dev, 11);
    let mut model = SavedModel::new(
        cfg.clone(),
        Default::default(),
        voxflow_unet::artifact::default_class_names(3),
        voxflow_unet::artifact::Provenance {
            voxflow_version: "test".into(),
            training_run_id: Some("run-42".into()),
            created_utc: voxflow_engine::clock::utc_now(),
            note: String::new(),
        },
        net,
    )
    .unwrap();
    let image = ct(48, 48, 3);
    let before = predict(&model, &dev, &image, &opts(4, None, 0.25)).unwrap();
    let dir = tmp.path().join("saved.vxmodel");
    model.save(&dir).unwrap();
    let loaded = load(&dir);
    assert_eq!(loaded.meta, model.meta);
    assert_eq!(
        loaded.meta.provenance.training_run_id.as_deref(),
        Some("run-42")
    );
    let after = predict(&loaded, &dev, &image, &opts(4, None, 0.25)).unwrap();
    assert_eq!(before.labels, after.labels);
    assert_eq!(before.max_probability, after.max_probability);
    // write_random_model is reproducible: same seed, same weights (example snapshots
    // depend on it), another seed, other weights.
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    write_random_model(&a, &cfg, 3).unwrap();
    write_random_model(&b, &cfg, 3).unwrap();
    write_random_model(&c, &cfg, 4).unwrap();
    // (The files differ in burn's random parameter ids, so compare what the nets do.)
    let out = |d: &Path| predict(&load(d), &dev, &image, &opts(4, None, 0.25)).unwrap();
    let (pa, pb, pc) = (out(&a), out(&b), out(&c));
    assert!(
        pa.max_probability == pb.max_probability,
        "same seed, other weights"
    );
    assert!(
        pa.max_probability != pc.max_probability,
        "other seed, same weights"
    );
}

/// With 1x1 kernels every output pixel depends only on its aligned 4x4 pooling block, so
/// tiles on the pooling grid must reproduce the whole slice up to the blending's float
/// rounding: this checks the tile bookkeeping (origins, padding, cropping, weights).
#[test]
fn tiling_is_exact_when_the_receptive_field_is_one_pooling_block() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random(&tmp.path().join("p.vxmodel"), &small(1, 3, 3), 5);
    let image = ct(100, 90, 2);
    let dev = Device::flex();
    let whole = predict(&model, &dev, &image, &opts(8, None, 0.25)).unwrap();
    for (tile, overlap) in [(32, 0.5), (48, 0.25), (16, 0.0)] {
        let tiled = predict(&model, &dev, &image, &opts(8, Some(tile), overlap)).unwrap();
        assert!(tiled.stats.inputs > whole.stats.inputs);
        let diff = max_diff(&whole.max_probability, &tiled.max_probability);
        assert!(diff < 1e-5, "tile {tile}: max |dp| {diff}");
        assert_eq!(whole.labels, tiled.labels, "tile {tile}");
    }
}

fn max_diff(a: &Volume<f32>, b: &Volume<f32>) -> f32 {
    a.as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A 512x512 slice in 128 px tiles with 50 % overlap against the whole slice, 3x3
/// kernels, 3 levels (receptive radius 23 px): pixels near a tile's cut see less context
/// in that tile, but the Gaussian gives that tile little weight there (the neighbour's
/// centre covers it), so the blended probabilities agree closely everywhere and the
/// labels agree except at near-ties.
#[test]
fn tiled_512_slice_matches_the_whole_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small(3, 3, 3);
    assert_eq!(cfg.receptive_radius(), 23);
    let model = random(&tmp.path().join("t.vxmodel"), &cfg, 9);
    let image = ct(512, 512, 1);
    let dev = Device::flex();
    let whole = predict(&model, &dev, &image, &opts(8, None, 0.25)).unwrap();
    let tiled = predict(&model, &dev, &image, &opts(8, Some(128), 0.5)).unwrap();
    assert_eq!(tiled.stats.inputs, 49);
    let (a, b) = (
        whole.max_probability.as_slice(),
        tiled.max_probability.as_slice(),
    );
    let max = max_diff(&whole.max_probability, &tiled.max_probability);
    let mean = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    eprintln!("512x512, tile 128, overlap 0.5: max |dp| {max:e}, mean |dp| {mean:e}");
    assert!(max < 2e-3, "max |dp| {max}");
    assert!(mean < 1e-4, "mean |dp| {mean}");
    let differing = whole
        .labels
        .as_slice()
        .iter()
        .zip(tiled.labels.as_slice())
        .filter(|(x, y)| x != y)
        .count();
    let counts = voxflow_engine::volume::value_counts(whole.labels.as_slice());
    eprintln!("labels {counts:?}, {differing} differ");
    assert!(
        counts.len() >= 2,
        "a degenerate labelling tests nothing: {counts:?}"
    );
    // A label may only flip where two classes are within the probability error.
    assert!(
        differing * 1000 < a.len(),
        "{differing} of {} labels differ",
        a.len()
    );
}

#[test]
fn a_model_with_two_input_channels_is_refused_for_a_ct() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = small(3, 2, 3);
    cfg.in_channels = 2;
    let model = random(&tmp.path().join("c2.vxmodel"), &cfg, 1);
    let e = predict(
        &model,
        &Device::flex(),
        &ct(32, 32, 1),
        &InferOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, InferError::InputChannels(2)), "{e:?}");
    assert!(
        e.to_string()
            .contains("expects 2 input channels, but a CT image has 1"),
        "{e}"
    );
}

#[test]
fn loading_reports_missing_and_mismatched_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m.vxmodel");
    let cfg = small(3, 2, 3);
    write_random_model(&dir, &cfg, 1).unwrap();
    let dev = Device::flex();
    let err = |d: &Path| SavedModel::load(d, &dev).unwrap_err().to_string();

    let e = err(&tmp.path().join("nope.vxmodel"));
    assert!(e.contains("model folder not found"), "{e}");

    // Wrong architecture for the weights: model.json claims 8 base filters.
    let json_path = dir.join("model.json");
    let json = std::fs::read_to_string(&json_path).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    meta["architecture"]["base_filters"] = 8.into();
    std::fs::write(&json_path, meta.to_string()).unwrap();
    let e = err(&dir);
    assert!(e.contains("weights do not fit the architecture"), "{e}");

    // An impossible architecture is refused before the weights are read.
    meta["architecture"]["kernel"] = 2.into();
    std::fs::write(&json_path, meta.to_string()).unwrap();
    let e = err(&dir);
    assert!(e.contains("kernel must be odd"), "{e}");

    // Unknown keys are errors, with their place.
    std::fs::write(&json_path, &json).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&json).unwrap();
    meta["normalization"]["gamma"] = 1.into();
    std::fs::write(&json_path, meta.to_string()).unwrap();
    let e = err(&dir);
    assert!(e.contains("unknown field `gamma`"), "{e}");

    // A replaced weights file.
    std::fs::write(&json_path, &json).unwrap();
    let other = tmp.path().join("o.vxmodel");
    write_random_model(&other, &cfg, 2).unwrap();
    std::fs::copy(other.join("weights.bpk"), dir.join("weights.bpk")).unwrap();
    let e = err(&dir);
    assert!(e.contains("weights file does not match model.json"), "{e}");

    // A missing weights file.
    std::fs::remove_file(dir.join("weights.bpk")).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("weights.bpk") && e.contains("weights file missing"),
        "{e}"
    );
}

fn run_node(params: serde_json::Value, image: Image) -> Result<NodeContext, NodeError> {
    let tmp = tempfile::tempdir().unwrap();
    let node = voxflow_unet::node::UNetInfer
        .build(&params, "burn-flex")
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("UNetInfer", tmp.path())
        .with_input("image", Value::Image(Arc::new(image)));
    node.run(&mut ctx)?;
    Ok(ctx)
}

#[test]
fn node_checks_the_class_count_and_keeps_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let two = tmp.path().join("two.vxmodel");
    write_random_model(&two, &small(3, 2, 2), 1).unwrap();
    let params = serde_json::json!({ "model": two, "classes": 3 });
    let e = run_node(params, ct(32, 32, 2)).err().unwrap().to_string();
    assert!(
        e.contains("the model has 2 classes") && e.contains("this graph expects 3"),
        "{e}"
    );

    // Odd sizes: padded inside, exact grid outside (geometry included).
    let image = ct(37, 29, 3);
    let mut ctx = run_node(
        serde_json::json!({ "model": two, "classes": 2, "tile": 16 }),
        image.clone(),
    )
    .unwrap();
    let out = ctx.take_outputs();
    match (&out["labels"], &out["probabilities"]) {
        (Value::Labels(l), Value::Image(p)) => {
            let Image::F32(p) = &**p else {
                panic!("f32 expected")
            };
            assert_eq!(l.geometry(), image.geometry());
            assert_eq!(p.geometry(), image.geometry());
            assert!(l.as_slice().iter().all(|v| *v < 2));
            assert!(p.as_slice().iter().all(|v| (0.5..=1.0).contains(v)));
        }
        other => panic!("unexpected outputs {other:?}"),
    }
}

#[test]
fn node_params_are_checked_when_building() {
    let build = |p: serde_json::Value| {
        voxflow_unet::node::UNetInfer
            .build(&p, "burn-flex")
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_default()
    };
    assert!(build(serde_json::json!({})).contains("is required"));
    let e = build(serde_json::json!({ "model": "m.vxmodel", "device": "gpu" }));
    assert!(e.contains("needs the burn-wgpu implementation"), "{e}");
    let e = build(serde_json::json!({ "model": "m.vxmodel", "overlap": 1.0 }));
    assert!(e.contains("[0, 1)"), "{e}");
    let e = build(serde_json::json!({ "model": "m.vxmodel", "device": "tpu" }));
    assert!(e.contains("unknown variant"), "{e}");
    // A tile that does not fit the poolings is found when the model is known (run time).
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m.vxmodel");
    write_random_model(&m, &small(3, 3, 3), 1).unwrap();
    let e = run_node(serde_json::json!({ "model": m, "tile": 30 }), ct(40, 40, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("multiple of 2^(levels-1) = 4"), "{e}");
}
