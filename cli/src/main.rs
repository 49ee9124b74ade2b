//! `voxflow`: run, validate, list and draw dataflow graphs of medical volumes.
//!
//! This binary only parses arguments and prints; the engine and the nodes do the work.

mod cmd_nodes;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use voxflow_engine::graph::{load_graph, LoadOptions};
use voxflow_engine::run::{run, RunOptions, Status};
use voxflow_engine::validate::{validate, Plan, ValidateOptions};

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
    /// Validate graphs without running them (exit code 0 when all are valid).
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
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
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
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
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
        _ => 1,
    };
    init_tracing(verbosity);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(verbosity: u8) {
    let level = match verbosity {
        0 => "error",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VOXFLOW_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let registry = voxflow_nodes::registry();
    match cli.command {
        Command::Run(args) => cmd_run(&registry, args),
        Command::Validate { graphs, graph } => {
            let mut ok = true;
            for g in &graphs {
                match load_and_validate(&registry, g, &graph, &[]) {
                    Ok(plan) => {
                        print_warnings(&plan);
                        println!("{}: ok ({} nodes)", g.display(), plan.nodes.len());
                    }
                    Err(diags) => {
                        eprintln!("{diags}");
                        ok = false;
                    }
                }
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Nodes { name, markdown } => cmd_nodes::run(&registry, name.as_deref(), markdown),
        Command::Dot { graph, args } => match load_and_validate(&registry, &graph, &args, &[]) {
            Ok(plan) => {
                print!("{}", voxflow_engine::dot::to_dot(&plan));
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
    let graph = load_graph(path, &LoadOptions { set: args.set.clone() })?;
    validate(&graph, registry, &ValidateOptions { implementations: args.implementations.clone(), targets: targets.to_vec() })
}

fn print_warnings(plan: &Plan) {
    for w in &plan.warnings.items {
        eprintln!("{}", w.render(&plan.warnings.sources));
    }
}

/// The demo graph: next to the executable's source tree, or in the current folder.
fn default_graph() -> Result<PathBuf> {
    let candidates = [PathBuf::from("graphs/demo.ron"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../graphs/demo.ron")];
    for c in candidates {
        if c.exists() {
            return Ok(c);
        }
    }
    bail!("no graph given and graphs/demo.ron not found; run from the voxflow folder or name a graph")
}

fn cmd_run(registry: &voxflow_engine::Registry, args: RunArgs) -> Result<ExitCode> {
    let path = match &args.graph {
        Some(p) => p.clone(),
        None => default_graph()?,
    };
    let plan = match load_and_validate(registry, &path, &args.args, &args.outputs) {
        Ok(p) => p,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !args.quiet {
        print_warnings(&plan);
    }
    let needed = plan.nodes.iter().filter(|n| n.needed).count();
    let progress = progress::Progress::new(needed, args.quiet);
    let opts = RunOptions { out_dir: args.out.clone(), threads: args.threads, observer: Some(progress.observer()) };
    let report = run(&plan, &opts);
    progress.finish();
    if let Some(path) = &args.report {
        report.write(path).with_context(|| format!("writing the run report {}", path.display()))?;
    }
    for (name, value) in &report.outputs {
        match value {
            voxflow_engine::Value::Table(t) => println!("{name}:\n{}", t.to_csv()),
            v => println!("{name}: {}", v.summary()),
        }
    }
    let mut failed = false;
    for n in &report.nodes {
        match &n.status {
            Status::Failed(e) => {
                failed = true;
                eprintln!("error: node `{}` ({}, impl {}) failed: {e}", n.id, n.type_name, n.implementation);
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
        eprintln!("{} `{}`: {} nodes in {:.0} ms{}", if failed { "failed" } else { "done" }, plan.name, needed, report.wall_ms, if failed { "" } else { "" });
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
