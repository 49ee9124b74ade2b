//! `voxflow submit --slurm`: a case file as one Slurm array job (a task per case, run
//! exactly as `voxflow run --cases` runs a case), a dependent job that gathers the batch
//! summary, `voxflow status OUT` and `submit --resume OUT`.
//!
//! Everything the jobs need lives under `OUT/.voxflow-slurm/` on the shared filesystem:
//! `submit.json` (the submission: graph, cases, params, job ids), the sbatch scripts as
//! submitted, `tasks/<index>.{json,exit,heartbeat}` written by each task, and `logs/`.
//! The scheduler is asked only through `sbatch`, `squeue` and `scontrol`, so the same
//! code runs on a laptop's single-node Slurm and on a site cluster.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use voxflow_engine::batch::{self, BatchOptions, Case, CaseOutcome, CaseStatus};
use voxflow_engine::fsutil::write_atomic;
use voxflow_engine::graph::Override;
use voxflow_engine::run::RunOptions;

use crate::GraphArgs;

mod train;

/// Folder under OUT holding the submission, scripts, task records and logs.
pub const STATE_DIR: &str = ".voxflow-slurm";

/// How long a Slurm command may take before the controller counts as unreachable
/// (seconds; `VOXFLOW_SLURM_TIMEOUT` overrides, for slow controllers and for tests).
const DEFAULT_TIMEOUT_S: u64 = 60;

/// Slurm's default MaxArraySize, used when `scontrol show config` cannot tell.
const DEFAULT_MAX_ARRAY: usize = 1001;

/// Arguments of `voxflow submit`.
#[derive(clap::Args)]
pub struct SubmitArgs {
    /// Graph file (with --train: the graph whose PatchServer serves the training).
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    graph: Option<PathBuf>,
    #[command(flatten)]
    args: GraphArgs,
    /// Case file (as for `voxflow run --cases`): one array task per row.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["resume", "train"])]
    cases: Option<PathBuf>,
    /// Train instead: GRAPH's PatchServer as a CPU job, and a requeueable `voxflow train`
    /// job connecting to it, checkpointing into OUT/train/ (see docs/cluster.md).
    #[arg(long, conflicts_with_all = ["cases", "resume"])]
    train: bool,
    /// With --train: give the trainer job a GPU (`--gres=gpu:1`).
    #[arg(long, requires = "train")]
    gpu: bool,
    /// With --train: the trainer's partition (default: --partition).
    #[arg(long, value_name = "P", requires = "train")]
    train_partition: Option<String>,
    /// With --train: the trainer's `--device`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "cpu", "wgpu"])]
    train_device: String,
    /// With --train: another `voxflow train` option, e.g. `--train-arg=-c
    /// --train-arg=hyper.ron` (repeatable).
    #[arg(
        long = "train-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "train"
    )]
    train_args: Vec<String>,
    /// With --train: once the trainer has finished, segment these cases with its best
    /// model (a case file with a `ct` column, as for `voxflow train --presegment`): an
    /// array job after the trainer (`afterok`), outputs in OUT/train/presegment/<case>/.
    #[arg(long, value_name = "CASES", requires = "train")]
    presegment: Option<PathBuf>,
    /// With --presegment: the graph each case runs (default graphs/presegment.ron); its
    /// `model` param gets the trained model.
    #[arg(long, value_name = "GRAPH", requires = "presegment")]
    presegment_graph: Option<PathBuf>,
    /// Submit to Slurm (the only scheduler for now; required, so a later one is explicit).
    #[arg(long, required = true)]
    slurm: bool,
    /// Output folder on a filesystem every node sees: cases write OUT/<case>/.
    #[arg(long, default_value = "out", conflicts_with = "resume")]
    out: PathBuf,
    /// Resubmit only the failed or missing cases of an earlier submission to OUT.
    #[arg(long, value_name = "OUT")]
    resume: Option<PathBuf>,
    /// Slurm partition (sbatch --partition).
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per case (sbatch --time), e.g. 1:00:00.
    #[arg(long)]
    time: Option<String>,
    /// Memory per case (sbatch --mem), e.g. 8G.
    #[arg(long)]
    mem: Option<String>,
    /// Cores per case (sbatch --cpus-per-task); also the case's worker threads.
    #[arg(long, value_parser = crate::count_parser())]
    cpus_per_task: Option<usize>,
    /// Cases running at the same time (the array's `%K`; with --train, the --presegment
    /// array's).
    #[arg(long, value_parser = crate::count_parser())]
    max_parallel: Option<usize>,
    /// Another sbatch option for every job, e.g. `--sbatch-arg=--gres=gpu:1` (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// Print the sbatch scripts (and write a Nomad job spec) without submitting.
    #[arg(long)]
    dry_run: bool,
}

