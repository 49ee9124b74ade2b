//! `voxflow submit SERVER_GRAPH --train --slurm`: training on a cluster as two jobs. A CPU
//! job runs the server graph (its PatchServer listens on every interface and writes its
//! address and token files under `OUT/server/`); a trainer job, requeueable and signalled
//! before its time limit, waits for the address file and runs `voxflow train --connect
//! ... --out OUT/train`, with `--resume` whenever a checkpoint is there. SIGTERM makes the
//! trainer checkpoint and exit 75, so a requeue, a preemption or a resubmission continues
//! the same loss curve.
//!
//! The submission is `OUT/.voxflow-slurm/train.json` (not `submit.json`: that one is a case
//! array's), the scripts lie next to it, and `voxflow status OUT` reports both jobs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use voxflow_engine::fsutil::write_atomic;

use super::{absolute, batch_name, q, queue_names, resource_lines, sbatch, state, SubmitArgs};

/// The training submission's record under `OUT/.voxflow-slurm/`.
const SPEC: &str = "train.json";

/// Files the server job writes into `OUT/server/`: the PatchServer's address (its port;
/// the host there is the bind address, `0.0.0.0`), its token, and the node's host name,
/// which the trainer connects to.
const ADDR: &str = "patch_server.addr";
const TOKEN: &str = "patch_server.token";
const HOST: &str = "patch_server.host";

/// Seconds before its time limit that the trainer gets SIGTERM (`--signal=B:TERM@N`):
/// time for the step under way and a checkpoint, even of a large network on a GPU.
const SIGNAL_BEFORE_S: u32 = 60;

/// Whether OUT holds a training submission.
pub fn exists(out: &Path) -> bool {
    state(out).join(SPEC).is_file()
}

/// `voxflow submit SERVER_GRAPH --train --slurm`.
pub fn submit(args: &SubmitArgs) -> Result<ExitCode> {
    let graph = args.graph.as_ref().expect("clap: graph");
    crate::check_out_dir(&args.out)?;
    let node = server_node(graph, args)?;
    let out = absolute(&args.out);
    let exe = std::env::current_exe().context("locating the voxflow executable")?;
    let stem = graph
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "graph".into());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run_id = format!("voxflow-train-{}-{now}", batch_name(&stem));
    let dir = state(&out);
    let server_path = dir.join("server.sbatch");
    let train_path = dir.join("train.sbatch");
    let server = server_script(&exe, &absolute(graph), &node, &out, &run_id, args);
    if args.dry_run {
        let train = train_script(&exe, &out, &run_id, "<server job id>", args);
        outln!("# {}\n{server}", server_path.display());
        outln!("# {}\n{train}", train_path.display());
        eprintln!("dry run: nothing submitted");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(dir.join("logs"))
        .and_then(|_| std::fs::create_dir_all(out.join("server")))
        .with_context(|| format!("creating {}", dir.display()))?;
    // The trainer waits for a fresh address: one from an earlier server is stale.
    for f in [ADDR, HOST] {
        let p = out.join("server").join(f);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", p.display()))
            }
            _ => {}
        }
    }
    let mut spec = json!({
        "kind": "train",
        "run_id": run_id,
        "graph": absolute(graph),
        "server_node": node,
        "out": out,
    });
    save(&out, &spec)?;
    write_atomic(&server_path, |w| w.write_all(server.as_bytes()))?;
    let server_job = sbatch(&server_path, &args.sbatch_args)?;
    spec["server_job"] = json!(server_job);
    save(&out, &spec)?;
    eprintln!(
        "submitted patch server job {server_job} ({})",
        server_path.display()
    );
    let train = train_script(&exe, &out, &run_id, &server_job, args);
    write_atomic(&train_path, |w| w.write_all(train.as_bytes()))?;
    let train_job = sbatch(&train_path, &args.sbatch_args)?;
    spec["train_job"] = json!(train_job);
    save(&out, &spec)?;
    eprintln!(
        "submitted trainer job {train_job} ({}); run folder {}; follow with `voxflow status {}`",
        train_path.display(),
        out.join("train").display(),
        out.display()
    );
    outln!("{run_id}");
    Ok(ExitCode::SUCCESS)
}

