//! The test kit: [`run_node`] (one node standalone), [`median`] (of timings), and what
//! tests and benchmarks need from outside the repository: the real CT test data
//! (`../shared/data` beside the repository) and a Python with the peer libraries (scipy,
//! SimpleITK, nibabel...) for agreement checks. When either is absent the test skips, and
//! says so twice: on stderr, and as a line in `$VOXFLOW_SKIP_LOG` (when set), which
//! `.ci/run` prints after the tests, so skipped agreement checks show in the test summary
//! instead of passing silently. With `VOXFLOW_REQUIRE_PEERS=1` (set by `.ci/run` once its
//! Python peers installed) a missing peer fails the test instead.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use voxflow_engine::{NodeContext, NodeError, NodeType, Value};

/// Record that `test` skipped and why (stderr and the skip log).
pub fn skip(test: &str, why: &str) {
    eprintln!("skipping {test}: {why}");
    if let Some(log) = std::env::var_os("VOXFLOW_SKIP_LOG") {
        // One short write per line with O_APPEND: lines of parallel test processes do
        // not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(format!("{test}: {why}\n").as_bytes());
        }
    }
}

/// The shared data folder: `$VOXFLOW_SHARED_DATA`, else `../shared/data` next to the
/// repository root. `None` (the skip recorded for `test`) when absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("VOXFLOW_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("README.md").exists() {
        Some(dir)
    } else {
        skip(test, &format!("shared data not found at {}", dir.display()));
        None
    }
}

/// The peers folder (`sarcopenia_ref.py`, `peers.py`): beside the shared data.
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("VOXFLOW_SHARED_DATA") {
        Some(d) => PathBuf::from(d).join("../peers"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers"),
    }
}

/// `$VOXFLOW_PYTHON` when it imports every module of `modules` (e.g. `["numpy",
/// "scipy.ndimage"]`); `None` (the skip recorded for `test`) otherwise. Panics instead
/// when `VOXFLOW_REQUIRE_PEERS=1`: CI installed the peers, so their absence is a fault.
pub fn python(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let missing = |why: String| {
        if std::env::var("VOXFLOW_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
            panic!("{test}: {why} (VOXFLOW_REQUIRE_PEERS=1)");
        }
        skip(test, &why);
        None
    };
    let Some(python) = std::env::var_os("VOXFLOW_PYTHON").map(PathBuf::from) else {
        return missing("VOXFLOW_PYTHON is not set".into());
    };
    let probe = Command::new(&python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(python),
        Ok(o) => missing(format!(
            "{} cannot import {}: {}",
            python.display(),
            modules.join(", "),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => missing(format!("cannot start {}: {e}", python.display())),
    }
}

/// The median of `values` (the upper one of the middle two for an even count), for tests
/// and benchmarks that time several repetitions. Sorts `values` in place; NaN sorts last.
///
/// ```
/// assert_eq!(voxflow_nodes::testdata::median(&mut [3.0, 1.0, 2.0]), 2.0);
/// ```
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Build one node of type `t` with `params` and implementation `imp`, feed it `inputs`
/// and run it standalone (no graph, output folder `.`); returns every output by port.
/// A params error comes back as [`NodeError::Other`] listing the errors.
pub fn run_node(
    t: &dyn NodeType,
    params: serde_json::Value,
    imp: &str,
    inputs: Vec<(&str, Value)>,
) -> Result<BTreeMap<String, Value>, NodeError> {
    let node = t
        .build(&params, imp)
        .map_err(|e| NodeError::Other(format!("{e:?}")))?;
    let mut ctx = NodeContext::standalone("t", std::path::Path::new("."));
    for (port, v) in inputs {
        ctx = ctx.with_input(port, v);
    }
    node.run(&mut ctx)?;
    Ok(ctx.take_outputs())
}

/// [`run_node`] with the `default` implementation.
pub fn run_default(
    t: &dyn NodeType,
    params: serde_json::Value,
    inputs: Vec<(&str, Value)>,
) -> Result<BTreeMap<String, Value>, NodeError> {
    run_node(t, params, "default", inputs)
}

/// The shared data folder and its reference measurements of the real CT
/// (`reference_values_ct_sm.json`, made with scipy/numpy), or `None` when the data is
/// absent (`test` is recorded as skipped, see [`shared_data`]).
pub fn ct_sm_reference(test: &str) -> Option<(PathBuf, serde_json::Value)> {
    let data = shared_data(test)?;
    let path = data.join("reference_values_ct_sm.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let refs = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some((data, refs))
}

/// Sets `boxes` boxes of random corner and size (up to half the volume plus 2 voxels per
/// axis, some sticking out of it so objects touch the border) in `mask`, a mask's bytes
/// on grid `g`: the objects of the random masks the morphology and agreement tests use.
pub fn random_boxes(
    rng: &mut impl rand::Rng,
    g: &voxflow_engine::Geometry,
    mask: &mut [u8],
    boxes: usize,
) {
    let dims = g.dims;
    for _ in 0..boxes {
        let lo: [i64; 3] = std::array::from_fn(|a| rng.random_range(-3..dims[a] as i64 + 1));
        let len: [i64; 3] = std::array::from_fn(|a| rng.random_range(1..=dims[a] as i64 / 2 + 2));
        for z in lo[2].max(0)..(lo[2] + len[2]).min(dims[2] as i64) {
            for y in lo[1].max(0)..(lo[1] + len[1]).min(dims[1] as i64) {
                for x in lo[0].max(0)..(lo[0] + len[0]).min(dims[0] as i64) {
                    mask[g.index(x as usize, y as usize, z as usize)] = 1;
                }
            }
        }
    }
}
