//! One entry of a graph's `nodes`: a plain node, or a macro node whose graph file is
//! expanded in its place.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::expand::LocalScope;
use super::substitute::Subst;
use super::{
    GraphNode, InputBinding, Loader, MacroInstance, Params, Sets, GRAPH_PATH_VAR, MAX_NODES,
};
use crate::diag::{FileId, Location};
use crate::ron_spanned::{Key, RonValue, Span, Spanned};
use crate::suggest::hint;

const NODE_FIELDS: [&str; 4] = ["node", "params", "inputs", "impl"];

/// A node entry once checked, its params substituted and its inputs resolved.
struct Entry<'e> {
    /// Qualified id (`macro/inner` inside macros).
    id: String,
    /// Where the node's name is written.
    key: &'e Key,
    /// The `node:` value and its text (a type name, or a macro's `.ron` file).
    type_v: &'e Spanned,
    type_name: &'e str,
    params: Option<Spanned>,
    params_unresolved: bool,
    inputs: Vec<InputBinding>,
    implementation: Option<(String, Location)>,
}

impl Loader {
    pub(super) fn node_entry(
        &mut self,
        local: &LocalScope,
        key: &Key,
        entry: &Spanned,
        params: &Params,
        declared: &[String],
        path: &Path,
    ) {
        let file = local.file;
        let id = format!("{}{}", local.prefix, key.name);
        let Some((type_v, type_name)) = self.node_type(key, entry, file) else {
            return;
        };
        let mut node_params = entry.get("params").cloned();
        let errors_before = (self.diags.len(), self.unset_splices.len());
        if let Some(p) = &mut node_params {
            let mut sub = Subst::new(format!("the params of node `{id}`"), local.prefix);
            self.substitute(p, file, params, declared, &mut sub, 0);
        }
        let params_unresolved = (self.diags.len(), self.unset_splices.len()) != errors_before;
        let inputs = self.node_inputs(local, entry);
        let implementation = self.node_impl(entry, file);
        let e = Entry {
            id,
            key,
            type_v,
            type_name,
            params: node_params,
            params_unresolved,
            inputs,
            implementation,
        };
        if type_name.ends_with(".ron") {
            self.macro_node(e, file, path);
        } else {
            self.add_node(e, local, file);
        }
    }

    /// The entry's `node:` value and text, after checking the id and the entry's form
    /// (`None` where either is wrong, reported).
    fn node_type<'e>(
        &mut self,
        key: &Key,
        entry: &'e Spanned,
        file: FileId,
    ) -> Option<(&'e Spanned, &'e str)> {
        let at = |span: Span| Location { file, span };
        if key.name.is_empty() || key.name.contains(['.', '/', '$']) {
            self.err(
                at(key.span),
                format!(
                    "node id `{}` may not be empty or contain `.`, `/` or `$`",
                    key.name
                ),
                None,
            );
            return None;
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
            return None;
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
            return None;
        };
        let Some(type_name) = type_v.as_str() else {
            self.err(
                at(type_v.span),
                "`node` must be a string naming the node type",
                None,
            );
            return None;
        };
        Some((type_v, type_name))
    }

    /// The entry's `inputs`, each port bound to the outputs its references resolve to.
    fn node_inputs(&mut self, local: &LocalScope, entry: &Spanned) -> Vec<InputBinding> {
        let at = |span: Span| Location {
            file: local.file,
            span,
        };
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
        bindings
    }

    /// The entry's `impl`, when written as a string.
    fn node_impl(&mut self, entry: &Spanned, file: FileId) -> Option<(String, Location)> {
        let at = |span: Span| Location { file, span };
        match entry.get("impl") {
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
        }
    }

    /// A macro node: its graph file found beside `path` or in the library and expanded
    /// under the node's id, with the node's params and `--set` values as overrides.
    fn macro_node(&mut self, e: Entry, file: FileId, path: &Path) {
        let at = |span: Span| Location { file, span };
        let (id, type_name) = (e.id, e.type_name);
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let searched: Vec<PathBuf> = std::iter::once(base.to_path_buf())
            .chain(self.library.iter().cloned())
            .map(|d| d.join(type_name))
            .collect();
        let found = searched.iter().find(|p| p.is_file()).cloned();
        if let Some((_, loc)) = &e.implementation {
            self.err(
                *loc,
                "a macro node has no implementations; set `impl` on the nodes inside it",
                None,
            );
        }
        let overrides = self.macro_overrides(&id, e.params.as_ref(), file);
        let macro_bindings = e.inputs.into_iter().map(|b| (b.port, b.refs)).collect();
        let Some(macro_path) = found else {
            let places: Vec<String> = searched
                .iter()
                .map(|p| format!("  {}", p.display()))
                .collect();
            self.err(
                at(e.type_v.span),
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
            Some(at(e.type_v.span)),
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
    }

    /// The params a macro node sets on its graph: those written at the node, then the
    /// `--set` values naming it.
    fn macro_overrides(&mut self, id: &str, node_params: Option<&Spanned>, file: FileId) -> Sets {
        let at = |span: Span| Location { file, span };
        let mut overrides = IndexMap::new();
        if let Some(p) = node_params {
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
        overrides
    }

    /// A plain node joins the flat graph, unless the graph is already at [`MAX_NODES`].
    fn add_node(&mut self, e: Entry, local: &LocalScope, file: FileId) {
        let at = |span: Span| Location { file, span };
        let id = e.id;
        if self.nodes.len() + self.macros.len() >= MAX_NODES {
            self.limit(
                at(e.key.span),
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
                type_name: e.type_name.to_string(),
                loc: at(e.key.span),
                type_loc: at(e.type_v.span),
                params: e.params,
                params_unresolved: e.params_unresolved,
                params_file: file,
                implementation: e.implementation,
                inputs: e.inputs,
                cli_params: Vec::new(),
            },
        );
    }
}
