//! Every shipped graph in graphs/ runs in the tests; their tables are snapshotted, and the
//! sarcopenia graph agrees voxel for voxel with the Python reference implementation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use voxflow_engine::{Labels, Value};
use voxflow_nodes::testdata;
use voxflow_tests::{repo_root, run_graph, summarize};

fn graph(name: &str) -> PathBuf {
    repo_root().join("graphs").join(name)
}

fn tables_snapshot(report: &voxflow_engine::run::RunReport) -> String {
    report
        .outputs
        .iter()
        .filter(|(_, v)| matches!(v, Value::Table(_)))
        .map(|(k, v)| format!("== {k}\n{}", summarize(v)))
        .collect()
}

/// Write a phantom's CT, truth and prediction as NIfTI files (as a user would have them).
fn phantom_files(
    dir: &Path,
    seed: u64,
    dims: (usize, usize, usize),
) -> (PathBuf, PathBuf, PathBuf) {
    let g = format!(
        r#"Graph(name: "phantom_files", nodes: {{
            "p": (node: "Phantom", params: (seed: {seed}, dims: ({}, {}, {}))),
            "ct": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
            "truth": (node: "SaveNifti", inputs: (volume: "p.truth"), params: (path: "truth.nii.gz")),
            "pred": (node: "SaveNifti", inputs: (volume: "p.prediction"), params: (path: "prediction.nii.gz")),
        }})"#,
        dims.0, dims.1, dims.2
    );
    let f = dir.join("phantom_files.ron");
    std::fs::write(&f, g).unwrap();
    run_graph(&f, &[], dir);
    (
        dir.join("ct.nii.gz"),
        dir.join("truth.nii.gz"),
        dir.join("prediction.nii.gz"),
    )
}

/// Output `port` of a one-node graph `node` reading `path` (as the graphs read files).
fn load_file(node: &str, port: &str, path: &Path) -> Value {
    let g = format!(
        r#"Graph(name: "load", nodes: {{ "l": (node: "{node}", params: (path: "{}")) }})"#,
        path.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("load.ron");
    std::fs::write(&f, g).unwrap();
    let p = voxflow_tests::plan(&f, &[], &[], &["l".into()]);
    let r = voxflow_tests::run_ok(&p, dir.path());
    r.outputs[&format!("l.{port}")].clone()
}

fn load_labels(path: &Path) -> Arc<Labels> {
    match load_file("LoadLabels", "labels", path) {
        Value::Labels(l) => l,
        v => panic!("{v:?}"),
    }
}

#[test]
fn every_shipped_graph_has_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("graphs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".ron"))
        .collect();
    names.sort();
    // Each of these is run by a test below, except serve.ron, which needs a trainer in
    // another process (cli/tests/train.rs); macros are run through them.
    assert_eq!(
        names,
        [
            "compare_segmentations.ron",
            "demo.ron",
            "evaluate_ct_sm.ron",
            "presegment.ron",
            "sarcopenia_l3.ron",
            "sarcopenia_postprocess.ron",
            "serve.ron",
            "train.ron",
            "train_ct_sm.ron"
        ]
    );
}

#[test]
fn demo_runs_and_post_processing_improves_dice() {
    let out = tempfile::tempdir().unwrap();
    let report = run_graph(&graph("demo.ron"), &[], out.path());
    insta::assert_snapshot!("graph_demo_tables", tables_snapshot(&report));
    let Value::Table(m) = &report.outputs["metrics.table"] else {
        panic!()
    };
    let dice = m.column("dice").unwrap();
    for label in [1, 2] {
        let d: Vec<f64> = m
            .rows
            .iter()
            .filter(|r| r[1].as_f64() == Some(label as f64))
            .map(|r| r[dice].as_f64().unwrap())
            .collect();
        assert!(
            d[1] > d[0] + 0.05,
            "label {label}: Dice {:.3} after cleaning vs {:.3} before",
            d[1],
            d[0]
        );
    }
    for f in [
        "demo/cleaned.nii.gz",
        "demo/ct.nii.gz",
        "demo/metrics.csv",
        "demo/metrics.json",
        "demo/overlay_prediction.png",
        "demo/overlay_cleaned.png",
        "demo/label_stats.csv",
    ] {
        assert!(out.path().join(f).exists(), "{f} missing");
    }
}

#[test]
fn sarcopenia_graph_on_phantom_files_matches_the_demo_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (ct, _, pred) = phantom_files(dir.path(), 7, (192, 160, 24));
    let set = vec![
        format!("ct={}", ct.display()),
        format!("prediction={}", pred.display()),
    ];
    let report = run_graph(&graph("sarcopenia_postprocess.ron"), &set, dir.path());
    insta::assert_snapshot!("graph_sarcopenia_phantom_tables", tables_snapshot(&report));
    let ours = load_labels(&dir.path().join("sarcopenia_labels.nii.gz"));
    // The demo runs the same macro on the same phantom in memory.
    let demo_out = tempfile::tempdir().unwrap();
    run_graph(&graph("demo.ron"), &[], demo_out.path());
    let demo = load_labels(&demo_out.path().join("demo/cleaned.nii.gz"));
    assert_eq!(ours.as_slice(), demo.as_slice());
    if let Some(py) = python("sarcopenia graph vs sarcopenia_ref.py on the phantom") {
        let seed = run_seed_chain(&set, dir.path());
        let reference = run_reference(&py, &ct, &pred, dir.path());
        assert_identical(&seed, &reference);
    }
}

