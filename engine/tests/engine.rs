//! Engine behaviour on small graphs of test node types: validation diagnostics with
//! positions, parallel branches, failure isolation, implementation switching, macros.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use voxflow_engine::graph::{load_graph, LoadOptions, Override};
use voxflow_engine::run::{run, RunOptions, Status};
use voxflow_engine::validate::{validate, Plan, ValidateOptions};
use voxflow_engine::*;

// ---- test node types --------------------------------------------------------------

fn table_of(v: f64) -> Value {
    let mut t = Table::new(["value"]);
    t.push(vec![Cell::Float(v)]);
    Value::Table(Arc::new(t))
}

fn value_of(v: &Value) -> f64 {
    match v {
        Value::Table(t) => t.rows[0][0].as_f64().unwrap(),
        _ => panic!("not a table"),
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
struct NumberParams {
    value: f64,
    scale: f64,
}

struct Number;
struct NumberNode(f64);
impl Node for NumberNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        ctx.set_output("out", table_of(self.0));
        Ok(())
    }
}
impl NodeType for Number {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Number",
            summary: "A constant.",
            doc: "",
            category: "test",
            inputs: vec![],
            outputs: vec![OutputSpec::new("out", PortType::Table, "the value")],
            params: vec![
                ParamSpec::new("value", "f64", "0.0", "", "the value"),
                ParamSpec::new("scale", "f64", "1.0", "", "factor, > 0"),
            ],
            impls: vec![
                ImplSpec::new("plain", "as given"),
                ImplSpec::new("doubled", "twice the value"),
            ],
        }
    }
    fn examples(&self) -> Vec<Example> {
        vec![]
    }
    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p: NumberParams = parse_params(params).map_err(|e| vec![e])?;
        let scale = if params.get("scale").is_some() {
            p.scale
        } else {
            1.0
        };
        if scale <= 0.0 {
            return Err(vec![ParamError::field(
                "scale",
                format!("must be > 0, got {scale}"),
            )]);
        }
        let k = if implementation == "doubled" {
            2.0
        } else {
            1.0
        };
        Ok(Box::new(NumberNode(p.value * scale * k)))
    }
}

/// Sums a list of tables; optionally waits until another node of the same `group` is
/// running at the same time (proves overlap without timing), failing after 10 s.
struct Sum;
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
struct SumParams {
    rendezvous: Option<String>,
    fail: bool,
}
struct SumNode(SumParams);

fn rendezvous(group: &str) -> bool {
    static STATE: OnceLock<(Mutex<HashMap<String, usize>>, Condvar)> = OnceLock::new();
    let (m, cv) = STATE.get_or_init(Default::default);
    let mut g = m.lock().unwrap();
    *g.entry(group.to_string()).or_default() += 1;
    cv.notify_all();
    let (g, res) = cv
        .wait_timeout_while(g, Duration::from_secs(10), |g| g[group] < 2)
        .unwrap();
    drop(g);
    !res.timed_out()
}

impl Node for SumNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        if self.0.fail {
            return Err(NodeError::Other("asked to fail".into()));
        }
        if let Some(g) = &self.0.rendezvous {
            if !rendezvous(g) {
                return Err(NodeError::Other(format!(
                    "no partner for rendezvous {g}: branches did not overlap"
                )));
            }
        }
        let s: f64 = ctx.input_list("items").into_iter().map(value_of).sum();
        ctx.set_output("out", table_of(s));
        Ok(())
    }
}
impl NodeType for Sum {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Sum",
            summary: "Sum of tables.",
            doc: "",
            category: "test",
            inputs: vec![InputSpec::list("items", &[PortType::Table], "values")],
            outputs: vec![OutputSpec::new("out", PortType::Table, "the sum")],
            params: vec![
                ParamSpec::new("rendezvous", "Option<String>", "None", "", "group"),
                ParamSpec::new("fail", "bool", "false", "", "fail"),
            ],
            impls: vec![ImplSpec::new("default", "")],
        }
    }
    fn examples(&self) -> Vec<Example> {
        vec![]
    }
    fn build(&self, params: &serde_json::Value, _: &str) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Ok(Box::new(SumNode(
            parse_params(params).map_err(|e| vec![e])?,
        )))
    }
}

