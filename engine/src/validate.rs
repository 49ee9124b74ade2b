//! Whole-graph validation: every problem at once, before anything runs.
//!
//! Checks node types, implementations, params (unknown, ill-typed, out of range, via each
//! node type's `build`), inputs (unknown or missing ports, dangling references, port type
//! mismatches), cycles, `--output` targets, and warns about nodes whose outputs nobody
//! reads. The result is a [`Plan`]: built nodes and edges, ready to run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::{Diagnostic, Diagnostics, Location, Severity, Sources};
use crate::graph::{Graph, GraphNode, InputBinding, PortRef};
use crate::node::{InputSpec, Node, NodeSpec, OutputSpec, ParamError};
use crate::registry::Registry;
use crate::ron_spanned::RonValue;
use crate::suggest::hint;
use crate::value::PortType;

/// Options that change what is validated.
#[derive(Clone, Debug, Default)]
pub struct ValidateOptions {
    /// `Type=impl` choices from the command line (`--impl`), applied to every node of that
    /// type that does not choose in the graph file.
    pub implementations: Vec<String>,
    /// Outputs to compute (`node` or `node.port`); empty means every node's results
    /// that nobody else reads (the graph's leaves).
    pub targets: Vec<String>,
}

/// A connection feeding an input port.
#[derive(Clone, Debug)]
pub struct Edge {
    /// Index of the producing node in [`Plan::nodes`].
    pub from: usize,
    /// Its output port.
    pub port: String,
}

/// A validated node, built and ready to run.
pub struct PlanNode {
    /// Node id.
    pub id: String,
    /// Node type name.
    pub type_name: String,
    /// Implementation that will run.
    pub implementation: String,
    /// Its version (for cache keys).
    pub impl_version: u32,
    /// Params as given (canonical JSON), for reports and cache keys.
    pub params: serde_json::Value,
    /// The runnable node.
    pub node: Box<dyn Node>,
    /// Input ports and what feeds them.
    pub inputs: Vec<(String, Vec<Edge>)>,
    /// Output ports and their types.
    pub outputs: Vec<(String, PortType)>,
    /// Whether the node must run for the requested targets.
    pub needed: bool,
}

/// A validated graph.
pub struct Plan {
    /// Graph name.
    pub name: String,
    /// blake3 of the text of the graph file and every macro file it uses.
    pub graph_hash: String,
    /// Graph file.
    pub file: PathBuf,
    /// Nodes in file order.
    pub nodes: Vec<PlanNode>,
    /// Requested outputs: (node index, port), reported after the run.
    pub targets: Vec<(usize, String)>,
    /// Warnings found (validation succeeded despite them).
    pub warnings: Diagnostics,
    /// Effective graph params.
    pub params: IndexMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        f.debug_struct("Plan")
            .field("name", &self.name)
            .field("nodes", &ids)
            .finish()
    }
}

impl Plan {
    /// Index of a node by id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
}

/// Validate a loaded graph against the registry.
pub fn validate(
    graph: &Graph,
    registry: &Registry,
    opts: &ValidateOptions,
) -> Result<Plan, Diagnostics> {
    let c = check(graph, registry, opts, false)?;
    let mut nodes = Vec::new();
    for ((gn, b), inputs) in graph.nodes.values().zip(c.built).zip(c.all_inputs) {
        let Built {
            spec,
            implementation,
            impl_version,
            node,
        } = b.expect("no errors");
        let node = node.expect("no errors");
        let i = nodes.len();
        nodes.push(PlanNode {
            id: gn.id.clone(),
            type_name: gn.type_name.clone(),
            implementation,
            impl_version,
            params: gn
                .params
                .as_ref()
                .map(|p| p.to_json())
                .unwrap_or(serde_json::Value::Object(Default::default())),
            node,
            inputs,
            outputs: spec
                .outputs
                .iter()
                .map(|o| (o.name.to_string(), o.ty))
                .collect(),
            needed: c.needed[i],
        });
    }
    Ok(Plan {
        name: graph.name.clone(),
        graph_hash: graph.sources_hash(),
        file: graph.file.clone(),
        nodes,
        targets: c.targets,
        warnings: c.warnings,
        params: graph.params.clone(),
    })
}