/// `--set`s turning the graph's kernels in mm back into the seed's voxel boxes (closing
/// 3x3x1, dilation 5x5x3 and 3x3x3), which is what sarcopenia_ref.py computes.
const SEED_VOXEL_KERNELS: &[&str] = &[
    "abdominal/close.radius_mm=None",
    "abdominal/dilate.radius_mm=None",
    "paravertebral/close.radius_mm=None",
    "paravertebral/dilate.radius_mm=None",
];

/// sarcopenia_postprocess.ron with the seed's voxel kernels, written to `dir/seed/`.
fn run_seed_chain(set: &[String], dir: &Path) -> Arc<Labels> {
    let mut set = set.to_vec();
    set.extend(SEED_VOXEL_KERNELS.iter().map(|s| s.to_string()));
    set.push("out=seed/sarcopenia_labels.nii.gz".into());
    set.push("volumes_before=seed/volumes_before.csv".into());
    set.push("volumes_after=seed/volumes_after.csv".into());
    run_graph(&graph("sarcopenia_postprocess.ron"), &set, dir);
    load_labels(&dir.join("seed/sarcopenia_labels.nii.gz"))
}

/// Dice of labels 1 and 2 together against ct_sm's dense reference (skeletal muscle
/// minus psoas; the paravertebral label is autochthon 86/87) and the labelled volume in
/// ml: (dice, volume).
fn muscle_dice_ct_sm(data: &Path, labels: &Labels) -> (f64, f64) {
    let muscle = load_labels(&data.join("ct_sm_tissue_skeletal_muscle.nii.gz"));
    let total = load_labels(&data.join("ct_sm_total.nii.gz"));
    let reference = |i: usize| {
        let t = total.as_slice()[i];
        (muscle.as_slice()[i] != 0 && !matches!(t, 88 | 89)) || matches!(t, 86 | 87)
    };
    let (mut both, mut a, mut b) = (0usize, 0usize, 0usize);
    for (i, &v) in labels.as_slice().iter().enumerate() {
        let (r, p) = (reference(i), matches!(v, 1 | 2));
        both += usize::from(r && p);
        a += usize::from(r);
        b += usize::from(p);
    }
    let dice = 2.0 * both as f64 / (a + b) as f64;
    (dice, b as f64 * labels.geometry().voxel_volume_ml())
}