fn save(out: &Path, spec: &Json) -> Result<()> {
    let text = serde_json::to_string_pretty(spec)? + "\n";
    write_atomic(&state(out).join(SPEC), |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// The graph's one standalone PatchServer: validated here, so a broken graph fails at
/// submission rather than in a queued job.
fn server_node(graph: &Path, args: &SubmitArgs) -> Result<String> {
    let registry = voxflow_nodes::registry();
    let plan = crate::load_and_validate(&registry, graph, &args.args, &[]).map_err(|d| {
        eprintln!("{d}");
        anyhow::anyhow!("{} does not validate; nothing submitted", graph.display())
    })?;
    if let Some(t) = plan.nodes.iter().find(|n| n.type_name == "UNetTrain") {
        bail!(
            "{}: node `{}` (UNetTrain) trains inside the graph; --train needs a graph whose \
             PatchServer serves `voxflow train` (no UNetTrain)",
            graph.display(),
            t.id
        );
    }
    let servers: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.type_name == "PatchServer")
        .map(|n| n.id.as_str())
        .collect();
    match servers[..] {
        [one] => Ok(one.to_string()),
        [] => bail!("{}: no PatchServer node to train from", graph.display()),
        _ => bail!(
            "{}: {} PatchServer nodes ({}); --train runs one trainer against one server",
            graph.display(),
            servers.len(),
            servers.join(", ")
        ),
    }
}

/// The server job: the graph, with its PatchServer on every interface (the trainer may
/// run on another node) and its files at known names in `OUT/server/`.
fn server_script(
    exe: &Path,
    graph: &Path,
    node: &str,
    out: &Path,
    run_id: &str,
    args: &SubmitArgs,
) -> String {
    let logs = state(out).join("logs");
    let server = out.join("server");
    let mut cmd = vec![
        q(exe),
        "run".into(),
        q(graph),
        "--out".into(),
        q(&server),
        "-q".into(),
    ];
    for s in &args.args.set {
        cmd.push(format!("--set {}", voxflow_engine::batch::shell_quote(s)));
    }
    for s in &args.args.implementations {
        cmd.push(format!("--impl {}", voxflow_engine::batch::shell_quote(s)));
    }
    for (param, value) in [
        ("bind", "0.0.0.0:0"),
        ("address_file", ADDR),
        ("token_file", TOKEN),
    ] {
        cmd.push(format!("--set '{node}.{param}=\"{value}\"'"));
    }
    format!(
        "#!/bin/bash\n\
         # voxflow submit --train: the patch server (written by voxflow {v}).\n\
         #SBATCH --job-name={run_id}-server\n\
         #SBATCH --output={logs}/server-%j.out\n\
         {res}\
         set -u\n\
         hostname > {host}\n\
         exec {cmd}\n",
        v = env!("CARGO_PKG_VERSION"),
        logs = q(&logs),
        res = resource_lines(args, args.partition.as_deref()),
        host = q(&server.join(HOST)),
        cmd = cmd.join(" "),
    )
}

/// The trainer job: after the server job has started, waits for its address (giving up
/// when the server job has left the queue without one), then trains into `OUT/train/`,
/// resuming when a checkpoint is there: a requeued or resubmitted job continues the run.
fn train_script(
    exe: &Path,
    out: &Path,
    run_id: &str,
    server_job: &str,
    args: &SubmitArgs,
) -> String {
    let logs = state(out).join("logs");
    let server = out.join("server");
    let run = out.join("train");
    let partition = args
        .train_partition
        .as_deref()
        .or(args.partition.as_deref());
    let mut res = resource_lines(args, partition);
    if args.gpu {
        res.push_str("#SBATCH --gres=gpu:1\n");
    }
    let extra: Vec<String> = args
        .train_args
        .iter()
        .map(|a| voxflow_engine::batch::shell_quote(a))
        .collect();
    format!(
        "#!/bin/bash\n\
         # voxflow submit --train: the trainer (written by voxflow {v}). SIGTERM (requeue,\n\
         # preemption, {s} s before the time limit) makes it checkpoint and exit 75;\n\
         # the requeued job resumes from that checkpoint.\n\
         #SBATCH --job-name={run_id}-train\n\
         #SBATCH --dependency=after:{server_job}\n\
         #SBATCH --output={logs}/train-%j.out\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         #SBATCH --signal=B:TERM@{s}\n\
         {res}\
         set -u\n\
         echo \"voxflow trainer: job $SLURM_JOB_ID, start ${{SLURM_RESTART_COUNT:-0}}, on $(hostname)\"\n\
         while [ ! -s {addr} ] || [ ! -s {host} ]; do\n\
         \x20 if [ -z \"$(squeue -h -j {server_job} -t PD,CF,R -o %t 2>/dev/null)\" ]; then\n\
         \x20   echo \"the patch server job {server_job} is not running and wrote no address (see {logs}/server-{server_job}.out)\" >&2\n\
         \x20   exit 1\n\
         \x20 fi\n\
         \x20 sleep 2\n\
         done\n\
         ADDR=\"$(cat {host}):$(sed 's/.*://' {addr})\"\n\
         RESUME=\n\
         if [ -e {run}/checkpoint/state.json ] || [ -e {run}/checkpoint.old/state.json ]; then RESUME=--resume; fi\n\
         exec {exe} train --connect \"$ADDR\" --token-file {token} --out {run} --device {dev} $RESUME{extra}\n",
        v = env!("CARGO_PKG_VERSION"),
        s = SIGNAL_BEFORE_S,
        logs = q(&logs),
        addr = q(&server.join(ADDR)),
        host = q(&server.join(HOST)),
        token = q(&server.join(TOKEN)),
        run = q(&run),
        exe = q(exe),
        dev = args.train_device,
        extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(" "))
        },
    )
}

