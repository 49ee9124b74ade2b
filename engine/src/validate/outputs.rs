//! What the graph produces: files two nodes would both write, the `--output` targets,
//! warnings for outputs nobody reads, and which nodes must run for the targets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::graph::Graph;
use crate::suggest::hint;

use super::build::Built;
use super::inputs::NodeLookup;
use super::plan::Edge;
use super::{choices, Validator};

impl Validator<'_> {
    /// Two nodes writing the same file: the second would silently replace the first's
    /// result. Paths compare as written, component by component, `.` left out (`./a/./b`
    /// is `a/b`); `..` is kept, as resolving it needs the file system.
    pub(super) fn same_outputs(&mut self, graph: &Graph, built: &[Option<Built>]) {
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

    /// The `--output` targets as (node index, port); a node without a port means all its
    /// outputs (or the node itself when it has none).
    pub(super) fn targets(&mut self, given: &[String], nodes: &NodeLookup) -> Vec<(usize, String)> {
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
    pub(super) fn unread_outputs(
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
}

/// How many edges read each node's outputs.
pub(super) fn consumer_counts(all_inputs: &[Vec<(String, Vec<Edge>)>]) -> Vec<usize> {
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
pub(super) fn needed_nodes(
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