#[test]
fn sarcopenia_graph_matches_the_reference_on_real_ct() {
    let Some(data) = testdata::shared_data("sarcopenia graph on ct_sm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ct, pred) = (
        data.join("ct_sm.nii.gz"),
        data.join("ct_sm_prediction.nii.gz"),
    );
    let set = vec![
        format!("ct={}", ct.display()),
        format!("prediction={}", pred.display()),
    ];
    let report = run_graph(&graph("sarcopenia_postprocess.ron"), &set, dir.path());
    insta::assert_snapshot!("graph_sarcopenia_ct_sm_tables", tables_snapshot(&report));
    let ours = load_labels(&dir.path().join("sarcopenia_labels.nii.gz"));
    // The kernels in mm must not make the 3 mm prediction worse (the seed's voxel boxes
    // did: 15 mm wide dilations followed by the HU window grow into the liver).
    let (dice_raw, ml_raw) = muscle_dice_ct_sm(&data, &load_labels(&pred));
    let (dice_ours, ml_ours) = muscle_dice_ct_sm(&data, &ours);
    let seed = run_seed_chain(&set, dir.path());
    let (dice_seed, ml_seed) = muscle_dice_ct_sm(&data, &seed);
    eprintln!(
        "ct_sm Dice (ml): prediction {dice_raw:.4} ({ml_raw:.0}), graph {dice_ours:.4} \
         ({ml_ours:.0}), seed's voxel kernels {dice_seed:.4} ({ml_seed:.0})"
    );
    assert!(dice_ours > dice_raw, "{dice_ours} vs prediction {dice_raw}");
    assert!(
        dice_seed < dice_raw,
        "the seed's voxel chain was worse on ct_sm"
    );
    match python("sarcopenia graph vs sarcopenia_ref.py on ct_sm") {
        Some(py) => assert_identical(&seed, &run_reference(&py, &ct, &pred, dir.path())),
        None => {
            // Counts the reference script produced on these files (python sarcopenia_ref.py
            // ct_sm.nii.gz ct_sm_prediction.nii.gz out.nii.gz, numpy 2.4 / scipy 1.17).
            let counts = voxflow_engine::volume::value_counts(seed.as_slice());
            assert_eq!(counts, REFERENCE_CT_SM_COUNTS);
        }
    }
}

/// Label counts of sarcopenia_ref.py's output on ct_sm (see the test above).
const REFERENCE_CT_SM_COUNTS: &[(u16, usize)] = &[(0, 308_098), (1, 49_526), (2, 12_036)];

/// A Python with numpy, scipy and nibabel, when `VOXFLOW_PYTHON` names one and the
/// reference script is beside the repository (`../shared/peers`).
fn python(test: &str) -> Option<PathBuf> {
    if !reference_script().exists() {
        testdata::skip(test, &format!("{} not found", reference_script().display()));
        return None;
    }
    testdata::python(test, &["numpy", "scipy", "nibabel"])
}

fn reference_script() -> PathBuf {
    repo_root().join("../shared/peers/sarcopenia_ref.py")
}

fn run_reference(py: &Path, ct: &Path, pred: &Path, dir: &Path) -> Arc<Labels> {
    let script = reference_script();
    let out = dir.join("reference.nii.gz");
    let o = std::process::Command::new(py)
        .arg(&script)
        .arg(ct)
        .arg(pred)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    load_labels(&out)
}

fn assert_identical(ours: &Labels, reference: &Labels) {
    assert_eq!(ours.dims(), reference.dims());
    let differing = ours
        .as_slice()
        .iter()
        .zip(reference.as_slice())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "voxels differing from sarcopenia_ref.py");
}

#[test]
fn compare_segmentations_on_phantom_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ct, truth, pred) = phantom_files(dir.path(), 7, (96, 80, 12));
    let set = vec![
        format!("ct={}", ct.display()),
        format!("a={}", truth.display()),
        format!("b={}", pred.display()),
    ];
    let report = run_graph(&graph("compare_segmentations.ron"), &set, dir.path());
    insta::assert_snapshot!("graph_compare_phantom_tables", tables_snapshot(&report));
    for f in [
        "metrics.csv",
        "metrics.json",
        "overlay.png",
        "difference.png",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
}

