//! The node interface: what a node type declares (ports, params, implementations,
//! examples) and how one runs.
//!
//! A node type is a unit struct implementing [`NodeType`]. Its [`NodeSpec`] is the single
//! source of truth for validation, `voxflow nodes` and the generated docs. `build` only
//! parses and checks parameters (no I/O); the returned [`Node`] does the work in `run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::mask::Mask;
use crate::table::Table;
use crate::value::{PortType, Value};
use crate::volume::{Geometry, Image, Labels};

/// An input port.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// Port name, as written in a graph's `inputs: (name: "node")`.
    pub name: &'static str,
    /// Port types accepted (usually one).
    pub types: &'static [PortType],
    /// Whether the graph must connect it.
    pub required: bool,
    /// Whether it takes a list of values (`inputs: (masks: ["a", "b"])`).
    pub multiple: bool,
    /// What the port is for.
    pub doc: &'static str,
}

impl InputSpec {
    /// A required single-value input.
    pub const fn required(
        name: &'static str,
        types: &'static [PortType],
        doc: &'static str,
    ) -> Self {
        InputSpec {
            name,
            types,
            required: true,
            multiple: false,
            doc,
        }
    }
    /// An optional single-value input.
    pub const fn optional(
        name: &'static str,
        types: &'static [PortType],
        doc: &'static str,
    ) -> Self {
        InputSpec {
            name,
            types,
            required: false,
            multiple: false,
            doc,
        }
    }
    /// A required input taking a list of one or more values.
    pub const fn list(name: &'static str, types: &'static [PortType], doc: &'static str) -> Self {
        InputSpec {
            name,
            types,
            required: true,
            multiple: true,
            doc,
        }
    }
}

/// An output port.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    /// Port name; `"node.name"` refers to it (`"node"` alone when it is the only one).
    pub name: &'static str,
    /// Type of the value.
    pub ty: PortType,
    /// What it holds.
    pub doc: &'static str,
}

impl OutputSpec {
    /// An output port.
    pub const fn new(name: &'static str, ty: PortType, doc: &'static str) -> Self {
        OutputSpec { name, ty, doc }
    }
}

/// A parameter, for documentation and did-you-mean; the node's params struct is the
/// authority on parsing (a registry test checks the two agree).
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// Field name in `params: (...)`.
    pub name: &'static str,
    /// Type as a user writes it, e.g. `f64`, `(u32, u32, u32)`, `"image" | "mask"`.
    pub ty: &'static str,
    /// Default in RON syntax, `None` when the parameter is required.
    pub default: Option<&'static str>,
    /// Physical unit (`HU`, `mm`, `ml`), empty when unitless.
    pub unit: &'static str,
    /// What it does.
    pub doc: &'static str,
}

impl ParamSpec {
    /// A parameter with a default.
    pub const fn new(
        name: &'static str,
        ty: &'static str,
        default: &'static str,
        unit: &'static str,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            default: Some(default),
            unit,
            doc,
        }
    }
    /// A parameter the graph must set.
    pub const fn required(
        name: &'static str,
        ty: &'static str,
        unit: &'static str,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            default: None,
            unit,
            doc,
        }
    }
}

/// One implementation of a node type. The first listed is the default.
#[derive(Clone, Debug)]
pub struct ImplSpec {
    /// Name used in `impl: "..."` and `--impl Type=name`.
    pub name: &'static str,
    /// Bumped when its results change (cache keys include it).
    pub version: u32,
    /// How it works and when to pick it.
    pub doc: &'static str,
}

impl ImplSpec {
    /// An implementation at version 1.
    pub const fn new(name: &'static str, doc: &'static str) -> Self {
        ImplSpec {
            name,
            version: 1,
            doc,
        }
    }
}

