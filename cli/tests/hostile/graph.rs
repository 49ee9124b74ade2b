//! Hostile graph files and command lines: nesting deep enough to overflow the stack, a
//! byte order mark and smart quotes, `${param}` and macro expansion bombs, a graph with
//! 50,000 errors on one line, two nodes writing one file, `--report` onto an output,
//! templates, and stdout closed under `voxflow dot`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;

/// A small graph that runs in milliseconds: a phantom saved as NIfTI.
const SMALL: &str = r#"Graph(
    name: "small",
    nodes: {
        "p": (node: "Phantom", params: (seed: 1, dims: (16, 16, 2))),
        "save": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
    },
)
"#;

/// Memory any of these inputs may take, in MiB.
const MAX_MIB: f64 = 1024.0;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes `text` as `d/name` and checks that `voxflow validate name` fails cleanly with
/// every `needle` in its output.
fn validate_fails(d: &Path, name: &str, text: &str, needles: &[&str]) -> Outcome {
    std::fs::write(d.join(name), text).unwrap();
    let o = voxflow(&["validate", name], d);
    assert_clean_failure(&o, needles, MAX_MIB);
    o
}

/// Writes `text` as `d/name` and checks that `voxflow run name --out out` fails cleanly
/// with every `needle` in its output, leaving no outputs.
fn run_fails(d: &Path, name: &str, text: &str, needles: &[&str]) -> Outcome {
    std::fs::write(d.join(name), text).unwrap();
    let o = voxflow(&["run", name, "--out", "out"], d);
    assert_clean_failure(&o, needles, MAX_MIB);
    assert_no_outputs(&d.join("out"));
    o
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../graphs")
        .join(name)
}

#[test]
fn nesting_deep_enough_to_overflow_the_stack_is_refused_at_its_position() {
    let d = tmp();
    validate_fails(
        d.path(),
        "brackets.ron",
        &"[".repeat(10_000),
        &["brackets.ron:1:129:", "nesting too deep"],
    );

    // Unclosed parentheses inside a real graph's node params, on line 3.
    let text = format!(
        "Graph(\n  name: \"deep\",\n  nodes: {{ \"p\": (node: \"Phantom\", params: {}) }},\n)",
        "(".repeat(8_000)
    );
    run_fails(
        d.path(),
        "parens.ron",
        &text,
        &["parens.ron:3:", "nesting too deep"],
    );
}

#[test]
fn nesting_too_deep_in_a_set_value_is_refused_not_taken_as_text() {
    let d = tmp();
    std::fs::write(d.path().join("small.ron"), SMALL).unwrap();
    let deep = format!("p.dims={}", "[".repeat(10_000));
    let o = voxflow(
        &["run", "small.ron", "--set", &deep, "--out", "out"],
        d.path(),
    );
    assert_clean_failure(
        &o,
        &["<command line>:1:", "--set p.dims: nesting too deep"],
        MAX_MIB,
    );
    assert_no_outputs(&d.path().join("out"));
}

#[test]
fn a_graph_after_a_byte_order_mark_runs() {
    let d = tmp();
    std::fs::write(d.path().join("bom.ron"), format!("\u{feff}{SMALL}")).unwrap();
    let o = voxflow(&["run", "bom.ron", "--out", "out"], d.path());
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(d.path().join("out/ct.nii.gz").is_file(), "{}", o.text());

    // Positions after a BOM count from the first real character: the BOM is no column.
    let broken = format!(
        "\u{feff}{}",
        SMALL.replace("name: \"small\"", "name: \"small\" x")
    );
    validate_fails(
        d.path(),
        "bom_error.ron",
        &broken,
        &["bom_error.ron:2:19: error: syntax error"],
    );
}

#[test]
fn smart_quotes_give_a_positioned_error_counted_in_characters() {
    let d = tmp();
    let text = SMALL.replace("name: \"small\"", "name: “small”");
    validate_fails(
        d.path(),
        "smart.ron",
        &text,
        &[
            "smart.ron:2:11: error: syntax error: expected a value",
            "“small”",
        ],
    );
    // A multi-byte character further along the line: the column is in characters.
    let text = SMALL.replace("(seed: 1,", "(seed: 1, é€: 2 ×");
    validate_fails(d.path(), "later.ron", &text, &["later.ron:4:"]);
}

