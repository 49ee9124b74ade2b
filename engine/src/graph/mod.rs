//! Loading graph files: structure checks, `${param}` substitution, command-line
//! overrides and macro expansion.
//!
//! A graph file is `Graph(name: "...", params: {..}, inputs: [..], nodes: {..},
//! outputs: {..})`. A node whose `node` is a path ending in `.ron` is a macro: that graph
//! file is expanded in place, its nodes renamed `macro_id/inner_id`, its `params` set from
//! the macro node's `params`, its `inputs` bound to the macro node's `inputs`, and its
//! `outputs` available as `"macro_id.output"`. The result is one flat [`Graph`] that
//! validation checks as a whole. A macro's file is looked up beside the graph using it,
//! then in the graph library ([`library_path`]: `VOXFLOW_GRAPH_PATH`, the install's
//! `graphs/`).
//!
//! The loader's steps live beside this file: `overrides` (`--set`), `expand` (one graph
//! file: fields, params, inputs, outputs, references across scopes), `node` (one node
//! entry, plain or macro) and `substitute` (`${param}` and its limits).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::diag::{Diagnostic, Diagnostics, FileId, Location, Sources};
use crate::ron_spanned::{self, Span, Spanned};

mod expand;
mod node;
mod overrides;
mod substitute;

/// Most bytes one value (a graph param or a node's params) may grow to by `${param}`
/// substitution. Params that refer to each other twice double at each step: 30 such
/// lines in an 860-byte file once asked for 15 GB. Real values are paths and numbers.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most bytes substitution may add over a whole graph and its macros.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;

/// Most nodes a graph may have once macros are expanded. A macro that uses the next one
/// twice, 22 deep, is 2^21 nodes; the largest real graphs have hundreds.
pub const MAX_NODES: usize = 100_000;

/// Deepest chain of macros inside macros.
pub const MAX_MACRO_DEPTH: usize = 32;

/// Environment variable with extra directories (`:`-separated) searched for macro graph
/// files, after the including graph's own directory.
pub const GRAPH_PATH_VAR: &str = "VOXFLOW_GRAPH_PATH";

/// Directories searched for a macro's graph file (`node: "macros/x.ron"`) after the
/// directory of the graph that uses it, in this order:
///
/// 1. each directory of `VOXFLOW_GRAPH_PATH` (`:`-separated, empty entries skipped);
/// 2. the install's graph library: `share/voxflow/graphs` beside the binary's `bin/`
///    (`PREFIX/bin/voxflow` -> `PREFIX/share/voxflow/graphs`), then `graphs/` next to the
///    binary (an unpacked archive);
/// 3. the `graphs/` of the source tree voxflow was built from (what `cargo install --path
///    cli` leaves behind), while it exists.
///
/// The graph's own directory comes first so that a graph shipped with its macros always
/// gets those; the library is what lets a copied graph keep working.
pub fn library_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(GRAPH_PATH_VAR)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(prefix) = bin.parent() {
            dirs.push(prefix.join("share").join("voxflow").join("graphs"));
        }
        dirs.push(bin.join("graphs"));
    }
    // The engine crate sits in the workspace root next to graphs/.
    let engine = Path::new(env!("CARGO_MANIFEST_DIR"));
    dirs.push(engine.parent().unwrap_or(engine).join("graphs"));
    dirs
}

/// Options for loading a graph.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Overrides: `name=value` sets a graph param, `node.param=value` a node param,
    /// `macro.param=value` a param of a macro node (as if written in its `params`),
    /// `macro/inner.param=value` a node inside a macro. Values are RON; text that is not
    /// valid RON is taken as a string.
    pub set: Vec<Override>,
}

impl LoadOptions {
    /// Options from `--set` arguments as typed (`KEY=VALUE`).
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Self {
        LoadOptions {
            set: args.iter().map(|a| Override::parse(a.as_ref())).collect(),
        }
    }
}

/// One override, split into key and value once where it is given: a `--set KEY=VALUE`
/// argument, or a case file's column and cell (no text to re-split). The value stays
/// text: the loader parses it as RON with positions for its diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Override {
    /// `key=value`.
    Set {
        /// Graph param, `node.param` or `macro.param`.
        key: String,
        /// The value as written.
        value: String,
    },
    /// An argument without `=`: [`load_graph`] reports it with the graph's other
    /// problems, pointing at it.
    Malformed(String),
}