/// Takes a Mask, to test port type mismatches.
struct NeedsMask;
struct Nop;
impl Node for Nop {
    fn run(&self, _: &mut NodeContext) -> Result<(), NodeError> {
        Ok(())
    }
}
impl NodeType for NeedsMask {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "NeedsMask",
            summary: "Consumes a mask.",
            doc: "",
            category: "test",
            inputs: vec![InputSpec::required("mask", &[PortType::Mask], "a mask")],
            outputs: vec![],
            params: vec![],
            impls: vec![ImplSpec::new("default", "")],
        }
    }
    fn examples(&self) -> Vec<Example> {
        vec![]
    }
    fn build(&self, _: &serde_json::Value, _: &str) -> Result<Box<dyn Node>, Vec<ParamError>> {
        Ok(Box::new(Nop))
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(Number);
    r.add(Sum);
    r.add(NeedsMask);
    r
}

// ---- helpers ----------------------------------------------------------------------

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The macro both macro tests use: `y = x + factor` (`factor` defaults to 1.0).
fn write_scale_macro(dir: &Path) -> PathBuf {
    write(
        dir,
        "scale.ron",
        r#"Graph(
        name: "scale",
        params: { "factor": 1.0 },
        inputs: ["x"],
        nodes: {
            "k": (node: "Number", params: (value: "${factor}")),
            "s": (node: "Sum", inputs: (items: ["x", "k"])),
        },
        outputs: { "y": "s" },
    )"#,
    )
}

/// Load with `--set` values and validate with `--impl` choices, running the leaves.
fn plan(path: &Path, set: &[&str], impls: &[&str]) -> Result<Plan, String> {
    plan_for(path, set, impls, &[])
}

/// [`plan`] that runs only what the `targets` need.
fn plan_for(path: &Path, set: &[&str], impls: &[&str], targets: &[&str]) -> Result<Plan, String> {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    let g = load_graph(path, &LoadOptions::from_args(set)).map_err(|d| d.to_string())?;
    validate(
        &g,
        &registry(),
        &ValidateOptions {
            implementations: strings(impls),
            targets: strings(targets),
        },
    )
    .map_err(|d| d.to_string())
}

fn run_all(plan: &Plan) -> voxflow_engine::run::RunReport {
    run(
        plan,
        &RunOptions {
            threads: Some(4),
            ..Default::default()
        },
    )
}

// ---- tests ------------------------------------------------------------------------

#[test]
fn five_mistakes_give_five_diagnostics_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"Graph(
    name: "broken",
    params: { "v": 2.0 },
    nodes: {
        "a": (node: "Numbr", params: (value: 1.0)),
        "b": (node: "Number", params: (valeu: 1.0)),
        "c": (node: "Number", params: (value: "${vv}")),
        "d": (node: "Sum", inputs: (items: ["b", "e"])),
        "f": (node: "NeedsMask", inputs: (mask: "d")),
    },
)
"#;
    let path = write(dir.path(), "broken.ron", text);
    let err = plan(&path, &[], &[]).unwrap_err();
    let file = path.display().to_string();
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 5, "{err}");
    assert!(
        errors[0].starts_with(&format!("{file}:5:21: error: unknown node type `Numbr`")),
        "{err}"
    );
    assert!(
        errors[1].starts_with(&format!("{file}:6:40: error: Number has no param `valeu`")),
        "{err}"
    );
    assert!(
        errors[2].starts_with(&format!("{file}:7:47: error: unresolved `${{vv}}`")),
        "{err}"
    );
    assert!(
        errors[3].starts_with(&format!("{file}:8:50: error: no node named `e`")),
        "{err}"
    );
    assert!(
        errors[4].starts_with(&format!(
            "{file}:9:49: error: port type mismatch: `d.out` is Table"
        )),
        "{err}"
    );
    assert!(err.contains("did you mean `Number`?"), "{err}");
    assert!(err.contains("did you mean `value`?"), "{err}");
    assert!(err.contains("did you mean `v`?"), "{err}");
    assert!(err.ends_with("5 errors"), "{err}");
}

