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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::diag::{Diagnostic, Diagnostics, FileId, Location, Sources};
use crate::ron_spanned::{self, Key, RonValue, Span, Spanned};
use crate::suggest::hint;

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

/// What one substitution is filling in, for limit errors, and how much it has grown.
struct Subst {
    what: String,
    bytes: usize,
    /// Macro prefix of the scope substituting (`""` or `"m/"`).
    prefix: String,
}

impl Subst {
    fn new(what: String, prefix: &str) -> Self {
        Subst {
            what,
            bytes: 0,
            prefix: prefix.to_string(),
        }
    }
}

/// Approximate size in bytes (text plus a word per value) and nesting depth of a value.
/// Recursion is bounded: parsed values nest at most [`ron_spanned::MAX_DEPTH`] deep and
/// substitution keeps it so.
fn measure(v: &Spanned) -> (usize, usize) {
    let children: Vec<&Spanned> = match &v.value {
        RonValue::List(items) | RonValue::Tuple(_, items) => items.iter().collect(),
        RonValue::Struct { fields, .. } => fields.iter().map(|(_, i)| i).collect(),
        RonValue::Some(inner) => vec![inner],
        _ => Vec::new(),
    };
    let mut size = 8 + match &v.value {
        RonValue::Str(t) | RonValue::Ident(t) => t.len(),
        RonValue::Struct { fields, .. } => fields.iter().map(|(k, _)| k.name.len()).sum(),
        _ => 0,
    };
    let mut depth = 0;
    for c in children {
        let (s, d) = measure(c);
        size += s;
        depth = depth.max(d + 1);
    }
    (size, depth)
}

const GRAPH_FIELDS: [&str; 6] = ["name", "doc", "params", "inputs", "nodes", "outputs"];
const NODE_FIELDS: [&str; 4] = ["node", "params", "inputs", "impl"];

/// A command-line `--set` value with its position in the synthetic command-line source.
type Sets = IndexMap<String, (Spanned, Location)>;

impl Loader {
    fn err(&mut self, loc: Location, msg: impl Into<String>, help: Option<String>) {
        self.diags.push(Diagnostic::error(loc, msg).with_help(help));
    }

