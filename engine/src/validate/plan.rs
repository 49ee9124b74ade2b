//! What validation produces: a [`Plan`] ready to run, or for a template its
//! [`Outline`] and unset params.

use std::path::PathBuf;

use indexmap::IndexMap;

use crate::diag::Diagnostics;
use crate::node::Node;
use crate::value::PortType;

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
