//! Macros found through the graph library (issue 21.5): a graph copied away from the
//! repository still finds `macros/*.ron` through `VOXFLOW_GRAPH_PATH` or the install's
//! graphs, a missing macro names every place searched, and `--set macro.param=value`
//! sets a macro's param.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{repo, text};

/// Runs `exe` in `cwd` with `VOXFLOW_GRAPH_PATH` set to `graph_path` (unset for `None`).
fn run_exe(exe: &Path, args: &[&str], cwd: &Path, graph_path: Option<&str>) -> Output {
    let mut c = Command::new(exe);
    c.args(args).current_dir(cwd);
    match graph_path {
        Some(p) => c.env("VOXFLOW_GRAPH_PATH", p),
        None => c.env_remove("VOXFLOW_GRAPH_PATH"),
    };
    c.output().expect("run voxflow")
}

fn voxflow(args: &[&str], cwd: &Path, graph_path: Option<&str>) -> Output {
    run_exe(
        Path::new(env!("CARGO_BIN_EXE_voxflow")),
        args,
        cwd,
        graph_path,
    )
}

/// A macro that exists nowhere in the repository: thresholds a phantom's CT.
const LIB_MACRO: &str = r#"Graph(
    name: "threshold",
    params: { "min": 0 },
    inputs: ["ct"],
    nodes: {
        "window": (node: "HuWindow", inputs: (image: "ct"), params: (min: "${min}", max: 3000)),
    },
    outputs: { "mask": "window" },
)
"#;

/// A graph using `macros/threshold_lib.ron` and saving its mask to `mask.nii`.
const USER_GRAPH: &str = r#"Graph(
    name: "user",
    nodes: {
        "ph":   (node: "Phantom", params: (seed: 4, dims: (32, 32, 2))),
        "thr":  (node: "macros/threshold_lib.ron", inputs: (ct: "ph.ct"), params: (min: 100)),
        "save": (node: "SaveNifti", inputs: (volume: "thr.mask"), params: (path: "mask.nii")),
    },
)
"#;

#[test]
fn a_copied_graph_finds_its_macro_through_voxflow_graph_path() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::create_dir(lib.path().join("macros")).unwrap();
    std::fs::write(lib.path().join("macros/threshold_lib.ron"), LIB_MACRO).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("user.ron"), USER_GRAPH).unwrap();

    // Not beside the graph, not in the library: the error lists every place searched.
    let empty = tempfile::tempdir().unwrap();
    let o = voxflow(
        &["validate", "user.ron"],
        work.path(),
        Some(empty.path().to_str().unwrap()),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("macro graph file `macros/threshold_lib.ron` not found"),
        "{t}"
    );
    for place in [
        PathBuf::from("./macros/threshold_lib.ron"),
        empty.path().join("macros/threshold_lib.ron"),
        repo().join("graphs/macros/threshold_lib.ron"),
    ] {
        assert!(t.contains(&place.display().to_string()), "{place:?}: {t}");
    }
    // Only the macro error: no follow-up errors about its outputs.
    assert!(t.trim_end().ends_with("1 error"), "{t}");

    // Second directory of the path holds it (the first is skipped as it lacks it).
    let gp = format!("{}:{}", empty.path().display(), lib.path().display());
    let o = voxflow(
        &["run", "user.ron", "--out", "o", "-q"],
        work.path(),
        Some(&gp),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(work.path().join("o/mask.nii").is_file());

    // A macro beside the graph wins over the library one.
    std::fs::create_dir(work.path().join("macros")).unwrap();
    std::fs::write(
        work.path().join("macros/threshold_lib.ron"),
        LIB_MACRO.replace("\"min\": 0", "\"min\": 0, \"local_only\": 1"),
    )
    .unwrap();
    let o = voxflow(
        &["validate", "user.ron", "--set", "thr.local_only=2"],
        work.path(),
        Some(&gp),
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_copied_shipped_graph_finds_the_installed_macros() {
    // The source tree's graphs/ is the last fallback (what `cargo install --path cli`
    // leaves behind).
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("graphs/sarcopenia_postprocess.ron"),
        work.path().join("s.ron"),
    )
    .unwrap();
    let o = voxflow(&["validate", "s.ron"], work.path(), None);
    assert!(o.status.success(), "{}", text(&o));

    // An installed layout: PREFIX/bin/voxflow finds PREFIX/share/voxflow/graphs. A hard
    // link keeps the binary's path (current_exe) without copying hundreds of MB.
    let prefix = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(prefix.path().join("bin")).unwrap();
    let exe = prefix.path().join("bin/voxflow");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_voxflow"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_voxflow"), &exe).unwrap();
    }
    let share = prefix.path().join("share/voxflow/graphs/macros");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("threshold_lib.ron"), LIB_MACRO).unwrap();
    std::fs::write(work.path().join("user.ron"), USER_GRAPH).unwrap();
    let o = run_exe(
        &exe,
        &["run", "user.ron", "--out", "o", "-q"],
        work.path(),
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(work.path().join("o/mask.nii").is_file());
}

