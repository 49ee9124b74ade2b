//! What a run leaves behind besides its outputs: `provenance.json` (who produced what
//! from which data, when, with which graph and implementations) and, for each failed
//! node, `failed/<node>.txt` (a readable failure record with the command to re-run).

use std::path::{Path, PathBuf};

use crate::batch::shell_quote;
use crate::fsutil::{write_atomic, WriteError};
use crate::graph::Override;
use crate::run::{RunReport, Status};
use crate::validate::Plan;

/// Context the caller knows about a run.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// Version of the program that ran the graph.
    pub version: String,
    /// The command that re-runs exactly this run (or case).
    pub command: String,
    /// Case id in a batch.
    pub case: Option<String>,
}

/// `voxflow run GRAPH --set KEY=VALUE ... --impl TYPE=NAME ...`, quoted for a shell: the
/// command that re-runs `graph` with these overrides, for a [`RunContext`] whose run was
/// not started by it (a Slurm task, `voxflow train --presegment`); a batch adds each
/// case's columns and `--out`.
pub fn run_command(graph: &str, set: &[Override], implementations: &[String]) -> String {
    let mut words = vec!["voxflow".to_string(), "run".into(), shell_quote(graph)];
    for s in set {
        words.push(format!("--set {}", shell_quote(&s.to_string())));
    }
    for i in implementations {
        words.push(format!("--impl {}", shell_quote(i)));
    }
    words.join(" ")
}

fn file_entry(path: &Path) -> serde_json::Value {
    let size = std::fs::metadata(path)
        .map(|m| if m.is_dir() { dir_size(path) } else { m.len() })
        .ok();
    let hash = crate::cache::hash_path(path).ok();
    serde_json::json!({ "path": path, "size": size, "blake3": hash })
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The provenance record of a run as JSON.
pub fn provenance(
    plan: &Plan,
    report: &RunReport,
    ctx: &RunContext,
    finished: &str,
) -> serde_json::Value {
    let inputs: Vec<serde_json::Value> = report
        .nodes
        .iter()
        .filter(|n| !n.input_files.is_empty() && !matches!(n.status, Status::NotNeeded))
        .flat_map(|n| {
            n.input_files.iter().map(move |f| {
                let mut e = file_entry(f);
                e["node"] = serde_json::json!(n.id);
                if !n.notes.is_empty() {
                    e["notes"] = serde_json::json!(n.notes);
                }
                e
            })
        })
        .collect();
    let outputs: Vec<serde_json::Value> = report.files.iter().map(|f| file_entry(f)).collect();
    serde_json::json!({
        "voxflow_version": ctx.version,
        "case": ctx.case,
        "status": if report.ok() { "ok" } else { "failed" },
        "graph": { "name": plan.name, "file": plan.file, "blake3": plan.graph_hash },
        "params": plan.params,
        "implementations": implementations(plan),
        "node_params": node_params(plan),
        "inputs": inputs,
        "outputs": outputs,
        "user": user(),
        "host": host(),
        "started": report.started,
        "finished": finished,
        "command": ctx.command,
    })
}

/// Type, implementation and version of every node the run needed, by node id.
pub fn implementations(plan: &Plan) -> serde_json::Value {
    plan.nodes
        .iter()
        .filter(|n| n.needed)
        .map(|n| {
            (
                n.id.clone(),
                serde_json::json!(format!(
                    "{} {} v{}",
                    n.type_name, n.implementation, n.impl_version
                )),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The params every needed node ran with, by node id: after `${...}` substitution, macro
/// expansion and `--set` overrides. `--resume` compares them, so a changed node param
/// (`--set dilate.kernel=...`, a new `save.path`) re-runs the case.
pub fn node_params(plan: &Plan) -> serde_json::Value {
    plan.nodes
        .iter()
        .filter(|n| n.needed)
        .map(|n| (n.id.clone(), n.params.clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Write `provenance.json` into `dir`, atomically.
pub fn write_provenance(
    dir: &Path,
    plan: &Plan,
    report: &RunReport,
    ctx: &RunContext,
) -> Result<PathBuf, WriteError> {
    let path = dir.join("provenance.json");
    let json = provenance(plan, report, ctx, &crate::clock::utc_now());
    let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
    write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
    Ok(path)
}

/// Write `failed/<node>.txt` into `dir` for every failed node; returns the files.
pub fn write_failure_records(
    dir: &Path,
    plan: &Plan,
    report: &RunReport,
    ctx: &RunContext,
) -> Result<Vec<PathBuf>, WriteError> {
    let mut written = Vec::new();
    for (rec, node) in report.nodes.iter().zip(&plan.nodes) {
        let Status::Failed(error) = &rec.status else {
            continue;
        };
        let mut t = String::new();
        t.push_str(&format!(
            "node: {}\ntype: {}\nimplementation: {} (v{})\n",
            rec.id, rec.type_name, rec.implementation, node.impl_version
        ));
        if let Some(case) = &ctx.case {
            t.push_str(&format!("case: {case}\n"));
        }
        t.push_str(&format!(
            "graph: {}\nparams: {}\n",
            plan.file.display(),
            serde_json::to_string(&node.params).unwrap_or_default()
        ));
        t.push_str("inputs:\n");
        if rec.inputs.is_empty() {
            t.push_str("  (none)\n");
        }
        for i in &rec.inputs {
            t.push_str(&format!("  {i}\n"));
        }
        for f in &rec.input_files {
            t.push_str(&format!("  file: {}\n", f.display()));
        }
        t.push_str("error:\n");
        for (depth, part) in error.split(": ").enumerate() {
            t.push_str(&format!("  {}{part}\n", "  ".repeat(depth.min(4))));
        }
        t.push_str(&format!("re-run:\n  {}\n", ctx.command));
        let safe: String = rec
            .id
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join("failed").join(format!("{safe}.txt"));
        write_atomic(&path, |w| w.write_all(t.as_bytes()))?;
        written.push(path);
    }
    Ok(written)
}

/// Remove temporary files left by a killed run (`.NAME.XXXX.part`, from
/// [`crate::fsutil::write_atomic`]) under `dir`, so no partial file stays behind.
pub fn remove_stale_parts(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            remove_stale_parts(&p);
        } else if name.starts_with('.') && name.ends_with(".part") {
            let _ = std::fs::remove_file(&p);
        }
    }
}