/// A graph checked as a template: everything but the values of graph params it leaves
/// unset (`"ct": None`), which `voxflow run` needs with `--set`.
pub struct Template {
    /// Nodes and connections, for drawing.
    pub outline: Outline,
    /// Graph params that must be set before the graph can run, in file order.
    pub unset: Vec<String>,
    /// Warnings found.
    pub warnings: Diagnostics,
}

/// Nodes and connections of a checked graph (what `voxflow dot` draws).
pub struct Outline {
    /// Graph name.
    pub name: String,
    /// Nodes in file order.
    pub nodes: Vec<OutlineNode>,
}

/// A node of an [`Outline`].
pub struct OutlineNode {
    /// Node id.
    pub id: String,
    /// Node type name.
    pub type_name: String,
    /// Implementation that would run.
    pub implementation: String,
    /// Input ports and what feeds them (indices into [`Outline::nodes`]).
    pub inputs: Vec<(String, Vec<Edge>)>,
}

impl Plan {
    /// Nodes and connections, for drawing.
    pub fn outline(&self) -> Outline {
        Outline {
            name: self.name.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|n| OutlineNode {
                    id: n.id.clone(),
                    type_name: n.type_name.clone(),
                    implementation: n.implementation.clone(),
                    inputs: n.inputs.clone(),
                })
                .collect(),
        }
    }

    /// Files the nodes write, with the node writing each (paths as the params give them;
    /// relative ones are under the run's output folder).
    pub fn output_files(&self) -> Vec<(&str, PathBuf)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.node
                    .output_files()
                    .into_iter()
                    .map(|f| (n.id.as_str(), f))
            })
            .collect()
    }
}

/// Validate a graph that may leave graph params unset (a template, like
/// graphs/presegment.ron): every other check is made, and a value missing only because
/// a param is unset is listed in [`Template::unset`] instead of being an error.
pub fn validate_template(
    graph: &Graph,
    registry: &Registry,
    opts: &ValidateOptions,
) -> Result<Template, Diagnostics> {
    let c = check(graph, registry, opts, true)?;
    let nodes = graph
        .nodes
        .values()
        .zip(c.built)
        .zip(c.all_inputs)
        .map(|((gn, b), inputs)| OutlineNode {
            id: gn.id.clone(),
            type_name: gn.type_name.clone(),
            implementation: b.expect("no errors").implementation,
            inputs,
        })
        .collect();
    Ok(Template {
        outline: Outline {
            name: graph.name.clone(),
            nodes,
        },
        unset: c.unset,
        warnings: c.warnings,
    })
}

/// What [`check`] found in a graph without errors.
struct Checked {
    /// Per node; every one `Some`, its `node` `None` only where a template leaves a param
    /// unset.
    built: Vec<Option<Built>>,
    all_inputs: Vec<Vec<(String, Vec<Edge>)>>,
    targets: Vec<(usize, String)>,
    needed: Vec<bool>,
    warnings: Diagnostics,
    unset: Vec<String>,
}