impl Override {
    /// `key` set to `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Override::Set {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A `--set` argument, split at its first `=`.
    pub fn parse(arg: &str) -> Self {
        match arg.split_once('=') {
            Some((key, value)) => Override::new(key, value),
            None => Override::Malformed(arg.to_string()),
        }
    }
}

/// As given on the command line (`KEY=VALUE`).
impl std::fmt::Display for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Override::Set { key, value } => write!(f, "{key}={value}"),
            Override::Malformed(arg) => f.write_str(arg),
        }
    }
}

/// A reference to an output port: `"node"` or `"node.port"`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortRef {
    /// Node id (qualified with macro prefixes after expansion).
    pub node: String,
    /// Port name, when given.
    pub port: Option<String>,
    /// Where the reference is written.
    pub loc: Location,
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.port {
            Some(p) => write!(f, "{}.{p}", self.node),
            None => f.write_str(&self.node),
        }
    }
}

/// An input port binding of a node.
#[derive(Clone, Debug)]
pub struct InputBinding {
    /// Port name.
    pub port: String,
    /// Where the port name is written.
    pub loc: Location,
    /// Connected outputs (one, or several for list inputs).
    pub refs: Vec<PortRef>,
    /// Written as a list `[..]`.
    pub is_list: bool,
}

/// One node of the flattened graph.
#[derive(Clone, Debug)]
pub struct GraphNode {
    /// Unique id (`macro/inner` inside macros).
    pub id: String,
    /// Node type name.
    pub type_name: String,
    /// Where the node's name is written.
    pub loc: Location,
    /// Where the type name is written.
    pub type_loc: Location,
    /// Params after substitution (`None` when not written).
    pub params: Option<Spanned>,
    /// File the params belong to.
    pub params_file: FileId,
    /// Chosen implementation, when written.
    pub implementation: Option<(String, Location)>,
    /// Input bindings.
    pub inputs: Vec<InputBinding>,
    /// Whether `${...}` substitution in the params failed (already reported; the params
    /// are not checked further to avoid a second error about the same value).
    pub params_unresolved: bool,
    /// Params set with `--set node.param=value`; their spans point into the
    /// command-line pseudo file ([`CLI_FILE`]).
    pub cli_params: Vec<String>,
}

/// File id of the command-line pseudo file holding `--set` values.
pub const CLI_FILE: FileId = 0;

/// A loaded, flattened graph (not yet validated against node types).
#[derive(Clone, Debug)]
pub struct Graph {
    /// Name from the file.
    pub name: String,
    /// The top-level file.
    pub file: PathBuf,
    /// Graph params with their effective values (after `--set`).
    pub params: IndexMap<String, serde_json::Value>,
    /// Nodes in file order (macros expanded).
    pub nodes: IndexMap<String, GraphNode>,
    /// Declared outputs of the top-level graph.
    pub outputs: IndexMap<String, PortRef>,
    /// Problems found so far (load errors and warnings); validation adds its own.
    pub diagnostics: Vec<Diagnostic>,
    /// Text of all files involved.
    pub sources: Sources,
    /// Values that are `None` because they came from a graph param without a value, by
    /// macro prefix (`""` at the top, `"m/"` inside macro node `m`: a macro used twice
    /// has one text but two origins), file and start of their span, naming that param
    /// (the top-level one, through macros). Validation names it when a node refuses the
    /// `None`; [`Graph::unset_origin`] looks it up.
    pub unset_values: HashMap<UnsetKey, String>,
    /// Places where a graph param without a value was to be spliced into a string, and
    /// the param. `run` needs them set; `validate` of a template lists them.
    pub unset_splices: Vec<(Location, String)>,
}

/// Key of [`Graph::unset_values`]: macro prefix, file, start of the span.
pub type UnsetKey = (String, FileId, usize);

impl Graph {
    /// The unset graph param a `None` param value of `node` at `span` of `file` came from.
    pub fn unset_origin(&self, node: &str, file: FileId, span: Span) -> Option<&str> {
        let prefix = node.rfind('/').map(|i| &node[..=i]).unwrap_or("");
        self.unset_values
            .get(&(prefix.to_string(), file, span.start))
            .map(String::as_str)
    }

    /// blake3 of the graph file and its macro files (not the command line).
    pub fn sources_hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        for id in 1..self.sources.len() {
            h.update(self.sources.text(id).as_bytes());
            h.update(&[0]);
        }
        h.finalize().to_hex().to_string()
    }

    /// Whether loading found errors.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == crate::diag::Severity::Error)
    }
}

