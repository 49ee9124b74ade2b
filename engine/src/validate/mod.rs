//! Whole-graph validation: every problem at once, before anything runs.
//!
//! Checks node types, implementations, params (unknown, ill-typed, out of range, via each
//! node type's `build`), inputs (unknown or missing ports, dangling references, port type
//! mismatches), cycles, `--output` targets, and warns about nodes whose outputs nobody
//! reads. The result is a [`Plan`]: built nodes and edges, ready to run.
//!
//! `check` runs the passes; each lives beside this file: `build` (pass 1: one node's
//! type, then `implementations` and `params`), `inputs` (pass 2: input ports and the
//! edges feeding them), `cycles` (pass 3), `outputs` (files written twice, `--output`
//! targets, unread outputs, which nodes must run). `plan` holds the result types.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Diagnostics, Location, Severity, Sources};
use crate::graph::Graph;
use crate::registry::Registry;

mod build;
mod cycles;
mod implementations;
mod inputs;
mod outputs;
mod params;
mod plan;

use build::Built;
use inputs::NodeLookup;
use outputs::{consumer_counts, needed_nodes};
pub use plan::{Edge, Outline, OutlineNode, Plan, PlanNode, Template};

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

/// The state of one validation: the diagnostics found so far and, for a template, the
/// unset graph params met. Each pass adds its methods in its own file.
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

    fn error(&mut self, loc: Location, msg: String, help: Option<String>) {
        self.diags.push(Diagnostic::error(loc, msg).with_help(help));
    }
}

/// "outputs: `a`, `b`" for a help line; "there are no outputs" when empty.
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