/// Every check of [`validate`]; with `template`, unset graph params are collected rather
/// than reported.
fn check(
    graph: &Graph,
    registry: &Registry,
    opts: &ValidateOptions,
    template: bool,
) -> Result<Checked, Diagnostics> {
    let mut v = Validator {
        diags: graph.diagnostics.clone(),
        sources: graph.sources.clone(),
        graph,
        template,
        unset: Vec::new(),
    };
    for (loc, name) in &graph.unset_splices {
        v.unset_param(*loc, name);
    }
    let globals = v.global_impls(registry, &opts.implementations);
    let ids: Vec<&str> = graph.nodes.keys().map(String::as_str).collect();

    // Pass 1: node types, implementations, params.
    let mut built: Vec<Option<Built>> = Vec::new();
    for n in graph.nodes.values() {
        built.push(v.build_node(n, registry, &globals));
    }

    v.same_outputs(graph, &built);

    // Pass 2: inputs and edges.
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let nodes = NodeLookup {
        built: &built,
        index: &index,
        ids: &ids,
    };
    let mut all_inputs: Vec<Vec<(String, Vec<Edge>)>> = Vec::new();
    for (i, n) in graph.nodes.values().enumerate() {
        all_inputs.push(match &built[i] {
            Some(Built { spec, .. }) => v.node_inputs(n, spec, &nodes),
            None => Vec::new(),
        });
    }

    // Pass 3: cycles.
    v.cycles(&ids, &all_inputs);

    // Targets.
    let targets = v.targets(&opts.targets, &nodes);

    if v.diags.iter().any(|d| d.severity == Severity::Error) {
        crate::diag::sort(&mut v.diags);
        return Err(Diagnostics {
            items: v.diags,
            sources: v.sources,
        });
    }

    let consumers = consumer_counts(&all_inputs);
    let needed = needed_nodes(&all_inputs, &consumers, opts.targets.is_empty(), &targets);
    v.unread_outputs(&built, &consumers, &targets);

    crate::diag::sort(&mut v.diags);
    Ok(Checked {
        built,
        all_inputs,
        targets,
        needed,
        warnings: Diagnostics {
            items: v.diags,
            sources: v.sources,
        },
        unset: v.unset,
    })
}

/// The nodes built in pass 1, by position and by id, for resolving references.
struct NodeLookup<'a> {
    built: &'a [Option<Built>],
    index: &'a BTreeMap<&'a str, usize>,
    ids: &'a [&'a str],
}

/// How many edges read each node's outputs.
fn consumer_counts(all_inputs: &[Vec<(String, Vec<Edge>)>]) -> Vec<usize> {
    let mut consumers = vec![0usize; all_inputs.len()];
    for inputs in all_inputs {
        for (_, edges) in inputs {
            for e in edges {
                consumers[e.from] += 1;
            }
        }
    }
    consumers
}

/// Needed nodes: ancestors of the targets, or of every leaf when none are given.
fn needed_nodes(
    all_inputs: &[Vec<(String, Vec<Edge>)>],
    consumers: &[usize],
    no_targets: bool,
    targets: &[(usize, String)],
) -> Vec<bool> {
    let n = all_inputs.len();
    let roots: Vec<usize> = if no_targets {
        (0..n).filter(|&i| consumers[i] == 0).collect()
    } else {
        targets.iter().map(|t| t.0).collect()
    };
    let mut needed = vec![false; n];
    let mut stack = roots;
    while let Some(i) = stack.pop() {
        if !needed[i] {
            needed[i] = true;
            stack.extend(
                all_inputs[i]
                    .iter()
                    .flat_map(|(_, es)| es.iter().map(|e| e.from)),
            );
        }
    }
    needed
}

/// A node type resolved for a graph node; `node` is `None` when its params are wrong.
struct Built {
    spec: NodeSpec,
    implementation: String,
    impl_version: u32,
    node: Option<Box<dyn Node>>,
}

struct Validator<'g> {
    diags: Vec<Diagnostic>,
    sources: Sources,
    graph: &'g Graph,
    /// Checking a template: unset graph params are listed, not errors.
    template: bool,
    /// Unset graph params met so far (template only), in order, once each.
    unset: Vec<String>,
}

