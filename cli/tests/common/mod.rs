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
    Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run voxflow")
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