/// Runs the shipped post-processing macro on a phantom with `sets` and returns the bytes
/// of the mask it writes.
fn postprocess_mask(sets: &[&str]) -> Vec<u8> {
    let work = tempfile::tempdir().unwrap();
    let graph = r#"Graph(
    name: "pp",
    nodes: {
        "ph": (node: "Phantom", params: (seed: 2, dims: (64, 64, 6))),
        "abdominal": (node: "macros/postprocess_structure.ron",
                      inputs: (ct: "ph.ct", prediction: "ph.prediction"), params: (label: 1)),
        "save": (node: "SaveNifti", inputs: (volume: "abdominal.mask"), params: (path: "mask.nii")),
    },
)
"#;
    std::fs::write(work.path().join("pp.ron"), graph).unwrap();
    let mut args = vec!["run", "pp.ron", "--out", "o", "-q"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = voxflow(&args, work.path(), None);
    assert!(o.status.success(), "{sets:?}: {}", text(&o));
    std::fs::read(work.path().join("o/mask.nii")).unwrap()
}

#[test]
fn set_on_a_macro_param_changes_the_result_like_the_inner_node_param() {
    let default = postprocess_mask(&[]);
    let wide = "Some((4.5, 4.5, 3.0))";
    let by_macro = postprocess_mask(&[&format!("abdominal.dilation_mm={wide}")]);
    let by_node = postprocess_mask(&[&format!("abdominal/dilate.radius_mm={wide}")]);
    assert_ne!(default, by_macro, "a wider dilation must change the mask");
    assert_eq!(by_macro, by_node);
    // The voxel box through the macro's `dilation` param once its mm kernel is off.
    let boxed = postprocess_mask(&["abdominal.dilation_mm=None", "abdominal.dilation=(7, 7, 1)"]);
    let boxed_node = postprocess_mask(&[
        "abdominal/dilate.radius_mm=None",
        "abdominal/dilate.kernel=(7, 7, 1)",
    ]);
    assert_ne!(default, boxed);
    assert_eq!(boxed, boxed_node);
}

#[test]
fn an_unknown_macro_param_in_set_suggests_the_right_one() {
    let g = repo().join("graphs/sarcopenia_postprocess.ron");
    for (set, needles) in [
        (
            "abdominal.dilaton=(3, 3, 1)",
            &[
                "<command line>:1:",
                "has no param `dilaton`",
                "did you mean `dilation`?",
            ][..],
        ),
        // A node that is neither a node nor a macro: suggestions include macro names.
        (
            "abdominl.label=3",
            &[
                "--set: no node named `abdominl`",
                "did you mean `abdominal`?",
            ],
        ),
    ] {
        let o = voxflow(
            &["validate", g.to_str().unwrap(), "--set", set],
            &repo(),
            None,
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "--set {set}: {t}");
        for n in needles {
            assert!(t.contains(n), "--set {set}: no {n:?} in {t}");
        }
    }
}
