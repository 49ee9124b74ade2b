//! `voxflow submit SERVER_GRAPH --train --slurm`: training on a cluster as two jobs. A CPU
//! job runs the server graph (its PatchServer listens on every interface and writes its
//! address and token files under `OUT/server/`); a trainer job, requeueable and signalled
//! before its time limit, waits for the address file and runs `voxflow train --connect
//! ... --out OUT/train`, with `--resume` whenever a checkpoint is there. SIGTERM makes the
//! trainer checkpoint and exit 75, so a requeue, a preemption or a resubmission continues
//! the same loss curve.
//!
//! The server job stops its server once the trainer job has left the queue for good
//! (done, failed, cancelled: a requeued job stays queued), so a failed trainer does not
//! leave a server holding a node. The trainer script records every exit of the trainer
//! (`train.exit`, and one line per run in `train.exits`), and `--presegment CASES` adds a
//! case array after the trainer (`afterok`) that segments the cases with the best model.
//!
//! The submission is `OUT/.voxflow-slurm/train.json` (not `submit.json`: that one is a case
//! array's), the scripts lie next to it, and `voxflow status OUT` reports the jobs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use voxflow_engine::fsutil::write_atomic;

use super::{
    absolute, cases_status, gather_script, presegment_plan, q, queue_names, resource_lines, run_id,
    sbatch, slurm_command, state, submit_arrays, task_script, SubmitArgs, PRESEGMENT_DIR,
};

/// The training submission's record under `OUT/.voxflow-slurm/`.
const SPEC: &str = "train.json";

/// Files the server job writes into `OUT/server/`: the PatchServer's address (its port;
/// the host there is the bind address, `0.0.0.0`), its token, and the node's host name,
/// which the trainer connects to.
const ADDR: &str = "patch_server.addr";
const TOKEN: &str = "patch_server.token";
const HOST: &str = "patch_server.host";

/// The trainer job's id, written by `voxflow submit` once it is submitted: what the
/// server job watches.
const TRAIN_JOB: &str = "train.job";

/// The trainer's last exit code (`0`, `75` after a SIGTERM checkpoint, anything else a
/// failure) and the history of them, `CODE JOB RESTART_COUNT UNIX_TIME` per line.
const EXIT: &str = "train.exit";
const EXITS: &str = "train.exits";

