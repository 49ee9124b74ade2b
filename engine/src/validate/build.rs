//! Pass 1 for one node: its type, implementation ([`super::implementations`]) and params
//! ([`super::params`]), built into a runnable node when all are right.

use std::collections::BTreeMap;

use crate::diag::Location;
use crate::graph::GraphNode;
use crate::node::{Node, NodeSpec};
use crate::registry::Registry;
use crate::suggest::hint;

use super::implementations::UnknownImpl;
use super::Validator;

/// A node type resolved for a graph node; `node` is `None` when its params are wrong.
pub(super) struct Built {
    pub(super) spec: NodeSpec,
    pub(super) implementation: String,
    pub(super) impl_version: u32,
    pub(super) node: Option<Box<dyn Node>>,
}

impl Validator<'_> {
    /// Pass 1 for one node: its type, implementation and params. `None` for an unknown
    /// type; a node whose implementation or params are wrong has no runnable `node`.
    pub(super) fn build_node(
        &mut self,
        n: &GraphNode,
        registry: &Registry,
        globals: &BTreeMap<String, String>,
    ) -> Option<Built> {
        let Some((ty, spec)) = registry.get(&n.type_name) else {
            let names: Vec<&str> = registry.names().collect();
            self.error(
                n.type_loc,
                format!("unknown node type `{}`", n.type_name),
                hint(&n.type_name, &names)
                    .or_else(|| Some("`voxflow nodes` lists the node types".into())),
            );
            return None;
        };
        let chosen = match self.choose_impl(n, spec, globals) {
            Ok(chosen) => chosen,
            Err(UnknownImpl(unknown)) => {
                return Some(Built {
                    spec: spec.clone(),
                    implementation: unknown,
                    impl_version: 0,
                    node: None,
                })
            }
        };
        let version = spec
            .impls
            .iter()
            .find(|i| i.name == chosen)
            .map(|i| i.version)
            .unwrap_or(1);
        let unbuilt = |chosen: String| {
            Some(Built {
                spec: spec.clone(),
                implementation: chosen,
                impl_version: version,
                node: None,
            })
        };
        if n.params_unresolved {
            return unbuilt(chosen);
        }
        let params_loc = n
            .params
            .as_ref()
            .map(|p| Location {
                file: n.params_file,
                span: p.span,
            })
            .unwrap_or(n.loc);
        if !self.param_names_known(n, spec, params_loc) || !self.params_finite(n, spec) {
            return unbuilt(chosen);
        }
        let json = n
            .params
            .as_ref()
            .map(|p| p.to_json())
            .unwrap_or(serde_json::Value::Object(Default::default()));
        let json = if json.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            json
        };
        match ty.build(&json, &chosen) {
            Ok(node) => Some(Built {
                spec: spec.clone(),
                implementation: chosen,
                impl_version: version,
                node: Some(node),
            }),
            Err(errors) => {
                self.param_errors(n, spec, params_loc, errors);
                unbuilt(chosen)
            }
        }
    }
}
