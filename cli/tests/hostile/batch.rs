//! Hostile batches and output folders: stale results under `--resume`, a bad `--set`
//! over an earlier good run, output folders that cannot hold outputs, reserved case ids.

use std::path::Path;

use crate::support::*;

/// A structure chain as a macro, so `--set` reaches a node inside it.
const MACRO: &str = r#"Graph(
    name: "grow",
    params: { "kernel": (3, 3, 1) },
    inputs: ["labels"],
    nodes: {
        "select": (node: "SelectLabel", inputs: (labels: "labels"), params: (labels: [1])),
        "dilate": (node: "Dilation", inputs: (mask: "select"), params: (kernel: "${kernel}")),
    },
    outputs: { "mask": "dilate" },
)
"#;

/// Per case: a phantom by seed, the macro's mask saved, and its Dice against the truth.
const GRAPH: &str = r#"Graph(
    name: "stale",
    params: { "seed": None, "min": -29 },
    nodes: {
        "p": (node: "Phantom", params: (seed: "${seed}", dims: (32, 32, 3))),
        "grow": (node: "grow.ron", inputs: (labels: "p.prediction")),
        "window": (node: "HuWindow", inputs: (image: "p.ct", mask: "grow.mask"),
                   params: (min: "${min}", max: 150)),
        "save": (node: "SaveNifti", inputs: (volume: "window"), params: (path: "mask.nii.gz")),
        "truth": (node: "SelectLabel", inputs: (labels: "p.truth"), params: (labels: [1])),
        "dice": (node: "CompareMasks", inputs: (a: "window", b: "truth")),
        "table": (node: "WriteTable", inputs: (table: "dice"), params: (path: "dice.csv")),
    },
)
"#;

fn setup(d: &Path) {
    std::fs::write(d.join("grow.ron"), MACRO).unwrap();
    std::fs::write(d.join("stale.ron"), GRAPH).unwrap();
    std::fs::write(d.join("cases.tsv"), "case\tseed\nc1\t1\nc2\t2\n").unwrap();
}

/// `voxflow run stale.ron --cases cases.tsv --out out --resume` plus `extra`.
fn batch(d: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "stale.ron",
        "--cases",
        "cases.tsv",
        "--out",
        "out",
        "--resume",
    ];
    args.extend_from_slice(extra);
    voxflow(&args, d)
}

/// (cases resumed, cases run) as printed.
fn counts(o: &Outcome) -> (usize, usize) {
    let t = o.text();
    (
        t.lines().filter(|l| l.ends_with("(resumed)")).count(),
        t.lines().filter(|l| l.contains(": ok (")).count(),
    )
}

#[test]
fn resume_reruns_cases_whose_effective_params_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let first = batch(d, &[]);
    assert_eq!(
        (first.code, counts(&first)),
        (Some(0), (0, 2)),
        "{}",
        first.text()
    );
    let again = batch(d, &[]);
    assert_eq!(counts(&again), (2, 0), "{}", again.text());

    // Each kind of change re-runs both cases, then resumes both with the same change.
    let changes: [&[&str]; 5] = [
        &["--set", "grow/dilate.kernel=(5, 5, 1)"],
        &["--set", "save.path=\"other.nii.gz\""],
        &["--set", "table.path=\"dice.json\""],
        &["--set", "min=-100"],
        &["--impl", "Dilation=naive"],
    ];
    for change in changes {
        let o = batch(d, change);
        assert_eq!(
            counts(&o),
            (0, 2),
            "{change:?} did not re-run:\n{}",
            o.text()
        );
        let o = batch(d, change);
        assert_eq!(
            counts(&o),
            (2, 0),
            "{change:?} re-ran unchanged:\n{}",
            o.text()
        );
    }
    // The files the changed params asked for were written.
    for f in ["other.nii.gz", "dice.json"] {
        assert!(d.join("out/c1").join(f).exists(), "{f} missing");
    }
}