/// Everything a node type declares about itself.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Type name used in graphs (`node: "HuWindow"`).
    pub name: &'static str,
    /// One line, ending with a period.
    pub summary: &'static str,
    /// Longer documentation: behaviour, conventions, edge cases.
    pub doc: &'static str,
    /// Family (io, intensity, morphology, ...).
    pub category: &'static str,
    /// Input ports.
    pub inputs: Vec<InputSpec>,
    /// Output ports.
    pub outputs: Vec<OutputSpec>,
    /// Parameters.
    pub params: Vec<ParamSpec>,
    /// Implementations, default first; never empty.
    pub impls: Vec<ImplSpec>,
}

impl NodeSpec {
    /// The input port with this name.
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|p| p.name == name)
    }
    /// The output port with this name.
    pub fn output(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|p| p.name == name)
    }
    /// The default implementation.
    pub fn default_impl(&self) -> &ImplSpec {
        &self.impls[0]
    }
}

/// A runnable example graph, shown by `voxflow nodes TYPE` and run by the tests with
/// every implementation of the node type.
#[derive(Clone, Debug)]
pub struct Example {
    /// What it shows.
    pub description: &'static str,
    /// A complete graph in RON (use `Phantom` for data so it runs anywhere).
    pub graph: &'static str,
}

/// A problem with one parameter, found while building a node.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    /// Path to the offending value inside `params`, e.g. `["kernel", "2"]`; empty when
    /// it concerns the params as a whole.
    pub path: Vec<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl ParamError {
    /// An error about one named parameter.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        ParamError {
            path: vec![name.to_string()],
            message: message.into(),
        }
    }
}

