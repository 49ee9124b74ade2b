//! `voxflow monitor RUNS_DIR`: the live training monitor (server in `voxflow_monitor`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// `voxflow monitor` arguments (the help text is on `Command::Monitor` in main.rs).
#[derive(clap::Args)]
pub struct MonitorArgs {
    /// Folder of runs: it and every folder up to three levels below it holding
    /// metrics.jsonl (`voxflow train --out`) or logs.jsonl (`voxflow run --out`).
    pub runs_dir: PathBuf,
    /// Address to listen on. Port 0 picks a free port (printed). Anything but loopback
    /// (e.g. 0.0.0.0:6006 on a cluster node reached by an SSH tunnel) requires the token.
    #[arg(long, default_value = "127.0.0.1:6006", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
}

pub fn run(args: MonitorArgs) -> Result<ExitCode> {
    let token = std::env::var("VOXFLOW_MONITOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    voxflow_monitor::server::serve_blocking(&args.runs_dir, args.bind, token, |url| {
        println!("voxflow monitor: serving {url}")
    })
    .with_context(|| format!("voxflow monitor {}", args.runs_dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