#[test]
fn a_correct_graph_validates_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "ok.ron",
        r#"Graph(name: "ok", nodes: {
        "a": (node: "Number", params: (value: 1.5)),
        "b": (node: "Number", params: (value: 2.0)),
        "s": (node: "Sum", inputs: (items: ["a", "b"])),
    }, outputs: { "total": "s" })"#,
    );
    let p = plan(&path, &[], &[]).unwrap();
    assert!(p.warnings.items.is_empty());
    let p2 = plan_for(&path, &[], &[], &["s"]).unwrap();
    let r = run(&p2, &RunOptions::default());
    assert!(r.ok());
    assert_eq!(value_of(&r.outputs["s.out"]), 3.5);
    assert_eq!(p.nodes.len(), 3);
}

#[test]
fn ill_typed_and_out_of_range_params_point_at_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "p.ron", "Graph(name: \"p\", nodes: {\n  \"a\": (node: \"Number\", params: (value: \"x\")),\n  \"b\": (node: \"Number\", params: (scale: -1.0)),\n})");
    let err = plan(&path, &[], &[]).unwrap_err();
    assert!(
        err.contains(
            "p.ron:2:41: error: Number param `value`: invalid type: string \"x\", expected f64"
        ),
        "{err}"
    );
    assert!(
        err.contains("p.ron:3:41: error: Number param `scale`: must be > 0, got -1"),
        "{err}"
    );
}

#[test]
fn independent_branches_overlap_and_a_failure_stays_in_its_branch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "par.ron",
        r#"Graph(name: "par", nodes: {
        "a": (node: "Number", params: (value: 1.0)),
        "left": (node: "Sum", inputs: (items: ["a"]), params: (rendezvous: "lr")),
        "right": (node: "Sum", inputs: (items: ["a"]), params: (rendezvous: "lr")),
        "bad": (node: "Sum", inputs: (items: ["a"]), params: (fail: true)),
        "after_bad": (node: "Sum", inputs: (items: ["bad"])),
        "after_left": (node: "Sum", inputs: (items: ["left"])),
    })"#,
    );
    let p = plan(&path, &[], &[]).unwrap();
    let r = run_all(&p);
    let status: HashMap<&str, &Status> =
        r.nodes.iter().map(|n| (n.id.as_str(), &n.status)).collect();
    assert_eq!(
        status["left"],
        &Status::Ok,
        "left and right must run at the same time"
    );
    assert_eq!(status["right"], &Status::Ok);
    assert_eq!(status["after_left"], &Status::Ok);
    assert_eq!(status["bad"], &Status::Failed("asked to fail".into()));
    assert!(
        matches!(status["after_bad"], Status::Skipped(why) if why.contains("`bad` (Sum) failed"))
    );
    assert!(!r.ok());
}

#[test]
fn impl_switches_per_node_and_globally_and_the_report_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "impl.ron",
        r#"Graph(name: "impl", nodes: {
        "a": (node: "Number", params: (value: 1.0)),
        "b": (node: "Number", params: (value: 1.0), impl: "plain"),
    })"#,
    );
    let p = plan_for(&path, &[], &["Number=doubled"], &["a", "b"]).unwrap();
    let r = run(&p, &RunOptions::default());
    assert_eq!(value_of(&r.outputs["a.out"]), 2.0);
    assert_eq!(value_of(&r.outputs["b.out"]), 1.0);
    let json = r.to_json();
    assert_eq!(json["nodes"][0]["implementation"], "doubled");
    assert_eq!(json["nodes"][1]["implementation"], "plain");
    let err = plan(&path, &[], &["Number=fast"]).unwrap_err();
    assert!(
        err.contains("Number has no implementation `fast`") && err.contains("`plain`, `doubled`"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "impl2.ron",
        "Graph(name: \"i\", nodes: { \"a\": (node: \"Number\", impl: \"doubld\") })",
    );
    let err = plan(&path, &[], &[]).unwrap_err();
    assert!(
        err.contains("impl2.ron:1:55: error: Number has no implementation `doubld`"),
        "{err}"
    );
}

