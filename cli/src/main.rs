//! `voxflow`: run, validate, list and draw dataflow graphs of medical volumes.
//!
//! This binary only parses arguments and prints; the engine and the nodes do the work.

#[macro_use]
mod out;

mod cmd_dicom;
mod cmd_monitor;
mod cmd_nodes;
mod cmd_submit;
mod cmd_train;
mod progress;
mod results;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use voxflow_engine::graph::{load_graph, LoadOptions, Override};
use voxflow_engine::run::{RunOptions, Status};
use voxflow_engine::session::{run_session, Folder, Ran, SessionOptions};
use voxflow_engine::validate::{validate, validate_template, Plan, ValidateOptions};

/// voxflow: a headless dataflow engine for medical image pipelines.
#[derive(Parser)]
#[command(name = "voxflow", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and run a graph.
    Run(RunArgs),
    /// Validate graphs without running them (exit code 0 when all are valid). A template,
    /// a graph leaving params unset for `run --set`, is valid when all else is.
    Validate {
        /// Graph files.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        #[command(flatten)]
        graph: GraphArgs,
    },
    /// List node types, or show one with its ports, params, implementations and examples.
    Nodes {
        /// A node type name.
        name: Option<String>,
        /// Print the full reference as Markdown (as in docs/nodes.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Train a U-Net with batches from a patch server (a PatchServer node).
    Train(cmd_train::TrainArgs),
    /// DICOM folders: `voxflow dicom ls DIR` lists their series.
    #[command(subcommand)]
    Dicom(cmd_dicom::DicomCommand),
    /// Run a graph over a case file on a Slurm cluster: an array job, one task per case.
    Submit(cmd_submit::SubmitArgs),
    /// Where the cases of a `voxflow submit` stand: queued, running, done, failed.
    Status(cmd_submit::StatusArgs),
    /// What the jobs of `voxflow submit` run.
    #[command(subcommand, hide = true)]
    Slurm(cmd_submit::Internal),
    /// Serve a live web view of trainings: curves, validations, logs (docs/monitor.md).
    ///
    /// Loss and validation Dice of every run under RUNS_DIR, pushed to the page as they are
    /// written (Server-Sent Events); long curves decimated keeping every spike, raw points
    /// when zoomed; runs overlaid; resume sessions marked with what changed; the run's logs
    /// filtered by level, source and regex. The view is in the URL: share or reload it.
    ///
    /// Bound to a loopback address (the default) the page is open to local users, as
    /// TensorBoard's is. Bound to any other address every request needs a token, generated
    /// at start (or taken from VOXFLOW_MONITOR_TOKEN) and printed in the URL; without it
    /// the answer is 401. Stop with Ctrl-C.
    Monitor(cmd_monitor::MonitorArgs),
    /// Print a graph as Graphviz DOT.
    Dot {
        /// Graph file.
        graph: PathBuf,
        #[command(flatten)]
        args: GraphArgs,
    },
}

