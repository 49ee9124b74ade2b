//! Tests of `LabelStats` (against the scipy/numpy reference values of the real CT and a
//! brute-force computation) and `WriteTable`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use voxflow_engine::{Cell, Geometry, Image, Mask, NodeContext, NodeType, Table, Value, Volume};

use super::label_stats::{label_stats, LabelStats};
use super::write_table::WriteTable;
use crate::io::nifti_load::{load_image, load_labels, load_mask};
use crate::testdata::{ct_sm_reference, shared_data};

/// Run LabelStats on values, returning (table, slices).
fn run_stats(labels: Value, image: Option<Value>) -> Result<(Table, Table), String> {
    let node = LabelStats.build(&serde_json::json!({}), "native").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = NodeContext::standalone("LabelStats", dir.path()).with_input("labels", labels);
    if let Some(img) = image {
        ctx = ctx.with_input("image", img);
    }
    node.run(&mut ctx).map_err(|e| e.to_string())?;
    let out = ctx.take_outputs();
    let t = |p: &str| match &out[p] {
        Value::Table(t) => (**t).clone(),
        _ => panic!("{p} is a table"),
    };
    Ok((t("table"), t("slices")))
}

fn col(t: &Table, name: &str) -> Vec<Cell> {
    let c = t.column(name).unwrap_or_else(|| panic!("column {name}"));
    t.rows.iter().map(|r| r[c].clone()).collect()
}

fn f(c: &Cell) -> f64 {
    c.as_f64().expect("numeric cell")
}

fn assert_rel(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1e-12),
        "{what}: {got} vs {want}"
    );
}

#[test]
fn real_tissue_masks_match_reference_values() {
    let Some((data, refs)) = ct_sm_reference("LabelStats reference values") else {
        return;
    };
    let ct = Value::Image(Arc::new(load_image(&data.join("ct_sm.nii.gz")).unwrap()));
    for tissue in ["skeletal_muscle", "subcutaneous_fat", "torso_fat"] {
        let r = &refs[tissue];
        let mask = load_mask(&data.join(format!("ct_sm_tissue_{tissue}.nii.gz"))).unwrap();
        let (table, slices) = run_stats(Value::Mask(Arc::new(mask)), Some(ct.clone())).unwrap();
        assert_eq!(table.rows.len(), 1, "{tissue}: one label");
        assert_eq!(col(&table, "label")[0], Cell::Int(1));
        assert_eq!(
            col(&table, "voxels")[0],
            Cell::Int(r["n_voxels"].as_i64().unwrap()),
            "{tissue}"
        );
        assert_rel(
            f(&col(&table, "volume_ml")[0]),
            r["volume_ml"].as_f64().unwrap(),
            tissue,
        );
        assert_rel(
            f(&col(&table, "mean_hu")[0]),
            r["mean_HU"].as_f64().unwrap(),
            tissue,
        );
        assert_rel(
            f(&col(&table, "sd_hu")[0]),
            r["std_HU"].as_f64().unwrap(),
            tissue,
        );
        let want: Vec<f64> = serde_json::from_value(r["per_slice_area_cm2"].clone()).unwrap();
        let got: Vec<f64> = col(&slices, "area_cm2").iter().map(f).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{tissue}: a row per slice (all slices hold tissue)"
        );
        assert_eq!(
            col(&slices, "slice"),
            (0..want.len() as i64).map(Cell::Int).collect::<Vec<_>>()
        );
        for (z, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_rel(*g, *w, &format!("{tissue} slice {z}"));
        }
    }
}

#[test]
fn real_total_map_counts_every_label() {
    let Some(data) = shared_data("LabelStats on the 117-class map") else {
        return;
    };
    let labels = load_labels(&data.join("ct_sm_total.nii.gz")).unwrap();
    let counts = voxflow_engine::volume::value_counts(labels.as_slice());
    let (table, slices) = run_stats(Value::Labels(Arc::new(labels)), None).unwrap();
    let got: Vec<(i64, i64)> = table
        .rows
        .iter()
        .map(|r| (f(&r[0]) as i64, f(&r[1]) as i64))
        .collect();
    let want: Vec<(i64, i64)> = counts
        .iter()
        .filter(|c| c.0 != 0)
        .map(|&(l, n)| (l as i64, n as i64))
        .collect();
    assert_eq!(got, want);
    assert!(
        col(&table, "mean_hu").iter().all(|c| *c == Cell::Null),
        "no image, no HU"
    );
    // The per-slice areas of each label add up to its volume / slice thickness.
    for row in &table.rows {
        let area: f64 = slices
            .rows
            .iter()
            .filter(|s| s[0] == row[0])
            .map(|s| f(&s[2]))
            .sum();
        assert_rel(area * 0.3, f(&row[2]), "areas x 3 mm = volume");
    }
}

