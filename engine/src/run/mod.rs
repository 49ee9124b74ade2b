//! The scheduler: runs a validated [`Plan`] with independent nodes in parallel.
//!
//! Ready nodes (all inputs computed) are spawned on the rayon pool, so independent
//! branches overlap and a node's own parallel loops share the same threads. Only needed
//! nodes run. A failing node marks its dependants as skipped; independent branches go on.
//! Each value is dropped as soon as its last reader has started (readers hold an `Arc`),
//! so memory follows the graph's frontier rather than its size.
//!
//! What to reuse from the result cache, and what to store in it, is decided in
//! [`cache_policy`] before any node runs.

mod cache_policy;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::cache::{Cache, KeyParts};
use crate::node::{NodeContext, Source};
use crate::validate::Plan;
use crate::value::{PortType, Value};

/// Progress callback, called from worker threads.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// How to run a plan.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Folder that relative output paths resolve against (default `out`).
    pub out_dir: PathBuf,
    /// Size of a dedicated thread pool; `None` uses rayon's global pool.
    pub threads: Option<usize>,
    /// Called from worker threads as nodes start and finish (progress display).
    pub observer: Option<Observer>,
    /// Reuse and store results in this cache.
    pub cache: Option<Cache>,
    /// Identifies this graph (and case) in the cache's explain records.
    pub cache_scope: String,
    /// Also return every Table any node produces (batch summaries), keyed `node.port`.
    pub collect_tables: bool,
}

/// Progress of a run.
#[derive(Clone, Debug)]
pub enum Event {
    /// A node started.
    Started {
        /// Node id.
        id: String,
    },
    /// A node finished (or failed).
    Finished {
        /// Node id.
        id: String,
        /// Its status.
        status: Status,
        /// Wall time in milliseconds.
        wall_ms: f64,
    },
}

/// What happened to a node.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Status {
    /// Ran and produced its outputs.
    Ok,
    /// Ran and failed; the error chain.
    Failed(String),
    /// Did not run because a node it depends on failed.
    Skipped(String),
    /// Not needed for the requested outputs.
    NotNeeded,
    /// Not run: its results came from the cache.
    Cached,
}

/// One node in the run report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// Node type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Implementation that ran.
    pub implementation: String,
    /// Outcome.
    #[serde(flatten)]
    pub status: Status,
    /// Start, in milliseconds since the run started.
    pub start_ms: f64,
    /// Wall time in milliseconds.
    pub wall_ms: f64,
    /// Size of the node's outputs in bytes (memory estimate).
    pub output_bytes: usize,
    /// Notes the node added (e.g. which device ran it).
    pub notes: Vec<String>,
    /// Files the node wrote.
    pub files: Vec<PathBuf>,
    /// Files the node read (its declared input files).
    pub input_files: Vec<PathBuf>,
    /// For a failed node: its inputs (`port: summary (from node.port)`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// With a cache: `reused`, or why it ran (`ran: param X changed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

/// The result of a run: per-node records, requested outputs and files written.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Graph name.
    pub graph: String,
    /// Graph file.
    pub file: PathBuf,
    /// Start time (UTC, RFC 3339).
    pub started: String,
    /// Total wall time in milliseconds.
    pub wall_ms: f64,
    /// One record per node, in graph order.
    pub nodes: Vec<NodeRecord>,
    /// Values of the requested outputs (`node.port`).
    pub outputs: BTreeMap<String, Value>,
    /// Files written by nodes.
    pub files: Vec<PathBuf>,
}

impl RunReport {
    /// True when no node failed or was skipped.
    pub fn ok(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n.status, Status::Ok | Status::NotNeeded | Status::Cached))
    }

    /// Failed nodes with their errors.
    pub fn failures(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes
            .iter()
            .filter(|n| matches!(n.status, Status::Failed(_)))
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "graph": self.graph,
            "file": self.file,
            "started": self.started,
            "wall_ms": self.wall_ms,
            "ok": self.ok(),
            "nodes": self.nodes,
            "outputs": self.outputs.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.summary()))).collect::<serde_json::Map<_, _>>(),
            "files": self.files,
        })
    }

    /// Write the JSON report atomically.
    pub fn write(&self, path: &Path) -> Result<(), crate::fsutil::WriteError> {
        let text = serde_json::to_string_pretty(&self.to_json()).expect("json") + "\n";
        crate::fsutil::write_atomic(path, |w| w.write_all(text.as_bytes()))
    }
}

/// Run a plan to completion (failures are recorded, never panics through).
pub fn run(plan: &Plan, opts: &RunOptions) -> RunReport {
    match opts.threads {
        Some(t) => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
            Ok(pool) => pool.install(|| run_in_pool(plan, opts)),
            Err(_) => run_in_pool(plan, opts),
        },
        None => run_in_pool(plan, opts),
    }
}

/// Bookkeeping shared by the workers: each finishing node updates it and launches the
/// dependants it made ready, so a chain of nodes never round-trips through one thread.
struct State {
    pending: Vec<usize>,
    readers: HashMap<(usize, String), usize>,
    values: HashMap<(usize, String), Value>,
    records: Vec<NodeRecord>,
    outputs: BTreeMap<String, Value>,
}