#[derive(clap::Args, Clone)]
struct GraphArgs {
    /// Override a graph param (`name=value`) or a node param (`node.param=value`).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    set: Vec<Override>,
    /// Choose the implementation of a node type for every node of that type.
    #[arg(long = "impl", value_name = "TYPE=NAME")]
    implementations: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Graph file (default: the built-in demo, graphs/demo.ron).
    graph: Option<PathBuf>,
    #[command(flatten)]
    args: GraphArgs,
    /// Folder for outputs written with relative paths.
    #[arg(long, default_value = "out")]
    out: PathBuf,
    /// Compute only these outputs (`node` or `node.port`) and what they need; print them.
    #[arg(long = "output", value_name = "NODE[.PORT]")]
    outputs: Vec<String>,
    /// Write a JSON run report (per-node wall time, implementation, status).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Worker threads (default: all cores; at most 1024).
    #[arg(long, value_parser = count_parser())]
    threads: Option<usize>,
    /// Reuse results from (and store them in) this content-addressed cache folder.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// With --cache: print per node whether it was reused or why it ran.
    #[arg(long, requires = "cache")]
    explain: bool,
    /// Run the graph once per row of this case file (TSV, or CSV by extension): a header of
    /// graph param names, the first column the case id; outputs under OUT/<case>/.
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    /// Cases run at the same time (with --cases).
    #[arg(long, default_value_t = 1, requires = "cases", value_parser = count_parser())]
    jobs: usize,
    /// Memory budget for running cases, e.g. 8G or 512M (default: 80% of available).
    #[arg(long, value_name = "SIZE", requires = "cases", value_parser = parse_size)]
    memory_budget: Option<u64>,
    /// Skip cases complete from an earlier run with the same graph and params.
    #[arg(long, requires = "cases")]
    resume: bool,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
    /// More logging (-v: per-node lines, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = match &cli.command {
        Command::Run(r) if r.quiet => 0,
        Command::Run(r) => 1 + r.verbose,
        Command::Train(t) if t.quiet => 0,
        _ => 1,
    };
    init_tracing(verbosity);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Thread and job counts: 1 to 1024. More threads than that only exhausts the system
/// (each has its own stack) before any work starts; zero would run nothing.
fn count_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024)
}

/// `--out` is refused before anything runs when it cannot hold outputs.
fn check_out_dir(out: &Path) -> Result<()> {
    voxflow_engine::session::check_out_dir(out).map_err(|e| anyhow::anyhow!("--out {e}"))
}

