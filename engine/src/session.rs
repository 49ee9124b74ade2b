//! One owner of a run's lifecycle, for `voxflow run` and for every case of a batch (a
//! local `--cases` run or one Slurm array task): remove what an earlier run left
//! half-written, skip a case that `--resume` finds complete, run, write the failure
//! records or the provenance, and hand back what happened. Callers only choose the
//! options and render the outcome, so a single run and a case cannot drift apart in
//! what they clean up or record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::codec::{cell_json, json_cell};
use crate::fsutil::{write_atomic, WriteError};
use crate::provenance::{remove_stale_parts, write_failure_records, write_provenance, RunContext};
use crate::run::{run, RunOptions, RunReport};
use crate::table::Table;
use crate::validate::Plan;
use crate::value::Value;

/// Whose folder a run writes into; it decides what an earlier run's records there mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Folder {
    /// `voxflow run --out DIR`: a folder other runs share (every graph's default is
    /// `out/`). Only stale temporary files are removed; `provenance.json` is written
    /// when this run wrote files, so a run that only prints (`--output`) leaves an earlier
    /// run's record of the files still there.
    #[default]
    Shared,
    /// A batch case's own folder `OUT/<case>/`: the earlier `provenance.json` and
    /// `failed/` go before it runs, and `tables.json` then `provenance.json` (whose
    /// presence marks a complete case) are always written. Only such a folder can be
    /// resumed.
    Case,
}

/// Why a folder cannot hold a run's outputs ([`check_out_dir`]).
#[derive(Debug)]
pub enum OutDirError {
    /// The folder, or its nearest existing ancestor, is not a folder (a file, `/dev/null`).
    NotAFolder {
        /// The output folder asked for.
        out: PathBuf,
        /// What is there instead: `out` itself or an ancestor.
        found: PathBuf,
    },
    /// A file cannot be created in it (read-only mount, permissions).
    NotWritable {
        /// The output folder asked for.
        out: PathBuf,
        /// The existing folder that refused.
        dir: PathBuf,
        /// What the operating system said.
        cause: std::io::Error,
    },
}

impl std::fmt::Display for OutDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutDirError::NotAFolder { out, found } if found == out => {
                write!(f, "{}: it is not a folder", out.display())
            }
            OutDirError::NotAFolder { out, found } => {
                write!(f, "{}: {} is not a folder", out.display(), found.display())
            }
            OutDirError::NotWritable { out, dir, cause } => write!(
                f,
                "{}: cannot write in {}: {cause}",
                out.display(),
                dir.display()
            ),
        }
    }
}

impl std::error::Error for OutDirError {}

/// Refuse an output folder that cannot hold outputs before anything runs: a file (or
/// `/dev/null`) where a folder should be, or a folder no file can be created in. A folder
/// that does not exist yet is checked at its nearest existing ancestor (and is created
/// by the first file written).
pub fn check_out_dir(out: &Path) -> Result<(), OutDirError> {
    let mut dir = out;
    while !dir.as_os_str().is_empty() && !dir.exists() {
        dir = dir.parent().unwrap_or(Path::new(""));
    }
    if dir.as_os_str().is_empty() {
        dir = Path::new(".");
    }
    if !dir.is_dir() {
        return Err(OutDirError::NotAFolder {
            out: out.to_path_buf(),
            found: dir.to_path_buf(),
        });
    }
    // Permission bits do not tell (root ignores them; read-only mounts do not show):
    // create and remove a probe file.
    let probe = dir.join(format!(".voxflow-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|cause| OutDirError::NotWritable {
            out: out.to_path_buf(),
            dir: dir.to_path_buf(),
            cause,
        })
}

/// How to run one session.
#[derive(Clone, Default)]
pub struct SessionOptions {
    /// Folder the run writes into: relative output paths and the records go here
    /// (replaces `run.out_dir`).
    pub dir: PathBuf,
    /// Whose folder `dir` is.
    pub folder: Folder,
    /// With [`Folder::Case`], for [`resume_or_run`]: skip the run when an earlier one
    /// completed it with the same graph, params, implementations and node params and its
    /// output files are unchanged.
    pub resume: bool,
    /// Scheduler options (threads, cache, observer, tables).
    pub run: RunOptions,
    /// Program version, the command that re-runs this run, the case id.
    pub context: RunContext,
}

/// What a session did.
pub enum Outcome {
    /// Complete from an earlier run (`resume`): nothing ran; the tables it stored.
    Resumed(BTreeMap<String, Table>),
    /// The graph ran.
    Ran(Box<Ran>),
}

/// A session that ran the graph, with what it recorded.
pub struct Ran {
    /// The scheduler's report.
    pub report: RunReport,
    /// The failure records (`failed/<node>.txt`) when a node failed: their paths, or why
    /// they could not be written. Empty when no node failed.
    pub failure_records: Result<Vec<PathBuf>, WriteError>,
    /// `provenance.json` (after `tables.json` in a case folder) when the run succeeded and
    /// there was something to record: its path, or why it could not be written. `None`
    /// when a node failed, or in a shared folder when no file was written.
    pub provenance: Option<Result<PathBuf, WriteError>>,
}