struct Shared<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    out_dir: PathBuf,
    t0: Instant,
    files: Arc<Mutex<Vec<PathBuf>>>,
    dependants: Vec<Vec<usize>>,
    keys: Vec<Option<KeyParts>>,
    state: Mutex<State>,
}

fn run_in_pool(plan: &Plan, opts: &RunOptions) -> RunReport {
    let n = plan.nodes.len();
    let t0 = Instant::now();
    let started = crate::clock::utc_now();
    let out_dir = if opts.out_dir.as_os_str().is_empty() {
        PathBuf::from("out")
    } else {
        opts.out_dir.clone()
    };

    let mut pending = vec![0usize; n];
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut readers: HashMap<(usize, String), usize> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if !node.needed {
            continue;
        }
        for (_, edges) in &node.inputs {
            for e in edges {
                pending[i] += 1;
                dependants[e.from].push(i);
                *readers.entry((e.from, e.port.clone())).or_default() += 1;
            }
        }
    }
    for (i, port) in &plan.targets {
        *readers.entry((*i, port.clone())).or_default() += 1;
    }
    let records = plan
        .nodes
        .iter()
        .map(|p| NodeRecord {
            id: p.id.clone(),
            type_name: p.type_name.clone(),
            implementation: p.implementation.clone(),
            status: Status::NotNeeded,
            start_ms: 0.0,
            wall_ms: 0.0,
            output_bytes: 0,
            notes: Vec::new(),
            files: Vec::new(),
            input_files: p.node.input_files(),
            inputs: Vec::new(),
            cache: None,
        })
        .collect();
    let mut state = State {
        pending,
        readers,
        values: HashMap::new(),
        records,
        outputs: BTreeMap::new(),
    };
    let keys = match &opts.cache {
        Some(cache) => {
            cache_policy::apply_cache(plan, &out_dir, cache, opts, &dependants, &mut state)
        }
        None => vec![None; n],
    };
    let ready: Vec<usize> = (0..n)
        .filter(|&i| {
            plan.nodes[i].needed
                && state.pending[i] == 0
                && state.records[i].status == Status::NotNeeded
        })
        .collect();
    let shared = Shared {
        plan,
        opts,
        out_dir,
        t0,
        files: Arc::default(),
        dependants,
        keys,
        state: Mutex::new(state),
    };
    rayon::scope(|scope| {
        let mut st = shared.state.lock().expect("state");
        let contexts: Vec<(usize, NodeContext)> = ready
            .into_iter()
            .map(|i| (i, shared.take_inputs(i, &mut st)))
            .collect();
        drop(st);
        for (i, ctx) in contexts {
            launch(scope, &shared, i, ctx);
        }
    });

    let files = shared.files.lock().expect("lock").clone();
    let st = shared.state.into_inner().expect("state");
    RunReport {
        graph: plan.name.clone(),
        file: plan.file.clone(),
        started,
        wall_ms: t0.elapsed().as_secs_f64() * 1e3,
        nodes: st.records,
        outputs: st.outputs,
        files,
    }
}

impl Shared<'_> {
    /// Gather a ready node's inputs, releasing values whose last reader this is.
    fn take_inputs(&self, i: usize, st: &mut State) -> NodeContext {
        let node = &self.plan.nodes[i];
        let mut inputs: BTreeMap<String, Vec<(Source, Value)>> = BTreeMap::new();
        for (port, edges) in &node.inputs {
            for e in edges {
                let key = (e.from, e.port.clone());
                let v = st
                    .values
                    .get(&key)
                    .cloned()
                    .expect("inputs of a ready node are computed");
                let left = st.readers.get_mut(&key).expect("reader counted");
                *left -= 1;
                if *left == 0 {
                    st.values.remove(&key);
                }
                let src = Source {
                    node: self.plan.nodes[e.from].id.clone(),
                    port: e.port.clone(),
                };
                inputs.entry(port.clone()).or_default().push((src, v));
            }
        }
        NodeContext {
            node_id: node.id.clone(),
            node_type: node.type_name.clone(),
            inputs,
            outputs: BTreeMap::new(),
            out_dir: self.out_dir.clone(),
            files_written: Arc::default(),
            notes: Vec::new(),
            used_outputs: node
                .outputs
                .iter()
                .filter(|(port, _)| st.readers.get(&(i, port.clone())).copied().unwrap_or(0) > 0)
                .map(|(port, _)| port.clone())
                .collect(),
        }
    }

    /// Record a finished node; returns the dependants it made ready, with their inputs.
    fn finish(
        &self,
        i: usize,
        result: Result<BTreeMap<String, Value>, String>,
        start_ms: f64,
        wall_ms: f64,
        notes: Vec<String>,
        files: Vec<PathBuf>,
    ) -> Vec<(usize, NodeContext)> {
        let plan = self.plan;
        if let (Ok(outs), Some(cache), Some(parts)) = (&result, &self.opts.cache, &self.keys[i]) {
            self.store(cache, i, parts, outs, &files);
        }
        self.files
            .lock()
            .expect("files")
            .extend(files.iter().cloned());
        let mut st = self.state.lock().expect("state");
        let st = &mut *st;
        let rec = &mut st.records[i];
        rec.start_ms = start_ms;
        rec.wall_ms = wall_ms;
        rec.notes = notes;
        rec.files = files;
        let mut ready = Vec::new();
        match result {
            Ok(outs) => {
                rec.status = Status::Ok;
                rec.output_bytes = outs.values().map(Value::size_bytes).sum();
                for (port, v) in outs {
                    let collect = self.opts.collect_tables && matches!(v, Value::Table(_));
                    if collect || plan.targets.iter().any(|(t, p)| *t == i && *p == port) {
                        st.outputs
                            .insert(format!("{}.{port}", plan.nodes[i].id), v.clone());
                    }
                    let key = (i, port);
                    if st.readers.get(&key).copied().unwrap_or(0) > 0 {
                        st.values.insert(key, v);
                    }
                }
                for &d in &self.dependants[i] {
                    st.pending[d] -= 1;
                    if st.pending[d] == 0 && !matches!(st.records[d].status, Status::Skipped(_)) {
                        ready.push(d);
                    }
                }
            }
            Err(e) => {
                rec.status = Status::Failed(e);
                let reason = format!(
                    "upstream node `{}` ({}) failed",
                    plan.nodes[i].id, plan.nodes[i].type_name
                );
                let mut stack = self.dependants[i].clone();
                while let Some(d) = stack.pop() {
                    if st.records[d].status == Status::NotNeeded {
                        st.records[d].status = Status::Skipped(reason.clone());
                        stack.extend(self.dependants[d].iter().copied());
                    }
                }
            }
        }
        if let Some(o) = &self.opts.observer {
            o(&Event::Finished {
                id: st.records[i].id.clone(),
                status: st.records[i].status.clone(),
                wall_ms,
            });
        }
        ready
            .into_iter()
            .map(|d| (d, self.take_inputs(d, st)))
            .collect()
    }
}