/// Seconds between the server job's looks at the trainer job (one `squeue` each).
const WATCH_S: u32 = 10;

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
    if args.max_parallel.is_some() && args.presegment.is_none() {
        bail!("--max-parallel with --train limits the --presegment array: give --presegment");
    }
    crate::check_out_dir(&args.out)?;
    let node = server_node(graph, args)?;
    let out = absolute(&args.out);
    let exe = std::env::current_exe().context("locating the voxflow executable")?;
    let run_id = run_id("train-", graph);
    let dir = state(&out);
    let server_path = dir.join("server.sbatch");
    let train_path = dir.join("train.sbatch");
    let server = server_script(&exe, &absolute(graph), &node, &out, &run_id, args);
    let pre_out = out.join("train").join(PRESEGMENT_DIR);
    let presegment = match &args.presegment {
        Some(cases) => {
            let graph = match &args.presegment_graph {
                Some(g) => g.clone(),
                None => crate::shipped_graph("presegment.ron")?,
            };
            let model = out.join("train").join(voxflow_train::trainer::BEST);
            Some(presegment_plan(
                &graph,
                cases,
                &model,
                &pre_out,
                &run_id,
                args.cpus_per_task,
            )?)
        }
        None => None,
    };
    if args.dry_run {
        let train = train_script(&exe, &out, &run_id, "<server job id>", args);
        outln!("# {}\n{server}", server_path.display());
        outln!("# {}\n{train}", train_path.display());
        if let Some((spec, indices)) = &presegment {
            let (dir, id) = (state(&pre_out), spec.str("run_id"));
            let array = super::array_spec(indices, 0, args.max_parallel);
            let after = Some("<trainer job id>");
            let tasks = task_script(&exe, &pre_out, id, &array, 0, after, args);
            outln!("# {}\n{tasks}", dir.join("array-0-0.sbatch").display());
            let gather = gather_script(&exe, &pre_out, id, &["<array job id>".into()], args);
            outln!("# {}\n{gather}", dir.join("gather-0.sbatch").display());
        }
        eprintln!("dry run: nothing submitted");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(dir.join("logs"))
        .and_then(|_| std::fs::create_dir_all(out.join("server")))
        .with_context(|| format!("creating {}", dir.display()))?;
    // The trainer waits for a fresh address: one from an earlier server is stale; the
    // server watches this submission's trainer, not an earlier one.
    for p in [
        out.join("server").join(ADDR),
        out.join("server").join(HOST),
        dir.join(TRAIN_JOB),
        dir.join(EXIT),
    ] {
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
    let train_job = match sbatch(&train_path, &args.sbatch_args) {
        Ok(id) => id,
        Err(e) => {
            // Nobody would ever connect to the server.
            let _ = slurm_command("scancel", std::slice::from_ref(&server_job));
            return Err(e.context(format!("the server job {server_job} is cancelled again")));
        }
    };
    spec["train_job"] = json!(train_job);
    save(&out, &spec)?;
    write_atomic(&dir.join(TRAIN_JOB), |w| {
        w.write_all(format!("{train_job}\n").as_bytes())
    })?;
    eprintln!(
        "submitted trainer job {train_job} ({}); run folder {}; follow with `voxflow status {}`",
        train_path.display(),
        out.join("train").display(),
        out.display()
    );
    if let Some((mut pre, indices)) = presegment {
        submit_arrays(&mut pre, &pre_out, &indices, args, Some(&train_job))?;
        spec["presegment"] = json!(pre_out);
        save(&out, &spec)?;
        eprintln!(
            "presegmentation of {} case(s) after the trainer, into {}",
            indices.len(),
            pre_out.display()
        );
    }
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
    let registry = voxflow::registry();
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
        cmd.push(format!(
            "--set {}",
            voxflow_engine::batch::shell_quote(&s.to_string())
        ));
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
    // The trainer job has ended for good when squeue shows it in a final state or no
    // longer knows it; an unreachable controller is not an end.
    format!(
        "#!/bin/bash\n\
         # voxflow submit --train: the patch server (written by voxflow {v}). It stops\n\
         # once the trainer job has ended (done, failed or cancelled; not when requeued).\n\
         #SBATCH --job-name={run_id}-server\n\
         #SBATCH --output={logs}/server-%j.out\n\
         {res}\
         set -u\n\
         hostname > {host}\n\
         {cmd} &\n\
         pid=$!\n\
         trap 'kill -TERM \"$pid\" 2>/dev/null' TERM\n\
         TRAINER=\n\
         trainer_ended() {{\n\
         \x20 [ -n \"$TRAINER\" ] || TRAINER=$(cat {job} 2>/dev/null)\n\
         \x20 [ -n \"$TRAINER\" ] || return 1\n\
         \x20 local st\n\
         \x20 st=$(squeue -h -t all -j \"$TRAINER\" -o %t 2>&1)\n\
         \x20 case $? in\n\
         \x20   0) case \"$st\" in ''|CD|CA|F|TO|PR|NF|OOM|BF|DL) return 0;; esac;;\n\
         \x20   *) case \"$st\" in *'Invalid job id'*) return 0;; esac;;\n\
         \x20 esac\n\
         \x20 return 1\n\
         }}\n\
         while kill -0 \"$pid\" 2>/dev/null; do\n\
         \x20 sleep {watch} & wait $!\n\
         \x20 if trainer_ended; then\n\
         \x20   echo \"voxflow: the trainer job $TRAINER has ended: stopping the patch server\"\n\
         \x20   kill -TERM \"$pid\" 2>/dev/null; wait \"$pid\"; exit 0\n\
         \x20 fi\n\
         done\n\
         wait \"$pid\"\n",
        v = env!("CARGO_PKG_VERSION"),
        logs = q(&logs),
        res = resource_lines(args, args.partition.as_deref()),
        host = q(&server.join(HOST)),
        job = q(&state(out).join(TRAIN_JOB)),
        watch = WATCH_S,
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
    // The trainer runs as a child, not exec'd: the script records its exit code. SIGTERM
    // to the script alone (`--signal=B:`) is passed on; the loop waits out the trainer's
    // checkpoint (a signal interrupts `wait`), and a status lost to such an interruption
    // is asked for once more.
    format!(
        "#!/bin/bash\n\
         # voxflow submit --train: the trainer (written by voxflow {v}). SIGTERM (requeue,\n\
         # preemption, {s} s before the time limit) makes it checkpoint and exit 75;\n\
         # the requeued job resumes from that checkpoint. Every exit is recorded for\n\
         # `voxflow status`.\n\
         #SBATCH --job-name={run_id}-train\n\
         #SBATCH --dependency=after:{server_job}\n\
         #SBATCH --output={logs}/train-%j.out\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         #SBATCH --signal=B:TERM@{s}\n\
         {res}\
         set -u\n\
         finish() {{\n\
         \x20 echo \"$1 $SLURM_JOB_ID ${{SLURM_RESTART_COUNT:-0}} $(date +%s)\" >> {exits}\n\
         \x20 echo \"$1\" > {exit}.tmp && mv {exit}.tmp {exit}\n\
         \x20 exit \"$1\"\n\
         }}\n\
         pid=\n\
         trap 'if [ -n \"$pid\" ]; then kill -TERM \"$pid\" 2>/dev/null; else finish 75; fi' TERM\n\
         echo \"voxflow trainer: job $SLURM_JOB_ID, start ${{SLURM_RESTART_COUNT:-0}}, on $(hostname)\"\n\
         while [ ! -s {addr} ] || [ ! -s {host} ]; do\n\
         \x20 if [ -z \"$(squeue -h -j {server_job} -t PD,CF,R -o %t 2>/dev/null)\" ]; then\n\
         \x20   echo \"the patch server job {server_job} is not running and wrote no address (see {logs}/server-{server_job}.out)\" >&2\n\
         \x20   finish 1\n\
         \x20 fi\n\
         \x20 sleep 2 & wait $!\n\
         done\n\
         ADDR=\"$(cat {host}):$(sed 's/.*://' {addr})\"\n\
         RESUME=\n\
         if [ -e {run}/checkpoint/state.json ] || [ -e {run}/checkpoint.old/state.json ]; then RESUME=--resume; fi\n\
         {exe} train --connect \"$ADDR\" --token-file {token} --out {run} --device {dev} $RESUME{extra} &\n\
         pid=$!\n\
         while :; do wait \"$pid\"; rc=$?; kill -0 \"$pid\" 2>/dev/null || break; done\n\
         if [ \"$rc\" -gt 128 ]; then wait \"$pid\" 2>/dev/null; r=$?; [ \"$r\" -ne 127 ] && rc=$r; fi\n\
         finish \"$rc\"\n",
        v = env!("CARGO_PKG_VERSION"),
        s = SIGNAL_BEFORE_S,
        logs = q(&logs),
        exits = q(&state(out).join(EXITS)),
        exit = q(&state(out).join(EXIT)),
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
    let job_state = |job: &str| -> Option<&'static str> {
        q.get(&(job.to_string(), None)).map(|st| match st.as_str() {
            "R" | "CG" | "S" => "running",
            _ => "queued",
        })
    };
    let server = job_state(&s("server_job")).unwrap_or("ended");
    let exits = exit_history(&state(&out));
    let trainer = trainer_state(job_state(&s("train_job")), &exits);
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
    outln!("{:<8} {:>8}  {:<9} detail", "job", "id", "state");
    outln!(
        "{:<8} {:>8}  {:<9} {addr}",
        "server",
        s("server_job"),
        server
    );
    outln!(
        "{:<8} {:>8}  {:<9} {}{}{}{}",
        "trainer",
        s("train_job"),
        trainer.name(),
        steps.map_or("no step yet".into(), |i| format!("step {i}")),
        checkpoint.map_or(String::new(), |c| format!(", checkpoint at {c}")),
        if stops > 0 {
            format!(", stopped by SIGTERM {stops} time(s)")
        } else {
            String::new()
        },
        trainer.detail(&exits),
    );
    let mut line = format!("{run_id}: server {server}, trainer {}", trainer.name());
    let mut active = server != "ended" || trainer.active();
    if let Some(pre) = spec["presegment"].as_str() {
        outln!("presegmentation ({pre}):");
        let (busy, summary) = cases_status(Path::new(pre))?;
        active |= busy;
        line.push_str(&format!("; presegment {summary}"));
    }
    outln!("{line}");
    Ok(active)
}

/// The trainer's exits recorded by its job script: (code, job id, restart count), oldest
/// first.
fn exit_history(dir: &Path) -> Vec<(i32, String, u32)> {
    std::fs::read_to_string(dir.join(EXITS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.parse().ok()?,
                w.next()?.to_string(),
                w.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Where the trainer job stands.
#[derive(Debug, PartialEq)]
enum Trainer {
    /// In the queue, pending or running; `requeued` after a stop that Slurm reruns.
    Queued {
        requeued: bool,
    },
    Running {
        requeued: bool,
    },
    /// Trained to the end (exit 0).
    Done,
    /// SIGTERM made it checkpoint (exit 75) and Slurm did not requeue it (a time limit):
    /// `voxflow submit --train` again resumes from the checkpoint.
    Stopped,
    /// Any other exit code.
    Failed(i32),
    /// Out of the queue without an exit record: cancelled before it started, or killed
    /// (SIGKILL, node failure).
    Ended,
}

/// The trainer's state from its queue state (one `squeue`) and its exit records.
fn trainer_state(queued: Option<&str>, exits: &[(i32, String, u32)]) -> Trainer {
    let requeued = !exits.is_empty();
    match (queued, exits.last()) {
        (Some("running"), _) => Trainer::Running { requeued },
        (Some(_), _) => Trainer::Queued { requeued },
        (None, Some((0, ..))) => Trainer::Done,
        (None, Some((75, ..))) => Trainer::Stopped,
        (None, Some((code, ..))) => Trainer::Failed(*code),
        (None, None) => Trainer::Ended,
    }
}

impl Trainer {
    fn name(&self) -> &'static str {
        match self {
            Trainer::Queued { requeued: false } => "queued",
            Trainer::Queued { requeued: true } => "requeued",
            Trainer::Running { .. } => "running",
            Trainer::Done => "done",
            Trainer::Stopped => "stopped",
            Trainer::Failed(_) => "failed",
            Trainer::Ended => "ended",
        }
    }
    fn active(&self) -> bool {
        matches!(self, Trainer::Queued { .. } | Trainer::Running { .. })
    }
    /// What the exit records add.
    fn detail(&self, exits: &[(i32, String, u32)]) -> String {
        let stops = exits.iter().filter(|e| e.0 == 75).count();
        let earlier = if stops > 0 && self.active() {
            format!("; checkpointed and requeued {stops} time(s)")
        } else {
            String::new()
        };
        match self {
            Trainer::Failed(code) => format!("; failed with exit code {code}"),
            Trainer::Stopped => "; stopped at a checkpoint (exit 75) and not requeued: \
                                 submit --train again to resume"
                .into(),
            Trainer::Ended => "; ended without an exit record (cancelled or killed)".into(),
            _ => earlier,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exits(codes: &[i32]) -> Vec<(i32, String, u32)> {
        codes
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, "42".to_string(), i as u32))
            .collect()
    }

    #[test]
    fn trainer_state_from_queue_and_exit_records() {
        assert_eq!(
            trainer_state(Some("queued"), &[]),
            Trainer::Queued { requeued: false }
        );
        // A requeued job is pending again after its checkpoint exit: not failed, not ended.
        let t = trainer_state(Some("queued"), &exits(&[75]));
        assert_eq!(t, Trainer::Queued { requeued: true });
        assert!(t.active() && t.detail(&exits(&[75])).contains("requeued 1 time"));
        assert_eq!(
            trainer_state(None, &exits(&[75, 0])),
            Trainer::Done,
            "the last exit counts"
        );
        let t = trainer_state(None, &exits(&[2]));
        assert_eq!(t, Trainer::Failed(2));
        assert!(!t.active() && t.detail(&exits(&[2])).contains("exit code 2"));
        assert_eq!(trainer_state(None, &exits(&[75])), Trainer::Stopped);
        assert_eq!(trainer_state(None, &[]), Trainer::Ended);
    }

    #[test]
    fn exit_history_skips_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(EXITS),
            "75 12 0 1700000000\n0 12 1 1700000100\n1 1",
        )
        .unwrap();
        assert_eq!(
            exit_history(d.path()),
            vec![(75, "12".into(), 0), (0, "12".into(), 1)]
        );
    }
}