impl Ran {
    /// The tables the run produced (`node.port` -> table), as a batch summary gathers them.
    pub fn tables(&self) -> BTreeMap<String, Table> {
        self.report
            .outputs
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Table(t) => Some((k.clone(), t.as_ref().clone())),
                _ => None,
            })
            .collect()
    }
}

/// A case: skip it when `opts.resume` finds it complete from an earlier run in its
/// folder, else [`run_session`].
pub fn resume_or_run(plan: &Plan, opts: &SessionOptions) -> Outcome {
    if opts.resume && opts.folder == Folder::Case {
        if let Some(tables) = complete_earlier(&opts.dir, plan) {
            return Outcome::Resumed(tables);
        }
    }
    Outcome::Ran(Box::new(run_session(plan, opts)))
}

/// Run `plan` once into `opts.dir`: clean up, run, record (no resume check).
pub fn run_session(plan: &Plan, opts: &SessionOptions) -> Ran {
    let dir = &opts.dir;
    remove_stale_parts(dir);
    if opts.folder == Folder::Case {
        let _ = std::fs::remove_file(dir.join("provenance.json"));
        let _ = std::fs::remove_dir_all(dir.join("failed"));
    }
    let mut run_opts = opts.run.clone();
    run_opts.out_dir = dir.clone();
    let report = run(plan, &run_opts);
    let ctx = &opts.context;
    let mut ran = Ran {
        failure_records: Ok(Vec::new()),
        provenance: None,
        report,
    };
    if ran.report.failures().next().is_some() {
        ran.failure_records = write_failure_records(dir, plan, &ran.report, ctx);
    } else {
        ran.provenance = match opts.folder {
            Folder::Case => Some(
                write_tables(dir, &ran.tables())
                    .and_then(|()| write_provenance(dir, plan, &ran.report, ctx)),
            ),
            Folder::Shared
                if ran.report.nodes.iter().any(|n| !n.files.is_empty())
                    || !ran.report.files.is_empty() =>
            {
                Some(write_provenance(dir, plan, &ran.report, ctx))
            }
            Folder::Shared => None,
        };
    }
    ran
}

/// Record why a case's graph does not validate (`failed/_validation.txt` in its folder),
/// best effort: the caller reports the error either way.
pub fn record_validation_failure(dir: &Path, case: &str, error: &str) {
    let _ = write_atomic(&dir.join("failed").join("_validation.txt"), |w| {
        w.write_all(format!("case: {case}\n{error}\n").as_bytes())
    });
}

/// `tables.json`: a case's tables, exactly restorable for `--resume` and for gathering a
/// summary from cases run elsewhere.
fn write_tables(dir: &Path, tables: &BTreeMap<String, Table>) -> Result<(), WriteError> {
    let json: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|(k, t)| (k.clone(), table_to_tagged(t)))
        .collect();
    let text = serde_json::to_string(&json).expect("json");
    write_atomic(&dir.join("tables.json"), |w| w.write_all(text.as_bytes()))
}

/// A table as JSON that restores exactly (cells tagged as in the result cache).
fn table_to_tagged(t: &Table) -> serde_json::Value {
    let rows: Vec<Vec<serde_json::Value>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(cell_json).collect())
        .collect();
    serde_json::json!({ "columns": t.columns, "rows": rows })
}

fn tagged_to_table(v: &serde_json::Value) -> Option<Table> {
    let columns = v["columns"]
        .as_array()?
        .iter()
        .map(|c| c.as_str().map(String::from))
        .collect::<Option<Vec<_>>>()?;
    let rows = v["rows"]
        .as_array()?
        .iter()
        .map(|r| {
            r.as_array()
                .map(|cells| cells.iter().map(json_cell).collect())
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Table { columns, rows })
}

/// The tables of a case that an earlier run completed with the same graph, graph params,
/// implementations and node params, with every output file still as it wrote it; `None`
/// otherwise.
fn complete_earlier(dir: &Path, plan: &Plan) -> Option<BTreeMap<String, Table>> {
    let prov: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("provenance.json")).ok()?).ok()?;
    if prov["status"] != "ok" || prov["graph"]["blake3"] != plan.graph_hash.as_str() {
        return None;
    }
    if prov["params"] != serde_json::to_value(&plan.params).ok()? {
        return None;
    }
    if prov["implementations"] != crate::provenance::implementations(plan)
        || prov["node_params"] != crate::provenance::node_params(plan)
    {
        return None;
    }
    for out in prov["outputs"].as_array()? {
        let path = Path::new(out["path"].as_str()?);
        if crate::cache::hash_path(path).ok()?.as_str() != out["blake3"].as_str()? {
            return None;
        }
    }
    read_case_tables(dir)
}

/// The tables a finished case stored in `dir/tables.json`, restored exactly; `None` when
/// the file is missing or unreadable. For gathering a summary from cases run elsewhere
/// (one Slurm array task per case) with [`crate::batch::write_summary`], as a local batch
/// does.
pub fn read_case_tables(dir: &Path) -> Option<BTreeMap<String, Table>> {
    let tables: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("tables.json")).ok()?).ok()?;
    tables
        .iter()
        .map(|(k, v)| Some((k.clone(), tagged_to_table(v)?)))
        .collect()
}
