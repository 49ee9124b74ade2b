//! Running one graph over a list of cases (`--cases cases.tsv`): cases in parallel within a
//! job count and a memory budget, failures recorded without stopping the others, `--resume`
//! skipping finished cases, and every table gathered into one summary with statistics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::diag::Diagnostics;
use crate::fsutil::{write_atomic, WriteError};
use crate::provenance::RunContext;
use crate::run::RunOptions;
use crate::session::{record_validation_failure, resume_or_run, Folder, Outcome, SessionOptions};
use crate::table::{Cell, Table};
use crate::validate::Plan;

/// One row of the case file.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Case id (first column).
    pub id: String,
    /// Graph params (`name=value`), paths already resolved against the case file's folder.
    pub params: Vec<(String, String)>,
}

/// Errors reading a case file.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The file cannot be read.
    #[error("cannot read case file {path}: {source}")]
    Io {
        /// The case file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's content is wrong.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The case file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// File extensions that mark a value as a path (resolved against the case file's folder).
const PATH_SUFFIXES: [&str; 9] = [
    ".nii", ".nii.gz", ".gz", ".dcm", ".csv", ".tsv", ".json", ".ron", ".png",
];

/// Read a case file: a header row of graph param names (the first column is the case
/// id), then one case per row. Tab-separated, or comma-separated for `.csv`. Values that
/// look like relative paths (an existing file or folder, a `/` or a known extension)
/// resolve against the case file's folder.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, CasesError> {
    let text = std::fs::read_to_string(path).map_err(|source| CasesError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let sep = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        b','
    } else {
        b'\t'
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let fmt = |line: usize, message: String| CasesError::Format {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(sep)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| fmt(1, e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < 2 {
        return Err(fmt(
            1,
            format!(
                "the header needs a case id column and at least one graph param (separated by {})",
                if sep == b',' { "commas" } else { "tabs" }
            ),
        ));
    }
    // Each column sets the graph param of its name: a second column of one name would
    // silently win over the first, and a nameless one surfaced only as `--set =VALUE`.
    for (i, col) in header.iter().enumerate().skip(1) {
        if col.is_empty() {
            return Err(fmt(
                1,
                format!("column {} of the header has no name", i + 1),
            ));
        }
        if header[1..i].contains(col) {
            return Err(fmt(
                1,
                format!(
                    "column `{col}` appears twice in the header; each graph param needs one column"
                ),
            ));
        }
    }
    let mut cases: Vec<Case> = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let line = rec
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map(|p| p.line() as usize)
            .unwrap_or(n + 2);
        let rec = rec.map_err(|e| fmt(line, e.to_string()))?;
        let id = rec.get(0).unwrap_or("").to_string();
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(fmt(line, format!("case id `{id}` must be a non-empty name without slashes that does not start with `.` (it names the case's output folder)")));
        }
        if SUMMARY_FILES.contains(&id.as_str()) {
            return Err(fmt(
                line,
                format!("case id `{id}` is the name of a batch summary file; rename the case"),
            ));
        }
        if cases.iter().any(|c| c.id == id) {
            return Err(fmt(line, format!("case id `{id}` appears twice")));
        }
        let params = header[1..]
            .iter()
            .zip(rec.iter().skip(1))
            .map(|(k, v)| (k.clone(), resolve(base, v)))
            .collect();
        cases.push(Case { id, params });
    }
    Ok(cases)
}

fn resolve(base: &Path, v: &str) -> String {
    let p = Path::new(v);
    let looks_like_path = !v.is_empty()
        && (v.contains('/')
            || PATH_SUFFIXES
                .iter()
                .any(|s| v.to_ascii_lowercase().ends_with(s))
            || base.join(p).exists());
    if looks_like_path && p.is_relative() {
        base.join(p).display().to_string()
    } else {
        v.to_string()
    }
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseStatus {
    /// Ran and succeeded.
    Ok,
    /// Skipped by `--resume`: complete from an earlier run.
    Resumed,
    /// Failed (validation or a node), with the reason.
    Failed(String),
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseOutcome {
    /// Case id.
    pub id: String,
    /// How it ended.
    pub status: CaseStatus,
    /// Tables it produced (`node.port` -> table).
    pub tables: BTreeMap<String, Table>,
    /// Wall time in milliseconds.
    pub wall_ms: f64,
}

/// Progress of a batch, for display.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchProgress {
    /// Cases finished successfully (including resumed).
    pub done: usize,
    /// Cases failed.
    pub failed: usize,
    /// Cases running now.
    pub running: usize,
    /// Cases in all.
    pub total: usize,
}

/// Progress callback of a batch.
pub type ProgressFn = Arc<dyn Fn(BatchProgress) + Send + Sync>;

/// Options of a batch run.
#[derive(Clone, Default)]
pub struct BatchOptions {
    /// Root output folder; case `c` writes under `out/c/`.
    pub out_dir: PathBuf,
    /// Cases at a time.
    pub jobs: usize,
    /// Memory budget in bytes for the estimated peak of running cases.
    pub memory_budget: u64,
    /// Skip cases complete from an earlier run with the same graph and params.
    pub resume: bool,
    /// Options passed to each case's run (cache, threads); `out_dir` is set per case.
    pub run: RunOptions,
    /// Program version and command prefix for provenance and failure records.
    pub context: RunContext,
    /// Called when progress changes.
    pub progress: Option<ProgressFn>,
}

/// Estimated peak memory of a case: its input files' uncompressed sizes (gzip's size
/// trailer for `.gz`), times a factor for the intermediate masks and labels a graph keeps.
pub fn estimate_memory(case: &Case) -> u64 {
    const FACTOR: u64 = 6;
    let mut total = 0u64;
    for (_, v) in &case.params {
        let p = Path::new(v);
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        total += if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(|e| e.ok()?.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        } else if v.ends_with(".gz") {
            gzip_size(p).unwrap_or(meta.len() * 4)
        } else {
            meta.len()
        };
    }
    total * FACTOR
}

fn gzip_size(p: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(p).ok()?;
    f.seek(SeekFrom::End(-4)).ok()?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b).ok()?;
    Some(u32::from_le_bytes(b) as u64)
}

/// Memory available to new processes (`MemAvailable`), or 4 GiB when unknown.
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

/// Run every case. `plan_case` loads and validates the graph for one case (its
/// diagnostics become the case's failure). Each case's outputs, `provenance.json`,
/// `tables.json` and failure records go under `out/<case>/`.
pub fn run_cases<F>(cases: &[Case], plan_case: F, opts: &BatchOptions) -> Vec<CaseOutcome>
where
    F: Fn(&Case) -> Result<Plan, Diagnostics> + Sync,
{
    let jobs = opts.jobs.max(1);
    let budget = if opts.memory_budget == 0 {
        available_memory() * 8 / 10
    } else {
        opts.memory_budget
    };
    struct Slots {
        next: usize,
        running: usize,
        memory: u64,
        progress: BatchProgress,
    }
    let slots = Mutex::new(Slots {
        next: 0,
        running: 0,
        memory: 0,
        progress: BatchProgress {
            total: cases.len(),
            ..Default::default()
        },
    });
    let cv = Condvar::new();
    let outcomes: Mutex<Vec<Option<CaseOutcome>>> = Mutex::new(vec![None; cases.len()]);
    let estimates: Vec<u64> = cases.iter().map(estimate_memory).collect();
    let report = |p: BatchProgress| {
        if let Some(f) = &opts.progress {
            f(p)
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.min(cases.len()) {
            s.spawn(|| loop {
                let (i, need) = {
                    let mut g = slots.lock().expect("slots");
                    loop {
                        if g.next >= cases.len() {
                            return;
                        }
                        let need = estimates[g.next];
                        // Never start a case that would exceed the budget while others run.
                        if g.running == 0 || g.memory + need <= budget {
                            break;
                        }
                        g = cv.wait(g).expect("slots");
                    }
                    let i = g.next;
                    let need = estimates[i];
                    g.next += 1;
                    g.running += 1;
                    g.memory += need;
                    g.progress.running = g.running;
                    report(g.progress);
                    (i, need)
                };
                let outcome = run_case(&cases[i], &plan_case, opts);
                let mut g = slots.lock().expect("slots");
                g.running -= 1;
                g.memory -= need;
                g.progress.running = g.running;
                match outcome.status {
                    CaseStatus::Failed(_) => g.progress.failed += 1,
                    _ => g.progress.done += 1,
                }
                report(g.progress);
                drop(g);
                cv.notify_all();
                outcomes.lock().expect("outcomes")[i] = Some(outcome);
            });
        }
    });
    outcomes
        .into_inner()
        .expect("outcomes")
        .into_iter()
        .map(|o| o.expect("every case ran"))
        .collect()
}

fn case_context(case: &Case, opts: &BatchOptions) -> RunContext {
    let mut ctx = opts.context.clone();
    let sets: Vec<String> = case
        .params
        .iter()
        .map(|(k, v)| format!("--set {}", shell_quote(&format!("{k}={v}"))))
        .collect();
    ctx.command = format!(
        "{} {} --out {}",
        ctx.command,
        sets.join(" "),
        shell_quote(&opts.out_dir.join(&case.id).display().to_string())
    );
    ctx.case = Some(case.id.clone());
    ctx
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn run_case<F>(case: &Case, plan_case: &F, opts: &BatchOptions) -> CaseOutcome
where
    F: Fn(&Case) -> Result<Plan, Diagnostics>,
{
    let t = Instant::now();
    let dir = opts.out_dir.join(&case.id);
    let outcome = |status: CaseStatus, tables: BTreeMap<String, Table>| CaseOutcome {
        id: case.id.clone(),
        status,
        tables,
        wall_ms: t.elapsed().as_secs_f64() * 1e3,
    };
    let failed = |msg: String| outcome(CaseStatus::Failed(msg), BTreeMap::new());
    let plan = match plan_case(case) {
        Ok(p) => p,
        Err(diags) => {
            let e = diags.to_string();
            record_validation_failure(&dir, &case.id, &e);
            return failed(format!(
                "invalid graph for this case: {}",
                e.lines().next().unwrap_or("")
            ));
        }
    };
    let mut run = opts.run.clone();
    run.collect_tables = true;
    if run.threads.is_none() && opts.jobs > 1 {
        // Cases share the cores: each gets its share as its own pool, so one case's
        // serial stretches (gzip, file writes) overlap another's parallel work instead
        // of two cases contending for every core.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        run.threads = Some((cores / opts.jobs).max(1));
    }
    if run.cache.is_some() {
        run.cache_scope = format!("{}\0{}", run.cache_scope, case.id);
    }
    let session = SessionOptions {
        dir: dir.clone(),
        folder: Folder::Case,
        resume: opts.resume,
        run,
        context: case_context(case, opts),
    };
    let ran = match resume_or_run(&plan, &session) {
        Outcome::Resumed(tables) => return outcome(CaseStatus::Resumed, tables),
        Outcome::Ran(ran) => ran,
    };
    if let Some(f) = ran.report.failures().next() {
        let crate::run::Status::Failed(e) = &f.status else {
            unreachable!()
        };
        return failed(format!("node `{}` ({}) failed: {e}", f.id, f.type_name));
    }
    if let Some(Err(e)) = &ran.provenance {
        return failed(format!("cannot write the case's records: {e}"));
    }
    outcome(CaseStatus::Ok, ran.tables())
}

/// The batch summary: every table row of every successful case with `case` and `table`
/// columns first (columns are the union, in first-seen order).
pub fn summary_table(outcomes: &[CaseOutcome]) -> Table {
    let mut columns: Vec<String> = vec!["case".into(), "table".into()];
    for o in outcomes {
        for t in o.tables.values() {
            for c in &t.columns {
                if !columns.contains(c) {
                    columns.push(c.clone());
                }
            }
        }
    }
    let mut out = Table::new(columns.clone());
    for o in outcomes {
        for (name, t) in &o.tables {
            for row in &t.rows {
                let mut r = vec![Cell::Null; columns.len()];
                r[0] = Cell::Text(o.id.clone());
                r[1] = Cell::Text(name.clone());
                for (c, v) in t.columns.iter().zip(row) {
                    let idx = columns
                        .iter()
                        .position(|x| x == c)
                        .expect("column collected");
                    r[idx] = v.clone();
                }
                out.push(r);
            }
        }
    }
    out
}

/// Columns that index rows rather than measure something: a mean slice number or tile
/// position means nothing, so statistics leave them out (`label` groups them instead).
pub const INDEX_COLUMNS: [&str; 5] = ["label", "slice", "z", "tile_row", "tile_column"];

/// Statistics over cases: per table, label (when the table has a `label` column) and
/// numeric column other than [`INDEX_COLUMNS`]: n, mean, sd (sample, n - 1), median,
/// min, max.
pub fn statistics_table(outcomes: &[CaseOutcome]) -> Table {
    let mut groups: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
    let mut order: Vec<(String, String, String)> = Vec::new();
    for o in outcomes {
        for (name, t) in &o.tables {
            let label_col = t.column("label");
            for row in &t.rows {
                let label = label_col.map(|i| row[i].to_csv()).unwrap_or_default();
                for (c, v) in t.columns.iter().zip(row) {
                    if INDEX_COLUMNS.contains(&c.as_str()) {
                        continue;
                    }
                    if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                        let k = (name.clone(), label.clone(), c.clone());
                        if !groups.contains_key(&k) {
                            order.push(k.clone());
                        }
                        groups.entry(k).or_default().push(x);
                    }
                }
            }
        }
    }
    let mut out = Table::new([
        "table", "label", "column", "n", "mean", "sd", "median", "min", "max",
    ]);
    for k in order {
        let mut xs = groups.remove(&k).expect("group");
        xs.sort_by(|a, b| a.total_cmp(b));
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let median = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        out.push(vec![
            Cell::Text(k.0),
            Cell::Text(k.1),
            Cell::Text(k.2),
            Cell::Int(n as i64),
            Cell::Float(mean),
            Cell::Float(sd),
            Cell::Float(median),
            Cell::Float(xs[0]),
            Cell::Float(xs[n - 1]),
        ]);
    }
    out
}

/// The files a batch writes at the top of its output folder (no case may be named so):
/// the long summary of every table, its statistics, the JSON with each case's status,
/// and the folder of per-table summaries.
pub const SUMMARY_FILES: [&str; 4] = [
    "summary.csv",
    "summary_stats.csv",
    "summary.json",
    "summary",
];

/// One table of every case, with a `case` column first: `summary/<table>.csv`. Per-label
/// and per-slice tables have different rows; apart they read (and load) as they are.
pub fn per_table_summaries(outcomes: &[CaseOutcome]) -> BTreeMap<String, Table> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    for o in outcomes {
        for (name, t) in &o.tables {
            let mut columns = vec!["case".to_string()];
            columns.extend(t.columns.iter().cloned());
            let table = out
                .entry(name.clone())
                .or_insert_with(|| Table::new(columns.clone()));
            let at: Vec<usize> = columns
                .iter()
                .map(|c| match table.column(c) {
                    Some(i) => i,
                    None => {
                        // A column only some cases have: add it, earlier rows empty.
                        table.columns.push(c.clone());
                        for r in &mut table.rows {
                            r.push(Cell::Null);
                        }
                        table.columns.len() - 1
                    }
                })
                .collect();
            for row in &t.rows {
                let mut r = vec![Cell::Null; table.columns.len()];
                r[at[0]] = Cell::Text(o.id.clone());
                for (i, v) in at[1..].iter().zip(row) {
                    r[*i] = v.clone();
                }
                table.push(r);
            }
        }
    }
    out
}