#[test]
fn compare_segmentations_restricted_to_vertebral_levels_on_real_ct() {
    let Some(data) = testdata::shared_data("compare_segmentations on ct_sm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let set = vec![
        format!("ct={}", data.join("ct_sm.nii.gz").display()),
        format!("a={}", data.join("ct_sm_total.nii.gz").display()),
        format!("b={}", data.join("ct_sm_total_fast.nii.gz").display()),
        format!("levels={}", data.join("ct_sm_total.nii.gz").display()),
        "region=label_slices".into(),
        "region_labels=[30, 31]".into(),
        "labels=[5, 86, 87]".into(),
    ];
    let report = run_graph(&graph("compare_segmentations.ron"), &set, dir.path());
    insta::assert_snapshot!("graph_compare_ct_sm_levels", tables_snapshot(&report));
}

/// A small random U-Net (3 classes) for graph tests: shapes and wiring, not accuracy.
fn random_unet(dir: &Path) -> PathBuf {
    let model = dir.join("presegment_test.vxmodel");
    let mut cfg = voxflow_unet::UNetConfig::seed();
    cfg.levels = 3;
    cfg.base_filters = 4;
    voxflow_unet::write_random_model(&model, &cfg, 5).unwrap();
    model
}

fn load_image(path: &Path) -> Arc<voxflow_engine::Image> {
    match load_file("LoadNifti", "image", path) {
        Value::Image(i) => i,
        v => panic!("{v:?}"),
    }
}

