//! The `voxflow` binary as a user runs it: exit codes, diagnostics, reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn voxflow(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxflow")).args(args).current_dir(cwd).output().expect("run voxflow")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn validate_reports_five_mistakes_with_positions_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let graph = r#"Graph(
    name: "five_mistakes",
    params: { "lo": -29 },
    nodes: {
        "ph":    (node: "Phantom", params: (seed: 1, dims: (32, 32, 4))),
        "sel":   (node: "SelectLabl", inputs: (labels: "ph.truth"), params: (labels: [1])),
        "win":   (node: "HuWindow", inputs: (image: "ph.ct", mask: "ph.truth"), params: (min: "${low}")),
        "close": (node: "Closing", inputs: (mask: "win"), params: (kernal: (3, 3, 1))),
        "dil":   (node: "Dilation", inputs: (mask: "clos")),
        "save":  (node: "SaveNifti", inputs: (volume: "dil"), params: (path: 3)),
    },
)
"#;
    std::fs::write(dir.path().join("bad.ron"), graph).unwrap();
    let o = voxflow(&["validate", "bad.ron"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("bad.ron:") && l.contains(": error: ")).collect();
    let positions: Vec<&str> = errors.iter().map(|l| l.split(": error").next().unwrap()).collect();
    assert_eq!(positions, ["bad.ron:6:25", "bad.ron:7:59", "bad.ron:7:91", "bad.ron:8:63", "bad.ron:9:51"], "{stderr}");
    assert!(stderr.contains("did you mean `SelectLabel`?"), "{stderr}");
    assert!(stderr.contains("port type mismatch: `ph.truth` is Labels, but input `mask` of HuWindow `win` takes Mask"), "{stderr}");
    assert!(stderr.contains("did you mean `lo`?"), "{stderr}");
    assert!(stderr.contains("did you mean `kernel`?"), "{stderr}");
    assert!(stderr.contains("did you mean `close`?"), "{stderr}");
    let _ = errors;
}

#[test]
fn every_shipped_graph_validates() {
    let graphs = repo().join("graphs");
    let mut files: Vec<String> = std::fs::read_dir(&graphs).unwrap().filter_map(|e| {
        let p = e.unwrap().path();
        (p.extension().is_some_and(|x| x == "ron")).then(|| p.display().to_string())
    }).collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    // Graphs with required params get placeholder values; validation does no I/O.
    args.extend(["--set", "ct=ct.nii.gz", "--set", "prediction=pred.nii.gz"]);
    let o = voxflow(&args, &repo());
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn run_writes_a_report_and_impl_switches_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo().join("graphs/demo.ron");
    let o = voxflow(
        &["run", demo.to_str().unwrap(), "--set", "phantom.dims=(64, 64, 8)", "--impl", "Dilation=naive", "--out", "o", "--report", "r.json", "-q"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(report["ok"], true);
    let nodes = report["nodes"].as_array().unwrap();
    let dil: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["type"] == "Dilation").collect();
    assert_eq!(dil.len(), 2);
    assert!(dil.iter().all(|n| n["implementation"] == "naive" && n["status"] == "ok" && n["wall_ms"].as_f64().is_some()));
    let close = nodes.iter().find(|n| n["type"] == "Closing").unwrap();
    assert_eq!(close["implementation"], "fast");
    assert!(dir.path().join("o/demo/cleaned.nii.gz").exists());
}

#[test]
fn a_missing_input_file_fails_the_node_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = repo().join("graphs/sarcopenia_postprocess.ron");
    let o = voxflow(&["run", g.to_str().unwrap(), "--set", "ct=nope.nii.gz", "--set", "prediction=nope2.nii.gz", "--out", "o"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("node `ct` (LoadNifti") && t.contains("nope.nii.gz"), "{t}");
    assert!(t.contains("node `prediction` (LoadLabels") && t.contains("nope2.nii.gz"), "{t}");
    assert!(!dir.path().join("o/sarcopenia_labels.nii.gz").exists());
}

#[test]
fn required_params_without_values_are_reported() {
    let g = repo().join("graphs/sarcopenia_postprocess.ron");
    let o = voxflow(&["validate", g.to_str().unwrap()], &repo());
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("graph param `ct` has no value; set it with --set ct=VALUE"), "{t}");
}

#[test]
fn nodes_lists_types_and_shows_one() {
    let o = voxflow(&["nodes"], &repo());
    assert!(o.status.success());
    let t = text(&o);
    assert!(t.contains("HuWindow") && t.contains("Phantom") && t.contains("LoadNifti"), "{t}");
    let o = voxflow(&["nodes", "RemoveSmallComponents"], &repo());
    let t = text(&o);
    assert!(t.contains("min_volume_ml") && t.contains("[ml]") && t.contains("implementations:") && t.contains("example:"), "{t}");
    let o = voxflow(&["nodes", "Dilaton"], &repo());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("did you mean `Dilation`?"));
}

#[test]
fn dot_draws_ports_on_edges() {
    let o = voxflow(&["dot", "graphs/demo.ron"], &repo());
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.starts_with("digraph \"demo\""));
    assert!(t.contains("\"phantom\" -> \"abdominal/select\" [label=\"prediction -> labels\"]"), "{t}");
}