/// Write `summary.csv`, `summary_stats.csv`, `summary.json` (which also lists each
/// case's status and the reason of each failure) and `summary/<table>.csv` into `out`;
/// returns the files written.
///
/// A batch in which no case completed leaves an earlier summary as it was (and writes
/// none): replacing a good summary by a header-only one loses what the earlier run found,
/// while the failures are already recorded per case and printed.
pub fn write_summary(out: &Path, outcomes: &[CaseOutcome]) -> Result<Vec<PathBuf>, WriteError> {
    let [p1, p2, p3, per_table] = SUMMARY_FILES.map(|f| out.join(f));
    let none_completed = outcomes
        .iter()
        .all(|o| matches!(o.status, CaseStatus::Failed(_)));
    if none_completed && p1.exists() {
        return Ok(Vec::new());
    }
    let summary = summary_table(outcomes);
    let stats = statistics_table(outcomes);
    summary.write(&p1)?;
    stats.write(&p2)?;
    let mut written = vec![p1, p2];
    for (name, t) in per_table_summaries(outcomes) {
        let p = per_table.join(format!("{}.csv", file_name_of(&name)));
        t.write(&p)?;
        written.push(p);
    }
    let cases: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let (status, error) = match &o.status {
                CaseStatus::Ok => ("ok", None),
                CaseStatus::Resumed => ("resumed", None),
                CaseStatus::Failed(e) => ("failed", Some(e.clone())),
            };
            serde_json::json!({ "case": o.id, "status": status, "error": error, "wall_ms": o.wall_ms })
        })
        .collect();
    let failed: Vec<serde_json::Value> = outcomes
        .iter()
        .filter_map(|o| match &o.status {
            CaseStatus::Failed(e) => Some(serde_json::json!({ "case": o.id, "error": e })),
            _ => None,
        })
        .collect();
    let json = serde_json::json!({ "cases": cases, "failed": failed, "rows": summary.to_json(), "statistics": stats.to_json() });
    let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
    write_atomic(&p3, |w| w.write_all(text.as_bytes()))?;
    // A table that this run no longer makes must not linger beside the fresh ones.
    if let Ok(entries) = std::fs::read_dir(&per_table) {
        for e in entries.flatten() {
            if !written.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    written.push(p3);
    Ok(written)
}

/// A table name (`node.port`) as a file name: anything but letters, digits, `.`, `_`
/// and `-` becomes `_` (macro nodes are named `macro/inner`).
fn file_name_of(table: &str) -> String {
    table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_files_resolve_paths_against_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.nii.gz"), b"x").unwrap();
        let f = dir.path().join("cases.tsv");
        std::fs::write(
            &f,
            "case\tct\tseed\tnote\nc1\ta.nii.gz\t3\thello world\n# comment\nc2\t/abs/b.nii\t4\tx\n",
        )
        .unwrap();
        let cases = read_cases(&f).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(
            cases[0].params[0],
            (
                "ct".into(),
                dir.path().join("a.nii.gz").display().to_string()
            )
        );
        assert_eq!(cases[0].params[1], ("seed".into(), "3".into()));
        assert_eq!(cases[0].params[2], ("note".into(), "hello world".into()));
        assert_eq!(cases[1].params[0].1, "/abs/b.nii");
        std::fs::write(&f, "case\tct\nc1\ta\nc1\tb\n").unwrap();
        assert!(read_cases(&f)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        std::fs::write(&f, "case\tct\nc1\ta\tb\n").unwrap();
        assert!(read_cases(&f)
            .unwrap_err()
            .to_string()
            .contains("cases.tsv:2"));
    }

    #[test]
    fn statistics_per_table_label_and_column() {
        let mk = |id: &str, v: f64| {
            let mut t = Table::new(["label", "dice"]);
            t.push(vec![Cell::Int(1), Cell::Float(v)]);
            t.push(vec![Cell::Int(2), Cell::Float(v / 2.0)]);
            CaseOutcome {
                id: id.into(),
                status: CaseStatus::Ok,
                tables: [("m.table".to_string(), t)].into(),
                wall_ms: 0.0,
            }
        };
        let outs = vec![mk("a", 0.8), mk("b", 0.9), mk("c", 1.0)];
        let s = statistics_table(&outs);
        assert_eq!(s.rows.len(), 2);
        assert_eq!(s.rows[0][1], Cell::Text("1".into()));
        assert_eq!(s.rows[0][3], Cell::Int(3));
        assert!((s.rows[0][4].as_f64().unwrap() - 0.9).abs() < 1e-12);
        assert!((s.rows[0][5].as_f64().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(s.rows[0][6], Cell::Float(0.9));
        let sum = summary_table(&outs);
        assert_eq!(sum.columns, ["case", "table", "label", "dice"]);
        assert_eq!(sum.rows.len(), 6);
    }

    #[test]
    fn per_slice_tables_are_summarized_apart_and_slices_are_not_averaged() {
        let case = |id: &str, slices: &[(i64, f64)], with_mean: bool| {
            let mut labels = Table::new(["label", "volume_ml"]);
            labels.push(vec![Cell::Int(1), Cell::Float(slices.len() as f64)]);
            let mut per_slice = Table::new(["label", "slice", "area_cm2"]);
            if with_mean {
                per_slice.columns.push("mean_hu".into());
            }
            for &(z, a) in slices {
                let mut r = vec![Cell::Int(1), Cell::Int(z), Cell::Float(a)];
                if with_mean {
                    r.push(Cell::Float(40.0));
                }
                per_slice.push(r);
            }
            CaseOutcome {
                id: id.into(),
                status: CaseStatus::Ok,
                tables: [
                    ("stats.labels".to_string(), labels),
                    ("stats.slices".to_string(), per_slice),
                ]
                .into(),
                wall_ms: 0.0,
            }
        };
        let outs = vec![
            case("a", &[(3, 10.0), (4, 12.0)], false),
            case("b", &[(7, 20.0)], true),
        ];
        let per = per_table_summaries(&outs);
        assert_eq!(per.len(), 2);
        let slices = &per["stats.slices"];
        assert_eq!(
            slices.columns,
            ["case", "label", "slice", "area_cm2", "mean_hu"]
        );
        assert_eq!(slices.rows.len(), 3);
        assert_eq!(slices.rows[0][4], Cell::Null);
        assert_eq!(slices.rows[2][0], Cell::Text("b".into()));
        assert_eq!(slices.rows[2][4], Cell::Float(40.0));
        assert_eq!(per["stats.labels"].rows.len(), 2);

        let stats = statistics_table(&outs);
        let columns: Vec<String> = stats.rows.iter().map(|r| r[2].to_csv()).collect();
        assert_eq!(columns, ["volume_ml", "area_cm2", "mean_hu"]);

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("summary")).unwrap();
        std::fs::write(dir.path().join("summary/gone.table.csv"), "x\n").unwrap();
        let files = write_summary(dir.path(), &outs).unwrap();
        assert!(files.contains(&dir.path().join("summary/stats.slices.csv")));
        assert!(!dir.path().join("summary/gone.table.csv").exists());
        let text = std::fs::read_to_string(dir.path().join("summary/stats.slices.csv")).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("case,label,slice,area_cm2,mean_hu")
        );
    }
}
