//! Helpers shared by the CLI test binaries. Each `tests/*.rs` is a crate of its own that
//! includes this module (`mod common;`) and uses only some of it, hence the `allow`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

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

/// `voxflow run GRAPH --cases cases.tsv --out OUT EXTRA...` in `d`: a batch over the
/// case file the batch tests write there.
pub fn run_cases(d: &Path, graph: &str, out: &str, extra: &[&str]) -> Output {
    let mut args = vec!["run", graph, "--cases", "cases.tsv", "--out", out];
    args.extend(extra);
    voxflow(&args, d)
}

/// A JSON file the binary wrote (report, summary, provenance, submission record),
/// parsed; panics naming the file.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// When `path` was last written: a file a resumed run must leave alone keeps it.
pub fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` (recursively), sorted; none when `dir` does not exist (yet).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    found.sort();
    found
}

/// The outputs `names` are the same, byte for byte, under `a` and `b` (a run through
/// Slurm and the same run made locally).
pub fn assert_same_files(a: &Path, b: &Path, names: &[&str]) {
    for f in names {
        let read = |dir: &Path| {
            std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
        };
        let (x, y) = (read(a), read(b));
        if x != y {
            let why = format!("{f} differs between {} and {}", a.display(), b.display());
            // Text (CSV) shows its diff; binary files that differ only where the lossy
            // text cannot tell still fail.
            assert_eq!(
                String::from_utf8_lossy(&x),
                String::from_utf8_lossy(&y),
                "{why}"
            );
            panic!("{why}");
        }
    }
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

/// Writes `compare.ron` and `cases.tsv` (columns case, a, b) into `d`: phantom cases
/// c1..=c`good` (seed = number), then one whose `a` file is missing and one whose `a` is a
/// truncated .nii.gz, so a batch has two cases that fail for different reasons.
pub fn compare_cases_with_two_bad(d: &Path, good: u64) {
    std::fs::write(d.join("compare.ron"), COMPARE_GRAPH).unwrap();
    let mut tsv = String::from("case\ta\tb\n");
    for i in 1..=good {
        phantom_case(&d.join(format!("data/c{i}")), i, "(48, 48, 6)");
        tsv.push_str(&format!(
            "c{i}\tdata/c{i}/truth.nii.gz\tdata/c{i}/pred.nii.gz\n"
        ));
    }
    let (missing, truncated) = (good + 1, good + 2);
    tsv.push_str(&format!(
        "c{missing}\tdata/c{missing}/truth.nii.gz\tdata/c1/pred.nii.gz\n"
    ));
    std::fs::create_dir_all(d.join(format!("data/c{truncated}"))).unwrap();
    let whole = std::fs::read(d.join("data/c2/truth.nii.gz")).unwrap();
    std::fs::write(
        d.join(format!("data/c{truncated}/truth.nii.gz")),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    tsv.push_str(&format!(
        "c{truncated}\tdata/c{truncated}/truth.nii.gz\tdata/c2/pred.nii.gz\n"
    ));
    std::fs::write(d.join("cases.tsv"), tsv).unwrap();
}

/// Repairs the two bad cases of [`compare_cases_with_two_bad`] (same `good`): the missing
/// file is written, the truncated one is whole again (the cases they were copied from).
pub fn fix_the_two_bad(d: &Path, good: u64) {
    let (missing, truncated) = (good + 1, good + 2);
    std::fs::create_dir_all(d.join(format!("data/c{missing}"))).unwrap();
    for (from, to) in [(1, missing), (2, truncated)] {
        std::fs::copy(
            d.join(format!("data/c{from}/truth.nii.gz")),
            d.join(format!("data/c{to}/truth.nii.gz")),
        )
        .unwrap();
    }
}

/// Runs [`sparse_server_graph`] in the background (`voxflow run ... --out dir/server`) and
/// returns the process and the server's address once `patch_server.addr` exists (60 s
/// at most).
pub fn start_patch_server(dir: &Path, iterations: u64, validate_every: u64) -> (Child, String) {
    let graph = sparse_server_graph(dir, iterations, validate_every);
    start_server_graph(dir, &graph, &[])
}

/// Starts `voxflow run GRAPH --set SETS... --out DIR/server` (a server-only graph) and
/// waits for its address.
pub fn start_server_graph(dir: &Path, graph: &Path, sets: &[&str]) -> (Child, String) {
    let out = dir.join("server");
    let child = Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args([
            "run",
            graph.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr_file = out.join("patch_server.addr");
    let t = Instant::now();
    while !addr_file.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the patch server did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = std::fs::read_to_string(addr_file)
        .unwrap()
        .trim()
        .to_string();
    (child, addr)
}