#[test]
fn a_bad_set_fails_once_and_keeps_the_earlier_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    assert_eq!(batch(d, &[]).code, Some(0));
    let summary = std::fs::read_to_string(d.join("out/summary.csv")).unwrap();
    let provenance = std::fs::read(d.join("out/c1/provenance.json")).unwrap();

    let o = batch(d, &["--set", "grow/dilate.kernal=(5, 5, 1)"]);
    assert_clean_failure(
        &o,
        &["kernal", "did you mean `kernel`?", "nothing ran"],
        1024.0,
    );
    assert_eq!(
        o.text().matches("did you mean `kernel`?").count(),
        1,
        "{}",
        o.text()
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out/summary.csv")).unwrap(),
        summary
    );
    assert_eq!(
        std::fs::read(d.join("out/c1/provenance.json")).unwrap(),
        provenance
    );
    assert!(!d.join("out/c1/failed").exists());

    // Every case failing at run time leaves the earlier summary too.
    let o = batch(d, &["--set", "save.path=\"/proc/voxflow/mask.nii.gz\""]);
    assert_eq!(o.code, Some(1), "{}", o.text());
    assert!(o.text().contains("left as it was"), "{}", o.text());
    assert_eq!(
        std::fs::read_to_string(d.join("out/summary.csv")).unwrap(),
        summary
    );
}

#[test]
fn output_folders_that_cannot_hold_outputs_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    std::fs::write(d.join("a_file"), "x").unwrap();
    for (out, says) in [
        ("a_file", "a_file: it is not a folder"),
        ("a_file/sub", "a_file is not a folder"),
        ("/dev/null", "/dev/null: it is not a folder"),
        // Not writable even for root.
        ("/proc/voxflow-out", "cannot write in /proc"),
    ] {
        let o = voxflow(&["run", "stale.ron", "--set", "seed=1", "--out", out], d);
        assert_clean_failure(&o, &[says], 1024.0);
        assert!(!o.text().contains("node "), "ran nodes:\n{}", o.text());
    }
    assert_eq!(std::fs::read_to_string(d.join("a_file")).unwrap(), "x");
}

#[test]
fn reserved_case_ids_and_absurd_thread_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    for id in ["summary.csv", ".hidden", "a/b"] {
        std::fs::write(d.join("cases.tsv"), format!("case\tseed\n{id}\t1\n")).unwrap();
        let o = batch(d, &[]);
        assert_clean_failure(&o, &["cases.tsv", &format!("`{id}`")], 1024.0);
        assert!(!d.join("out").exists(), "wrote output for `{id}`");
    }
    for n in ["10000", "0"] {
        let o = voxflow(&["run", "stale.ron", "--set", "seed=1", "--threads", n], d);
        // A malformed command line: clap's usage error (exit 2), before anything runs.
        assert_eq!(o.code, Some(2), "{}", o.text());
        assert!(o.text().contains("1..=1024"), "{}", o.text());
    }
}

#[test]
fn a_case_file_header_naming_a_param_twice_or_not_at_all_is_refused() {
    // Two `seed` columns used to run, one of them silently ignored.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    for (header, says) in [
        (
            "case\tseed\tseed",
            "cases.tsv:1: column `seed` appears twice in the header",
        ),
        (
            "case\tseed\t",
            "cases.tsv:1: column 3 of the header has no name",
        ),
        // Said of the case file, not of a `--set zz=2` at `<command line>:2:10`.
        (
            "case\tseed\tsede",
            "cases.tsv: column `sede` is not a param of stale.ron (its params: `seed`, `min`; \
             did you mean `seed`?); nothing ran",
        ),
    ] {
        std::fs::write(d.join("cases.tsv"), format!("{header}\nc1\t1\t2\n")).unwrap();
        let o = batch(d, &[]);
        assert_clean_failure(&o, &[says], 1024.0);
        assert!(!d.join("out").exists(), "ran `{header}`:\n{}", o.text());
        assert!(!o.text().contains("<command line>"), "{}", o.text());
    }
}