#[test]
fn matches_brute_force_on_random_data() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let g = Geometry::new([13, 7, 5], [0.8, 0.9, 2.5]);
    let labels: Vec<u16> = (0..g.len())
        .map(|_| [0, 0, 1, 3, 3, 300][rng.random_range(0..6)])
        .collect();
    let hu: Vec<f32> = (0..g.len())
        .map(|_| rng.random_range(-1000.0..1500.0f32))
        .collect();
    // Brute force: collect each label's values, then numpy-style mean and population SD.
    let mut by_label: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    let mut by_slice: BTreeMap<(u16, usize), usize> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        if l != 0 {
            by_label.entry(l).or_default().push(hu[i] as f64);
            *by_slice.entry((l, i / (13 * 7))).or_default() += 1;
        }
    }
    let image = Image::F32(Volume::from_vec(g.clone(), hu).unwrap());
    let lv = Volume::from_vec(g.clone(), labels).unwrap();
    let (table, slices) = run_stats(
        Value::Labels(Arc::new(lv.clone())),
        Some(Value::Image(Arc::new(image))),
    )
    .unwrap();
    assert_eq!(
        table.columns,
        ["label", "voxels", "volume_ml", "mean_hu", "sd_hu"]
    );
    assert_eq!(table.rows.len(), by_label.len());
    for (row, (l, vals)) in table.rows.iter().zip(&by_label) {
        let n = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / n;
        let sd = (vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        assert_eq!(row[0], Cell::Int(*l as i64));
        assert_eq!(row[1], Cell::Int(vals.len() as i64));
        assert_rel(f(&row[2]), n * 0.8 * 0.9 * 2.5 / 1000.0, "volume");
        assert!(
            (f(&row[3]) - mean).abs() < 1e-9 && (f(&row[4]) - sd).abs() < 1e-9,
            "label {l}"
        );
    }
    assert_eq!(slices.rows.len(), by_slice.len());
    for (row, (&(l, z), &c)) in slices.rows.iter().zip(&by_slice) {
        assert_eq!(row[..2], [Cell::Int(l as i64), Cell::Int(z as i64)]);
        assert_rel(f(&row[2]), c as f64 * 0.8 * 0.9 / 100.0, "area");
    }
    // Without an image: same counts, Null statistics.
    let plain = label_stats(lv.as_slice(), lv.dims(), None);
    assert!(plain.iter().all(|s| s.mean.is_none() && s.sd.is_none()));
    assert_eq!(
        plain.iter().map(|s| s.voxels as usize).collect::<Vec<_>>(),
        by_label.values().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn grids_must_match_and_empty_labels_give_empty_tables() {
    let a = Geometry::new([4, 4, 2], [1.0; 3]);
    let b = Geometry::new([4, 4, 2], [1.0, 1.0, 2.0]);
    let mask = Value::Mask(Arc::new(Mask::from_fn(a.clone(), |_| true)));
    let img = Value::Image(Arc::new(Image::I16(Volume::filled(b, 5))));
    let e = run_stats(mask, Some(img)).unwrap_err();
    assert!(e.contains("grids differ"), "{e}");
    let empty = Value::Labels(Arc::new(Volume::filled(a, 0u16)));
    let (t, s) = run_stats(empty, None).unwrap();
    assert!(t.rows.is_empty() && s.rows.is_empty());
    assert_eq!(s.columns, ["label", "slice", "area_cm2"]);
}

fn write_table(path: &str, dir: &std::path::Path, table: Table) -> Result<(), String> {
    let node = WriteTable
        .build(&serde_json::json!({ "path": path }), "native")
        .map_err(|e| format!("{e:?}"))?;
    let mut ctx = NodeContext::standalone("WriteTable", dir)
        .with_input("table", Value::Table(Arc::new(table)));
    node.run(&mut ctx).map_err(|e| e.to_string())
}

#[test]
fn write_table_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Table::new(["label", "volume_ml", "mean_hu"]);
    t.push(vec![Cell::Int(1), Cell::Float(952.911), Cell::Null]);
    t.push(vec![Cell::Int(2), Cell::Float(0.5), Cell::Float(-3.25)]);
    write_table("out/v.csv", dir.path(), t.clone()).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("out/v.csv")).unwrap();
    assert_eq!(csv, "label,volume_ml,mean_hu\n1,952.911,\n2,0.5,-3.25\n");
    write_table("v.TSV", dir.path(), t.clone()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("v.TSV")).unwrap(),
        "label\tvolume_ml\tmean_hu\n1\t952.911\t\n2\t0.5\t-3.25\n"
    );
    write_table("v.json", dir.path(), t.clone()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("v.json")).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"label": 1, "volume_ml": 952.911, "mean_hu": null},
            {"label": 2, "volume_ml": 0.5, "mean_hu": -3.25}
        ])
    );
    let e = write_table("v.xlsx", dir.path(), t.clone()).unwrap_err();
    assert!(
        e.contains("path") && e.contains("v.xlsx") && e.contains("unknown extension"),
        "{e}"
    );
    // A folder where the file should go: the error names the path.
    std::fs::create_dir(dir.path().join("taken.csv")).unwrap();
    let e = write_table("taken.csv", dir.path(), t).unwrap_err();
    assert!(e.contains("taken.csv") && e.contains("cannot write"), "{e}");
}

#[test]
fn labels_must_be_labels_or_a_mask() {
    let a = Geometry::new([4, 4, 2], [1.0; 3]);
    let img = Value::Image(Arc::new(Image::I16(Volume::filled(a, 5))));
    let e = run_stats(img, None).unwrap_err();
    assert_eq!(e, "input `labels`: expected Labels or Mask, got Image");
}