/// `voxflow status OUT [--watch]` for a training submission: both jobs from one `squeue`
/// per poll, and where the run stands from its files.
pub fn status(out: &Path, watch: bool, interval: u64) -> Result<ExitCode> {
    loop {
        if !status_once(out)? || !watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(interval.max(1)));
    }
}

/// One poll; whether a job is still queued or running.
fn status_once(out: &Path) -> Result<bool> {
    let p = state(out).join(SPEC);
    let spec: Json = serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?,
    )
    .with_context(|| format!("{}", p.display()))?;
    let s = |k: &str| spec[k].as_str().unwrap_or("").to_string();
    let run_id = s("run_id");
    let out = PathBuf::from(s("out"));
    let q = queue_names(&[format!("{run_id}-server"), format!("{run_id}-train")])?;
    let job_state = |job: &str| -> &'static str {
        match q.get(&(job.to_string(), None)).map(String::as_str) {
            Some("R" | "CG" | "S") => "running",
            Some(_) => "queued",
            None => "ended",
        }
    };
    let server = job_state(&s("server_job"));
    let trainer = job_state(&s("train_job"));
    let addr = std::fs::read_to_string(out.join("server").join(HOST))
        .ok()
        .zip(std::fs::read_to_string(out.join("server").join(ADDR)).ok())
        .map(|(h, a)| {
            format!(
                "listening on {}:{}",
                h.trim(),
                a.trim().rsplit(':').next().unwrap_or("")
            )
        })
        .unwrap_or_default();
    let (steps, stops) = progress(&out.join("train"));
    let checkpoint = std::fs::read_to_string(out.join("train/checkpoint/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .and_then(|v| v["iteration"].as_u64());
    outln!("{:<8} {:>8}  {:<8} detail", "job", "id", "state");
    outln!(
        "{:<8} {:>8}  {:<8} {addr}",
        "server",
        s("server_job"),
        server
    );
    outln!(
        "{:<8} {:>8}  {:<8} {}{}{}",
        "trainer",
        s("train_job"),
        trainer,
        steps.map_or("no step yet".into(), |i| format!("step {i}")),
        checkpoint.map_or(String::new(), |c| format!(", checkpoint at {c}")),
        if stops > 0 {
            format!(", stopped by SIGTERM {stops} time(s)")
        } else {
            String::new()
        }
    );
    outln!("{run_id}: server {server}, trainer {trainer}");
    Ok(server != "ended" || trainer != "ended")
}

/// Last step logged in `metrics.jsonl` and how many times SIGTERM stopped the run.
fn progress(run: &Path) -> (Option<u64>, usize) {
    let Ok(text) = std::fs::read_to_string(run.join("metrics.jsonl")) else {
        return (None, 0);
    };
    let lines: Vec<Json> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let last = lines
        .iter()
        .rev()
        .find(|v| v.get("loss").is_some())
        .and_then(|v| v["iteration"].as_u64());
    let stops = lines.iter().filter(|v| v["event"] == "stopped").count();
    (last, stops)
}
