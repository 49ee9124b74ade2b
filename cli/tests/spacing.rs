//! A graph written for a finer grid warns on a coarse one (issue 21.4): an mm kernel that
//! loses an axis or shrinks to one voxel is named, with the grid's spacing, on stderr and
//! in the run report; on a grid where it acts, nothing is said.

use std::path::Path;
use std::process::Output;

mod common;
use common::{read_json, text, voxflow};

fn run(dir: &Path, spacing: &str) -> (Output, serde_json::Value) {
    let graph = format!(
        r#"Graph(
    name: "coarse",
    nodes: {{
        "ph": (node: "Phantom", params: (seed: 1, dims: (64, 64, 4), spacing_mm: {spacing})),
        "sel": (node: "SelectLabel", inputs: (labels: "ph.prediction"), params: (labels: [1])),
        "grow": (node: "Dilation", inputs: (mask: "sel"), params: (radius_mm: Some((1.5, 1.5, 1.0)))),
        "shut": (node: "Closing", inputs: (mask: "grow"), params: (radius_mm: Some((0.75, 0.75, 0.0)))),
        "save": (node: "SaveNifti", inputs: (volume: "shut"), params: (path: "m.nii")),
    }},
)
"#
    );
    std::fs::write(dir.join("g.ron"), graph).unwrap();
    let o = voxflow(&["run", "g.ron", "--out", "o", "--report", "r.json"], dir);
    assert!(o.status.success(), "{}", text(&o));
    let report = read_json(&dir.join("r.json"));
    (o, report)
}

fn notes(report: &serde_json::Value, node: &str) -> String {
    let n = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == node)
        .unwrap_or_else(|| panic!("{node} in {report}"));
    n["notes"].to_string()
}

#[test]
fn mm_kernels_on_a_coarse_grid_warn_naming_node_and_spacing() {
    let dir = tempfile::tempdir().unwrap();
    let (o, report) = run(dir.path(), "(1.5, 1.5, 3.0)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let grow = stderr
        .lines()
        .find(|l| l.contains("node `grow` (Dilation)"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(grow.contains("WARN"), "{grow}");
    assert!(grow.contains("no extent along z"), "{grow}");
    assert!(grow.contains("spacing 1.50 x 1.50 x 3.00 mm"), "{grow}");
    let shut = stderr
        .lines()
        .find(|l| l.contains("node `shut` (Closing)"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        shut.contains("single voxel") && shut.contains("unchanged"),
        "{shut}"
    );
    assert!(notes(&report, "grow").contains("no extent along z"));
    assert!(notes(&report, "shut").contains("single voxel"));

    // The grid the kernels were written for: silent.
    let dir = tempfile::tempdir().unwrap();
    let (o, report) = run(dir.path(), "(0.75, 0.75, 1.0)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("finer grid"), "{stderr}");
    assert!(!notes(&report, "grow").contains("finer grid"));
    assert!(!notes(&report, "shut").contains("finer grid"));
}
