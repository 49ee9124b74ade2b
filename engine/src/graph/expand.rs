//! One graph file expanded under a macro prefix: its structure, params, declared
//! inputs, nodes and outputs; references between scopes resolved afterwards.

use std::path::Path;

use indexmap::IndexMap;

use super::substitute::Subst;
use super::{list_choices, Loader, Params, PortRef, Scope, Sets, MAX_MACRO_DEPTH};
use crate::diag::{Diagnostic, FileId, Location};
use crate::ron_spanned::{RonValue, Span, Spanned};
use crate::suggest::hint;

const GRAPH_FIELDS: [&str; 6] = ["name", "doc", "params", "inputs", "nodes", "outputs"];

impl Loader {
    /// Expand one graph file under `prefix`. `overrides` set its params, `bindings` its
    /// inputs (already qualified in the parent), `site` is where the macro is used.
    pub(super) fn expand(
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
        if !self.graph_fields(root, file) {
            return None;
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
        let (resolved, declared) = self.scope_params(root, file, path, prefix, overrides, site);
        if self.stop {
            return None;
        }
        let inputs = self.declared_inputs(root, file);
        self.unknown_bindings(path, &inputs, &bindings, site);

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

        let outputs = self.scope_outputs(root, &local);
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

    /// The root is one `Graph(...)` (`false`, reported, if not); unknown fields are
    /// reported with a suggestion.
    fn graph_fields(&mut self, root: &Spanned, file: FileId) -> bool {
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
                return false;
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
        true
    }

    /// Graph params: defaults from the file, overridden by the parent or command line,
    /// then substituted into each other in declaration order. Returns them with the
    /// declared names.
    fn scope_params(
        &mut self,
        root: &Spanned,
        file: FileId,
        path: &Path,
        prefix: &str,
        overrides: Sets,
        site: Option<Location>,
    ) -> (Params, Vec<String>) {
        let at = |span: Span| Location { file, span };
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
        (resolved, declared)
    }

    /// Declared inputs (macros only), with where each is written.
    fn declared_inputs(&mut self, root: &Spanned, file: FileId) -> Vec<(String, Location)> {
        let at = |span: Span| Location { file, span };
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
        inputs
    }

    /// Inputs the macro node binds that its graph does not declare.
    fn unknown_bindings(
        &mut self,
        path: &Path,
        inputs: &[(String, Location)],
        bindings: &IndexMap<String, Vec<PortRef>>,
        site: Option<Location>,
    ) {
        for (k, refs) in bindings {
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
    }

    /// The graph's declared outputs, resolved in its scope.
    fn scope_outputs(&mut self, root: &Spanned, local: &LocalScope) -> IndexMap<String, PortRef> {
        let at = |span: Span| Location {
            file: local.file,
            span,
        };
        let mut outputs = IndexMap::new();
        if let Some(o) = root.get("outputs") {
            match o.fields() {
                Some(fs) => {
                    for (k, v) in fs {
                        match v.as_str() {
                            Some(s) => {
                                if let Some(mut refs) = self.local_ref(local, s, at(v.span)) {
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
        outputs
    }

    /// Resolve `"node"` / `"node.port"` written in a scope: graph inputs become the
    /// parent's bindings; other names get the scope's prefix.
    pub(super) fn local_ref(
        &mut self,
        local: &LocalScope,
        text: &str,
        loc: Location,
    ) -> Option<Vec<PortRef>> {
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
    pub(super) fn resolve_macro_refs(&mut self) {
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

    pub(super) fn resolve_ref(&mut self, mut r: PortRef) -> Option<PortRef> {
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
}

/// What references written in one scope (a graph file under a macro prefix) may name:
/// its nodes and declared inputs, the inputs bound where the macro is used.
pub(super) struct LocalScope<'a> {
    pub(super) prefix: &'a str,
    pub(super) file: FileId,
    inputs: &'a [(String, Location)],
    bindings: &'a IndexMap<String, Vec<PortRef>>,
    names: &'a [String],
    name_set: std::collections::HashSet<&'a str>,
    site: Option<Location>,
}
