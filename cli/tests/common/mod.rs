//! Helpers shared by the CLI test binaries. Each `tests/*.rs` is a crate of its own that
//! includes this module (`mod common;`) and uses only some of it, hence the `allow`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (the graphs and macros the tests run).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs the `voxflow` binary in `cwd` and waits for it.
pub fn voxflow(args: &[&str], cwd: &Path) -> Output {
    voxflow_env(args, cwd, &[])
}

/// [`voxflow`] with extra environment variables. `SLURM_JOB_ID` is removed, so a test run
/// inside a Slurm job behaves as outside one.
pub fn voxflow_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxflow"));
    c.args(args).current_dir(cwd).env_remove("SLURM_JOB_ID");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run voxflow")
}

/// stdout then stderr, as a user reads them.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes `dir/serve.ron`, a server-only graph: two sparse phantom cases, a tiny network
/// (2 levels, 4 filters) and `iterations` short steps, validated every `validate_every`.
pub fn sparse_server_graph(dir: &Path, iterations: u64, validate_every: u64) -> PathBuf {
    let macro_path = repo().join("graphs/macros/sparse_phantom.ron");
    let g = format!(
        r#"Graph(
    name: "serve",
    nodes: {{
        "a": (node: "{m}", params: (seed: 1, dims: (64, 48, 8), slices_every: 2)),
        "b": (node: "{m}", params: (seed: 2, dims: (64, 48, 8), slices_every: 2)),
        "val": (node: "Phantom", params: (seed: 3, dims: (64, 48, 4))),
        "config": (node: "TrainingConfig", params: (
            architecture: (kind: "unet2d", in_channels: 1, classes: 3, levels: 2, base_filters: 4,
                           kernel: 3, batch_norm: false, upsampling: "transposed"),
            hyper: (iterations: {iterations}, validate_every: {validate_every}, patch_size: 16, batch_size: 4, learning_rate: 1e-2),
        )),
        "server": (node: "PatchServer", inputs: (
            config: "config", images: ["a.ct", "b.ct"], labels: ["a.labels", "b.labels"],
            weights: ["a.weights", "b.weights"], val_images: ["val.ct"], val_labels: ["val.truth"])),
    }},
)"#,
        m = macro_path.display()
    );
    let path = dir.join("serve.ron");
    std::fs::write(&path, g).unwrap();
    path
}

/// Writes phantom case files (`truth.nii.gz`, `pred.nii.gz`) into `dir`.
pub fn phantom_case(dir: &Path, seed: u64, dims: &str) {
    let g = format!(
        r#"Graph(name: "case", nodes: {{
            "p": (node: "Phantom", params: (seed: {seed}, dims: {dims})),
            "t": (node: "SaveNifti", inputs: (volume: "p.truth"), params: (path: "truth.nii.gz")),
            "q": (node: "SaveNifti", inputs: (volume: "p.prediction"), params: (path: "pred.nii.gz")),
        }})"#
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("make.ron"), g).unwrap();
    let o = voxflow(&["run", "make.ron", "--out", ".", "-q"], dir);
    assert!(o.status.success(), "{}", text(&o));
}

/// Dice of two label files (graph params `a`, `b`) into `dice.csv`: the batch tests' case
/// graph.
pub const COMPARE_GRAPH: &str = r#"Graph(
    name: "compare_case",
    params: { "a": None, "b": None },
    nodes: {
        "a": (node: "LoadLabels", params: (path: "${a}")),
        "b": (node: "LoadLabels", params: (path: "${b}")),
        "dice": (node: "CompareMasks", inputs: (a: "a", b: "b"), params: (labels: [1])),
        "save": (node: "WriteTable", inputs: (table: "dice"), params: (path: "dice.csv")),
    },
)
"#;
