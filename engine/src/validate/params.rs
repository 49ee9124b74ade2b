//! A node's params: names the node type does not know (with did-you-mean), and what its
//! `build` refused, each reported at the value it names.

use crate::diag::Location;
use crate::graph::GraphNode;
use crate::node::{NodeSpec, ParamError};
use crate::ron_spanned::{RonValue, Span, Spanned};
use crate::suggest::hint;

use super::{choices, Validator};

impl Validator<'_> {
    /// Unknown params first, with did-you-mean, at the key; `false` when any is unknown
    /// or the params are not written as `(name: value, ...)`.
    pub(super) fn param_names_known(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        params_loc: Location,
    ) -> bool {
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

    /// NaN and infinities, each at its value; `false` when there is one. RON reads them,
    /// but on the way to the node's typed params they become JSON null: a number param
    /// said "invalid type: null", and an `Option` param quietly took `None`.
    pub(super) fn params_finite(&mut self, n: &GraphNode, spec: &NodeSpec) -> bool {
        fn walk(v: &Spanned, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, f64, Span)>) {
            match &v.value {
                RonValue::Float(f) if !f.is_finite() => found.push((path.clone(), *f, v.span)),
                RonValue::Struct { fields, .. } => {
                    for (k, item) in fields {
                        path.push(k.name.clone());
                        walk(item, path, found);
                        path.pop();
                    }
                }
                RonValue::List(items) | RonValue::Tuple(_, items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(i.to_string());
                        walk(item, path, found);
                        path.pop();
                    }
                }
                RonValue::Some(inner) => walk(inner, path, found),
                _ => {}
            }
        }
        let Some(p) = &n.params else {
            return true;
        };
        let mut found = Vec::new();
        walk(p, &mut Vec::new(), &mut found);
        for (path, f, span) in &found {
            let loc = Location {
                file: param_file(n, path),
                span: *span,
            };
            self.error(
                loc,
                format!(
                    "{} param `{}`: {f} is not a finite number; give a finite value",
                    spec.name,
                    path.join(".")
                ),
                None,
            );
        }
        found.is_empty()
    }

    /// What the node type's `build` refused, each at the value it names; a value that is
    /// `None` because its graph param is unset is an unset param instead.
    pub(super) fn param_errors(
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