#[test]
fn a_macro_used_twice_with_different_params() {
    let dir = tempfile::tempdir().unwrap();
    write_scale_macro(dir.path());
    let path = write(
        dir.path(),
        "main.ron",
        r#"Graph(name: "main", nodes: {
        "one": (node: "Number", params: (value: 1.0)),
        "m1": (node: "scale.ron", inputs: (x: "one"), params: (factor: 10.0)),
        "m2": (node: "scale.ron", inputs: (x: "m1"), params: (factor: 100.0)),
        "total": (node: "Sum", inputs: (items: ["m2.y"])),
    })"#,
    );
    let p = plan(&path, &[], &[]).unwrap();
    let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["one", "m1/k", "m1/s", "m2/k", "m2/s", "total"]);
    let p = plan_for(&path, &[], &[], &["total"]).unwrap();
    let r = run(&p, &RunOptions::default());
    assert_eq!(value_of(&r.outputs["total.out"]), 111.0);

    // A bad param name in the macro use is reported at the use site.
    let path = write(dir.path(), "bad.ron", "Graph(name: \"b\", nodes: {\n \"one\": (node: \"Number\"),\n \"m\": (node: \"scale.ron\", inputs: (x: \"one\"), params: (factr: 2.0)),\n})");
    let err = plan(&path, &[], &[]).unwrap_err();
    assert!(
        err.contains("bad.ron:3:56: error: the macro") && err.contains("did you mean `factor`?"),
        "{err}"
    );
}

#[test]
fn cycles_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "cyc.ron",
        r#"Graph(name: "c", nodes: {
        "a": (node: "Sum", inputs: (items: ["c"])),
        "b": (node: "Sum", inputs: (items: ["a"])),
        "c": (node: "Sum", inputs: (items: ["b"])),
    })"#,
    );
    let err = plan(&path, &[], &[]).unwrap_err();
    assert!(err.contains("cycle: a -> b -> c -> a"), "{err}");
}

#[test]
fn set_overrides_graph_and_node_params_checked_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "set.ron",
        r#"Graph(name: "s", params: { "v": 1.0 }, nodes: {
        "a": (node: "Number", params: (value: "${v}")),
        "b": (node: "Number", params: (value: 1.0)),
        "s": (node: "Sum", inputs: (items: ["a", "b"])),
    })"#,
    );
    let p = plan_for(&path, &["v=5", "b.value=7.5"], &[], &["s"]).unwrap();
    assert_eq!(
        value_of(&run(&p, &RunOptions::default()).outputs["s.out"]),
        12.5
    );
    let err = plan(&path, &["b.value=abc", "w=1", "x.value=1"], &[]).unwrap_err();
    assert!(
        err.contains(
            "<command line>:1:15: error: Number param `value`: invalid type: string \"abc\""
        ),
        "{err}"
    );
    assert!(err.contains("has no param `w`"), "{err}");
    assert!(err.contains("--set: no node named `x`"), "{err}");
    // Typed overrides (a case file's column and cell) load as the `--set` text would,
    // diagnostics pointing at the same place; an argument without `=` is reported with
    // the graph's other problems.
    let typed = LoadOptions {
        set: vec![Override::new("b.value", "abc"), Override::parse("nothing")],
    };
    let err = load_graph(&path, &typed)
        .map_err(|d| d.to_string())
        .and_then(|g| {
            validate(&g, &registry(), &ValidateOptions::default()).map_err(|d| d.to_string())
        })
        .unwrap_err();
    assert!(
        err.contains(
            "<command line>:1:15: error: Number param `value`: invalid type: string \"abc\""
        ),
        "{err}"
    );
    assert!(
        err.contains("<command line>:2:7: error: `--set nothing` needs the form KEY=VALUE"),
        "{err}"
    );
    assert_eq!(Override::parse("k=a=b"), Override::new("k", "a=b"));
    assert_eq!(Override::new("k", "a=b").to_string(), "k=a=b");
}

