//! The graph as Graphviz DOT: node ids with their types, edges labelled with ports.

use crate::validate::Outline;

/// Render a checked graph as DOT. It takes an [`Outline`] rather than a runnable plan so
/// that templates (graph params left unset) can be drawn too.
pub fn to_dot(plan: &Outline) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        esc(&plan.name)
    );
    for n in &plan.nodes {
        let label = if n.implementation.is_empty() {
            format!("{}\\n{}", esc(&n.id), n.type_name)
        } else {
            format!("{}\\n{} [{}]", esc(&n.id), n.type_name, n.implementation)
        };
        s.push_str(&format!("  \"{}\" [label=\"{label}\"];\n", esc(&n.id)));
    }
    for n in &plan.nodes {
        for (port, edges) in &n.inputs {
            for e in edges {
                s.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{} -> {}\"];\n",
                    esc(&plan.nodes[e.from].id),
                    esc(&n.id),
                    e.port,
                    port
                ));
            }
        }
    }
    s.push_str("}\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