    /// Parse `--set` arguments into graph-level and node-level overrides. The command line
    /// becomes a pseudo file so that errors in values point at them.
    fn parse_sets(&mut self, sets: &[Override]) -> (Sets, Vec<NodeSet>) {
        let mut text = String::new();
        let mut graph = IndexMap::new();
        let mut nodes = Vec::new();
        let mut parsed = Vec::new();
        for s in sets {
            let start = text.len() + "--set ".len();
            text.push_str(&format!("--set {s}\n"));
            parsed.push((s, start));
        }
        let cli = self.sources.add(Path::new("<command line>"), text);
        debug_assert_eq!(cli, CLI_FILE, "the command line is the first source");
        for (s, start) in parsed {
            let (key, raw) = match s {
                Override::Set { key, value } => (key.as_str(), value.as_str()),
                Override::Malformed(arg) => {
                    let loc = Location {
                        file: cli,
                        span: Span {
                            start,
                            end: start + arg.len(),
                        },
                    };
                    self.err(loc, format!("`--set {arg}` needs the form KEY=VALUE"), None);
                    continue;
                }
            };
            let vstart = start + key.len() + 1;
            let loc = Location {
                file: cli,
                span: Span {
                    start: vstart,
                    end: vstart + raw.len(),
                },
            };
            let mut value = match ron_spanned::parse(raw) {
                Ok(v) if !matches!(v.value, RonValue::Ident(_)) => v,
                // Not RON is taken as text, but a value too deep is refused like in a file.
                Err(e) if e.is_too_deep() => {
                    let at = Location {
                        file: cli,
                        span: Span {
                            start: e.span.start + vstart,
                            end: e.span.end + vstart,
                        },
                    };
                    self.err(at, format!("--set {key}: {}", e.message), None);
                    continue;
                }
                _ => Spanned {
                    value: RonValue::Str(raw.to_string()),
                    span: Span::default(),
                },
            };
            shift_spans(&mut value, vstart);
            value.span = loc.span;
            match key.rsplit_once('.') {
                Some((node, param)) => {
                    nodes.push((node.to_string(), param.to_string(), value, loc))
                }
                None => {
                    graph.insert(key.to_string(), (value, loc));
                }
            }
        }
        (graph, nodes)
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

    /// Expand one graph file under `prefix`. `overrides` set its params, `bindings` its
    /// inputs (already qualified in the parent), `site` is where the macro is used.
    fn expand(
        &mut self,
        path: &Path,
        prefix: &str,
        overrides: Sets,
        bindings: IndexMap<String, Vec<PortRef>>,
        site: Option<Location>,
    ) -> Option<Scope> {
        if self.stop {
            return None;
        }
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.stack.len() >= MAX_MACRO_DEPTH {
            let msg = format!(
                "macro `{}` ({}) is nested more than {MAX_MACRO_DEPTH} macros deep",
                prefix.trim_end_matches('/'),
                path.display()
            );
            match site {
                Some(loc) => self.limit(loc, msg),
                None => self.diags.push(Diagnostic::file_error(path, msg)),
            }
            return None;
        }
        if self.stack.contains(&canonical) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain([&canonical])
                .map(|p| p.display().to_string())
                .collect();
            let msg = format!("macro includes itself: {}", chain.join(" -> "));
            match site {
                Some(loc) => self.err(loc, msg, None),
                None => self.diags.push(Diagnostic::file_error(path, msg)),
            }
            return None;
        }
        let (file, root) = self.read(path)?;
        self.stack.push(canonical);
        let scope = self.expand_parsed(path, file, &root, prefix, overrides, bindings, site);
        self.stack.pop();
        scope
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_parsed(
        &mut self,
        path: &Path,
        file: FileId,
        root: &Spanned,
        prefix: &str,
        overrides: Sets,
        bindings: IndexMap<String, Vec<PortRef>>,
        site: Option<Location>,
    ) -> Option<Scope> {
        let at = |span: Span| Location { file, span };
        let fields = match &root.value {
            RonValue::Struct {
                name,
                is_map: false,
                fields,
            } if name.as_deref().is_none_or(|n| n == "Graph") => fields,
            _ => {
                self.err(
                    at(root.span),
                    "a graph file holds one `Graph(name: ..., nodes: {...})`",
                    None,
                );
                return None;
            }
        };
        for (k, _) in fields {
            if !GRAPH_FIELDS.contains(&k.name.as_str()) {
                self.err(
                    at(k.span),
                    format!("unknown field `{}` in Graph", k.name),
                    hint(&k.name, GRAPH_FIELDS),
                );
            }
        }
        let name = match root.get("name") {
            Some(v) => match v.as_str() {
                Some(s) => s.to_string(),
                None => {
                    self.err(at(v.span), "`name` must be a string", None);
                    String::new()
                }
            },
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };

        // Graph params: defaults from the file, overridden by the parent or command line.
        let mut params: IndexMap<String, (Spanned, Location)> = IndexMap::new();
        if let Some(p) = root.get("params") {
            match p.fields() {
                Some(fs) => {
                    for (k, v) in fs {
                        params.insert(k.name.clone(), (v.clone(), at(v.span)));
                    }
                }
                None => self.err(
                    at(p.span),
                    "`params` must be a map like { \"name\": value }",
                    None,
                ),
            }
        }
        let declared: Vec<String> = params.keys().cloned().collect();
        for (k, (v, loc)) in overrides {
            if params.contains_key(&k) {
                params.insert(k, (v, loc));
            } else {
                let what = if site.is_some() {
                    "the macro"
                } else {
                    "the graph"
                };
                self.err(
                    loc,
                    format!("{what} {} has no param `{k}`", path.display()),
                    hint(&k, &declared).or_else(|| Some(list_choices("params", &declared))),
                );
            }
        }
        // Params may refer to each other; substitute in declaration order.
        let mut resolved: Params = IndexMap::new();
        for (k, (v, loc)) in &params {
            // A value from the command line or a parent lives in that file.
            let mut v = v.clone();
            let mut sub = Subst::new(format!("graph param `{k}` of {}", path.display()), prefix);
            self.substitute(&mut v, loc.file, &resolved, &declared, &mut sub, 0);
            resolved.insert(k.clone(), (v, loc.file));
        }
        if self.stop {
            return None;
        }

        // Declared inputs (macros only).
        let mut inputs: Vec<(String, Location)> = Vec::new();
        if let Some(i) = root.get("inputs") {
            match &i.value {
                RonValue::List(items) => {
                    for it in items {
                        match it.as_str() {
                            Some(s) => inputs.push((s.to_string(), at(it.span))),
                            None => self.err(
                                at(it.span),
                                "graph inputs are names: inputs: [\"ct\", \"mask\"]",
                                None,
                            ),
                        }
                    }
                }
                RonValue::Struct { fields, .. } => {
                    for (k, _) in fields {
                        inputs.push((k.name.clone(), at(k.span)));
                    }
                }
                _ => self.err(
                    at(i.span),
                    "graph inputs are names: inputs: [\"ct\", \"mask\"]",
                    None,
                ),
            }
        }
        for (k, refs) in &bindings {
            if !inputs.iter().any(|(n, _)| n == k) {
                let loc = refs
                    .first()
                    .map(|r| r.loc)
                    .or(site)
                    .expect("binding has a location");
                let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
                self.err(
                    loc,
                    format!("the macro {} has no input `{k}`", path.display()),
                    hint(k, &names).or_else(|| Some(list_choices("inputs", &names))),
                );
            }
        }

        let Some(nodes_v) = root.get("nodes") else {
            self.err(at(root.span), "the graph has no `nodes`", None);
            return None;
        };
        let Some(entries) = nodes_v.fields() else {
            self.err(
                at(nodes_v.span),
                "`nodes` must be a map like { \"id\": (node: \"Type\", ...) }",
                None,
            );
            return None;
        };
        let local_names: Vec<String> = entries
            .iter()
            .map(|(k, _)| k.name.clone())
            .chain(inputs.iter().map(|(n, _)| n.clone()))
            .collect();
        let local = LocalScope {
            prefix,
            file,
            inputs: &inputs,
            bindings: &bindings,
            names: &local_names,
            name_set: local_names.iter().map(String::as_str).collect(),
            site,
        };

        for (key, entry) in entries {
            if inputs.iter().any(|(n, _)| n == &key.name) {
                self.err(
                    at(key.span),
                    format!("node `{}` has the same name as a graph input", key.name),
                    None,
                );
            }
            self.node_entry(&local, key, entry, &resolved, &declared, path);
            if self.stop {
                return None;
            }
        }

        let mut outputs = IndexMap::new();
        if let Some(o) = root.get("outputs") {
            match o.fields() {
                Some(fs) => {
                    for (k, v) in fs {
                        match v.as_str() {
                            Some(s) => {
                                if let Some(mut refs) = self.local_ref(&local, s, at(v.span)) {
                                    if refs.len() == 1 {
                                        outputs.insert(k.name.clone(), refs.remove(0));
                                    }
                                }
                            }
                            None => self.err(
                                at(v.span),
                                "an output is a string \"node\" or \"node.port\"",
                                None,
                            ),
                        }
                    }
                }
                None => self.err(
                    at(o.span),
                    "`outputs` must be a map like { \"name\": \"node.port\" }",
                    None,
                ),
            }
        }
        let params_json = resolved
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.to_json()))
            .collect();
        Some(Scope {
            name,
            params: params_json,
            outputs,
        })
    }

    fn node_entry(
        &mut self,
        local: &LocalScope,
        key: &Key,
        entry: &Spanned,
        params: &Params,
        declared: &[String],
        path: &Path,
    ) {
        let file = local.file;
        let at = |span: Span| Location { file, span };
        let id = format!("{}{}", local.prefix, key.name);
        if key.name.is_empty() || key.name.contains(['.', '/', '$']) {
            self.err(
                at(key.span),
                format!(
                    "node id `{}` may not be empty or contain `.`, `/` or `$`",
                    key.name
                ),
                None,
            );
            return;
        }
        let Some(fields) = entry
            .fields()
            .filter(|_| matches!(entry.value, RonValue::Struct { is_map: false, .. }))
        else {
            self.err(
                at(entry.span),
                format!(
                    "node `{}` must be written (node: \"Type\", params: (...), inputs: (...))",
                    key.name
                ),
                None,
            );
            return;
        };
        for (k, _) in fields {
            if !NODE_FIELDS.contains(&k.name.as_str()) {
                self.err(
                    at(k.span),
                    format!("unknown field `{}` in node `{}`", k.name, key.name),
                    hint(&k.name, NODE_FIELDS),
                );
            }
        }
        let Some(type_v) = entry.get("node") else {
            self.err(
                at(key.span),
                format!("node `{}` has no `node:` type", key.name),
                None,
            );
            return;
        };
        let Some(type_name) = type_v.as_str() else {
            self.err(
                at(type_v.span),
                "`node` must be a string naming the node type",
                None,
            );
            return;
        };
        let mut node_params = entry.get("params").cloned();
        let errors_before = (self.diags.len(), self.unset_splices.len());
        if let Some(p) = &mut node_params {
            let mut sub = Subst::new(format!("the params of node `{id}`"), local.prefix);
            self.substitute(p, file, params, declared, &mut sub, 0);
        }
        let params_unresolved = (self.diags.len(), self.unset_splices.len()) != errors_before;
        let mut bindings: Vec<InputBinding> = Vec::new();
        if let Some(iv) = entry.get("inputs") {
            match iv.fields() {
                Some(fs) => {
                    for (k, v) in fs {
                        let (items, is_list) = match &v.value {
                            RonValue::List(items) => (items.iter().collect::<Vec<_>>(), true),
                            _ => (vec![v], false),
                        };
                        let mut refs = Vec::new();
                        for it in items {
                            match it.as_str() {
                                Some(s) => refs.extend(self.local_ref(local, s, at(it.span)).unwrap_or_default()),
                                None => self.err(at(it.span), "an input is a string \"node\" or \"node.port\", or a list of them", None),
                            }
                        }
                        bindings.push(InputBinding {
                            port: k.name.clone(),
                            loc: at(k.span),
                            refs,
                            is_list,
                        });
                    }
                }
                None => self.err(
                    at(iv.span),
                    "`inputs` must be written (port: \"node\", other: \"node.port\")",
                    None,
                ),
            }
        }
        let implementation = match entry.get("impl") {
            Some(v) => match v.as_str() {
                Some(s) => Some((s.to_string(), at(v.span))),
                None => {
                    self.err(
                        at(v.span),
                        "`impl` must be a string naming an implementation",
                        None,
                    );
                    None
                }
            },
            None => None,
        };

        if type_name.ends_with(".ron") {
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let searched: Vec<PathBuf> = std::iter::once(base.to_path_buf())
                .chain(self.library.iter().cloned())
                .map(|d| d.join(type_name))
                .collect();
            let found = searched.iter().find(|p| p.is_file()).cloned();
            if let Some((_, loc)) = &implementation {
                self.err(
                    *loc,
                    "a macro node has no implementations; set `impl` on the nodes inside it",
                    None,
                );
            }
            let mut overrides = IndexMap::new();
            if let Some(p) = &node_params {
                match p.fields() {
                    Some(fs) => {
                        for (k, v) in fs {
                            overrides.insert(k.name.clone(), (v.clone(), at(k.span)));
                        }
                    }
                    None => self.err(
                        at(p.span),
                        "macro params must be written (name: value, ...)",
                        None,
                    ),
                }
            }
            // `--set macro.param=value` sets the macro's param as if written at the macro
            // node (an unknown name is reported by `expand_parsed` with a suggestion).
            let mut i = 0;
            while i < self.node_sets.len() {
                if self.node_sets[i].0 == id {
                    let (_, param, value, loc) = self.node_sets.remove(i);
                    overrides.shift_remove(&param);
                    overrides.insert(param, (value, loc));
                } else {
                    i += 1;
                }
            }
            let macro_bindings = bindings.into_iter().map(|b| (b.port, b.refs)).collect();
            let Some(macro_path) = found else {
                let places: Vec<String> = searched
                    .iter()
                    .map(|p| format!("  {}", p.display()))
                    .collect();
                self.err(
                    at(type_v.span),
                    format!("macro graph file `{type_name}` not found"),
                    Some(format!(
                        "looked in (the graph's folder, then {GRAPH_PATH_VAR}, then the install's graphs):\n{}",
                        places.join("\n")
                    )),
                );
                // References to its outputs are not reported again.
                self.macros.insert(
                    id,
                    MacroInstance {
                        outputs: IndexMap::new(),
                        file: type_name.to_string(),
                        missing: true,
                    },
                );
                return;
            };
            let scope = self.expand(
                &macro_path,
                &format!("{id}/"),
                overrides,
                macro_bindings,
                Some(at(type_v.span)),
            );
            if let Some(scope) = scope {
                self.macros.insert(
                    id,
                    MacroInstance {
                        outputs: scope.outputs,
                        file: type_name.to_string(),
                        missing: false,
                    },
                );
            }
            return;
        }
        if self.nodes.len() + self.macros.len() >= MAX_NODES {
            self.limit(
                at(key.span),
                format!(
                    "node `{id}` makes the graph larger than {MAX_NODES} nodes once macros are expanded{}",
                    if local.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" (inside macro `{}`)", local.prefix.trim_end_matches('/'))
                    }
                ),
            );
            return;
        }
        self.nodes.insert(
            id.clone(),
            GraphNode {
                id,
                type_name: type_name.to_string(),
                loc: at(key.span),
                type_loc: at(type_v.span),
                params: node_params,
                params_file: file,
                implementation,
                inputs: bindings,
                params_unresolved,
                cli_params: Vec::new(),
            },
        );
    }

    /// Resolve `"node"` / `"node.port"` written in a scope: graph inputs become the
    /// parent's bindings; other names get the scope's prefix.
    fn local_ref(&mut self, local: &LocalScope, text: &str, loc: Location) -> Option<Vec<PortRef>> {
        let (node, port) = match text.split_once('.') {
            Some((n, p)) => (n, Some(p.to_string())),
            None => (text, None),
        };
        if local.inputs.iter().any(|(n, _)| n == node) {
            if port.is_some() {
                self.err(
                    loc,
                    format!("`{node}` is a graph input; refer to it without a port"),
                    None,
                );
                return None;
            }
            return match local.bindings.get(node) {
                Some(refs) => Some(refs.clone()),
                None => {
                    let msg = match local.site {
                        Some(_) => format!("graph input `{node}` is not connected where the macro is used"),
                        None => format!("graph input `{node}` has no value: a graph with inputs runs only as a macro inside another graph"),
                    };
                    self.err(local.site.unwrap_or(loc), msg, None);
                    None
                }
            };
        }
        if !local.name_set.contains(node) {
            self.err(
                loc,
                format!("no node named `{node}`"),
                hint(node, local.names),
            );
            return None;
        }
        Some(vec![PortRef {
            node: format!("{}{node}", local.prefix),
            port,
            loc,
        }])
    }

    /// Replace references to macro nodes by the macro's output refs, transitively.
    fn resolve_macro_refs(&mut self) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            let mut inputs = std::mem::take(&mut self.nodes[&id].inputs);
            for b in &mut inputs {
                let refs = std::mem::take(&mut b.refs);
                b.refs = refs
                    .into_iter()
                    .filter_map(|r| self.resolve_ref(r))
                    .collect();
            }
            self.nodes[&id].inputs = inputs;
        }
    }

    fn resolve_ref(&mut self, mut r: PortRef) -> Option<PortRef> {
        for _ in 0..=self.macros.len() {
            let Some(m) = self.macros.get(&r.node) else {
                return Some(r);
            };
            if m.missing {
                return None;
            }
            let names: Vec<&str> = m.outputs.keys().map(String::as_str).collect();
            let target = match &r.port {
                Some(p) => match m.outputs.get(p) {
                    Some(t) => t.clone(),
                    None => {
                        let (msg, help) = (
                            format!("macro `{}` ({}) has no output `{p}`", r.node, m.file),
                            hint(p, &names).or_else(|| Some(list_choices("outputs", &names))),
                        );
                        self.err(r.loc, msg, help);
                        return None;
                    }
                },
                None if m.outputs.len() == 1 => m.outputs[0].clone(),
                None => {
                    let msg = format!(
                        "macro `{}` has {} outputs; name one as `{}.OUTPUT`",
                        r.node,
                        m.outputs.len(),
                        r.node
                    );
                    let help = Some(list_choices("outputs", &names));
                    self.err(r.loc, msg, help);
                    return None;
                }
            };
            r = PortRef {
                node: target.node,
                port: target.port,
                loc: r.loc,
            };
        }
        self.err(r.loc, "macro outputs refer to each other in a loop", None);
        None
    }

    fn apply_node_sets(&mut self, sets: Vec<NodeSet>) {
        for (node, param, value, loc) in sets {
            let Some(n) = self.nodes.get_mut(&node) else {
                let names: Vec<&str> = self
                    .nodes
                    .keys()
                    .chain(self.macros.keys())
                    .map(String::as_str)
                    .collect();
                let help = hint(&node, &names);
                self.err(loc, format!("--set: no node named `{node}`"), help);
                continue;
            };
            n.cli_params.push(param.clone());
            let key = Key {
                name: param,
                span: loc.span,
            };
            match &mut n.params {
                Some(Spanned {
                    value: RonValue::Struct { fields, .. },
                    ..
                }) => {
                    fields.retain(|(k, _)| k.name != key.name);
                    fields.push((key, value));
                }
                Some(p) if matches!(p.value, RonValue::Unit) => {
                    p.value = RonValue::Struct {
                        name: None,
                        is_map: false,
                        fields: vec![(key, value)],
                    };
                }
                Some(p) => {
                    let span = p.span;
                    let file = n.params_file;
                    self.err(
                        Location { file, span },
                        "params must be written (name: value, ...)",
                        None,
                    );
                }
                None => {
                    n.params = Some(Spanned {
                        value: RonValue::Struct {
                            name: None,
                            is_map: false,
                            fields: vec![(key, value)],
                        },
                        span: loc.span,
                    });
                }
            }
        }
    }

    /// Replace `${name}` in strings: a string that is exactly `${name}` takes the param's
    /// value (any type); otherwise the param's text is spliced into the string. `sub`
    /// counts what this value has grown by, against [`MAX_VALUE_BYTES`] and
    /// [`MAX_EXPANDED_BYTES`]; `depth` is the nesting around `v`. A limit exceeded stops the
    /// load ([`Loader::stop`]).
    fn substitute(
        &mut self,
        v: &mut Spanned,
        file: FileId,
        params: &Params,
        declared: &[String],
        sub: &mut Subst,
        depth: usize,
    ) {
        if self.stop {
            return;
        }
        match &mut v.value {
            RonValue::Str(s) if s.contains("${") => {
                let span = v.span;
                let at = Location { file, span };
                let whole = s
                    .strip_prefix("${")
                    .and_then(|r| r.strip_suffix('}'))
                    .filter(|n| !n.contains(['{', '}', '$']));
                if let Some(name) = whole {
                    match params.get(name) {
                        Some((p, pfile)) => {
                            let (size, pdepth) = measure(p);
                            if !self.grow(sub, size, at, name) {
                                return;
                            }
                            if depth + pdepth > ron_spanned::MAX_DEPTH {
                                self.limit(
                                    at,
                                    format!(
                                        "nesting too deep: `${{{name}}}` in {} nests more than {} levels",
                                        sub.what,
                                        ron_spanned::MAX_DEPTH
                                    ),
                                );
                                return;
                            }
                            if matches!(p.value, RonValue::None) {
                                let origin = self.unset_origin(sub, *pfile, p.span, name);
                                let key = (sub.prefix.clone(), file, span.start);
                                self.unset_values.insert(key, origin);
                            }
                            v.value = p.value.clone();
                            relocate(v, span);
                        }
                        None => self.unresolved(at, name, declared),
                    }
                    return;
                }
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("${") {
                    out.push_str(&rest[..i]);
                    let after = &rest[i + 2..];
                    let Some(j) = after.find('}') else {
                        self.err(at, "`${` without a closing `}`", None);
                        return;
                    };
                    let name = &after[..j];
                    let text = match params.get(name) {
                        Some((p, pfile)) => match &p.value {
                            RonValue::Str(t) => Some(t.clone()),
                            RonValue::Int(i) => Some(i.to_string()),
                            RonValue::Float(f) => Some(f.to_string()),
                            RonValue::Bool(b) => Some(b.to_string()),
                            RonValue::None => {
                                let origin = self.unset_origin(sub, *pfile, p.span, name);
                                self.unset_splices.push((at, origin));
                                None
                            }
                            _ => {
                                self.err(at, format!("graph param `{name}` is not text or a number and cannot be spliced into a string"), None);
                                None
                            }
                        },
                        None => {
                            self.unresolved(at, name, declared);
                            None
                        }
                    };
                    if let Some(t) = text {
                        if !self.grow(sub, t.len(), at, name) {
                            return;
                        }
                        out.push_str(&t);
                    }
                    rest = &after[j + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            RonValue::List(items) | RonValue::Tuple(_, items) => {
                for it in items {
                    self.substitute(it, file, params, declared, sub, depth + 1);
                }
            }
            RonValue::Struct { fields, .. } => {
                for (_, it) in fields {
                    self.substitute(it, file, params, declared, sub, depth + 1);
                }
            }
            RonValue::Some(inner) => self.substitute(inner, file, params, declared, sub, depth + 1),
            _ => {}
        }
    }

    /// Count `bytes` more of expanded text for `sub`; false (and the load stops) past the
    /// per-value or total limit.
    fn grow(&mut self, sub: &mut Subst, bytes: usize, at: Location, name: &str) -> bool {
        sub.bytes += bytes;
        self.expanded += bytes;
        if sub.bytes > MAX_VALUE_BYTES {
            self.limit(
                at,
                format!(
                    "`${{{name}}}` makes {} larger than {} MiB (the limit per value)",
                    sub.what,
                    MAX_VALUE_BYTES >> 20
                ),
            );
            return false;
        }
        if self.expanded > MAX_EXPANDED_BYTES {
            self.limit(
                at,
                format!(
                    "`${{{name}}}` in {} makes the graph's params larger than {} MiB after substitution (the limit for a graph)",
                    sub.what,
                    MAX_EXPANDED_BYTES >> 20
                ),
            );
            return false;
        }
        true
    }

    /// Report a size limit and stop loading: going on would only repeat the error (and
    /// spend the memory the limit protects).
    fn limit(&mut self, at: Location, msg: String) {
        self.err(at, msg, None);
        self.stop = true;
    }

    /// The graph param without a value that a `None` at `span` of `file` came from: the
    /// top-level param when it passed through params of this scope or, for a value the
    /// macro node gave, of the parent scope; else `name`.
    fn unset_origin(&self, sub: &Subst, file: FileId, span: Span, name: &str) -> String {
        let here = sub.prefix.as_str();
        let parent = here
            .strip_suffix('/')
            .map(|p| p.rfind('/').map(|i| &p[..=i]).unwrap_or(""))
            .unwrap_or("");
        [here, parent]
            .iter()
            .find_map(|pre| self.unset_values.get(&(pre.to_string(), file, span.start)))
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    fn unresolved(&mut self, at: Location, name: &str, declared: &[String]) {
        self.err(
            at,
            format!("unresolved `${{{name}}}`: the graph declares no param `{name}`"),
            hint(name, declared),
        );
    }
}

struct LocalScope<'a> {
    prefix: &'a str,
    file: FileId,
    inputs: &'a [(String, Location)],
    bindings: &'a IndexMap<String, Vec<PortRef>>,
    names: &'a [String],
    name_set: std::collections::HashSet<&'a str>,
    site: Option<Location>,
}

fn list_choices<S: AsRef<str>>(what: &str, names: &[S]) -> String {
    if names.is_empty() {
        format!("it declares no {what}")
    } else {
        let n: Vec<String> = names.iter().map(|s| format!("`{}`", s.as_ref())).collect();
        format!("{what}: {}", n.join(", "))
    }
}

/// Values substituted from elsewhere take the span of the place they are used, so
/// errors point at the `${name}` that brought them in.
fn relocate(v: &mut Spanned, span: Span) {
    v.span = span;
    match &mut v.value {
        RonValue::List(items) | RonValue::Tuple(_, items) => {
            items.iter_mut().for_each(|i| relocate(i, span))
        }
        RonValue::Struct { fields, .. } => fields.iter_mut().for_each(|(k, i)| {
            k.span = span;
            relocate(i, span)
        }),
        RonValue::Some(inner) => relocate(inner, span),
        _ => {}
    }
}

fn shift_spans(v: &mut Spanned, by: usize) {
    v.span.start += by;
    v.span.end += by;
    match &mut v.value {
        RonValue::List(items) | RonValue::Tuple(_, items) => {
            items.iter_mut().for_each(|i| shift_spans(i, by))
        }
        RonValue::Struct { fields, .. } => fields.iter_mut().for_each(|(k, i)| {
            k.span.start += by;
            k.span.end += by;
            shift_spans(i, by)
        }),
        RonValue::Some(inner) => shift_spans(inner, by),
        _ => {}
    }
}
