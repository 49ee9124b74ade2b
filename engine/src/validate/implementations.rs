//! Which implementation each node runs: `--impl TYPE=NAME` choices checked against the
//! registry, then a node's own choice, the global one or the type's default.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Severity};
use crate::graph::GraphNode;
use crate::node::NodeSpec;
use crate::registry::Registry;
use crate::suggest::hint;

use super::{choices, Validator};

/// A node's choice of an implementation its type does not have, already reported; the
/// node is kept unbuilt under that name.
pub(super) struct UnknownImpl(pub(super) String);

impl Validator<'_> {
    /// The `--impl TYPE=NAME` choices by type; malformed ones, unknown types and unknown
    /// implementations are reported and left out.
    pub(super) fn global_impls(
        &mut self,
        registry: &Registry,
        given: &[String],
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let names: Vec<&str> = registry.names().collect();
        for g in given {
            let Some((ty, name)) = g.split_once('=') else {
                self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: None,
                    file: None,
                    message: format!("--impl {g}: expected TYPE=NAME"),
                    help: None,
                });
                continue;
            };
            match registry.get(ty) {
                None => self.diags.push(Diagnostic {
                    severity: Severity::Error,
                    location: None,
                    file: None,
                    message: format!("--impl {g}: no node type `{ty}`"),
                    help: hint(ty, &names),
                }),
                Some((_, spec)) if !spec.impls.iter().any(|i| i.name == name) => {
                    let choices_: Vec<&str> = spec.impls.iter().map(|i| i.name).collect();
                    self.diags.push(Diagnostic {
                        severity: Severity::Error,
                        location: None,
                        file: None,
                        message: format!("--impl {g}: {ty} has no implementation `{name}`"),
                        help: Some(choices("implementations", &choices_)),
                    })
                }
                Some(_) => {
                    out.insert(ty.to_string(), name.to_string());
                }
            }
        }
        out
    }

    /// The implementation a node runs: its own choice, else `--impl`, else the type's
    /// default. An unknown choice is reported and comes back as [`UnknownImpl`].
    pub(super) fn choose_impl(
        &mut self,
        n: &GraphNode,
        spec: &NodeSpec,
        globals: &BTreeMap<String, String>,
    ) -> Result<String, UnknownImpl> {
        let impl_names: Vec<&str> = spec.impls.iter().map(|i| i.name).collect();
        match &n.implementation {
            Some((name, loc)) => {
                if !impl_names.contains(&name.as_str()) {
                    self.error(
                        *loc,
                        format!("{} has no implementation `{name}`", spec.name),
                        Some(choices("implementations", &impl_names)),
                    );
                    return Err(UnknownImpl(name.clone()));
                }
                Ok(name.clone())
            }
            None => Ok(globals
                .get(spec.name)
                .cloned()
                .unwrap_or_else(|| spec.default_impl().name.to_string())),
        }
    }
}