/// Load a graph file. Returns `Err` only when the file cannot be read or parsed at all;
/// other problems are collected in [`Graph::diagnostics`] so validation can report
/// everything at once.
pub fn load_graph(path: &Path, opts: &LoadOptions) -> Result<Graph, Diagnostics> {
    let mut ld = Loader {
        sources: Sources::default(),
        diags: Vec::new(),
        nodes: IndexMap::new(),
        macros: IndexMap::new(),
        stack: Vec::new(),
        stop: false,
        expanded: 0,
        unset_values: HashMap::new(),
        unset_splices: Vec::new(),
        library: library_path(),
        node_sets: Vec::new(),
    };
    let (graph_sets, node_sets) = ld.parse_sets(&opts.set);
    ld.node_sets = node_sets;
    let scope = ld.expand(path, "", graph_sets, IndexMap::new(), None);
    let Some(scope) = scope.filter(|_| !ld.stop) else {
        crate::diag::sort(&mut ld.diags);
        return Err(Diagnostics {
            items: ld.diags,
            sources: ld.sources,
        });
    };
    ld.resolve_macro_refs();
    let node_sets = std::mem::take(&mut ld.node_sets);
    ld.apply_node_sets(node_sets);
    let mut outputs = IndexMap::new();
    for (name, r) in scope.outputs {
        if let Some(r) = ld.resolve_ref(r) {
            outputs.insert(name, r);
        }
    }
    crate::diag::sort(&mut ld.diags);
    Ok(Graph {
        name: scope.name,
        file: path.to_path_buf(),
        params: scope.params,
        nodes: ld.nodes,
        outputs,
        diagnostics: ld.diags,
        sources: ld.sources,
        unset_values: ld.unset_values,
        unset_splices: ld.unset_splices,
    })
}

struct Scope {
    name: String,
    params: IndexMap<String, serde_json::Value>,
    outputs: IndexMap<String, PortRef>,
}

struct MacroInstance {
    outputs: IndexMap<String, PortRef>,
    file: String,
    /// Its file was not found (already reported).
    missing: bool,
}

struct Loader {
    sources: Sources,
    diags: Vec<Diagnostic>,
    nodes: IndexMap<String, GraphNode>,
    macros: IndexMap<String, MacroInstance>,
    stack: Vec<PathBuf>,
    /// A limit was exceeded: expand nothing more.
    stop: bool,
    /// Bytes added by substitution so far (all values).
    expanded: usize,
    unset_values: HashMap<UnsetKey, String>,
    unset_splices: Vec<(Location, String)>,
    /// Directories searched for macro files after the including graph's ([`library_path`]).
    library: Vec<PathBuf>,
    /// `--set node.param=value` not yet applied: those naming a macro node are taken when
    /// it is expanded, the rest go to plain nodes afterwards.
    node_sets: Vec<NodeSet>,
}

/// A `--set node.param=value`: node id, param, value and where it is written.
type NodeSet = (String, String, Spanned, Location);

/// Resolved params of a scope: value and the file its spans point into.
type Params = IndexMap<String, (Spanned, FileId)>;

/// A command-line `--set` value with its position in the synthetic command-line source.
type Sets = IndexMap<String, (Spanned, Location)>;

impl Loader {
    fn err(&mut self, loc: Location, msg: impl Into<String>, help: Option<String>) {
        self.diags.push(Diagnostic::error(loc, msg).with_help(help));
    }

    fn read(&mut self, path: &Path) -> Option<(FileId, Spanned)> {
        let file = match self.sources.find(path) {
            Some(id) => id,
            None => {
                let text = match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) => {
                        self.diags.push(Diagnostic::file_error(
                            path,
                            format!("cannot read graph file: {e}"),
                        ));
                        return None;
                    }
                };
                self.sources.add(path, text)
            }
        };
        match ron_spanned::parse(self.sources.text(file)) {
            Ok(v) => Some((file, v)),
            Err(e) => {
                self.err(
                    Location { file, span: e.span },
                    format!("syntax error: {}", e.message),
                    None,
                );
                None
            }
        }
    }
}

fn list_choices<S: AsRef<str>>(what: &str, names: &[S]) -> String {
    if names.is_empty() {
        format!("it declares no {what}")
    } else {
        let n: Vec<String> = names.iter().map(|s| format!("`{}`", s.as_ref())).collect();
        format!("{what}: {}", n.join(", "))
    }
}
