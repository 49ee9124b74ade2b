//! Command-line overrides (`--set KEY=VALUE`): the command line as a pseudo file whose
//! spans errors point into, graph-level values given to the top scope, node-level ones
//! applied to nodes (or taken by macro nodes) after expansion.

use std::path::Path;

use indexmap::IndexMap;

use super::{Loader, NodeSet, Override, Sets, CLI_FILE};
use crate::diag::Location;
use crate::ron_spanned::{self, Key, RonValue, Span, Spanned};
use crate::suggest::hint;

impl Loader {
    /// Parse `--set` arguments into graph-level and node-level overrides. The command line
    /// becomes a pseudo file so that errors in values point at them.
    pub(super) fn parse_sets(&mut self, sets: &[Override]) -> (Sets, Vec<NodeSet>) {
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

    pub(super) fn apply_node_sets(&mut self, sets: Vec<NodeSet>) {
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