impl Validator<'_> {
    /// A value is missing because graph param `name` has none: an error when running,
    /// a param to list for a template.
    fn unset_param(&mut self, loc: Location, name: &str) {
        if self.template {
            if !self.unset.iter().any(|u| u == name) {
                self.unset.push(name.to_string());
            }
        } else {
            self.error(
                loc,
                format!("graph param `{name}` has no value; set it with --set {name}=VALUE"),
                None,
            );
        }
    }

    /// Two nodes writing the same file: the second would silently replace the first's
    /// result. Paths compare as written, component by component, `.` left out (`./a/./b`
    /// is `a/b`); `..` is kept, as resolving it needs the file system.
    fn same_outputs(&mut self, graph: &Graph, built: &[Option<Built>]) {
        let mut writers: BTreeMap<PathBuf, &str> = BTreeMap::new();
        for (gn, b) in graph.nodes.values().zip(built) {
            let Some(node) = b.as_ref().and_then(|b| b.node.as_ref()) else {
                continue;
            };
            for f in node.output_files() {
                let key: PathBuf = f
                    .components()
                    .filter(|c| *c != std::path::Component::CurDir)
                    .collect();
                match writers.get(&key) {
                    Some(first) if *first != gn.id => {
                        let msg =
                            format!("nodes `{first}` and `{}` both write {}", gn.id, f.display());
                        self.error(
                            gn.loc,
                            msg,
                            Some("give each node its own output path".into()),
                        );
                    }
                    Some(_) => {}
                    None => {
                        writers.insert(key, &gn.id);
                    }
                }
            }
        }
    }

    /// Pass 2 for one built node: its input bindings checked against its spec and
    /// resolved to edges, then its required inputs that are not bound.
    fn node_inputs(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        nodes: &NodeLookup,
    ) -> Vec<(String, Vec<Edge>)> {
        let mut inputs = Vec::new();
        let port_names: Vec<&str> = spec.inputs.iter().map(|p| p.name).collect();
        for b in &n.inputs {
            let Some(pspec) = spec.input(&b.port) else {
                self.error(
                    b.loc,
                    format!("{} `{}` has no input `{}`", spec.name, n.id, b.port),
                    hint(&b.port, &port_names).or_else(|| Some(choices("inputs", &port_names))),
                );
                continue;
            };
            if !pspec.multiple && (b.is_list || b.refs.len() > 1) {
                self.error(
                    b.loc,
                    format!(
                        "input `{}` of {} takes one value, not a list",
                        b.port, spec.name
                    ),
                    None,
                );
            }
            let mut edges = Vec::new();
            for r in &b.refs {
                if let Some(e) = self.edge(n, spec, b, pspec, r, nodes) {
                    edges.push(e);
                }
            }
            inputs.push((b.port.clone(), edges));
        }
        for p in &spec.inputs {
            if p.required && !n.inputs.iter().any(|b| b.port == p.name) {
                let types: Vec<String> = p.types.iter().map(|t| t.to_string()).collect();
                self.error(
                    n.loc,
                    format!(
                        "{} `{}` needs input `{}` ({})",
                        spec.name,
                        n.id,
                        p.name,
                        types.join(" or ")
                    ),
                    None,
                );
            }
        }
        inputs
    }

    /// The edge a reference bound to input `b` of node `n` makes: the source node exists,
    /// has that output (or just one) and its type is one the input takes.
    fn edge(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        b: &InputBinding,
        pspec: &InputSpec,
        r: &PortRef,
        nodes: &NodeLookup,
    ) -> Option<Edge> {
        let Some(&from) = nodes.index.get(r.node.as_str()) else {
            self.error(
                r.loc,
                format!("no node named `{}`", r.node),
                hint(&r.node, nodes.ids),
            );
            return None;
        };
        let Some(Built { spec: src_spec, .. }) = &nodes.built[from] else {
            return None;
        };
        let port = self.source_port(r, src_spec)?;
        if !pspec.types.contains(&port.ty) {
            let want: Vec<String> = pspec.types.iter().map(|t| t.to_string()).collect();
            self.error(
                r.loc,
                format!(
                    "port type mismatch: `{}.{}` is {}, but input `{}` of {} `{}` takes {}",
                    r.node,
                    port.name,
                    port.ty,
                    b.port,
                    spec.name,
                    n.id,
                    want.join(" or ")
                ),
                None,
            );
            return None;
        }
        Some(Edge {
            from,
            port: port.name.to_string(),
        })
    }

    /// The output of `src_spec` that reference `r` names, or its only output.
    fn source_port<'s>(&mut self, r: &PortRef, src_spec: &'s NodeSpec) -> Option<&'s OutputSpec> {
        let outs: Vec<&str> = src_spec.outputs.iter().map(|o| o.name).collect();
        match &r.port {
            Some(p) => match src_spec.output(p) {
                Some(o) => Some(o),
                None => {
                    self.error(
                        r.loc,
                        format!("{} `{}` has no output `{p}`", src_spec.name, r.node),
                        hint(p, &outs).or_else(|| Some(choices("outputs", &outs))),
                    );
                    None
                }
            },
            None if src_spec.outputs.len() == 1 => Some(&src_spec.outputs[0]),
            None if src_spec.outputs.is_empty() => {
                self.error(
                    r.loc,
                    format!("{} `{}` has no outputs to connect", src_spec.name, r.node),
                    None,
                );
                None
            }
            None => {
                self.error(
                    r.loc,
                    format!(
                        "{} `{}` has {} outputs; name one as `{}.PORT`",
                        src_spec.name,
                        r.node,
                        outs.len(),
                        r.node
                    ),
                    Some(choices("outputs", &outs)),
                );
                None
            }
        }
    }

    /// Pass 3: every cycle, named by its nodes, at its first node.
    fn cycles(&mut self, ids: &[&str], all_inputs: &[Vec<(String, Vec<Edge>)>]) {
        let mut dag: DiGraph<usize, ()> = DiGraph::new();
        let nidx: Vec<NodeIndex> = (0..ids.len()).map(|i| dag.add_node(i)).collect();
        for (i, inputs) in all_inputs.iter().enumerate() {
            for (_, edges) in inputs {
                for e in edges {
                    dag.add_edge(nidx[e.from], nidx[i], ());
                }
            }
        }
        for scc in petgraph::algo::tarjan_scc(&dag) {
            let self_loop = scc.len() == 1 && dag.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                let mut members: Vec<usize> = scc.iter().map(|n| dag[*n]).collect();
                members.sort();
                let path = cycle_path(&dag, &nidx, &members);
                let names: Vec<&str> = path.iter().map(|&i| ids[i]).collect();
                let first = self.graph.nodes[members[0]].loc;
                self.error(
                    first,
                    format!("cycle: {}", names.join(" -> ")),
                    Some("a graph must not feed a node's result back into itself".into()),
                );
            }
        }
    }

    /// The `--output` targets as (node index, port); a node without a port means all its
    /// outputs (or the node itself when it has none).
    fn targets(&mut self, given: &[String], nodes: &NodeLookup) -> Vec<(usize, String)> {
        let file = &self.graph.file;
        let mut targets = Vec::new();
        for t in given {
            let (node, port) = match t.split_once('.') {
                Some((n, p)) => (n, Some(p)),
                None => (t.as_str(), None),
            };
            let Some(&i) = nodes.index.get(node) else {
                self.diags.push(
                    Diagnostic::file_error(file, format!("--output {t}: no node named `{node}`"))
                        .with_help(hint(node, nodes.ids)),
                );
                continue;
            };
            let Some(Built { spec, .. }) = &nodes.built[i] else {
                continue;
            };
            let outs: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
            match port {
                Some(p) if spec.output(p).is_some() => targets.push((i, p.to_string())),
                Some(p) => self.diags.push(
                    Diagnostic::file_error(
                        file,
                        format!("--output {t}: {} `{node}` has no output `{p}`", spec.name),
                    )
                    .with_help(hint(p, &outs).or_else(|| Some(choices("outputs", &outs)))),
                ),
                None if outs.is_empty() => targets.push((i, String::new())),
                None => targets.extend(outs.iter().map(|o| (i, o.to_string()))),
            }
        }
        targets
    }

    /// Warnings: nodes whose outputs nobody reads (unless declared as graph outputs).
    fn unread_outputs(
        &mut self,
        built: &[Option<Built>],
        consumers: &[usize],
        targets: &[(usize, String)],
    ) {
        let graph = self.graph;
        let declared: Vec<&str> = graph.outputs.values().map(|r| r.node.as_str()).collect();
        for (i, gn) in graph.nodes.values().enumerate() {
            let spec = &built[i].as_ref().expect("no errors").spec;
            // A node whose outputs are all services (a server) is meant to run alone too:
            // it then serves in the foreground, so nobody reading it is no mistake.
            let only_services = spec.outputs.iter().all(|o| o.ty.runs_alone());
            if consumers[i] == 0
                && !spec.outputs.is_empty()
                && !only_services
                && !declared.contains(&gn.id.as_str())
                && !targets.iter().any(|t| t.0 == i)
            {
                let outs: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
                self.diags.push(Diagnostic::warning(
                    gn.loc,
                    format!(
                        "nobody uses the output of {} `{}` ({})",
                        spec.name,
                        gn.id,
                        outs.join(", ")
                    ),
                ));
            }
        }
    }

    fn error(&mut self, loc: Location, msg: String, help: Option<String>) {
        self.diags.push(Diagnostic::error(loc, msg).with_help(help));
    }

    fn global_impls(&mut self, registry: &Registry, given: &[String]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let names: Vec<&str> = registry.names().collect();
        for g in given {
            let Some((ty, name)) = g.split_once('=') else {
                self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: None,
                    file: None,
                    message: format!("--impl {g}: expected TYPE=NAME"),
                    help: None,
                });
                continue;
            };
            match registry.get(ty) {
                None => self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: None,
                    file: None,
                    message: format!("--impl {g}: no node type `{ty}`"),
                    help: hint(ty, &names),
                }),
                Some((_, spec)) if !spec.impls.iter().any(|i| i.name == name) => {
                    let choices_: Vec<&str> = spec.impls.iter().map(|i| i.name).collect();
                    self.diags.push(Diagnostic {
                        severity: Severity::Error,
                        location: None,
                        file: None,
                        message: format!("--impl {g}: {ty} has no implementation `{name}`"),
                        help: Some(choices("implementations", &choices_)),
                    })
                }
                Some(_) => {
                    out.insert(ty.to_string(), name.to_string());
                }
            }
        }
        out
    }

    /// Pass 1 for one node: its type, implementation and params. `None` for an unknown
    /// type; a node whose implementation or params are wrong has no runnable `node`.
    fn build_node(
        &mut self,
        n: &GraphNode,
        registry: &Registry,
        globals: &BTreeMap<String, String>,
    ) -> Option<Built> {
        let Some((ty, spec)) = registry.get(&n.type_name) else {
            let names: Vec<&str> = registry.names().collect();
            self.error(
                n.type_loc,
                format!("unknown node type `{}`", n.type_name),
                hint(&n.type_name, &names)
                    .or_else(|| Some("`voxflow nodes` lists the node types".into())),
            );
            return None;
        };
        let chosen = match self.choose_impl(n, spec, globals) {
            Ok(chosen) => chosen,
            Err(unknown) => {
                return Some(Built {
                    spec: spec.clone(),
                    implementation: unknown,
                    impl_version: 0,
                    node: None,
                })
            }
        };
        let version = spec
            .impls
            .iter()
            .find(|i| i.name == chosen)
            .map(|i| i.version)
            .unwrap_or(1);
        let unbuilt = |chosen: String| {
            Some(Built {
                spec: spec.clone(),
                implementation: chosen,
                impl_version: version,
                node: None,
            })
        };
        if n.params_unresolved {
            return unbuilt(chosen);
        }
        let params_loc = n
            .params
            .as_ref()
            .map(|p| Location {
                file: n.params_file,
                span: p.span,
            })
            .unwrap_or(n.loc);
        if !self.param_names_known(n, spec, params_loc) {
            return unbuilt(chosen);
        }
        let json = n
            .params
            .as_ref()
            .map(|p| p.to_json())
            .unwrap_or(serde_json::Value::Object(Default::default()));
        let json = if json.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            json
        };
        match ty.build(&json, &chosen) {
            Ok(node) => Some(Built {
                spec: spec.clone(),
                implementation: chosen,
                impl_version: version,
                node: Some(node),
            }),
            Err(errors) => {
                self.param_errors(n, spec, params_loc, errors);
                unbuilt(chosen)
            }
        }
    }

    /// The implementation a node runs: its own choice, else `--impl`, else the type's
    /// default. An unknown choice is reported and comes back as `Err(name)`.
    fn choose_impl(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        globals: &BTreeMap<String, String>,
    ) -> Result<String, String> {
        let impl_names: Vec<&str> = spec.impls.iter().map(|i| i.name).collect();
        match &n.implementation {
            Some((name, loc)) => {
                if !impl_names.contains(&name.as_str()) {
                    self.error(
                        *loc,
                        format!("{} has no implementation `{name}`", spec.name),
                        Some(choices("implementations", &impl_names)),
                    );
                    return Err(name.clone());
                }
                Ok(name.clone())
            }
            None => Ok(globals
                .get(spec.name)
                .cloned()
                .unwrap_or_else(|| spec.default_impl().name.to_string())),
        }
    }

    /// Unknown params first, with did-you-mean, at the key; `false` when any is unknown
    /// or the params are not written as `(name: value, ...)`.
    fn param_names_known(&mut self, n: &GraphNode, spec: &NodeSpec, params_loc: Location) -> bool {
        let Some(p) = &n.params else {
            return true;
        };
        let param_names: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
        let mut ok = true;
        match &p.value {
            RonValue::Struct {
                fields,
                is_map: false,
                ..
            } => {
                for (k, _) in fields {
                    if !param_names.contains(&k.name.as_str()) {
                        ok = false;
                        let loc = Location {
                            file: param_file(n, std::slice::from_ref(&k.name)),
                            span: k.span,
                        };
                        self.error(
                            loc,
                            format!("{} has no param `{}`", spec.name, k.name),
                            hint(&k.name, &param_names)
                                .or_else(|| Some(choices("params", &param_names))),
                        );
                    }
                }
            }
            RonValue::Unit => {}
            _ => {
                self.error(
                    params_loc,
                    "params must be written (name: value, ...)".to_string(),
                    None,
                );
                return false;
            }
        }
        ok
    }

    /// What the node type's `build` refused, each at the value it names; a value that is
    /// `None` because its graph param is unset is an unset param instead.
    fn param_errors(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        params_loc: Location,
        errors: Vec<ParamError>,
    ) {
        for ParamError { path, message } in errors {
            let (loc, what) = match n.params.as_ref().and_then(|p| p.find(&path)) {
                Some(v) => (
                    Location {
                        file: param_file(n, &path),
                        span: v.span,
                    },
                    path.join("."),
                ),
                None => (params_loc, path.join(".")),
            };
            // A `${param}` whose graph param is `None` arrives here as null; the
            // loader noted which param it came from.
            let unset = n
                .params
                .as_ref()
                .and_then(|p| p.find(&path))
                .filter(|v| matches!(v.value, RonValue::None))
                .and_then(|v| self.graph.unset_origin(&n.id, loc.file, v.span))
                .map(str::to_string);
            if let Some(name) = unset {
                self.unset_param(loc, &name);
                continue;
            }
            let msg = if what.is_empty() {
                format!("{} `{}`: {message}", spec.name, n.id)
            } else {
                format!("{} param `{what}`: {message}", spec.name)
            };
            self.error(loc, msg, None);
        }
    }
}

/// The file a param's span points into: the command line for `--set` values.
fn param_file(n: &GraphNode, path: &[String]) -> usize {
    match path.first() {
        Some(k) if n.cli_params.contains(k) => crate::graph::CLI_FILE,
        _ => n.params_file,
    }
}

fn choices(what: &str, names: &[&str]) -> String {
    if names.is_empty() {
        format!("there are no {what}")
    } else {
        format!(
            "{what}: {}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// One cycle through the strongly connected component, in edge order.
fn cycle_path(dag: &DiGraph<usize, ()>, nidx: &[NodeIndex], members: &[usize]) -> Vec<usize> {
    let start = members[0];
    let mut path = vec![start];
    let mut cur = start;
    let mut seen = vec![start];
    loop {
        let next = dag
            .neighbors(nidx[cur])
            .map(|n| dag[n])
            .filter(|m| members.contains(m))
            .min_by_key(|m| (seen.contains(m) && *m != start, *m));
        match next {
            Some(m) if m == start => {
                path.push(start);
                return path;
            }
            Some(m) if !seen.contains(&m) => {
                path.push(m);
                seen.push(m);
                cur = m;
            }
            _ => {
                path.push(start);
                return path;
            }
        }
    }
}