#[test]
fn only_nodes_needed_for_the_targets_run_and_unused_outputs_warn() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.ron",
        r#"Graph(name: "t", nodes: {
        "a": (node: "Number", params: (value: 1.0)),
        "b": (node: "Number", params: (value: 2.0)),
        "fails": (node: "Sum", inputs: (items: ["b"]), params: (fail: true)),
    })"#,
    );
    let p = plan_for(&path, &[], &[], &["a"]).unwrap();
    let r = run(&p, &RunOptions::default());
    assert!(r.ok());
    assert_eq!(r.nodes[1].status, Status::NotNeeded);
    assert_eq!(r.nodes[2].status, Status::NotNeeded);
    let p = plan(&path, &[], &[]).unwrap();
    let w = p.warnings.to_string();
    assert!(
        w.contains("t.ron:2:9: warning: nobody uses the output of Number `a`"),
        "{w}"
    );
    assert!(
        w.contains("t.ron:4:9: warning: nobody uses the output of Sum `fails`"),
        "{w}"
    );
}

#[test]
fn cache_reuses_unchanged_nodes_and_reruns_exactly_what_a_change_affects() {
    use voxflow_engine::cache::Cache;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.ron",
        r#"Graph(name: "c", params: { "x": 1.0 }, nodes: {
        "a": (node: "Number", params: (value: "${x}")),
        "b": (node: "Number", params: (value: 10.0)),
        "sa": (node: "Sum", inputs: (items: ["a"])),
        "sb": (node: "Sum", inputs: (items: ["b"])),
        "total": (node: "Sum", inputs: (items: ["sa", "sb"])),
    })"#,
    );
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let go = |set: &[&str]| {
        let p = plan_for(&path, set, &[], &["total"]).unwrap();
        let r = run(
            &p,
            &RunOptions {
                cache: Some(cache.clone()),
                cache_scope: "c".into(),
                ..Default::default()
            },
        );
        assert!(r.ok(), "{:?}", r.nodes);
        let ran: Vec<String> = r
            .nodes
            .iter()
            .filter(|n| n.status == Status::Ok)
            .map(|n| n.id.clone())
            .collect();
        let why: HashMap<String, String> = r
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.cache.clone().unwrap_or_default()))
            .collect();
        (value_of(&r.outputs["total.out"]), ran, why)
    };
    let (v, ran, why) = go(&[]);
    assert_eq!((v, ran.len()), (11.0, 5));
    assert_eq!(why["a"], "ran: no earlier run in the cache");
    let (v, ran, why) = go(&[]);
    assert_eq!(v, 11.0);
    assert!(ran.is_empty(), "{ran:?}");
    assert!(why.values().all(|w| w == "reused"), "{why:?}");
    let (v, ran, why) = go(&["x=2"]);
    assert_eq!(v, 12.0);
    assert_eq!(ran, ["a", "sa", "total"]);
    assert_eq!(why["a"], "ran: param value changed");
    assert_eq!(why["sa"], "ran: input items changed (from a)");
    assert_eq!(why["sb"], "reused");

    // Corrupt every stored value: each is detected when loaded and recomputed, which
    // makes its inputs needed in turn, down to the sources.
    for e in walkdir::WalkDir::new(dir.path().join("cache/objects")) {
        let e = e.unwrap().into_path();
        if e.is_file() && e.extension().is_some_and(|x| x == "bin") {
            let mut bytes = std::fs::read(&e).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&e, bytes).unwrap();
        }
    }
    let (v, ran, why) = go(&["x=2"]);
    assert_eq!(v, 12.0);
    assert_eq!(ran, ["a", "b", "sa", "sb", "total"]);
    assert!(
        why.values().all(|w| w == "ran: cache entry corrupt"),
        "{why:?}"
    );
}