fn init_tracing(verbosity: u8) {
    let level = match verbosity {
        0 => "error",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    // Training progress lines (voxflow::progress) are printed unless quiet or on a terminal,
    // where bars show progress.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let level = match (verbosity, tty) {
        (1.., false) => format!("{level},voxflow::progress=info"),
        _ => level.to_string(),
    };
    voxflow_monitor::logs::init_tracing(&level, tty);
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let registry = voxflow::registry();
    match cli.command {
        Command::Run(args) => cmd_run(&registry, args, None),
        Command::Validate { graphs, graph } => {
            let mut ok = true;
            for g in &graphs {
                match load_template(&registry, g, &graph) {
                    Ok(t) => {
                        print_diagnostics(&t.warnings);
                        outln!("{}: ok ({} nodes)", g.display(), t.outline.nodes.len());
                        if !t.unset.is_empty() {
                            let sets: Vec<String> =
                                t.unset.iter().map(|p| format!("--set {p}=VALUE")).collect();
                            outln!(
                                "note: {} is a template: `voxflow run` needs {}",
                                g.display(),
                                sets.join(" ")
                            );
                        }
                    }
                    Err(diags) => {
                        eprintln!("{diags}");
                        ok = false;
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Nodes { name, markdown } => cmd_nodes::run(&registry, name.as_deref(), markdown),
        Command::Train(args) => cmd_train::run(args),
        Command::Dicom(cmd) => cmd_dicom::run(cmd),
        Command::Submit(args) => cmd_submit::submit(args),
        Command::Status(args) => cmd_submit::status(args),
        Command::Slurm(cmd) => cmd_submit::internal(cmd),
        Command::Monitor(args) => cmd_monitor::run(args),
        Command::Dot { graph, args } => match load_template(&registry, &graph, &args) {
            Ok(t) => {
                out!("{}", voxflow_engine::dot::to_dot(&t.outline));
                Ok(ExitCode::SUCCESS)
            }
            Err(diags) => {
                eprintln!("{diags}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

fn load_and_validate(
    registry: &voxflow_engine::Registry,
    path: &Path,
    args: &GraphArgs,
    targets: &[String],
) -> std::result::Result<Plan, voxflow_engine::diag::Diagnostics> {
    let graph = load_graph(
        path,
        &LoadOptions {
            set: args.set.clone(),
        },
    )?;
    validate(
        &graph,
        registry,
        &ValidateOptions {
            implementations: args.implementations.clone(),
            targets: targets.to_vec(),
        },
    )
}

/// The plan of one case: its columns as graph params, then `args`' overrides (so `--set`
/// wins over a column); its validation errors become the case's failure text.
fn plan_case(
    registry: &voxflow_engine::Registry,
    graph: &Path,
    args: &GraphArgs,
    targets: &[String],
    case: &voxflow_engine::batch::Case,
) -> std::result::Result<Plan, voxflow_engine::diag::Diagnostics> {
    let mut set: Vec<Override> = case
        .params
        .iter()
        .map(|(k, v)| Override::new(k, v))
        .collect();
    set.extend(args.set.iter().cloned());
    let ga = GraphArgs {
        set,
        implementations: args.implementations.clone(),
    };
    load_and_validate(registry, graph, &ga, targets)
}

/// A `--set` argument, split once here; one without `=` is reported by the graph loader
/// with the graph's other problems.
fn parse_override(arg: &str) -> std::result::Result<Override, std::convert::Infallible> {
    Ok(Override::parse(arg))
}

/// Refuse a `--report` path that is a folder (found only after the run otherwise) or that
/// a node writes: the report would replace its result (or it the report). Compared as
/// absolute paths, relative outputs under `out`.
fn check_report_path(report: &Path, out: &Path, plan: &Plan) -> Result<()> {
    if report.is_dir() {
        bail!(
            "--report {}: is a folder; give the report's file path, e.g. {}",
            report.display(),
            report.join("report.json").display()
        );
    }
    let norm = |p: &Path| -> PathBuf {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect()
    };
    let target = norm(report);
    for (node, file) in plan.output_files() {
        if norm(&out.join(&file)) == target {
            bail!(
                "--report {}: node `{node}` writes that file; choose another report path",
                report.display()
            );
        }
    }
    Ok(())
}

/// Check a graph that may leave graph params unset (`validate`, `dot`).
fn load_template(
    registry: &voxflow_engine::Registry,
    path: &Path,
    args: &GraphArgs,
) -> std::result::Result<voxflow_engine::validate::Template, voxflow_engine::diag::Diagnostics> {
    let graph = load_graph(
        path,
        &LoadOptions {
            set: args.set.clone(),
        },
    )?;
    validate_template(
        &graph,
        registry,
        &ValidateOptions {
            implementations: args.implementations.clone(),
            targets: Vec::new(),
        },
    )
}

fn print_warnings(plan: &Plan) {
    print_diagnostics(&plan.warnings);
}

/// Warnings, at most [`voxflow_engine::diag::MAX_SHOWN`] of them and a count of the rest.
fn print_diagnostics(d: &voxflow_engine::diag::Diagnostics) {
    use voxflow_engine::diag::{more_line, MAX_SHOWN};
    for w in d.items.iter().take(MAX_SHOWN) {
        eprintln!("{}", w.render(&d.sources));
    }
    if let Some(more) = more_line(&d.items[d.items.len().min(MAX_SHOWN)..]) {
        eprintln!("{more}");
    }
}

/// The cases of a cases file; an error when it has none.
fn read_cases(cases_file: &Path) -> Result<Vec<voxflow_engine::batch::Case>> {
    let cases = voxflow_engine::batch::read_cases(cases_file)?;
    if cases.is_empty() {
        bail!("{}: no cases", cases_file.display());
    }
    Ok(cases)
}

/// Validate every case (of `cases_file`, not empty) before touching the output folder
/// (`voxflow run --cases`, `voxflow submit --cases`): a mistake that is not a case's own
/// (a bad --set, a typo in the graph) fails them all, so when no case validates the
/// first case's errors are printed once and the error ends with `nothing_done`. Cases
/// that fail on their own are left to the run, which records their failure.
fn check_some_case_validates<P, E: std::fmt::Display>(
    graph: &Path,
    cases_file: &Path,
    cases: &[voxflow_engine::batch::Case],
    plan_case: impl Fn(&voxflow_engine::batch::Case) -> std::result::Result<P, E>,
    nothing_done: &str,
) -> Result<()> {
    if cases.iter().any(|c| plan_case(c).is_ok()) {
        return Ok(());
    }
    // A column the graph has no param for fails every case; said of the case file, since
    // the graph loader would point at a `--set` the user never typed.
    if let Some(why) = unknown_case_columns(graph, cases_file, &cases[0]) {
        bail!("{why}; {nothing_done}");
    }
    if let Err(e) = plan_case(&cases[0]) {
        eprintln!("{e}");
    }
    bail!(
        "no case of {} validates (case `{}` shown above); {nothing_done}",
        cases_file.display(),
        cases[0].id
    );
}

/// "cases.tsv: column `zz` is not a param of c.ron (its params: `seed`)" for the columns
/// of `case` (a case file's header) that name no graph param; `None` when all do, when a
/// column sets a node param (`node.param`, `macro/node.param`), or when the graph does
/// not load (its own errors are the ones to show).
fn unknown_case_columns(
    graph: &Path,
    cases_file: &Path,
    case: &voxflow_engine::batch::Case,
) -> Option<String> {
    let declared = load_graph(graph, &LoadOptions { set: Vec::new() })
        .ok()?
        .params;
    let unknown: Vec<&str> = case
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.contains(['.', '/']) && !declared.contains_key(*k))
        .collect();
    let first = unknown.first()?;
    let names: Vec<&str> = declared.keys().map(String::as_str).collect();
    let known = if names.is_empty() {
        "it declares none".to_string()
    } else {
        format!("its params: `{}`", names.join("`, `"))
    };
    let hint = voxflow_engine::suggest::hint(first, &names)
        .map(|h| format!("; {h}"))
        .unwrap_or_default();
    Some(format!(
        "{}: column{} `{}` {} not a param of {} ({known}{hint})",
        cases_file.display(),
        if unknown.len() > 1 { "s" } else { "" },
        unknown.join("`, `"),
        if unknown.len() > 1 { "are" } else { "is" },
        graph.display()
    ))
}

fn cmd_batch(
    registry: &voxflow_engine::Registry,
    graph: &Path,
    cases_file: &Path,
    args: &RunArgs,
    rerun: Option<String>,
) -> Result<ExitCode> {
    use voxflow_engine::batch::{self, BatchOptions, CaseStatus};
    let cases = read_cases(cases_file)?;
    let cache = open_cache(args)?;
    let scope = graph
        .canonicalize()
        .unwrap_or_else(|_| graph.to_path_buf())
        .display()
        .to_string();
    let plan_case =
        |case: &batch::Case| plan_case(registry, graph, &args.args, &args.outputs, case);
    // An earlier run's outputs and summary stay as they were.
    check_some_case_validates(
        graph,
        cases_file,
        &cases,
        plan_case,
        &format!("nothing ran, {} is unchanged", args.out.display()),
    )?;
    voxflow_monitor::logs::global().open(&args.out.join("logs.jsonl"))?;
    let bar = progress::BatchBar::new(cases.len(), args.quiet);
    let opts = BatchOptions {
        out_dir: args.out.clone(),
        jobs: args.jobs,
        memory_budget: args.memory_budget.unwrap_or(0),
        resume: args.resume,
        run: RunOptions {
            threads: args.threads,
            cache,
            cache_scope: scope,
            ..Default::default()
        },
        context: voxflow_engine::provenance::RunContext {
            version: env!("CARGO_PKG_VERSION").into(),
            command: rerun.unwrap_or_else(|| {
                command_line(&["--cases", "--jobs", "--memory-budget", "--resume", "--out"])
            }),
            case: None,
        },
        progress: Some(bar.callback()),
    };
    let outcomes = batch::run_cases(&cases, plan_case, &opts);
    bar.finish();
    let files = batch::write_summary(&args.out, &outcomes).context("writing the batch summary")?;
    if files.is_empty() && !args.quiet {
        eprintln!(
            "no case completed: the earlier summary in {} is left as it was",
            args.out.display()
        );
    }
    let mut failed = 0;
    for o in &outcomes {
        match &o.status {
            CaseStatus::Failed(e) => {
                failed += 1;
                eprintln!("case {}: FAILED: {e}", o.id);
            }
            CaseStatus::Resumed if !args.quiet => {
                eprintln!("case {}: complete from an earlier run (resumed)", o.id)
            }
            CaseStatus::Ok if !args.quiet => eprintln!("case {}: ok ({:.0} ms)", o.id, o.wall_ms),
            _ => {}
        }
    }
    if !args.quiet {
        for f in files {
            eprintln!("wrote {}", f.display());
        }
        eprintln!(
            "{} cases: {} ok, {failed} failed",
            outcomes.len(),
            outcomes.len() - failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The demo graph, graphs/demo.ron.
fn default_graph() -> Result<PathBuf> {
    shipped_graph("demo.ron")
}

/// A graph shipped in graphs/: from the current folder, or next to the executable's
/// source tree.
fn shipped_graph(name: &str) -> Result<PathBuf> {
    let candidates = [
        Path::new("graphs").join(name),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../graphs")
            .join(name),
    ];
    for c in candidates {
        if c.exists() {
            return Ok(c);
        }
    }
    bail!("graphs/{name} not found; run from the voxflow folder")
}

/// `voxflow train --presegment`: graphs/presegment.ron with `model` over a case file, as
/// `voxflow run --cases` does it, into OUT/presegment/.
fn presegment(cases: &Path, model: &Path, out: &Path, quiet: bool) -> Result<ExitCode> {
    let graph = shipped_graph("presegment.ron")?;
    let model = Override::new("model", model.display().to_string());
    // What re-runs a case (each case adds its columns and --out): this process's own
    // command line is the training's.
    let rerun = voxflow_engine::provenance::run_command(
        &graph.display().to_string(),
        std::slice::from_ref(&model),
        &[],
    );
    let args = RunArgs {
        graph: Some(graph),
        args: GraphArgs {
            set: vec![model],
            implementations: Vec::new(),
        },
        out: out.join("presegment"),
        outputs: Vec::new(),
        report: None,
        threads: None,
        cache: None,
        explain: false,
        cases: Some(cases.to_path_buf()),
        jobs: 1,
        memory_budget: None,
        resume: false,
        quiet,
        verbose: 0,
    };
    cmd_run(&voxflow::registry(), args, Some(rerun))
}

/// `8G`, `512M`, `100k` or plain bytes.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(|v| (v * mult as f64) as u64)
        .ok_or_else(|| anyhow::anyhow!("`{s}` is not a size like 8G, 512M or 1000000"))
}

/// The command line as typed, quoted for a shell (for failure records and provenance).
fn command_line(skip: &[&str]) -> String {
    let mut out = vec!["voxflow".to_string()];
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        if skip.contains(&a.as_str()) {
            if !a.starts_with("--resume") {
                args.next();
            }
            continue;
        }
        out.push(voxflow_engine::batch::shell_quote(&a));
    }
    out.join(" ")
}

fn open_cache(args: &RunArgs) -> Result<Option<voxflow_engine::cache::Cache>> {
    args.cache
        .as_ref()
        .map(|d| {
            voxflow_engine::cache::Cache::open(d)
                .with_context(|| format!("opening the cache folder {}", d.display()))
        })
        .transpose()
}

/// `voxflow run`. `rerun` is the command that re-runs it, for provenance and failure
/// records, when that is not this process's command line (`voxflow train --presegment`).
fn cmd_run(
    registry: &voxflow_engine::Registry,
    args: RunArgs,
    rerun: Option<String>,
) -> Result<ExitCode> {
    let path = match &args.graph {
        Some(p) => p.clone(),
        None => default_graph()?,
    };
    check_out_dir(&args.out)?;
    if let Some(cases) = &args.cases {
        return cmd_batch(registry, &path, cases, &args, rerun);
    }
    let plan = match load_and_validate(registry, &path, &args.args, &args.outputs) {
        Ok(p) => p,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(report) = &args.report {
        check_report_path(report, &args.out, &plan)?;
    }
    voxflow_monitor::logs::global().open(&args.out.join("logs.jsonl"))?;
    if !args.quiet {
        print_warnings(&plan);
    }
    let needed = plan.nodes.iter().filter(|n| n.needed).count();
    let progress = progress::Progress::new(needed, args.quiet);
    let cache = open_cache(&args)?;
    let scope = path
        .canonicalize()
        .unwrap_or_else(|_| path.clone())
        .display()
        .to_string();
    let session = SessionOptions {
        dir: args.out.clone(),
        folder: Folder::Shared,
        resume: false,
        run: RunOptions {
            threads: args.threads,
            observer: Some(progress.observer()),
            cache,
            cache_scope: scope,
            // Without --output, the result tables are printed briefly at the end.
            collect_tables: args.outputs.is_empty(),
            ..Default::default()
        },
        context: voxflow_engine::provenance::RunContext {
            version: env!("CARGO_PKG_VERSION").into(),
            command: rerun.unwrap_or_else(|| command_line(&[])),
            case: None,
        },
    };
    let Ran {
        report,
        failure_records,
        provenance,
    } = run_session(&plan, &session);
    progress.finish();
    // The node errors are printed below whether or not their records could be written.
    match failure_records {
        Ok(files) => {
            for f in files {
                eprintln!("failure record: {}", f.display());
            }
        }
        Err(e) => eprintln!("warning: cannot write the failure records: {e}"),
    }
    // A provenance or report that cannot be written fails the run, but after the node
    // errors: returning early here would hide why the nodes failed.
    let mut failed = false;
    if let Some(Err(e)) = provenance {
        eprintln!("error: writing provenance.json: {e}");
        failed = true;
    }
    if args.explain {
        for n in report.nodes.iter().filter(|n| n.cache.is_some()) {
            outln!("{:<32} {}", n.id, n.cache.as_deref().unwrap_or(""));
        }
    }
    if let Some(path) = &args.report {
        if let Err(e) = report.write(path) {
            eprintln!("error: writing the run report {}: {e}", path.display());
            failed = true;
        }
    }
    if args.outputs.is_empty() {
        if !args.quiet {
            for (name, t) in results::key_tables(&plan, &report) {
                out!("{}", results::brief(name, t));
            }
        }
    } else {
        for (name, value) in &report.outputs {
            match value {
                voxflow_engine::Value::Table(t) => outln!("{name}:\n{}", t.to_csv()),
                v => outln!("{name}: {}", v.summary()),
            }
        }
    }
    for n in &report.nodes {
        match &n.status {
            Status::Failed(e) => {
                failed = true;
                eprintln!(
                    "error: node `{}` ({}, impl {}) failed: {e}",
                    n.id, n.type_name, n.implementation
                );
            }
            Status::Skipped(why) => {
                failed = true;
                if !args.quiet {
                    eprintln!("skipped: node `{}` ({}): {why}", n.id, n.type_name);
                }
            }
            _ => {}
        }
    }
    if !args.quiet {
        for f in &report.files {
            eprintln!("wrote {}", f.display());
        }
        eprintln!(
            "{} `{}`: {} nodes in {:.0} ms",
            if failed { "failed" } else { "done" },
            plan.name,
            needed,
            report.wall_ms,
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