#[test]
fn a_param_expansion_bomb_is_refused_quickly_naming_the_param() {
    let d = tmp();
    // a_n = a_(n-1) twice: 32 bytes * 2^30 if expanded; the file is under 900 bytes.
    let mut params = vec![format!("\"a0\": \"{}\"", "x".repeat(32))];
    params.extend((1..=30).map(|i| format!("\"a{i}\": \"${{a{}}}${{a{}}}\"", i - 1, i - 1)));
    let text = format!(
        "Graph(name: \"bomb\", params: {{ {} }}, nodes: {{ \"p\": (node: \"Phantom\", params: (seed: 1, dims: (8, 8, 1))) }})",
        params.join(", ")
    );
    assert!(text.len() < 900, "{}", text.len());
    let t0 = Instant::now();
    run_fails(
        d.path(),
        "bomb.ron",
        &text,
        &["bomb.ron:1:", "graph param `a16`", "larger than 1 MiB"],
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // The same bomb in a list of whole-value references instead of text.
    let mut params = vec![format!("\"b0\": [\"{}\"]", "x".repeat(32))];
    params
        .extend((1..=30).map(|i| format!("\"b{i}\": [\"${{b{}}}\", \"${{b{}}}\"]", i - 1, i - 1)));
    let text = format!(
        "Graph(name: \"bomb\", params: {{ {} }}, nodes: {{ \"p\": (node: \"Phantom\", params: (seed: 1)) }})",
        params.join(", ")
    );
    validate_fails(
        d.path(),
        "list_bomb.ron",
        &text,
        &["list_bomb.ron:1:", "larger than 1 MiB"],
    );
}

#[test]
fn a_macro_bomb_is_refused_at_the_node_limit() {
    let d = tmp();
    // m0 uses m1 twice, m1 uses m2 twice, ... : 2^22 Phantom nodes if expanded.
    for i in 0..22 {
        let nodes = if i == 21 {
            "\"p\": (node: \"Phantom\", params: (seed: 1)), \"q\": (node: \"Phantom\", params: (seed: 2))".to_string()
        } else {
            format!(
                "\"x\": (node: \"m{}.ron\"), \"y\": (node: \"m{}.ron\")",
                i + 1,
                i + 1
            )
        };
        let text = format!("Graph(name: \"m{i}\", nodes: {{ {nodes} }})\n");
        std::fs::write(d.path().join(format!("m{i}.ron")), text).unwrap();
    }
    let t0 = Instant::now();
    run_fails(
        d.path(),
        "top.ron",
        "Graph(name: \"top\", nodes: { \"top\": (node: \"m0.ron\") })\n",
        &[
            "m21.ron:1:",
            "node `top/x/",
            "larger than 100000 nodes",
            "1 error",
        ],
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn macros_nested_too_deep_are_refused_naming_the_macro_node() {
    let d = tmp();
    for i in 0..40 {
        let text = format!(
            "Graph(name: \"c{i}\", nodes: {{ \"n\": (node: \"c{}.ron\") }})\n",
            i + 1
        );
        std::fs::write(d.path().join(format!("c{i}.ron")), text).unwrap();
    }
    let o = voxflow(&["validate", "c0.ron"], d.path());
    assert_clean_failure(
        &o,
        &["nested more than 32 macros deep", "macro `n/n/"],
        MAX_MIB,
    );
}

#[test]
fn fifty_thousand_errors_on_one_line_print_a_bounded_report() {
    let d = tmp();
    let nodes: Vec<String> = (0..50_000)
        .map(|i| format!("\"n{i}\": (node: \"Nope{i}\")"))
        .collect();
    let text = format!("Graph(name: \"errors\", nodes: {{{}}})", nodes.join(", "));
    assert!(text.len() > 1_400_000, "{}", text.len());
    let o = validate_fails(
        d.path(),
        "errors.ron",
        &text,
        &[
            "errors.ron:1:44: error: unknown node type `Nope0`",
            "and 49,950 more errors",
            "50,000 errors",
        ],
    );
    assert!(
        o.stderr.len() < 1 << 20,
        "{} bytes of stderr",
        o.stderr.len()
    );
    // Each snippet is a window of the line, cut with … marks.
    let longest = o.stderr.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest < 200, "a line of {longest} characters");
    assert!(o.stderr.contains('…'));
}

#[test]
fn two_nodes_writing_one_file_are_refused_naming_both() {
    let d = tmp();
    let text = SMALL.replace(
        "    },\n)",
        "        \"again\": (node: \"SaveNifti\", inputs: (volume: \"p.truth\"), params: (path: \"./ct.nii.gz\")),\n    },\n)",
    );
    run_fails(
        d.path(),
        "twice.ron",
        &text,
        &[
            "twice.ron:6:",
            "nodes `save` and `again` both write ./ct.nii.gz",
        ],
    );
}

#[test]
fn a_report_onto_a_node_output_is_refused_before_running() {
    let d = tmp();
    std::fs::write(d.path().join("small.ron"), SMALL).unwrap();
    let run_with_report = |report: &str| {
        voxflow(
            &["run", "small.ron", "--out", "out", "--report", report],
            d.path(),
        )
    };
    let o = run_with_report("out/ct.nii.gz");
    assert_clean_failure(
        &o,
        &["--report out/ct.nii.gz", "node `save` writes that file"],
        MAX_MIB,
    );
    assert_no_outputs(&d.path().join("out"));
    // A folder is refused before running too (it was found only after the run).
    std::fs::create_dir(d.path().join("reports")).unwrap();
    let o = run_with_report("reports");
    assert_clean_failure(&o, &["--report reports: is a folder"], MAX_MIB);
    assert_no_outputs(&d.path().join("out"));
    // Elsewhere it is written.
    let o = run_with_report("out/report.json");
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(d.path().join("out/report.json").is_file());
}

#[test]
fn templates_validate_with_a_note_and_run_still_needs_their_params() {
    let d = tmp();
    let (presegment, compare) = (
        shipped("presegment.ron"),
        shipped("compare_segmentations.ron"),
    );
    for (graph, note) in [
        (
            &presegment,
            "is a template: `voxflow run` needs --set ct=VALUE --set model=VALUE",
        ),
        (&compare, "needs --set ct=VALUE --set a=VALUE --set b=VALUE"),
    ] {
        let o = voxflow(&["validate", graph.to_str().unwrap()], d.path());
        assert_eq!(o.code, Some(0), "{}: {}", graph.display(), o.text());
        assert!(o.stdout.contains(note), "{}: {}", graph.display(), o.text());
    }

    // `dot` draws a template.
    let o = voxflow(&["dot", presegment.to_str().unwrap()], d.path());
    assert_eq!(o.code, Some(0), "{}", o.text());
    assert!(
        o.stdout.starts_with("digraph \"presegment\"")
            && o.stdout
                .contains("\"ct\" -> \"grid\" [label=\"image -> image\"]")
            && o.stdout
                .contains("\"grid\" -> \"seg\" [label=\"image -> image\"]"),
        "{}",
        o.stdout
    );

    // Everything else is still checked: a typo in a template fails.
    let typo = std::fs::read_to_string(&compare)
        .unwrap()
        .replace("\"LoadNifti\"", "\"LoadNfti\"");
    validate_fails(
        d.path(),
        "typo.ron",
        &typo,
        &["unknown node type `LoadNfti`"],
    );

    // `run` names each unset param, `levels: "${a}"` included.
    let o = voxflow(
        &["run", compare.to_str().unwrap(), "--out", "out"],
        d.path(),
    );
    assert_clean_failure(
        &o,
        &[
            "graph param `ct` has no value",
            "graph param `a` has no value; set it with --set a=VALUE",
            "4 errors",
        ],
        MAX_MIB,
    );
    assert!(!o.text().contains("`levels` has no value"), "{}", o.text());
}

/// Run `voxflow args` with stdout a pipe whose reading end is already closed.
fn with_closed_stdout(args: &[&str], cwd: &Path) -> (Option<i32>, String) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe() returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are fresh and owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("run voxflow");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn printing_into_a_closed_pipe_ends_cleanly() {
    let d = tmp();
    let presegment = shipped("presegment.ron");
    // `voxflow dot | dot` without graphviz: a template graph, stdout closed.
    let (code, stderr) = with_closed_stdout(&["dot", presegment.to_str().unwrap()], d.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The largest output there is.
    let (code, stderr) = with_closed_stdout(&["nodes", "--markdown"], d.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A failing validation keeps its exit code.
    std::fs::write(d.path().join("bad.ron"), "Graph(").unwrap();
    let (code, stderr) = with_closed_stdout(&["validate", "bad.ron"], d.path());
    assert_eq!(code, Some(1), "{stderr}");
}

#[test]
fn a_resampling_spacing_too_fine_for_memory_is_refused_naming_the_node() {
    // 1 µm voxels over the phantom's 48 x 48 x 12 mm: 2e18 voxels. The allocation used to
    // abort the process (exit 134, "memory allocation of ... bytes failed").
    let d = tmp();
    let text = r#"Graph(
    name: "fine",
    nodes: {
        "p": (node: "Phantom", params: (seed: 1, dims: (32, 32, 4))),
        "img": (node: "Resample", inputs: (image: "p.ct"), params: (spacing_mm: Some((0.001, 0.001, 0.001)))),
        "lab": (node: "ResampleLabels", inputs: (labels: "p.truth"), params: (spacing_mm: Some((0.001, 0.001, 0.001)))),
        "save_img": (node: "SaveNifti", inputs: (volume: "img"), params: (path: "img.nii.gz")),
        "save_lab": (node: "SaveNifti", inputs: (volume: "lab"), params: (path: "lab.nii.gz")),
    },
)
"#;
    let o = run_fails(
        d.path(),
        "fine.ron",
        text,
        &[
            "node `img` (Resample",
            "node `lab` (ResampleLabels",
            "spacing_mm: [0.001, 0.001, 0.001] mm",
            "48000x48000x12000 voxels, more than 1073741824",
        ],
    );
    // A spacing that makes a grid of a sane size still runs.
    let ok = text.replace("0.001, 0.001, 0.001", "3.0, 3.0, 6.0");
    std::fs::write(d.path().join("ok.ron"), ok).unwrap();
    let o2 = voxflow(&["run", "ok.ron", "--out", "out"], d.path());
    assert_eq!(o2.code, Some(0), "{}\n{}", o.text(), o2.text());
}

#[test]
fn a_param_using_itself_or_a_later_param_is_named_as_such() {
    // Both were reported as "the graph declares no param `b`" (with "did you mean `b`?")
    // although the graph declares it.
    let d = tmp();
    for (params, name) in [
        (r#""a": "${b}", "b": "${a}""#, "b"),
        (r#""a": "x${a}""#, "a"),
    ] {
        let text = format!(
            "Graph(name: \"c\", params: {{ {params} }}, nodes: {{ \"p\": (node: \"Phantom\", params: (seed: 1)) }})"
        );
        let o = validate_fails(
            d.path(),
            "order.ron",
            &text,
            &[&format!(
                "`${{{name}}}`: a graph param can use only the params declared before it, and `{name}` is this param or comes after it"
            )],
        );
        assert!(!o.text().contains("declares no param"), "{}", o.text());
    }
}

#[test]
fn a_nan_or_infinite_param_is_named_as_not_finite() {
    // RON reads NaN and inf, which reached the node as null: "invalid type: null,
    // expected f64", as if the param had been left out.
    let d = tmp();
    let graph = |min: &str| {
        format!(
            "Graph(name: \"w\", nodes: {{ \"p\": (node: \"Phantom\", params: (seed: 1, dims: (16, 16, 2))), \
             \"w\": (node: \"HuWindow\", inputs: (image: \"p.ct\"), params: (min: {min}, max: 150.0)) }})"
        )
    };
    for (min, shown) in [("NaN", "NaN"), ("-inf", "-inf")] {
        let o = validate_fails(
            d.path(),
            "w.ron",
            &graph(min),
            &[&format!(
                "HuWindow param `min`: {shown} is not a finite number"
            )],
        );
        assert!(!o.text().contains("null"), "{}", o.text());
    }
    // Inside a Some(tuple), named by its path.
    let text = "Graph(name: \"d\", nodes: { \"p\": (node: \"Phantom\", params: (seed: 1, dims: (16, 16, 2))), \
                \"d\": (node: \"Dilation\", inputs: (mask: \"p.truth\"), params: (radius_mm: Some((1.0, NaN, 1.0)))) })";
    validate_fails(
        d.path(),
        "d.ron",
        text,
        &["Dilation param `radius_mm.1`: NaN is not a finite number"],
    );
    // From the command line too, pointing at the --set value.
    std::fs::write(d.path().join("w.ron"), graph("-29.0")).unwrap();
    let o = voxflow(
        &["run", "w.ron", "--set", "w.max=inf", "--out", "out"],
        d.path(),
    );
    assert_clean_failure(
        &o,
        &[
            "--set w.max=inf",
            "HuWindow param `max`: inf is not a finite number",
        ],
        MAX_MIB,
    );
    assert_no_outputs(&d.path().join("out"));
}

#[test]
fn a_folder_where_a_file_is_written_is_reported_once() {
    // The OS's reason was printed twice: "cannot write o2: Is a directory (os error 21):
    // Is a directory (os error 21)" for --report, and "out/ct.nii.gz: cannot write:
    // cannot write out/ct.nii.gz: Is a directory" for SaveNifti.
    let d = tmp();
    std::fs::write(d.path().join("small.ron"), SMALL).unwrap();
    std::fs::create_dir_all(d.path().join("out/ct.nii.gz")).unwrap();
    // A report in a "folder" that is a file fails only when written, after the run
    // (a report path that is a folder is refused before it).
    let o = voxflow(
        &[
            "run",
            "small.ron",
            "--out",
            "out",
            "--report",
            "small.ron/report.json",
        ],
        d.path(),
    );
    assert_clean_failure(
        &o,
        &[
            "out/ct.nii.gz: cannot write: Is a directory (os error 21)",
            "writing the run report small.ron/report.json: ",
        ],
        MAX_MIB,
    );
    for line in o.text().lines() {
        assert!(line.matches("os error").count() <= 1, "{line}");
    }
}
