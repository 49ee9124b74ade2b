//! graphs/sarcopenia_l3.ron over a case file as a user runs it: the `height_m` case column
//! reaches MuscleAreaAtLevel's param through the graph param of the same name, so each
//! case gets its own SMI; a height given in centimetres fails that case with a clear
//! reason and leaves the others.

use std::path::Path;

mod common;
use common::{read_json, repo, run_cases, text, voxflow};

/// A phantom's CT, true muscle labels and vertebra map as NIfTI files in `dir`.
fn phantom_case(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let g = format!(
        r#"Graph(name: "case", nodes: {{
            "p": (node: "Phantom", params: (seed: {seed}, dims: (64, 64, 24))),
            "v": (node: "PhantomVertebrae", params: (seed: {seed}, dims: (64, 64, 24))),
            "ct": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
            "m": (node: "SaveNifti", inputs: (volume: "p.truth"), params: (path: "muscle.nii.gz")),
            "s": (node: "SaveNifti", inputs: (volume: "v"), params: (path: "vertebrae.nii.gz")),
        }})"#
    );
    std::fs::write(dir.join("case.ron"), g).unwrap();
    let o = voxflow(&["run", "case.ron", "--out", "."], dir);
    assert!(o.status.success(), "{}", text(&o));
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn height_case_column_gives_each_case_its_smi() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut tsv = String::from("case\tct\tmuscle\tvertebrae\theight_m\n");
    for (i, h) in [(1, "1.72"), (2, "0"), (3, "181")] {
        phantom_case(&d.join(format!("data/c{i}")), i);
        tsv.push_str(&format!(
            "c{i}\tdata/c{i}/ct.nii.gz\tdata/c{i}/muscle.nii.gz\tdata/c{i}/vertebrae.nii.gz\t{h}\n"
        ));
    }
    std::fs::write(d.join("cases.tsv"), tsv).unwrap();
    let graph = repo().join("graphs/sarcopenia_l3.ron");
    let o = run_cases(d, graph.to_str().unwrap(), "out", &[]);
    let t = text(&o);
    // c3's height is in centimetres: that case fails, naming the param and the fix.
    assert_eq!(o.status.code(), Some(1), "{t}");
    let json = read_json(&d.join("out/summary.json"));
    let failed = json["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{json}");
    let why = failed[0]["error"].as_str().unwrap();
    assert_eq!(failed[0]["case"], "c3");
    assert!(
        why.contains("height_m") && why.contains("181 cm is 1.81 m"),
        "{why}"
    );

    // Each case's own table, and the per-table summary with one row per good case.
    let rows = csv_rows(&d.join("out/summary/l3.table.csv"));
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, h) in rows[1..].iter().zip([Some(1.72), None]) {
        let own = csv_rows(&d.join(format!("out/{}/l3.csv", row[0])));
        assert_eq!(own[1][..], row[1..], "{} case table vs summary", row[0]);
        assert_eq!(row[col("level")], "L3");
        let sma: f64 = row[col("sma_cm2")].parse().unwrap();
        assert!(sma > 10.0, "{row:?}");
        match h {
            Some(h) => {
                assert_eq!(row[col("height_m")], "1.72");
                let smi: f64 = row[col("smi_cm2_m2")].parse().unwrap();
                assert!((smi - sma / (h * h)).abs() < 1e-6 * smi, "{row:?}");
            }
            None => {
                assert_eq!(row[col("height_m")], "", "{row:?}");
                assert_eq!(row[col("smi_cm2_m2")], "", "{row:?}");
            }
        }
    }
}
