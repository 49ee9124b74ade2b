//! Engine overhead: load, validate and run generated graphs of 10,000 trivial nodes, as a
//! long chain and as a wide fan-out. Target: under 100 ms each.
//!
//! `cargo run --release -p voxflow-bench --bin engine_overhead`

use std::fmt::Write as _;
use std::sync::Arc;

use voxflow_engine::graph::{load_graph, LoadOptions};
use voxflow_engine::run::{run, RunOptions};
use voxflow_engine::validate::{validate, ValidateOptions};
use voxflow_engine::*;

/// A node that passes a tiny table through (or makes one): the cheapest possible work, so
/// the time measured is the engine's.
struct Pass;
struct PassNode;
impl Node for PassNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let v = match ctx.input("in") {
            Some(v) => v.clone(),
            None => Value::Table(Arc::new(Table::new(["x"]))),
        };
        ctx.set_output("out", v);
        Ok(())
    }
}
impl NodeType for Pass {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Pass",
            summary: "Passes a table through.",
            doc: "",
            category: "bench",
            inputs: vec![InputSpec::optional("in", &[PortType::Table], "a table")],
            outputs: vec![OutputSpec::new("out", PortType::Table, "the same table")],
            params: vec![],
            impls: vec![ImplSpec::new("default", "passes through")],
        }
    }
    fn examples(&self) -> Vec<Example> {
        vec![]
    }
    fn build(&self, _: &serde_json::Value, _: &str) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Ok(Box::new(PassNode))
    }
}

fn chain(n: usize) -> String {
    let mut s = String::from("Graph(name: \"chain\", nodes: {\n\"n0\": (node: \"Pass\"),\n");
    for i in 1..n {
        let _ = writeln!(
            s,
            "\"n{i}\": (node: \"Pass\", inputs: (in: \"n{}\")),",
            i - 1
        );
    }
    s + "})\n"
}

fn fan_out(n: usize) -> String {
    let mut s = String::from("Graph(name: \"fan\", nodes: {\n\"root\": (node: \"Pass\"),\n");
    for i in 1..n {
        let _ = writeln!(s, "\"n{i}\": (node: \"Pass\", inputs: (in: \"root\")),");
    }
    s + "})\n"
}

fn main() {
    let mut reg = Registry::new();
    reg.add(Pass);
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "engine overhead, 10,000 trivial nodes ({}), median of 7",
        voxflow_bench::machine()
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "graph", "load+valid", "run", "total"
    );
    for (name, text) in [("chain", chain(10_000)), ("fan-out", fan_out(10_000))] {
        let path = dir.path().join(format!("{name}.ron"));
        std::fs::write(&path, text).expect("write graph");
        let validate_s = voxflow_bench::median_secs(7, || {
            let g = load_graph(&path, &LoadOptions::default()).expect("load");
            validate(&g, &reg, &ValidateOptions::default()).expect("valid")
        });
        let g = load_graph(&path, &LoadOptions::default()).expect("load");
        let plan = validate(&g, &reg, &ValidateOptions::default()).expect("valid");
        let run_s = voxflow_bench::median_secs(7, || {
            let r = run(&plan, &RunOptions::default());
            assert!(r.ok());
            r
        });
        println!(
            "{name:<10} {:>9.1} ms {:>9.1} ms {:>9.1} ms",
            validate_s * 1e3,
            run_s * 1e3,
            (validate_s + run_s) * 1e3
        );
    }
}