#[test]
fn an_unset_param_is_named_through_chains_and_macros_and_a_template_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    write_scale_macro(dir.path());
    // `f` is unset; `g` is `f` by another name; the macro's `factor` is `g` in `m` and the
    // unset `h` in `m2` (one macro text, two origins).
    let path = write(
        dir.path(),
        "template.ron",
        r#"Graph(name: "template", params: { "f": None, "g": "${f}", "h": None, "label": "${f}" }, nodes: {
        "one": (node: "Number", params: (value: 1.0)),
        "m": (node: "scale.ron", inputs: (x: "one"), params: (factor: "${g}")),
        "m2": (node: "scale.ron", inputs: (x: "one"), params: (factor: "${h}")),
        "total": (node: "Sum", inputs: (items: ["m.y"]), params: (rendezvous: "group ${label}")),
    })"#,
    );
    let err = plan(&path, &[], &[]).unwrap_err();
    assert!(
        err.contains("scale.ron:6:")
            && err.contains("graph param `f` has no value; set it with --set f=VALUE")
            && err.contains("template.ron:5:")
            && err.contains("3 errors"),
        "{err}"
    );
    assert_eq!(err.matches("set it with --set f=VALUE").count(), 2, "{err}");
    assert_eq!(err.matches("set it with --set h=VALUE").count(), 1, "{err}");
    assert!(!err.contains("`factor`") && !err.contains("`g`"), "{err}");

    let g = load_graph(&path, &LoadOptions::default()).unwrap();
    let t =
        voxflow_engine::validate::validate_template(&g, &registry(), &Default::default()).unwrap();
    assert_eq!(t.unset, ["f", "h"]);
    let ids: Vec<&str> = t.outline.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["one", "m/k", "m/s", "m2/k", "m2/s", "total"]);
    // Edges survive for drawing: m/s reads one and m/k; total reads m/s.
    assert_eq!(t.outline.nodes[2].inputs[0].1.len(), 2);
    assert_eq!(t.outline.nodes[5].inputs[0].1[0].from, 2);

    // A template with another mistake still fails.
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"Sum\"", "\"Summ\"");
    let bad = write(dir.path(), "bad.ron", &bad);
    let g = load_graph(&bad, &LoadOptions::default()).unwrap();
    let e = voxflow_engine::validate::validate_template(&g, &registry(), &Default::default());
    assert!(e.is_err_and(|d| d.to_string().contains("unknown node type `Summ`")));

    // Once set, it runs (without the rendezvous, which would wait for a partner).
    let p = plan(&path, &["f=10.0", "h=1.0", "total.rendezvous=None"], &[]).unwrap();
    let r = run_all(&p);
    assert!(r.failures().next().is_none());
}

#[test]
fn expansion_past_the_limits_stops_the_load_with_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = vec!["\"a0\": \"0123456789abcdef\"".to_string()];
    params.extend((1..=40).map(|i| format!("\"a{i}\": \"${{a{}}}${{a{}}}\"", i - 1, i - 1)));
    let text = format!(
        "Graph(name: \"b\", params: {{ {} }}, nodes: {{ \"n\": (node: \"Number\", params: (value: 1.0)) }})",
        params.join(", ")
    );
    let path = write(dir.path(), "bomb.ron", &text);
    let d = load_graph(&path, &LoadOptions::default()).unwrap_err();
    assert_eq!(d.error_count(), 1, "{d}");
    // 16 bytes doubled 16 times is 1 MiB, still allowed: a17 is the first value past it.
    assert!(
        d.to_string()
            .contains("`${a16}` makes graph param `a17` of")
            && d.to_string()
                .contains("larger than 1 MiB (the limit per value)"),
        "{d}"
    );
}