/// presegment.ron on a phantom's CT file (seed 3, 96x80x6, 1.5 x 1.5 x 3 mm) with a
/// random U-Net on the CPU and the `extra` `--set`s, outputs in `dir`: (the CT file, the
/// model, the report).
fn presegment_phantom(
    dir: &Path,
    extra: &[&str],
) -> (PathBuf, PathBuf, voxflow_engine::run::RunReport) {
    let (ct, _, _) = phantom_files(dir, 3, (96, 80, 6));
    let model = random_unet(dir);
    let mut set = vec![
        format!("ct={}", ct.display()),
        format!("model={}", model.display()),
        "device=cpu".to_string(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    let report = run_graph(&graph("presegment.ron"), &set, dir);
    (ct, model, report)
}

/// The saved `model`'s labels for `image` on the CPU: what UNetInfer must have saved.
fn predict_labels(model: &Path, image: &voxflow_engine::Image) -> Labels {
    let device = voxflow_unet::burn::tensor::Device::flex();
    let saved = voxflow_unet::SavedModel::load(model, &device).unwrap();
    voxflow_unet::predict(&saved, &device, image, &Default::default())
        .unwrap()
        .labels
}

#[test]
fn presegment_runs_a_unet_on_phantom_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ct, model, report) = presegment_phantom(dir.path(), &[]);
    for f in [
        "presegment_labels.nii.gz",
        "unet_labels.nii.gz",
        "presegment_overlay.png",
        "presegment_stats.csv",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let seg = report.nodes.iter().find(|n| n.id == "seg").unwrap();
    assert_eq!(seg.implementation, "burn-flex");
    assert!(
        seg.notes.iter().any(|n| n.starts_with("device: cpu")),
        "{:?}",
        seg.notes
    );
    assert!(seg
        .input_files
        .iter()
        .any(|f| f.ends_with("presegment_test.vxmodel")));
    // The saved network labels are the model's prediction on the CT, on its grid.
    let expected = predict_labels(&model, &load_image(&ct));
    let net = load_labels(&dir.path().join("unet_labels.nii.gz"));
    assert_eq!(net.as_slice(), expected.as_slice());
    assert_eq!(net.dims(), [96, 80, 6]);
    // The cleaned labels only hold the two muscle labels.
    let cleaned = load_labels(&dir.path().join("presegment_labels.nii.gz"));
    assert!(cleaned.as_slice().iter().all(|v| *v <= 2));
}

/// presegment.ron's opt-in `spacing_mm`: the network and the post-processing run on a
/// 3 mm isotropic grid (the phantom is 1.5 x 1.5 x 3 mm) and the labels come back to the
/// CT's grid, nearest neighbour.
#[test]
fn presegment_on_an_isotropic_grid_returns_labels_on_the_ct_grid() {
    use voxflow_nodes::geometry::kernels::{grid_with_spacing, resample_linear, resample_nearest};
    let dir = tempfile::tempdir().unwrap();
    let (ct, model, report) = presegment_phantom(dir.path(), &["spacing_mm=Some((3.0, 3.0, 3.0))"]);
    let grid = report.nodes.iter().find(|n| n.id == "grid").unwrap();
    assert!(
        grid.notes.iter().any(|n| n == "96x80x6 -> 48x40x6 voxels"),
        "{:?}",
        grid.notes
    );
    // The saved network labels: the model's prediction on the resampled CT, brought back.
    let image = load_image(&ct);
    let iso = grid_with_spacing(image.geometry(), [3.0; 3]).unwrap();
    let on_iso = voxflow_engine::Image::F32(resample_linear(&image, &iso, -1024.0).unwrap());
    let expected = predict_labels(&model, &on_iso);
    let back = resample_nearest(&expected, image.geometry()).unwrap();
    let net = load_labels(&dir.path().join("unet_labels.nii.gz"));
    assert_eq!(net.dims(), [96, 80, 6]);
    assert_eq!(net.as_slice(), back.as_slice());
    let cleaned = load_labels(&dir.path().join("presegment_labels.nii.gz"));
    assert_eq!(cleaned.dims(), [96, 80, 6]);
    assert!(cleaned.as_slice().iter().all(|v| *v <= 2));
}

#[test]
fn train_learns_from_sparse_phantom_annotations_over_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let set = vec!["iterations=150".to_string(), "device=cpu".to_string()];
    let report = run_graph(&graph("train.ron"), &set, dir.path());
    let train = report.nodes.iter().find(|n| n.id == "train").unwrap();
    eprintln!("train.ron: {:?} in {:?}", train.notes, t.elapsed());
    let server = report.nodes.iter().find(|n| n.id == "server").unwrap();
    assert!(
        server
            .notes
            .iter()
            .any(|n| n.contains("listening on 127.0.0.1:")),
        "{:?}",
        server.notes
    );
    let run = dir.path().join("training");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = lines
        .iter()
        .filter_map(|v| v.get("loss")?.as_f64())
        .collect();
    assert_eq!(losses.len(), 150);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let (first, last) = (mean(&losses[..20]), mean(&losses[130..]));
    assert!(last < 0.6 * first, "loss {first:.3} -> {last:.3}");
    let dice: Vec<f64> = lines
        .iter()
        .filter_map(|v| v.get("mean_dice")?.as_f64())
        .collect();
    assert_eq!(dice.len(), 4, "validations at 0 (untrained), 50, 100, 150");
    eprintln!("validation mean Dice {dice:?}");
    assert!(dice[3] > dice[0] + 0.3 && dice[3] > 0.6, "{dice:?}");
    let Value::Table(summary) = &report.outputs["train.summary"] else {
        panic!()
    };
    assert_eq!(summary.rows.len(), 2);
    for f in [
        "best.vxmodel/model.json",
        "checkpoint/state.json",
        "loss.png",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    assert!(dir.path().join("training_summary.csv").exists());
    // The best model is a normal saved model: UNetInfer can load it.
    voxflow_unet::SavedModel::load(
        &run.join("best.vxmodel"),
        &voxflow_unet::burn::tensor::Device::flex(),
    )
    .unwrap();
}

/// Real data: a short run of train_ct_sm.ron (the full run is a benchmark, see
/// docs/training.md), then evaluate_ct_sm.ron with its best model on the test slices.
#[test]
fn train_and_evaluate_on_real_ct_from_sparse_annotations() {
    let Some(data) = testdata::shared_data("train_ct_sm.ron") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let set = vec![
        format!("data={}", data.display()),
        "iterations=20".to_string(),
        "device=cpu".to_string(),
    ];
    let report = run_graph(&graph("train_ct_sm.ron"), &set, dir.path());
    let Value::Table(summary) = &report.outputs["train.summary"] else {
        panic!()
    };
    let classes: Vec<String> = summary.rows.iter().map(|r| r[0].to_csv()).collect();
    assert_eq!(classes, ["abdominal_wall_muscles", "paravertebral_muscles"]);
    let model = dir.path().join("training/best.vxmodel");
    let set = vec![
        format!("data={}", data.display()),
        format!("model={}", model.display()),
        "device=cpu".to_string(),
    ];
    let report = run_graph(&graph("evaluate_ct_sm.ron"), &set, dir.path());
    // The reference's voxel counts on the test slices (15-19 by default), computed
    // independently here.
    let total = load_labels(&data.join("ct_sm_total.nii.gz"));
    let g = total.geometry().clone();
    let para = (15..20)
        .flat_map(|z| (0..g.dims[1]).flat_map(move |y| (0..g.dims[0]).map(move |x| (x, y, z))))
        .filter(|&(x, y, z)| matches!(total.as_slice()[g.index(x, y, z)], 86 | 87))
        .count();
    let voxels = |table: &str, column: &str| -> Vec<u64> {
        let Value::Table(t) = &report.outputs[table] else {
            panic!("{table} is not a table")
        };
        assert_eq!(t.rows.len(), 2, "{table}: one row per class");
        let col = t.columns.iter().position(|c| c == column).unwrap();
        t.rows
            .iter()
            .map(|r| r[col].to_csv().parse().unwrap())
            .collect()
    };
    for table in ["compare.table", "compare_window.table"] {
        assert_eq!(voxels(table, "voxels_a")[1], para as u64, "{table}");
    }
    // The HU window only removes voxels from the network's labels.
    let (net, windowed) = (
        voxels("compare.table", "voxels_b"),
        voxels("compare_window.table", "voxels_b"),
    );
    assert!(
        net.iter().zip(&windowed).all(|(n, w)| w <= n),
        "{net:?} {windowed:?}"
    );
    for f in ["test_slices_dice.csv", "test_slices_dice_hu_window.csv"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
}

/// Independent SMA: voxels of `muscle` (non-zero) within -29..150 HU on axial slice `z`
/// times the pixel area (cm²).
fn windowed_area_cm2(
    ct: &[f64],
    muscle: &[u16],
    dims: [usize; 3],
    spacing: [f64; 3],
    z: usize,
) -> f64 {
    let plane = dims[0] * dims[1];
    let r = z * plane..(z + 1) * plane;
    let n = ct[r.clone()]
        .iter()
        .zip(&muscle[r])
        .filter(|(&v, &m)| m != 0 && (-29.0..=150.0).contains(&v))
        .count();
    n as f64 * spacing[0] * spacing[1] / 100.0
}

/// The one row of the graph's `l3` table, by column name.
fn l3_row(
    report: &voxflow_engine::run::RunReport,
) -> std::collections::BTreeMap<String, voxflow_engine::Cell> {
    let Value::Table(t) = &report.outputs["l3.table"] else {
        panic!("l3.table")
    };
    assert_eq!(t.rows.len(), 1);
    t.columns
        .iter()
        .cloned()
        .zip(t.rows[0].iter().cloned())
        .collect()
}

#[test]
fn sarcopenia_l3_on_phantom_files() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, dims) = (7, (96, 80, 24));
    let (ct, truth, _) = phantom_files(dir.path(), seed, dims);
    let params = voxflow_nodes::phantom::PhantomParams {
        seed,
        dims,
        ..Default::default()
    };
    let spine = voxflow_nodes::phantom::vertebrae(&params);
    let spine_path = dir.path().join("vertebrae.nii.gz");
    let g = format!(
        r#"Graph(name: "spine", nodes: {{
            "v": (node: "PhantomVertebrae", params: (seed: {seed}, dims: ({}, {}, {}))),
            "s": (node: "SaveNifti", inputs: (volume: "v"), params: (path: "{}")),
        }})"#,
        dims.0,
        dims.1,
        dims.2,
        spine_path.display()
    );
    std::fs::write(dir.path().join("spine.ron"), g).unwrap();
    run_graph(&dir.path().join("spine.ron"), &[], dir.path());
    let set = vec![
        format!("ct={}", ct.display()),
        format!("muscle={}", truth.display()),
        format!("vertebrae={}", spine_path.display()),
        "height_m=1.68".to_string(),
    ];
    let report = run_graph(&graph("sarcopenia_l3.ron"), &set, dir.path());
    let row = l3_row(&report);
    assert!(dir.path().join("l3.csv").exists());

    // Expected, independently: the L3 slice is the rounded mean z of label 29's voxels, the
    // area the truth's voxels in the muscle HU window there.
    let v = voxflow_nodes::phantom::generate(&params);
    let g = v.ct.geometry().clone();
    let plane = g.dims[0] * g.dims[1];
    let (n, sum) = spine
        .as_slice()
        .iter()
        .enumerate()
        .filter(|(_, &l)| l == 29)
        .fold((0usize, 0usize), |(n, s), (i, _)| (n + 1, s + i / plane));
    let z = (sum as f64 / n as f64 + 0.5).floor() as usize;
    let ct: Vec<f64> = v.ct.as_slice().iter().map(|&h| f64::from(h)).collect();
    let sma = windowed_area_cm2(&ct, v.truth.as_slice(), g.dims, g.spacing, z);
    eprintln!(
        "phantom seed {seed} {dims:?}: L3 slice {z}, SMA {sma:.2} cm2, SMI {:.2} cm2/m2 at 1.68 m",
        sma / (1.68 * 1.68)
    );
    assert_eq!(row["level"], voxflow_engine::Cell::Text("L3".into()));
    assert_eq!(row["slice"].as_f64(), Some(z as f64));
    let got = row["sma_cm2"].as_f64().unwrap();
    assert!((got - sma).abs() < 1e-9 && sma > 10.0, "{got} vs {sma}");
    let smi = row["smi_cm2_m2"].as_f64().unwrap();
    assert!((smi - sma / (1.68 * 1.68)).abs() < 1e-9);
}