/// Arguments of `voxflow status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Output folder of a `voxflow submit`.
    out: PathBuf,
    /// Poll until every case and the gather job have finished.
    #[arg(long)]
    watch: bool,
    /// Seconds between polls with --watch.
    #[arg(long, default_value_t = 10)]
    interval: u64,
}

/// What the array tasks and the gather job run (hidden from `--help`).
#[derive(clap::Subcommand)]
pub enum Internal {
    /// Run case INDEX of the submission in OUT.
    Task { out: PathBuf, index: usize },
    /// Gather OUT's summary from the task records.
    Gather { out: PathBuf },
}

/// The submission, as stored in OUT/.voxflow-slurm/submit.json.
struct Spec {
    json: Json,
}

impl Spec {
    /// A new submission of `cases` (read from `cases_file`) through `graph` with `args`,
    /// no array submitted yet. `graph` as given is kept for messages; the paths the jobs
    /// read are absolute.
    fn new(
        run_id: String,
        graph: &Path,
        cases_file: &Path,
        cases: &[Case],
        args: &GraphArgs,
        threads: Option<usize>,
        out: &Path,
    ) -> Spec {
        let json = json!({
            "run_id": run_id,
            "graph": absolute(graph),
            "graph_as_given": graph,
            "cases": absolute(cases_file),
            "case_ids": cases.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "set": args.set.iter().map(Override::to_string).collect::<Vec<_>>(),
            "impl": args.implementations,
            "threads": threads,
            "out": out,
            "arrays": [],
        });
        Spec { json }
    }
    fn path(out: &Path) -> PathBuf {
        out.join(STATE_DIR).join("submit.json")
    }
    fn load(out: &Path) -> Result<Spec> {
        let p = Spec::path(out);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: no Slurm submission here (run `voxflow submit --slurm` first)",
                p.display()
            )
        })?;
        let json = serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
        Ok(Spec { json })
    }
    fn save(&self, out: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json)? + "\n";
        write_atomic(&Spec::path(out), |w| w.write_all(text.as_bytes()))?;
        Ok(())
    }
    fn str(&self, k: &str) -> &str {
        self.json[k].as_str().unwrap_or("")
    }
    fn strings(&self, k: &str) -> Vec<String> {
        self.json[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn out(&self) -> PathBuf {
        PathBuf::from(self.str("out"))
    }
    fn graph_args(&self) -> GraphArgs {
        GraphArgs {
            set: self
                .strings("set")
                .iter()
                .map(|s| Override::parse(s))
                .collect(),
            implementations: self.strings("impl"),
        }
    }
    /// Array jobs submitted so far: (job id, first case index of its array).
    fn arrays(&self) -> Vec<(String, usize)> {
        self.json["arrays"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|j| {
                        Some((
                            j["job"].as_str()?.to_string(),
                            j["offset"].as_u64()? as usize,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn state(out: &Path) -> PathBuf {
    out.join(STATE_DIR)
}

fn task_file(out: &Path, index: usize, ext: &str) -> PathBuf {
    state(out).join("tasks").join(format!("{index}.{ext}"))
}

/// `voxflow submit`.
pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    if let Ok(id) = std::env::var("SLURM_JOB_ID") {
        eprintln!(
            "warning: voxflow submit runs inside Slurm job {id}: the jobs it submits are \
             separate jobs, not steps of this one"
        );
    }
    if args.train {
        return train::submit(&args);
    }
    let (mut spec, out, indices) = match &args.resume {
        Some(out) => resume_plan(out)?,
        None => new_plan(&args)?,
    };
    if indices.is_empty() {
        eprintln!(
            "every case of {} is done or still queued: nothing to resubmit",
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    submit_arrays(&mut spec, &out, &indices, &args, None)?;
    if !args.dry_run {
        outln!("{}", spec.str("run_id"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Submit `indices` of the case array `spec` (one array job per MaxArraySize group) and
/// its gather job; with `after`, the arrays start only once that job has completed
/// successfully (`afterok`), and Slurm cancels them if it fails instead. `--dry-run`
/// prints the scripts (and writes the Nomad job) instead.
fn submit_arrays(
    spec: &mut Spec,
    out: &Path,
    indices: &[usize],
    args: &SubmitArgs,
    after: Option<&str>,
) -> Result<()> {
    let max_array = max_array_size();
    let exe = std::env::current_exe().context("locating the voxflow executable")?;
    let run_id = spec.str("run_id").to_string();
    let dir = state(out);
    let attempt = spec.json["arrays"].as_array().map_or(0, |a| a.len());
    let mut scripts = Vec::new();
    for (offset, group) in chunks(indices, max_array) {
        let array = array_spec(&group, offset, args.max_parallel);
        let name = format!("array-{}-{offset}.sbatch", attempt + scripts.len());
        let text = task_script(&exe, out, &run_id, &array, offset, after, args);
        scripts.push((dir.join(name), text, offset, group));
    }
    if args.dry_run {
        for (p, text, ..) in &scripts {
            outln!("# {}\n{text}", p.display());
        }
        let gather = gather_script(&exe, out, &run_id, &["<array job ids>".into()], args);
        outln!(
            "# {}\n{gather}",
            dir.join(format!("gather-{attempt}.sbatch")).display()
        );
        // The Nomad job's tasks read the submission as Slurm's do.
        spec.save(out)?;
        let nomad = dir.join("nomad.hcl");
        write_atomic(&nomad, |w| {
            w.write_all(nomad_job(&exe, out, &run_id, spec).as_bytes())
        })?;
        eprintln!(
            "dry run: nothing submitted; Nomad job spec written to {}",
            nomad.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("tasks"))
        .and_then(|_| std::fs::create_dir_all(dir.join("logs")))
        .with_context(|| format!("creating {}", dir.display()))?;
    for &i in indices {
        for ext in ["exit", "json", "heartbeat"] {
            let _ = std::fs::remove_file(task_file(out, i, ext));
        }
    }
    spec.save(out)?;
    let mut job_ids = Vec::new();
    for (path, text, offset, group) in &scripts {
        write_atomic(path, |w| w.write_all(text.as_bytes()))?;
        let id = sbatch(path, &args.sbatch_args)?;
        eprintln!(
            "submitted array job {id}: {} case(s) ({})",
            group.len(),
            path.display()
        );
        if let Some(a) = spec.json["arrays"].as_array_mut() {
            a.push(json!({ "job": id, "offset": offset, "indices": group }));
        }
        spec.save(out)?;
        job_ids.push(id);
    }
    let path = dir.join(format!("gather-{attempt}.sbatch"));
    let text = gather_script(&exe, out, &run_id, &job_ids, args);
    write_atomic(&path, |w| w.write_all(text.as_bytes()))?;
    let id = sbatch(&path, &args.sbatch_args)?;
    spec.json["gather"] = json!(id);
    spec.save(out)?;
    eprintln!(
        "submitted gather job {id} (after the arrays); follow with `voxflow status {}`",
        out.display()
    );
    Ok(())
}

/// A fresh submission: validate as `voxflow run --cases` would, then every case.
fn new_plan(args: &SubmitArgs) -> Result<(Spec, PathBuf, Vec<usize>)> {
    let graph = args.graph.as_ref().expect("clap: graph");
    let cases_file = args.cases.as_ref().expect("clap: cases");
    crate::check_out_dir(&args.out)?;
    let cases = crate::read_cases(cases_file)?;
    let registry = voxflow::registry();
    crate::check_some_case_validates(
        graph,
        cases_file,
        &cases,
        |c| plan_case(&registry, graph, &args.args, c),
        "nothing submitted",
    )?;
    let out = absolute(&args.out);
    let spec = Spec::new(
        run_id("", graph),
        graph,
        cases_file,
        &cases,
        &args.args,
        args.cpus_per_task,
        &out,
    );
    Ok((spec, out, (0..cases.len()).collect()))
}

/// Folder of a `--train` run's presegmentation, under the trainer's run folder: where
/// `voxflow train --out RUN --presegment CASES` writes it (RUN/presegment/<case>/).
pub const PRESEGMENT_DIR: &str = "presegment";

/// The presegmentation after a `--train` submission, as `voxflow train --presegment`
/// runs it locally: the presegment graph over the case file with `model=` the trainer's
/// best model, a case array in `out` of its own (its own submit.json, task records and
/// summary, so `voxflow status` and `submit --resume` work on it as on any case array).
/// Validated here with the model's future path: the model is not there before training.
fn presegment_plan(
    graph: &Path,
    cases_file: &Path,
    model: &Path,
    out: &Path,
    run_id: &str,
    threads: Option<usize>,
) -> Result<(Spec, Vec<usize>)> {
    let cases = batch::read_cases(cases_file)?;
    if cases.is_empty() {
        bail!("--presegment {}: no cases", cases_file.display());
    }
    let ga = GraphArgs {
        set: vec![Override::new("model", model.display().to_string())],
        implementations: vec![],
    };
    let registry = voxflow::registry();
    // Every case, not some (check_some_case_validates): a bad one would show only after training.
    if let Some((c, e)) = cases
        .iter()
        .find_map(|c| plan_case(&registry, graph, &ga, c).err().map(|e| (c, e)))
    {
        eprintln!("{e}");
        bail!(
            "--presegment {}: case `{}` does not validate with {} (shown above); nothing \
             submitted",
            cases_file.display(),
            c.id,
            graph.display()
        );
    }
    let spec = Spec::new(
        format!("{run_id}-presegment"),
        &absolute(graph),
        cases_file,
        &cases,
        &ga,
        threads,
        out,
    );
    Ok((spec, (0..cases.len()).collect()))
}

/// A submission's id: `voxflow-{kind}{graph's file stem as a job name}-{unix seconds}`.
fn run_id(kind: &str, graph: &Path) -> String {
    let stem = graph
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "graph".into());
    format!("voxflow-{kind}{}-{}", batch_name(&stem), unix_now())
}

/// Seconds since the Unix epoch (0 on a clock set before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A job name Slurm shows unchanged: letters, digits, `-`, `_`, `.`.
fn batch_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `--resume OUT`: the cases that are neither done nor queued/running now.
fn resume_plan(out: &Path) -> Result<(Spec, PathBuf, Vec<usize>)> {
    let spec = Spec::load(out)?;
    let out = spec.out();
    let cases = batch::read_cases(Path::new(spec.str("cases")))?;
    let states = case_states(&spec, &cases, &queue(spec.str("run_id"))?);
    let redo: Vec<usize> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.state, State::Failed | State::Missing))
        .map(|(i, _)| i)
        .collect();
    Ok((spec, out, redo))
}

/// Consecutive groups of case indices that fit one array each (indices below
/// MaxArraySize), with the first case index of each group's array.
fn chunks(indices: &[usize], max_array: usize) -> Vec<(usize, Vec<usize>)> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in indices {
        let offset = i / max_array * max_array;
        groups.entry(offset).or_default().push(i);
    }
    groups.into_iter().collect()
}

/// `0-5%2`, or `1,4,7` for resubmitted cases, relative to the group's offset.
fn array_spec(group: &[usize], offset: usize, max_parallel: Option<usize>) -> String {
    let rel: Vec<usize> = group.iter().map(|i| i - offset).collect();
    let contiguous = rel.windows(2).all(|w| w[1] == w[0] + 1);
    let mut s = if contiguous && rel.len() > 1 {
        format!("{}-{}", rel[0], rel[rel.len() - 1])
    } else {
        rel.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(k) = max_parallel {
        s.push_str(&format!("%{k}"));
    }
    s
}

fn q(p: &Path) -> String {
    batch::shell_quote(&p.display().to_string())
}

/// `#SBATCH` lines for the resource options, with `partition` (the trainer's may differ).
fn resource_lines(args: &SubmitArgs, partition: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(p) = partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &args.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(m) = &args.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    if let Some(c) = args.cpus_per_task {
        s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    if !args.sbatch_args.is_empty() {
        let a: Vec<String> = args
            .sbatch_args
            .iter()
            .map(|a| batch::shell_quote(a))
            .collect();
        s.push_str(&format!(
            "# sbatch options given on its command line: {}\n",
            a.join(" ")
        ));
    }
    s
}

/// The array job's script: each task runs case OFFSET + SLURM_ARRAY_TASK_ID and records
/// its exit code atomically (a killed task leaves none: `voxflow status` says so).
fn task_script(
    exe: &Path,
    out: &Path,
    run_id: &str,
    array: &str,
    offset: usize,
    after: Option<&str>,
    args: &SubmitArgs,
) -> String {
    let logs = state(out).join("logs");
    let tasks = state(out).join("tasks");
    let dependency = after.map_or(String::new(), |job| {
        format!("#SBATCH --dependency=afterok:{job}\n#SBATCH --kill-on-invalid-dep=yes\n")
    });
    format!(
        "#!/bin/bash\n\
         # voxflow submit: one task per case of the case file (written by voxflow {v}).\n\
         #SBATCH --job-name={run_id}\n\
         #SBATCH --array={array}\n\
         #SBATCH --output={logs}/%A_%a.out\n\
         {dependency}\
         {res}\
         set -u\n\
         CASE=$(( {offset} + SLURM_ARRAY_TASK_ID ))\n\
         {exe} slurm task {outq} \"$CASE\"\n\
         rc=$?\n\
         echo \"$rc\" > {tasks}/\"$CASE\".exit.tmp && mv {tasks}/\"$CASE\".exit.tmp {tasks}/\"$CASE\".exit\n\
         exit \"$rc\"\n",
        v = env!("CARGO_PKG_VERSION"),
        logs = q(&logs),
        res = resource_lines(args, args.partition.as_deref()),
        exe = q(exe),
        outq = q(out),
        tasks = q(&tasks),
    )
}

/// The gather job: after every array task (whatever their outcome), the batch summary.
fn gather_script(
    exe: &Path,
    out: &Path,
    run_id: &str,
    job_ids: &[String],
    args: &SubmitArgs,
) -> String {
    let logs = state(out).join("logs");
    let mut res = String::new();
    if let Some(p) = &args.partition {
        res.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    format!(
        "#!/bin/bash\n\
         # voxflow submit: gathers summary.csv, summary.json and summary_stats.csv.\n\
         #SBATCH --job-name={run_id}-gather\n\
         #SBATCH --dependency=afterany:{deps}\n\
         #SBATCH --output={logs}/gather-%j.out\n\
         #SBATCH --time=0:30:00\n\
         {res}\
         exec {exe} slurm gather {outq}\n",
        deps = job_ids.join(":"),
        logs = q(&logs),
        exe = q(exe),
        outq = q(out),
    )
}

/// A parameterized Nomad batch job: one dispatch per case (`nomad job dispatch -meta
/// case_index=N`), running the same task command as the Slurm array.
fn nomad_job(exe: &Path, out: &Path, run_id: &str, spec: &Spec) -> String {
    let hcl = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let cpus = spec.json["threads"].as_u64().unwrap_or(1);
    format!(
        "# Nomad job spec for {run_id}, written by `voxflow submit --dry-run`.\n\
         # Register with `nomad job run nomad.hcl`, then per case:\n\
         #   nomad job dispatch -meta case_index=N {run_id}\n\
         # OUT must be on a filesystem every client sees.\n\
         job {name} {{\n\
         \x20 type = \"batch\"\n\
         \x20 parameterized {{\n\
         \x20   meta_required = [\"case_index\"]\n\
         \x20 }}\n\
         \x20 group \"case\" {{\n\
         \x20   task \"voxflow\" {{\n\
         \x20     driver = \"raw_exec\"\n\
         \x20     config {{\n\
         \x20       command = {exe}\n\
         \x20       args    = [\"slurm\", \"task\", {out}, \"${{NOMAD_META_case_index}}\"]\n\
         \x20     }}\n\
         \x20     resources {{\n\
         \x20       cpu    = {mhz}\n\
         \x20       memory = 4096\n\
         \x20     }}\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        name = hcl(run_id),
        exe = hcl(&exe.display().to_string()),
        out = hcl(&out.display().to_string()),
        mhz = cpus * 1000,
    )
}

/// Run a Slurm command with a deadline; its stdout, or an error carrying its message.
fn slurm_command(program: &str, args: &[String]) -> Result<String> {
    let timeout = std::env::var("VOXFLOW_SLURM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT_S);
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "`{program}` not found on PATH: is Slurm installed here (on a cluster: \
             `module load slurm`, or submit from a login node)?"
        ),
        Err(e) => return Err(e).with_context(|| format!("starting `{program}`")),
    };
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{program}` did not answer within {timeout} s: is the Slurm controller \
                 (slurmctld) reachable? (VOXFLOW_SLURM_TIMEOUT sets the limit)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "`{program} {}` failed ({status}): {}",
            args.join(" "),
            stderr.trim()
        );
    }
    Ok(stdout)
}

/// Submit a script; the job id (`sbatch --parsable` prints `id` or `id;cluster`).
fn sbatch(script: &Path, extra: &[String]) -> Result<String> {
    let mut a = vec!["--parsable".to_string()];
    a.extend(extra.iter().cloned());
    a.push(script.display().to_string());
    let stdout = slurm_command("sbatch", &a).context("Slurm refused the job")?;
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id: `{}`", stdout.trim());
    }
    Ok(id)
}

/// MaxArraySize of the cluster (`scontrol show config`), or Slurm's default.
fn max_array_size() -> usize {
    slurm_command("scontrol", &["show".into(), "config".into()])
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.trim_start().starts_with("MaxArraySize"))
                .and_then(|l| l.split('=').nth(1)?.trim().parse().ok())
        })
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DEFAULT_MAX_ARRAY)
}

/// A case's plan as `voxflow run --cases` makes it, every output computed.
fn plan_case(
    registry: &voxflow_engine::Registry,
    graph: &Path,
    args: &GraphArgs,
    case: &Case,
) -> std::result::Result<voxflow_engine::validate::Plan, voxflow_engine::diag::Diagnostics> {
    crate::plan_case(registry, graph, args, &[], case)
}

/// `voxflow slurm ...`: what the jobs run.
pub fn internal(cmd: Internal) -> Result<ExitCode> {
    match cmd {
        Internal::Task { out, index } => task(&out, index),
        Internal::Gather { out } => gather(&out),
    }
}

/// One array task: case `index`, through the batch code (same OUT/<case>/ layout,
/// failure records and provenance as `voxflow run --cases`), a heartbeat while it runs
/// and its outcome in tasks/<index>.json.
fn task(out: &Path, index: usize) -> Result<ExitCode> {
    let spec = Spec::load(out)?;
    let out = spec.out();
    let cases = batch::read_cases(Path::new(spec.str("cases")))?;
    let Some(case) = cases.get(index) else {
        bail!(
            "case index {index}: {} has {} cases",
            spec.str("cases"),
            cases.len()
        );
    };
    let hb = task_file(&out, index, "heartbeat");
    std::thread::spawn(move || loop {
        let now = unix_now();
        let _ = write_atomic(&hb, |w| w.write_all(format!("{now}\n").as_bytes()));
        std::thread::sleep(Duration::from_secs(15));
    });
    let graph = PathBuf::from(spec.str("graph"));
    let ga = spec.graph_args();
    let registry = voxflow::registry();
    let opts = BatchOptions {
        out_dir: out.clone(),
        jobs: 1,
        memory_budget: 0,
        resume: false,
        run: RunOptions {
            threads: spec.json["threads"].as_u64().map(|n| n as usize),
            cache_scope: graph.display().to_string(),
            ..Default::default()
        },
        context: voxflow_engine::provenance::RunContext {
            version: env!("CARGO_PKG_VERSION").into(),
            command: voxflow_engine::provenance::run_command(
                spec.str("graph_as_given"),
                &ga.set,
                &ga.implementations,
            ),
            case: None,
        },
        progress: None,
    };
    let outcome = batch::run_cases(
        std::slice::from_ref(case),
        |c| plan_case(&registry, &graph, &ga, c),
        &opts,
    )
    .remove(0);
    let (status, error) = match &outcome.status {
        CaseStatus::Failed(e) => ("failed", Some(e.clone())),
        _ => ("ok", None),
    };
    let record = json!({
        "case": outcome.id, "index": index, "status": status, "error": error,
        "wall_ms": outcome.wall_ms,
        "job": std::env::var("SLURM_JOB_ID").ok(),
    });
    write_atomic(&task_file(&out, index, "json"), |w| {
        w.write_all(record.to_string().as_bytes())
    })?;
    match error {
        Some(e) => {
            eprintln!("case {}: FAILED: {e}", outcome.id);
            Ok(ExitCode::FAILURE)
        }
        None => {
            eprintln!("case {}: ok ({:.0} ms)", outcome.id, outcome.wall_ms);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The gather job: every case's outcome from its task record (a case without one did
/// not finish: killed, timed out, out of memory), then the summary files exactly as a
/// local batch writes them.
fn gather(out: &Path) -> Result<ExitCode> {
    let spec = Spec::load(out)?;
    let out = spec.out();
    let cases = batch::read_cases(Path::new(spec.str("cases")))?;
    let outcomes: Vec<CaseOutcome> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| outcome_of(&out, i, c))
        .collect();
    let files = batch::write_summary(&out, &outcomes).context("writing the batch summary")?;
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.status, CaseStatus::Failed(_)))
        .count();
    eprintln!(
        "{} cases: {} ok, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    Ok(ExitCode::SUCCESS)
}

fn outcome_of(out: &Path, index: usize, case: &Case) -> CaseOutcome {
    let record: Option<Json> = std::fs::read(task_file(out, index, "json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let failed = |e: String| CaseOutcome {
        id: case.id.clone(),
        status: CaseStatus::Failed(e),
        tables: BTreeMap::new(),
        wall_ms: 0.0,
    };
    let Some(r) = record.filter(|r| r["case"] == case.id.as_str()) else {
        return failed(format!(
            "the Slurm task for case index {index} left no result (cancelled, timed out or \
             out of memory; see {}/logs/)",
            state(out).display()
        ));
    };
    let wall_ms = r["wall_ms"].as_f64().unwrap_or(0.0);
    if r["status"] != "ok" {
        let mut o = failed(r["error"].as_str().unwrap_or("failed").to_string());
        o.wall_ms = wall_ms;
        return o;
    }
    match voxflow_engine::session::read_case_tables(&out.join(&case.id)) {
        Some(tables) => CaseOutcome {
            id: case.id.clone(),
            status: CaseStatus::Ok,
            tables,
            wall_ms,
        },
        None => failed(format!(
            "{}: missing or unreadable",
            out.join(&case.id).join("tables.json").display()
        )),
    }
}

/// Where a case stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Queued,
    Running,
    Done,
    Failed,
    /// Not in the queue and no exit record: killed, lost, or never submitted.
    Missing,
}

struct CaseState {
    state: State,
    detail: String,
}

/// The run's jobs in the queue: `(job id, array task id or None) -> state code`.
type Queue = BTreeMap<(String, Option<usize>), String>;

/// One `squeue` for the run's jobs (array tasks one per line, and the gather job).
fn queue(run_id: &str) -> Result<Queue> {
    queue_names(&[run_id.to_string(), format!("{run_id}-gather")])
}

/// One `squeue` for the jobs with these names.
fn queue_names(names: &[String]) -> Result<Queue> {
    let text = slurm_command(
        "squeue",
        &[
            "-h".into(),
            "-r".into(),
            "-o".into(),
            "%i %t %j".into(),
            "--name".into(),
            names.join(","),
        ],
    )?;
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(id), Some(st)) = (w.next(), w.next()) else {
            continue;
        };
        let (job, task) = match id.split_once('_') {
            Some((j, t)) => (j.to_string(), t.parse().ok()),
            None => (id.to_string(), None),
        };
        m.insert((job, task), st.to_string());
    }
    Ok(m)
}

/// Every case's state from the queue `q` (one `squeue`) and the task records.
fn case_states(spec: &Spec, cases: &[Case], q: &Queue) -> Vec<CaseState> {
    let out = spec.out();
    let mut in_queue: BTreeMap<usize, String> = BTreeMap::new();
    for (job, offset) in spec.arrays() {
        for ((j, t), st) in q {
            if *j == job {
                if let Some(t) = t {
                    in_queue.insert(offset + t, st.clone());
                }
            }
        }
    }
    let now = unix_now();
    (0..cases.len())
        .map(|i| {
            if let Some(st) = in_queue.get(&i) {
                let running = matches!(st.as_str(), "R" | "CG" | "S");
                let detail = match std::fs::read_to_string(task_file(&out, i, "heartbeat"))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(t) if running => format!("heartbeat {}s ago", now.saturating_sub(t)),
                    _ => format!("squeue state {st}"),
                };
                return CaseState {
                    state: if running {
                        State::Running
                    } else {
                        State::Queued
                    },
                    detail,
                };
            }
            match std::fs::read_to_string(task_file(&out, i, "exit")) {
                Ok(code) if code.trim() == "0" => CaseState {
                    state: State::Done,
                    detail: String::new(),
                },
                Ok(code) => {
                    let why = std::fs::read(task_file(&out, i, "json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
                        .and_then(|r| r["error"].as_str().map(String::from))
                        .unwrap_or_else(|| format!("exit code {}", code.trim()));
                    CaseState {
                        state: State::Failed,
                        detail: why,
                    }
                }
                Err(_) => CaseState {
                    state: State::Missing,
                    detail: "not queued and no exit record (cancelled, timed out or lost)".into(),
                },
            }
        })
        .collect()
}

/// `voxflow status OUT`.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    if train::exists(&args.out) {
        return train::status(&args.out, args.watch, args.interval);
    }
    loop {
        let (active, summary) = cases_status(&args.out)?;
        outln!("{summary}");
        if !args.watch || !active {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

/// One poll of the case array in `out`: prints a line per case and returns whether
/// anything is still queued or running, and the summary line (`RUN_ID: 4 done, ...`).
fn cases_status(out: &Path) -> Result<(bool, String)> {
    let spec = Spec::load(out)?;
    let cases = batch::read_cases(Path::new(spec.str("cases")))?;
    let q = queue(spec.str("run_id"))?;
    let states = case_states(&spec, &cases, &q);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    outln!("{:<24} {:>5}  {:<8} detail", "case", "index", "state");
    for (i, (c, s)) in cases.iter().zip(&states).enumerate() {
        let name = match s.state {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Missing => "missing",
        };
        *counts.entry(name).or_default() += 1;
        outln!("{:<24} {:>5}  {:<8} {}", c.id, i, name, s.detail);
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let gather_pending = match spec.json["gather"].as_str() {
        Some(g) => q.contains_key(&(g.to_string(), None)),
        None => false,
    };
    let line = format!(
        "{}: {}{}",
        spec.str("run_id"),
        summary.join(", "),
        if gather_pending {
            "; summary gather pending"
        } else {
            ""
        }
    );
    let active = states
        .iter()
        .any(|s| matches!(s.state, State::Queued | State::Running))
        || gather_pending;
    Ok((active, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_respect_max_array_size_and_resume_lists() {
        let all: Vec<usize> = (0..2500).collect();
        let c = chunks(&all, 1001);
        assert_eq!(c.len(), 3);
        assert_eq!((c[1].0, c[1].1.len()), (1001, 1001));
        assert_eq!(array_spec(&c[2].1, c[2].0, Some(4)), "0-497%4");
        assert_eq!(array_spec(&[2, 5, 1003], 0, None), "2,5,1003");
        assert_eq!(array_spec(&[7], 0, None), "7");
        let c = chunks(&[3, 1005], 1001);
        assert_eq!(array_spec(&c[1].1, c[1].0, None), "4");
    }
}
