//! Batch and cache: 8 phantom cases through the sarcopenia graph strictly one after another
//! (one case at a time on one thread), with `--jobs 1` (one case at a time, its nodes and
//! loops on every core) and with `--jobs 2` (two cases at a time, each on its share of the
//! cores); and the demo graph run cold, then again with every result in the cache. Each
//! setting reports wall time and the process's CPU time, so it shows how busy the cores were.
//!
//! `cargo run --release -p voxflow-bench --bin batch -- [NX NY NZ]` (default 256 256 48)

use std::path::{Path, PathBuf};
use std::time::Instant;

use voxflow_engine::batch::{run_cases, BatchOptions, Case, CaseStatus};
use voxflow_engine::cache::Cache;
use voxflow_engine::graph::{load_graph, LoadOptions};
use voxflow_engine::run::{run, RunOptions, Status};
use voxflow_engine::validate::{validate, Plan, ValidateOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn plan(path: &Path, set: Vec<String>) -> Plan {
    let g = load_graph(path, &LoadOptions::from_args(&set)).unwrap_or_else(|d| panic!("{d}"));
    validate(&g, &voxflow_nodes::registry(), &ValidateOptions::default())
        .unwrap_or_else(|d| panic!("{d}"))
}

fn main() {
    let registry_graph = repo().join("graphs/sarcopenia_postprocess.ron");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("batch and cache benchmarks ({})", voxflow_bench::machine());

    let dims: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dims = match dims[..] {
        [x, y, z] => [x, y, z],
        _ => [256, 256, 48],
    };
    let size = format!("{}x{}x{}", dims[0], dims[1], dims[2]);
    // Case files: 8 phantoms.
    let make = dir.path().join("make.ron");
    std::fs::write(&make, format!(r#"Graph(name: "make", params: {{ "seed": 1 }}, nodes: {{
        "p": (node: "Phantom", params: (seed: "${{seed}}", dims: ({}, {}, {}))),
        "ct": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
        "pred": (node: "SaveNifti", inputs: (volume: "p.prediction"), params: (path: "prediction.nii.gz")),
    }})"#, dims[0], dims[1], dims[2])).expect("write");
    let mut cases = Vec::new();
    for i in 1..=8u64 {
        let out = dir.path().join(format!("data/case{i}"));
        let r = run(
            &plan(&make, vec![format!("seed={i}")]),
            &RunOptions {
                out_dir: out.clone(),
                ..Default::default()
            },
        );
        assert!(r.ok());
        cases.push(Case {
            id: format!("case{i}"),
            params: vec![
                ("ct".into(), out.join("ct.nii.gz").display().to_string()),
                (
                    "prediction".into(),
                    out.join("prediction.nii.gz").display().to_string(),
                ),
            ],
        });
    }
    let mut times = Vec::new();
    for (name, jobs, threads) in [
        ("one after another, 1 thread", 1usize, Some(1usize)),
        ("--jobs 1", 1, None),
        ("--jobs 2", 2, None),
    ] {
        let out = dir.path().join(format!("out_{}", times.len()));
        let opts = BatchOptions {
            out_dir: out,
            jobs,
            run: RunOptions {
                threads,
                ..Default::default()
            },
            ..Default::default()
        };
        let cpu0 = voxflow_bench::cpu_seconds();
        let t = Instant::now();
        let outcomes = run_cases(
            &cases,
            |c| {
                Ok(plan(
                    &registry_graph,
                    c.params.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                ))
            },
            &opts,
        );
        let secs = t.elapsed().as_secs_f64();
        let cpu = voxflow_bench::cpu_seconds() - cpu0;
        assert!(outcomes.iter().all(|o| o.status == CaseStatus::Ok));
        println!(
            "8 cases ({size}), sarcopenia graph, {name}: {secs:.2} s wall, {cpu:.2} s CPU \
             ({:.2} cores busy)",
            cpu / secs
        );
        times.push(secs);
    }
    println!(
        "--jobs 2 vs one after another: {:.2}x faster; vs --jobs 1: {:.2}x faster",
        times[0] / times[2],
        times[1] / times[2]
    );

    // Cache: the demo graph, cold then warm (median of 5 warm runs).
    let demo = repo().join("graphs/demo.ron");
    let p = plan(&demo, vec![]);
    let cache_dir = dir.path().join("cache");
    let mk = || RunOptions {
        out_dir: dir.path().join("demo_out"),
        cache: Some(Cache::open(&cache_dir).expect("cache")),
        cache_scope: "demo".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let r = run(&p, &mk());
    let cold = t.elapsed().as_secs_f64();
    assert!(r.nodes.iter().all(|n| n.status == Status::Ok));
    let warm = voxflow_bench::median_secs(5, || {
        let r = run(&p, &mk());
        assert!(r.nodes.iter().all(|n| n.status == Status::Cached));
    });
    let uncached = voxflow_bench::median_secs(3, || {
        run(
            &p,
            &RunOptions {
                out_dir: dir.path().join("demo_plain"),
                ..Default::default()
            },
        )
    });
    println!("demo graph: no cache {:.1} ms, cold cache {:.1} ms, all reused {:.1} ms: {:.1}x faster than uncached", uncached * 1e3, cold * 1e3, warm * 1e3, uncached / warm);
}