/// ct_sm holds L1 and L2 only (no L3): the graph at those levels against the areas counted
/// here from the CT and TotalSegmentator's skeletal muscle mask.
#[test]
fn sarcopenia_l3_graph_at_l1_l2_on_real_ct() {
    let Some(data) = testdata::shared_data("sarcopenia_l3 graph on ct_sm L1/L2") else {
        return;
    };
    let ct_path = data.join("ct_sm.nii.gz");
    let muscle_path = data.join("ct_sm_tissue_skeletal_muscle.nii.gz");
    let total = load_labels(&data.join("ct_sm_total.nii.gz"));
    let muscle = load_labels(&muscle_path);
    let ct = {
        let i = load_image(&ct_path);
        (0..i.geometry().len())
            .map(|k| i.get_f64(k))
            .collect::<Vec<f64>>()
    };
    let g = total.geometry().clone();
    let plane = g.dims[0] * g.dims[1];
    for (label, name) in [(31u16, "L1"), (30, "L2")] {
        let dir = tempfile::tempdir().unwrap();
        let set = vec![
            format!("ct={}", ct_path.display()),
            format!("muscle={}", muscle_path.display()),
            format!("vertebrae={}", data.join("ct_sm_total.nii.gz").display()),
            format!("level={label}"),
            "height_m=1.75".to_string(),
        ];
        let report = run_graph(&graph("sarcopenia_l3.ron"), &set, dir.path());
        let row = l3_row(&report);
        let (n, sum) = total
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, &l)| l == label)
            .fold((0usize, 0usize), |(n, s), (i, _)| (n + 1, s + i / plane));
        let z = (sum as f64 / n as f64 + 0.5).floor() as usize;
        let sma = windowed_area_cm2(&ct, muscle.as_slice(), g.dims, g.spacing, z);
        eprintln!(
            "ct_sm {name}: slice {z}, SMA (-29..150 HU) {sma:.2} cm2, SMI {:.2} cm2/m2 at 1.75 m",
            sma / (1.75 * 1.75)
        );
        assert_eq!(row["level"], voxflow_engine::Cell::Text(name.into()));
        assert_eq!(row["slice"].as_f64(), Some(z as f64), "{name}");
        let got = row["sma_cm2"].as_f64().unwrap();
        assert!((got - sma).abs() < 1e-9, "{name}: {got} vs {sma}");
    }
}