#[test]
fn a_session_cleans_records_by_folder_kind_and_resumes_only_an_unchanged_case() {
    use voxflow_engine::session::{resume_or_run, run_session, Folder, Outcome, SessionOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "g.ron",
        r#"Graph(name: "g", params: { "v": 1.0, "f": false }, nodes: {
        "a": (node: "Number", params: (value: "${v}")),
        "s": (node: "Sum", inputs: (items: ["a"]), params: (fail: "${f}")),
    })"#,
    );
    let out = dir.path().join("out");
    // What an earlier, killed run left: a temporary file, its records.
    let earlier = || {
        std::fs::create_dir_all(out.join("failed")).unwrap();
        std::fs::write(out.join(".x.nii.gz.1234.part"), "half").unwrap();
        std::fs::write(out.join("provenance.json"), "{}").unwrap();
        std::fs::write(out.join("failed/old.txt"), "old").unwrap();
    };
    let opts = |folder: Folder, resume: bool| SessionOptions {
        dir: out.clone(),
        folder,
        resume,
        run: RunOptions {
            collect_tables: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let ok = plan(&path, &[], &[]).unwrap();

    // A shared folder: only the temporary file goes; this run wrote no file, so the
    // earlier records stay and no provenance is written.
    earlier();
    let ran = run_session(&ok, &opts(Folder::Shared, false));
    assert!(ran.report.ok());
    assert!(ran.provenance.is_none());
    assert!(!out.join(".x.nii.gz.1234.part").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("provenance.json")).unwrap(),
        "{}"
    );
    assert!(out.join("failed/old.txt").exists());

    // A case folder: the earlier records go; tables.json and provenance.json are written.
    earlier();
    let Outcome::Ran(ran) = resume_or_run(&ok, &opts(Folder::Case, true)) else {
        panic!("an earlier run that did not finish was resumed");
    };
    assert!(!out.join(".x.nii.gz.1234.part").exists());
    assert!(!out.join("failed").exists());
    let written = ran.provenance.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(*written, out.join("provenance.json"));
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(written).unwrap()).unwrap();
    assert_eq!(prov["status"], "ok");
    let tables = ran.tables();
    assert_eq!(
        value_of(&Value::Table(Arc::new(tables["s.out"].clone()))),
        1.0
    );
    assert_eq!(
        voxflow_engine::session::read_case_tables(&out),
        Some(tables.clone())
    );

    // Resumed with the same params: nothing runs, the stored tables come back; a changed
    // param runs again.
    match resume_or_run(&ok, &opts(Folder::Case, true)) {
        Outcome::Resumed(t) => assert_eq!(t, tables),
        Outcome::Ran(_) => panic!("an unchanged complete case ran again"),
    }
    let changed = plan(&path, &["v=2"], &[]).unwrap();
    let Outcome::Ran(ran) = resume_or_run(&changed, &opts(Folder::Case, true)) else {
        panic!("a case whose params changed was resumed");
    };
    assert_eq!(value_of(&ran.report.outputs["s.out"]), 2.0);

    // A failed node: its record, no provenance (and so nothing to resume from).
    let failing = plan(&path, &["f=true"], &[]).unwrap();
    let Outcome::Ran(ran) = resume_or_run(&failing, &opts(Folder::Case, true)) else {
        panic!("a failing case was resumed");
    };
    assert!(ran.provenance.is_none());
    let records = ran.failure_records.as_ref().unwrap();
    assert_eq!(*records, vec![out.join("failed/s.txt")]);
    assert!(std::fs::read_to_string(&records[0])
        .unwrap()
        .contains("asked to fail"));
    assert!(!out.join("provenance.json").exists());
}
