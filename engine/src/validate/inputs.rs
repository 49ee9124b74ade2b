//! Pass 2: each node's input bindings checked against its spec (ports, list or single
//! value, required inputs) and resolved to edges whose source port type the input takes.

use std::collections::BTreeMap;

use crate::graph::{GraphNode, InputBinding, PortRef};
use crate::node::{InputSpec, NodeSpec, OutputSpec};
use crate::suggest::hint;

use super::build::Built;
use super::plan::Edge;
use super::{choices, Validator};

/// The nodes built in pass 1, by position and by id, for resolving references.
pub(super) struct NodeLookup<'a> {
    pub(super) built: &'a [Option<Built>],
    pub(super) index: &'a BTreeMap<&'a str, usize>,
    pub(super) ids: &'a [&'a str],
}

impl Validator<'_> {
    /// Pass 2 for one built node: its input bindings checked against its spec and
    /// resolved to edges, then its required inputs that are not bound.
    pub(super) fn node_inputs(
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
}