/// Parse a node's params (JSON, converted from the graph's RON) into its params type,
/// reporting where a value has the wrong type.
pub fn parse_params<P: DeserializeOwned>(params: &serde_json::Value) -> Result<P, ParamError> {
    serde_path_to_error::deserialize::<_, P>(params).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        ParamError {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// A node type: a unit struct registered in the [`crate::Registry`].
pub trait NodeType: Send + Sync + 'static {
    /// Ports, params, implementations and docs.
    fn spec(&self) -> NodeSpec;
    /// Example graphs (at least one; the registry tests insist).
    fn examples(&self) -> Vec<Example>;
    /// Parse and check params for one node of this type, with the chosen implementation
    /// (always one of `spec().impls`). No I/O here: this runs during validation.
    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>>;
}

/// A configured node, ready to run.
pub trait Node: Send + Sync {
    /// Read inputs from the context, do the work, store outputs in the context.
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError>;

    /// Files (or folders) this node reads, relative to the current folder. Their content
    /// hashes go into cache keys and provenance records, so a changed file is noticed.
    fn input_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Files (or folders) this node writes, as its params give them: relative paths are
    /// under the run's output folder. Validation refuses two nodes writing the same file
    /// (one would silently replace the other's result), and `voxflow run` a `--report`
    /// onto one.
    fn output_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// A failure inside a node's run. The engine adds the node id and type when reporting.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Two volume inputs are on different grids.
    #[error("grids differ: {a} is {ga}, but {b} is {gb}; {difference}")]
    GridMismatch {
        /// First input (port and source node).
        a: String,
        /// Its grid.
        ga: String,
        /// Second input.
        b: String,
        /// Its grid.
        gb: String,
        /// What differs (flipped or permuted axes, dims, spacing, position) and the node
        /// that reconciles the grids ([`crate::axes::describe_difference`]).
        difference: String,
    },
    /// An input value is unusable (empty, wrong content).
    #[error("input `{port}`: {message}")]
    Input {
        /// The port.
        port: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else, with a message for the user.
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    /// A file error.
    pub fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        NodeError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Where an input value came from, for error messages.
#[derive(Clone, Debug)]
pub struct Source {
    /// Producing node id.
    pub node: String,
    /// Producing output port.
    pub port: String,
}

/// What a running node sees: its inputs, a place for its outputs, and where files go.
pub struct NodeContext {
    pub(crate) node_id: String,
    pub(crate) node_type: String,
    pub(crate) inputs: BTreeMap<String, Vec<(Source, Value)>>,
    pub(crate) outputs: BTreeMap<String, Value>,
    pub(crate) out_dir: PathBuf,
    pub(crate) files_written: Arc<Mutex<Vec<PathBuf>>>,
    pub(crate) notes: Vec<String>,
    /// Output ports some other node (or a run target) reads.
    pub(crate) used_outputs: BTreeSet<String>,
}

impl NodeContext {
    /// A context for running a node outside a graph (tests, benchmarks).
    pub fn standalone(node_type: &str, out_dir: &Path) -> Self {
        NodeContext {
            node_id: "node".into(),
            node_type: node_type.into(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            out_dir: out_dir.to_path_buf(),
            files_written: Arc::default(),
            notes: Vec::new(),
            used_outputs: BTreeSet::new(),
        }
    }

    /// Mark an output port as read by another node (standalone use; the scheduler knows).
    pub fn with_output_used(mut self, port: &str) -> Self {
        self.used_outputs.insert(port.to_string());
        self
    }

    /// Whether another node (or a run target) reads this output port. A node whose output
    /// is a running service uses it to choose between handing the service on and serving
    /// in the foreground until its clients are done.
    pub fn output_used(&self, port: &str) -> bool {
        self.used_outputs.contains(port)
    }

    /// Give an input value (standalone use; the scheduler fills inputs itself).
    pub fn with_input(mut self, port: &str, value: Value) -> Self {
        let src = Source {
            node: format!("<{port}>"),
            port: "out".into(),
        };
        self.inputs
            .entry(port.to_string())
            .or_default()
            .push((src, value));
        self
    }

    /// Take the outputs (standalone use).
    pub fn take_outputs(&mut self) -> BTreeMap<String, Value> {
        std::mem::take(&mut self.outputs)
    }

    /// Id of the running node.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Type of the running node.
    pub fn node_type(&self) -> &str {
        &self.node_type
    }

    /// The value on an input port, if connected.
    pub fn input(&self, port: &str) -> Option<&Value> {
        self.inputs
            .get(port)
            .and_then(|v| v.first())
            .map(|(_, v)| v)
    }

    /// All values on a list input, in the order the graph gives them.
    pub fn input_list(&self, port: &str) -> Vec<&Value> {
        self.inputs
            .get(port)
            .map(|v| v.iter().map(|(_, v)| v).collect())
            .unwrap_or_default()
    }

    /// `port (from node.port)`, for messages.
    pub fn describe_input(&self, port: &str) -> String {
        match self.inputs.get(port).and_then(|v| v.first()) {
            Some((s, _)) => format!("input `{port}` (from {}.{})", s.node, s.port),
            None => format!("input `{port}`"),
        }
    }

    fn missing(&self, port: &str) -> NodeError {
        NodeError::Input {
            port: port.into(),
            message: "not connected".into(),
        }
    }

    /// A required Image input.
    pub fn image(&self, port: &str) -> Result<Arc<Image>, NodeError> {
        match self.input(port) {
            Some(Value::Image(v)) => Ok(v.clone()),
            Some(other) => Err(self.wrong_type(port, PortType::Image, other)),
            None => Err(self.missing(port)),
        }
    }

    /// A required Mask input.
    pub fn mask(&self, port: &str) -> Result<Arc<Mask>, NodeError> {
        match self.input(port) {
            Some(Value::Mask(v)) => Ok(v.clone()),
            Some(other) => Err(self.wrong_type(port, PortType::Mask, other)),
            None => Err(self.missing(port)),
        }
    }

    /// A required Labels input.
    pub fn labels(&self, port: &str) -> Result<Arc<Labels>, NodeError> {
        match self.input(port) {
            Some(Value::Labels(v)) => Ok(v.clone()),
            Some(other) => Err(self.wrong_type(port, PortType::Labels, other)),
            None => Err(self.missing(port)),
        }
    }

    /// A required Table input.
    pub fn table(&self, port: &str) -> Result<Arc<Table>, NodeError> {
        match self.input(port) {
            Some(Value::Table(v)) => Ok(v.clone()),
            Some(other) => Err(self.wrong_type(port, PortType::Table, other)),
            None => Err(self.missing(port)),
        }
    }

    /// A required opaque input (model, config, service) of port type `ty` holding a `T`.
    pub fn opaque<T: std::any::Any + Send + Sync>(
        &self,
        port: &str,
        ty: PortType,
    ) -> Result<Arc<T>, NodeError> {
        match self.input(port) {
            Some(Value::Opaque(t, v)) if *t == ty => {
                v.clone().downcast::<T>().map_err(|_| NodeError::Input {
                    port: port.into(),
                    message: format!("is a {ty} but not a {}", std::any::type_name::<T>()),
                })
            }
            Some(other) => Err(self.wrong_type(port, ty, other)),
            None => Err(self.missing(port)),
        }
    }

    fn wrong_type(&self, port: &str, want: PortType, got: &Value) -> NodeError {
        NodeError::Input {
            port: port.into(),
            message: format!("expected {want}, got {}", got.port_type()),
        }
    }

    /// Check that two connected volume inputs share a grid; the error names both ports,
    /// the nodes they came from and both geometries.
    pub fn check_same_grid(&self, a: &str, b: &str) -> Result<(), NodeError> {
        let ga = self.input(a).and_then(Value::geometry);
        let gb = self.input(b).and_then(Value::geometry);
        if let (Some(ga), Some(gb)) = (ga, gb) {
            if !ga.same_grid(gb) {
                return Err(self.grid_mismatch(a, ga, b, gb));
            }
        }
        Ok(())
    }

    /// The grid mismatch error between two ports (for nodes with list inputs).
    pub fn grid_mismatch(&self, a: &str, ga: &Geometry, b: &str, gb: &Geometry) -> NodeError {
        NodeError::GridMismatch {
            a: self.describe_input(a),
            ga: ga.describe(),
            b: self.describe_input(b),
            gb: gb.describe(),
            difference: crate::axes::describe_difference(a, ga, b, gb),
        }
    }

    /// Store an output value.
    pub fn set_output(&mut self, port: &str, value: Value) {
        self.outputs.insert(port.to_string(), value);
    }

    /// Where an output file goes: relative paths resolve against the run's output folder.
    pub fn output_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.out_dir.join(p)
        }
    }

    /// Record a file this node wrote (for the run report and provenance).
    pub fn file_written(&self, path: &Path) {
        self.files_written
            .lock()
            .expect("lock")
            .push(path.to_path_buf());
    }

    /// Add a line to the run report for this node (e.g. which device ran it).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_inputs_check_port_type_and_content() {
        let ctx = NodeContext::standalone("t", Path::new("."))
            .with_input("cfg", Value::Opaque(PortType::Config, Arc::new(7u32)))
            .with_input("img", Value::Table(Arc::new(crate::Table::new(["a"]))));
        assert_eq!(*ctx.opaque::<u32>("cfg", PortType::Config).unwrap(), 7);
        let e = ctx.opaque::<String>("cfg", PortType::Config).unwrap_err();
        assert!(e.to_string().contains("is a Config but not a"), "{e}");
        let e = ctx.opaque::<u32>("cfg", PortType::Service).unwrap_err();
        assert!(
            e.to_string().contains("expected Service, got Config"),
            "{e}"
        );
        let e = ctx.opaque::<u32>("img", PortType::Config).unwrap_err();
        assert!(e.to_string().contains("expected Config, got Table"), "{e}");
        let e = ctx.opaque::<u32>("none", PortType::Config).unwrap_err();
        assert!(e.to_string().contains("not connected"), "{e}");
    }
}
