//! Test support for voxflow: run a graph file and turn its outputs into readable,
//! stable text for insta snapshots.
//!
//! Volumes become a summary (kind, dims, spacing, dtype, voxel counts per value for
//! masks and labels, value range and mean for images, and a blake3 hash of the voxels),
//! tables become CSV. A change in behaviour then shows up as a readable diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use voxflow_engine::graph::{load_graph, LoadOptions};
use voxflow_engine::run::{run, RunOptions, RunReport};
use voxflow_engine::validate::{validate, Plan, ValidateOptions};
use voxflow_engine::{Geometry, Image, Value};

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Load and validate a graph with `--set` overrides and `--impl` choices; panics with the
/// rendered diagnostics when invalid (tests want to see them).
pub fn plan(path: &Path, set: &[String], implementations: &[String], targets: &[String]) -> Plan {
    let graph = load_graph(path, &LoadOptions::from_args(set)).unwrap_or_else(|d| panic!("{d}"));
    validate(
        &graph,
        &voxflow::registry(),
        &ValidateOptions {
            implementations: implementations.to_vec(),
            targets: targets.to_vec(),
        },
    )
    .unwrap_or_else(|d| panic!("{d}"))
}

/// Run a plan with outputs under `out`; panics listing failed nodes.
pub fn run_ok(plan: &Plan, out: &Path) -> RunReport {
    run_checked(
        plan,
        &RunOptions {
            out_dir: out.to_path_buf(),
            ..Default::default()
        },
    )
}

/// Run a whole graph file (its leaves) with `--set` values; every Table any node makes is
/// in the report's outputs. Panics listing failed nodes.
pub fn run_graph(path: &Path, set: &[String], out: &Path) -> RunReport {
    let p = plan(path, set, &[], &[]);
    run_checked(
        &p,
        &RunOptions {
            out_dir: out.to_path_buf(),
            collect_tables: true,
            ..Default::default()
        },
    )
}

fn run_checked(plan: &Plan, opts: &RunOptions) -> RunReport {
    let report = run(plan, opts);
    let failures: Vec<String> = report
        .failures()
        .map(|n| format!("{} ({}): {:?}", n.id, n.type_name, n.status))
        .collect();
    assert!(failures.is_empty(), "nodes failed: {failures:#?}");
    assert!(report.ok(), "some nodes were skipped: {:?}", report.nodes);
    report
}

/// Voxel types whose little-endian bytes define the content hash.
trait LeBytes: Copy {
    fn extend_le(self, out: &mut Vec<u8>);
}
macro_rules! le_bytes {
    ($($t:ty),*) => {$(impl LeBytes for $t {
        fn extend_le(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_le_bytes());
        }
    })*};
}
le_bytes!(u8, u16, i16, f32);

/// First 16 hex digits of the blake3 hash of the voxels (little endian, x fastest).
fn hash<T: LeBytes>(voxels: &[T]) -> String {
    let mut bytes = Vec::with_capacity(std::mem::size_of_val(voxels));
    voxels.iter().for_each(|v| v.extend_le(&mut bytes));
    blake3::hash(&bytes).to_hex()[..16].to_string()
}

fn geometry_lines(g: &Geometry, out: &mut String) {
    let _ = writeln!(out, "dims: {:?}", g.dims);
    let _ = writeln!(
        out,
        "spacing_mm: [{:.4}, {:.4}, {:.4}]",
        g.spacing[0], g.spacing[1], g.spacing[2]
    );
    let o = g.origin();
    let _ = writeln!(out, "origin_mm: [{:.3}, {:.3}, {:.3}]", o[0], o[1], o[2]);
}

/// A mask's or labels' voxels: dtype, count per value and hash.
fn count_lines<T: LeBytes + Ord + std::fmt::Debug>(dtype: &str, voxels: &[T], out: &mut String) {
    let _ = writeln!(out, "dtype: {dtype}");
    let counts = voxflow_engine::volume::value_counts(voxels);
    let _ = writeln!(out, "counts: {counts:?}");
    let _ = writeln!(out, "blake3: {}", hash(voxels));
}

/// The extremes of a voxel type, and its own `min`/`max` (f32's skip NaN).
trait Extremes: Copy {
    const MIN: Self;
    const MAX: Self;
    fn lower(self, other: Self) -> Self;
    fn upper(self, other: Self) -> Self;
}
macro_rules! extremes {
    ($($t:ty),*) => {$(impl Extremes for $t {
        const MIN: Self = <$t>::MIN;
        const MAX: Self = <$t>::MAX;
        fn lower(self, other: Self) -> Self {
            self.min(other)
        }
        fn upper(self, other: Self) -> Self {
            self.max(other)
        }
    })*};
}
extremes!(i16, f32);

/// An image's voxels: dtype, value range, mean and hash.
fn range_lines<T>(dtype: &str, voxels: &[T], out: &mut String)
where
    T: LeBytes + Extremes + std::fmt::Display + Into<f64>,
{
    let (min, max) = voxels
        .iter()
        .fold((T::MAX, T::MIN), |(a, b), &x| (a.lower(x), b.upper(x)));
    let mean = voxels.iter().map(|&x| x.into()).sum::<f64>() / voxels.len().max(1) as f64;
    let _ = writeln!(
        out,
        "dtype: {dtype}\nrange: [{min}, {max}]\nmean: {mean:.3}\nblake3: {}",
        hash(voxels)
    );
}

/// A readable, stable summary of a value.
pub fn summarize(value: &Value) -> String {
    let mut s = String::new();
    match value {
        Value::Mask(m) => {
            let _ = writeln!(s, "kind: Mask");
            geometry_lines(m.geometry(), &mut s);
            // Summarised as its bytes 0/1, as masks were stored before bit-packing, so
            // snapshots stay comparable.
            count_lines("u8", &m.to_bytes(), &mut s);
        }
        Value::Labels(l) => {
            let _ = writeln!(s, "kind: Labels");
            geometry_lines(l.geometry(), &mut s);
            count_lines("u16", l.as_slice(), &mut s);
        }
        Value::Image(img) => {
            let _ = writeln!(s, "kind: Image");
            match img.as_ref() {
                Image::I16(v) => {
                    geometry_lines(v.geometry(), &mut s);
                    range_lines("i16", v.as_slice(), &mut s);
                }
                Image::F32(v) => {
                    geometry_lines(v.geometry(), &mut s);
                    range_lines("f32", v.as_slice(), &mut s);
                }
            }
        }
        Value::Table(t) => {
            let _ = write!(s, "{}", t.to_csv());
        }
        Value::Opaque(t, _) => {
            let _ = writeln!(s, "kind: {t}");
        }
    }
    s
}

/// Summaries of every output of a run, keyed `node.port`, in one text.
pub fn summarize_outputs(report: &RunReport) -> String {
    let mut s = String::new();
    for (name, v) in &report.outputs {
        let _ = writeln!(s, "== {name}\n{}", summarize(v));
    }
    s
}
