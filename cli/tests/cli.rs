//! The `voxflow` binary as a user runs it: exit codes, diagnostics, reports.

use std::process::Command;

mod common;
use common::{
    compare_cases_with_two_bad, files_under, fix_the_two_bad, modified, read_json, repo, run_cases,
    text, voxflow,
};

#[test]
fn validate_reports_five_mistakes_with_positions_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let graph = r#"Graph(
    name: "five_mistakes",
    params: { "lo": -29 },
    nodes: {
        "ph":    (node: "Phantom", params: (seed: 1, dims: (32, 32, 4))),
        "sel":   (node: "SelectLabl", inputs: (labels: "ph.truth"), params: (labels: [1])),
        "win":   (node: "HuWindow", inputs: (image: "ph.ct"), params: (min: "${low}")),
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
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("bad.ron:") && l.contains(": error: "))
        .collect();
    let positions: Vec<&str> = errors
        .iter()
        .map(|l| l.split(": error").next().unwrap())
        .collect();
    assert_eq!(
        positions,
        [
            "bad.ron:6:25",
            "bad.ron:7:77",
            "bad.ron:8:68",
            "bad.ron:9:52",
            "bad.ron:10:78"
        ],
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `SelectLabel`?"), "{stderr}");
    assert!(
        stderr.contains("SaveNifti param `path`: invalid type: integer `3`, expected a string"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `lo`?"), "{stderr}");
    assert!(stderr.contains("did you mean `kernel`?"), "{stderr}");
    assert!(stderr.contains("did you mean `close`?"), "{stderr}");
    assert!(stderr.trim_end().ends_with("5 errors"), "{stderr}");
}

#[test]
fn every_shipped_graph_validates() {
    // Graphs with required params get placeholder values; validation does no I/O.
    let cases: [(&str, &[&str]); 7] = [
        ("graphs/demo.ron", &[]),
        ("graphs/train.ron", &[]),
        ("graphs/train_ct_sm.ron", &[]),
        (
            "graphs/evaluate_ct_sm.ron",
            &["--set", "model=runs/ct_sm/training/best.vxmodel"],
        ),
        (
            "graphs/presegment.ron",
            &["--set", "ct=ct.nii.gz", "--set", "model=muscles.vxmodel"],
        ),
        (
            "graphs/sarcopenia_postprocess.ron",
            &["--set", "ct=ct.nii.gz", "--set", "prediction=pred.nii.gz"],
        ),
        (
            "graphs/compare_segmentations.ron",
            &[
                "--set",
                "ct=ct.nii.gz",
                "--set",
                "a=a.nii.gz",
                "--set",
                "b=b.nii.gz",
            ],
        ),
    ];
    for (g, set) in cases {
        let mut args = vec!["validate", g];
        args.extend(set);
        let o = voxflow(&args, &repo());
        assert!(o.status.success(), "{g}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(": ok ("));
    }
}

#[test]
fn run_writes_a_report_and_impl_switches_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo().join("graphs/demo.ron");
    let o = voxflow(
        &[
            "run",
            demo.to_str().unwrap(),
            "--set",
            "phantom.dims=(64, 64, 8)",
            "--impl",
            "Dilation=naive",
            "--out",
            "o",
            "--report",
            "r.json",
            "-q",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = read_json(&dir.path().join("r.json"));
    assert_eq!(report["ok"], true);
    let nodes = report["nodes"].as_array().unwrap();
    let dil: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["type"] == "Dilation").collect();
    assert_eq!(dil.len(), 2);
    assert!(dil.iter().all(|n| n["implementation"] == "naive"
        && n["status"] == "ok"
        && n["wall_ms"].as_f64().is_some()));
    let close = nodes.iter().find(|n| n["type"] == "Closing").unwrap();
    assert_eq!(close["implementation"], "fast");
    assert!(dir.path().join("o/demo/cleaned.nii.gz").exists());
}

#[test]
fn a_missing_input_file_fails_the_node_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let g = repo().join("graphs/sarcopenia_postprocess.ron");
    let o = voxflow(
        &[
            "run",
            g.to_str().unwrap(),
            "--set",
            "ct=nope.nii.gz",
            "--set",
            "prediction=nope2.nii.gz",
            "--out",
            "o",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("node `ct` (LoadNifti") && t.contains("nope.nii.gz"),
        "{t}"
    );
    assert!(
        t.contains("node `prediction` (LoadLabels") && t.contains("nope2.nii.gz"),
        "{t}"
    );
    assert!(!dir.path().join("o/sarcopenia_labels.nii.gz").exists());
}

#[test]
fn required_params_without_values_are_reported() {
    // `run` needs them; `validate` checks the rest of the template and names them.
    let g = repo().join("graphs/sarcopenia_postprocess.ron");
    let out = tempfile::tempdir().unwrap();
    let o = voxflow(
        &[
            "run",
            g.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ],
        &repo(),
    );
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("graph param `ct` has no value; set it with --set ct=VALUE"),
        "{t}"
    );
    let o = voxflow(&["validate", g.to_str().unwrap()], &repo());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("needs --set ct=VALUE --set prediction=VALUE"),
        "{}",
        text(&o)
    );
}

#[test]
fn nodes_lists_types_and_shows_one() {
    let o = voxflow(&["nodes"], &repo());
    assert!(o.status.success());
    let t = text(&o);
    assert!(
        t.contains("HuWindow") && t.contains("Phantom") && t.contains("LoadNifti"),
        "{t}"
    );
    let o = voxflow(&["nodes", "RemoveSmallComponents"], &repo());
    let t = text(&o);
    assert!(
        t.contains("min_volume_ml")
            && t.contains("[ml]")
            && t.contains("implementations:")
            && t.contains("example:"),
        "{t}"
    );
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
    assert!(
        t.contains("\"phantom\" -> \"abdominal/select\" [label=\"prediction -> labels\"]"),
        "{t}"
    );
}

#[test]
fn batch_survives_bad_cases_summarizes_and_resumes_only_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // c1..c5 good, c6: a missing file; c7: a truncated .nii.gz.
    compare_cases_with_two_bad(d, 5);

    let o = run_cases(d, "compare.ron", "out", &["--jobs", "2"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 5, "{summary}");
    assert!(
        summary.starts_with("case,table,label,voxels_a"),
        "{summary}"
    );
    let json = read_json(&d.join("out/summary.json"));
    let failed = json["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{json}");
    let why6 = failed.iter().find(|f| f["case"] == "c6").unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    let why7 = failed.iter().find(|f| f["case"] == "c7").unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why6.contains("c6/truth.nii.gz") && why6.contains("LoadLabels"),
        "{why6}"
    );
    assert!(
        why7.contains("c7/truth.nii.gz") && why7.contains("truncated"),
        "{why7}"
    );
    let record = std::fs::read_to_string(d.join("out/c7/failed/a.txt")).unwrap();
    assert!(
        record.contains("type: LoadLabels")
            && record.contains("re-run:")
            && record.contains("--set a="),
        "{record}"
    );
    let prov = read_json(&d.join("out/c3/provenance.json"));
    assert_eq!(prov["status"], "ok");
    assert_eq!(prov["inputs"].as_array().unwrap().len(), 2);
    assert!(prov["inputs"][0]["blake3"].as_str().unwrap().len() == 64);
    assert!(prov["outputs"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("dice.csv"));
    let stats = std::fs::read_to_string(d.join("out/summary_stats.csv")).unwrap();
    assert!(
        stats.lines().any(|l| l.starts_with("dice.table,1,dice,5,")),
        "{stats}"
    );

    // Fix the two bad cases; --resume runs only them.
    fix_the_two_bad(d, 5);
    let before = modified(&d.join("out/c3/provenance.json"));
    let o = run_cases(d, "compare.ron", "out", &["--jobs", "2", "--resume"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let resumed: Vec<&str> = t.lines().filter(|l| l.ends_with("(resumed)")).collect();
    let ran: Vec<&str> = t.lines().filter(|l| l.contains(": ok (")).collect();
    assert_eq!((resumed.len(), ran.len()), (5, 2), "{t}");
    assert!(
        ran.iter().any(|l| l.starts_with("case c6"))
            && ran.iter().any(|l| l.starts_with("case c7")),
        "{t}"
    );
    assert_eq!(modified(&d.join("out/c3/provenance.json")), before);
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1 + 7);
    assert!(!d.join("out/c7/failed").exists());
}

#[test]
fn cache_reuses_everything_unchanged_and_reruns_exactly_what_a_param_affects() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo().join("graphs/demo.ron");
    let demo = demo.to_str().unwrap();
    let go = |extra: &[&str]| {
        let mut args = vec![
            "run",
            demo,
            "--set",
            "phantom.dims=(64, 64, 8)",
            "--cache",
            "cache",
            "--out",
            "o",
            "--report",
            "r.json",
            "-q",
            "--explain",
        ];
        args.extend(extra);
        let o = voxflow(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
        let r = read_json(&dir.path().join("r.json"));
        let ran: Vec<String> = r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == "ok")
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        let cached = r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["status"] == "cached")
            .count();
        (ran, cached, String::from_utf8_lossy(&o.stdout).to_string())
    };
    let (ran, cached, _) = go(&[]);
    assert_eq!(cached, 0);
    let all = ran.len();
    let (ran, cached, explain) = go(&[]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(cached, all);
    assert!(explain.lines().all(|l| l.ends_with("reused")), "{explain}");
    let (mut ran, _, explain) = go(&["--set", "paravertebral/clean2.min_volume_ml=0.2"]);
    ran.sort();
    let mut expected = vec![
        "after",
        "cleaned",
        "metrics",
        "overlay_after",
        "paravertebral/clean2",
        "paravertebral_final",
        "save_cleaned",
        "stats",
        "write_metrics",
        "write_metrics_json",
        "write_stats",
    ];
    expected.sort();
    assert_eq!(ran, expected);
    assert!(
        explain.contains("paravertebral/clean2")
            && explain.contains("ran: param min_volume_ml changed"),
        "{explain}"
    );
    assert!(
        explain
            .lines()
            .any(|l| l.starts_with("cleaned") && l.contains("ran: input masks changed")),
        "{explain}"
    );
    // A deleted output file is rewritten.
    std::fs::remove_file(dir.path().join("o/demo/metrics.csv")).unwrap();
    let (ran, _, _) = go(&["--set", "paravertebral/clean2.min_volume_ml=0.2"]);
    assert_eq!(ran, ["write_metrics"]);
    assert!(dir.path().join("o/demo/metrics.csv").exists());
}

#[test]
fn a_killed_batch_leaves_no_partial_outputs_and_resume_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("slow.ron"),
        r#"Graph(name: "slow", params: { "seed": 1 }, nodes: {
            "p":  (node: "Phantom", params: (seed: "${seed}", dims: (320, 320, 48))),
            "ct": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
            "t":  (node: "SaveNifti", inputs: (volume: "p.truth"), params: (path: "truth.nii.gz")),
            "m":  (node: "CompareMasks", inputs: (a: "p.truth", b: "p.prediction")),
            "w":  (node: "WriteTable", inputs: (table: "m"), params: (path: "metrics.csv")),
        })"#,
    )
    .unwrap();
    std::fs::write(
        d.join("cases.tsv"),
        "case\tseed\nk1\t1\nk2\t2\nk3\t3\nk4\t4\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args([
            "run",
            "slow.ron",
            "--cases",
            "cases.tsv",
            "--out",
            "out",
            "-q",
        ])
        .current_dir(d)
        .spawn()
        .unwrap();
    // Kill as soon as the first case has written something, i.e. in the middle of the run.
    let t = std::time::Instant::now();
    while t.elapsed().as_secs() < 60
        && !files_under(&d.join("out"))
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "gz" || e == "part"))
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Every output file present is complete: each NIfTI loads in full.
    for f in files_under(&d.join("out"))
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
    {
        let g = format!(
            r#"Graph(name: "check", nodes: {{ "l": (node: "LoadNifti", params: (path: "{}")) }}, outputs: {{ "l": "l" }})"#,
            f.display()
        );
        std::fs::write(d.join("check.ron"), g).unwrap();
        let o = voxflow(&["validate", "check.ron"], d);
        assert!(o.status.success());
        let o = voxflow(&["run", "check.ron", "-q", "--out", "chk"], d);
        assert!(
            o.status.success(),
            "{} is partial: {}",
            f.display(),
            text(&o)
        );
    }
    let o = run_cases(d, "slow.ron", "out", &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    let files = files_under(&d.join("out"));
    assert!(
        !files.iter().any(|p| p.to_string_lossy().ends_with(".part")),
        "{files:?}"
    );
    for c in ["k1", "k2", "k3", "k4"] {
        for f in [
            "ct.nii.gz",
            "truth.nii.gz",
            "metrics.csv",
            "provenance.json",
        ] {
            assert!(
                d.join("out").join(c).join(f).exists(),
                "{c}/{f} missing after resume"
            );
        }
    }
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    assert_eq!(
        summary.lines().filter(|l| l.contains("m.table")).count(),
        8,
        "{summary}"
    );
}