/// Run node `i` on the pool; when it finishes, launch what it made ready.
fn launch<'s>(scope: &rayon::Scope<'s>, shared: &'s Shared<'s>, i: usize, mut ctx: NodeContext) {
    scope.spawn(move |scope| {
        let node = &shared.plan.nodes[i];
        if let Some(o) = &shared.opts.observer {
            o(&Event::Started { id: node.id.clone() });
        }
        let span = tracing::info_span!("node", id = %node.id, r#type = %node.type_name, implementation = %node.implementation);
        let guard = span.enter();
        let t = Instant::now();
        let start_ms = t.duration_since(shared.t0).as_secs_f64() * 1e3;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.node.run(&mut ctx)));
        let result = match result {
            Ok(Ok(())) => check_outputs(node, std::mem::take(&mut ctx.outputs))
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(panic) => Err(format!("internal error (panic): {}", panic_message(&panic))),
        };
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(_) => tracing::debug!(wall_ms, "node finished"),
            Err(e) => tracing::debug!(error = %e, "node failed"),
        }
        drop(guard);
        let notes = std::mem::take(&mut ctx.notes);
        let files = std::mem::take(&mut *ctx.files_written.lock().expect("files"));
        let inputs = if result.is_err() { describe_inputs(&ctx) } else { Vec::new() };
        drop(ctx); // release the inputs before the dependants start
        if !inputs.is_empty() {
            shared.state.lock().expect("state").records[i].inputs = inputs;
        }
        for (d, dctx) in shared.finish(i, result, start_ms, wall_ms, notes, files) {
            launch(scope, shared, d, dctx);
        }
    });
}

/// `port: summary (from node.port)` for each input, for failure records.
fn describe_inputs(ctx: &NodeContext) -> Vec<String> {
    ctx.inputs
        .iter()
        .flat_map(|(port, vals)| {
            vals.iter().map(move |(src, v)| {
                format!("{port}: {} (from {}.{})", v.summary(), src.node, src.port)
            })
        })
        .collect()
}

/// A node that broke its spec's promise about its outputs: a bug in the node type.
#[derive(Debug, thiserror::Error)]
enum OutputError {
    /// A declared output was not set.
    #[error("internal error: {node_type} did not produce its output `{port}`")]
    Missing { node_type: String, port: String },
    /// An output was set with another type than declared.
    #[error("internal error: {node_type} produced {got} on output `{port}`, declared {declared}")]
    WrongType {
        node_type: String,
        got: PortType,
        port: String,
        declared: PortType,
    },
}

/// A node must set every output it declares, with the declared type.
fn check_outputs(
    node: &crate::validate::PlanNode,
    outs: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, OutputError> {
    for (name, ty) in &node.outputs {
        match outs.get(name) {
            None => {
                return Err(OutputError::Missing {
                    node_type: node.type_name.clone(),
                    port: name.clone(),
                })
            }
            Some(v) if v.port_type() != *ty => {
                return Err(OutputError::WrongType {
                    node_type: node.type_name.clone(),
                    got: v.port_type(),
                    port: name.clone(),
                    declared: *ty,
                })
            }
            Some(_) => {}
        }
    }
    Ok(outs)
}

/// The error and its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}
