//! `voxflow nodes`: the node reference, generated from the registry.

use std::process::ExitCode;

use anyhow::Result;
use voxflow_engine::suggest::hint;
use voxflow_engine::Registry;

pub fn run(registry: &Registry, name: Option<&str>, markdown: bool) -> Result<ExitCode> {
    if markdown {
        out!("{}", voxflow_nodes::docs::markdown(registry));
        return Ok(ExitCode::SUCCESS);
    }
    match name {
        None => {
            let mut category = "";
            let mut specs: Vec<_> = registry.specs().collect();
            specs.sort_by_key(|s| (s.category, s.name));
            for s in specs {
                if s.category != category {
                    category = s.category;
                    outln!("\n{category}:");
                }
                outln!("  {:<24} {}", s.name, s.summary);
            }
            outln!("\n`voxflow nodes TYPE` shows a node type's ports, params and examples.");
            Ok(ExitCode::SUCCESS)
        }
        Some(n) => match registry.get(n) {
            Some((ty, _)) => {
                out!("{}", voxflow_nodes::docs::node_text(ty.as_ref()));
                Ok(ExitCode::SUCCESS)
            }
            None => {
                let names: Vec<&str> = registry.names().collect();
                eprintln!(
                    "error: no node type `{n}`{}",
                    hint(n, &names)
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default()
                );
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
