//! `voxflow submit --slurm`, `voxflow status`: error paths against fake sbatch/squeue
//! scripts on PATH, and (with `VOXFLOW_SLURM=1`, a real controller: .ci/slurm-up.sh) a
//! real array job compared with the local `voxflow run --cases`, resumed after fixes
//! and after `scancel`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{
    assert_same_files, compare_cases_with_two_bad, fix_the_two_bad, modified, read_json, run_cases,
    sparse_server_graph, text, voxflow, voxflow_env,
};

/// A folder of fake Slurm commands (`name` -> shell body) to use as the whole PATH.
fn fake_bin(dir: &Path, scripts: &[(&str, &str)]) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, body) in scripts {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// A graph that makes a small phantom per case (`seed` param): quick, and a
/// non-number seed fails validation as a case's own mistake.
const MAKE_GRAPH: &str = r#"Graph(name: "make", params: {"seed": None}, nodes: {
  "p": (node: "Phantom", params: (seed: "${seed}", dims: (32, 32, 4))),
  "t": (node: "SaveNifti", inputs: (volume: "p.truth"), params: (path: "truth.nii.gz")),
})
"#;

fn small_submission(d: &Path) {
    std::fs::write(d.join("make.ron"), MAKE_GRAPH).unwrap();
    std::fs::write(d.join("cases.tsv"), "case\tseed\nc1\t1\nc2\t2\n").unwrap();
}

const SUBMIT: [&str; 7] = [
    "submit",
    "make.ron",
    "--cases",
    "cases.tsv",
    "--slurm",
    "--out",
    "out",
];

#[test]
fn missing_sbatch_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_submission(d);
    let bin = fake_bin(d, &[]);
    let o = voxflow_env(&SUBMIT, d, &[("PATH", bin.to_str().unwrap())]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("`sbatch` not found on PATH"), "{t}");
    assert!(!d.join("out/summary.csv").exists());
}

#[test]
fn refused_submit_prints_sbatchs_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_submission(d);
    let bin = fake_bin(
        d,
        &[(
            "sbatch",
            "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
        )],
    );
    let mut args = SUBMIT.to_vec();
    args.extend(["--partition", "nosuch"]);
    let o = voxflow_env(&args, d, &[("PATH", bin.to_str().unwrap())]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("Slurm refused the job") && t.contains("Invalid partition name specified"),
        "{t}"
    );
}

#[test]
fn unreachable_controller_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_submission(d);
    let bin = fake_bin(
        d,
        &[
            ("sbatch", "exec /bin/sleep 60"),
            ("scontrol", "exec /bin/sleep 60"),
        ],
    );
    let t0 = Instant::now();
    let o = voxflow_env(
        &SUBMIT,
        d,
        &[
            ("PATH", bin.to_str().unwrap()),
            ("VOXFLOW_SLURM_TIMEOUT", "1"),
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("did not answer within 1 s"), "{t}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

#[test]
fn status_reads_one_squeue_and_the_exit_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("make.ron"), MAKE_GRAPH).unwrap();
    std::fs::write(
        d.join("cases.tsv"),
        "case\tseed\nc1\t1\nc2\t2\nc3\t3\nc4\t4\n",
    )
    .unwrap();
    let log = d.join("calls.txt");
    let bin = fake_bin(
        d,
        &[
            (
                "sbatch",
                &format!("echo sbatch \"$@\" >> {}; echo 42", log.display()),
            ),
            (
                "squeue",
                &format!(
                    "echo squeue \"$@\" >> {}; echo '42_0 R x'; echo '42_1 PD x'",
                    log.display()
                ),
            ),
        ],
    );
    let path = [("PATH", bin.to_str().unwrap())];
    let o = voxflow_env(&SUBMIT, d, &path);
    assert!(o.status.success(), "{}", text(&o));
    let tasks = d.join("out/.voxflow-slurm/tasks");
    std::fs::write(tasks.join("2.exit"), "0\n").unwrap();
    let o = voxflow_env(&["status", "out"], d, &path);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let state = |case: &str| -> String {
        t.lines()
            .find(|l| l.starts_with(case))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        [state("c1"), state("c2"), state("c3"), state("c4")],
        ["running", "queued", "done", "missing"],
        "{t}"
    );
    // One squeue per poll, for the cases and the gather job.
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls.lines().filter(|l| l.starts_with("squeue")).count(), 1);
    // --resume resubmits only the missing case (c1, c2 are in the queue, c3 done).
    let o = voxflow_env(&["submit", "--slurm", "--resume", "out"], d, &path);
    assert!(o.status.success(), "{}", text(&o));
    let script = std::fs::read_to_string(d.join("out/.voxflow-slurm/array-1-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=3\n"), "{script}");
}

#[test]
fn dry_run_prints_scripts_and_writes_a_nomad_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_submission(d);
    // No Slurm at all: a dry run needs none.
    let bin = fake_bin(d, &[]);
    let mut args = SUBMIT.to_vec();
    args.extend([
        "--dry-run",
        "--partition",
        "gpu",
        "--time",
        "0:10:00",
        "--mem",
        "2G",
        "--cpus-per-task",
        "2",
        "--max-parallel",
        "3",
        "--sbatch-arg=--gres=gpu:1",
    ]);
    let o = voxflow_env(&args, d, &[("PATH", bin.to_str().unwrap())]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "#SBATCH --array=0-1%3",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=0:10:00",
        "#SBATCH --mem=2G",
        "#SBATCH --cpus-per-task=2",
        "--gres=gpu:1",
        "slurm task",
        "#SBATCH --dependency=afterany:",
        "slurm gather",
    ] {
        assert!(t.contains(want), "missing {want}:\n{t}");
    }
    assert!(!d.join("out/.voxflow-slurm/tasks").exists());
    let hcl = std::fs::read_to_string(d.join("out/.voxflow-slurm/nomad.hcl")).unwrap();
    // Structure: one batch job, parameterized by the case index, one task running the
    // same command as a Slurm array task, with its resources; braces balanced.
    let job = hcl.lines().find(|l| l.starts_with("job ")).unwrap();
    assert!(
        job.starts_with("job \"voxflow-make-") && job.ends_with('{'),
        "{hcl}"
    );
    for want in [
        "type = \"batch\"",
        "parameterized {",
        "meta_required = [\"case_index\"]",
        "group \"case\" {",
        "task \"voxflow\" {",
        "args    = [\"slurm\", \"task\",",
        "\"${NOMAD_META_case_index}\"]",
        "cpu    = 2000",
    ] {
        assert!(hcl.contains(want), "missing {want}:\n{hcl}");
    }
    assert_eq!(hcl.matches('{').count(), hcl.matches('}').count(), "{hcl}");
}

#[test]
fn submit_inside_a_slurm_job_warns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_submission(d);
    let bin = fake_bin(d, &[]);
    let mut args = SUBMIT.to_vec();
    args.push("--dry-run");
    let o = voxflow_env(
        &args,
        d,
        &[("PATH", bin.to_str().unwrap()), ("SLURM_JOB_ID", "77")],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("warning: voxflow submit runs inside Slurm job 77"),
        "{t}"
    );
}

// ---- With a real Slurm controller (VOXFLOW_SLURM=1) ----

fn slurm(test: &str) -> bool {
    if std::env::var("VOXFLOW_SLURM").as_deref() != Ok("1") {
        voxflow_nodes::testdata::skip(
            test,
            "VOXFLOW_SLURM is not 1 (start a controller with .ci/slurm-up.sh)",
        );
        return false;
    }
    true
}

/// Poll `voxflow status` until nothing is queued or running and the gather job is gone
/// (for a training submission: the server, the trainer and its presegment array).
fn wait_idle(d: &Path, out: &str, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let o = voxflow(&["status", out], d);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let last = t.lines().last().unwrap_or("").to_string();
        if !last.contains("queued") && !last.contains("running") && !last.contains("pending") {
            return t;
        }
        assert!(t0.elapsed() < limit, "still busy after {limit:?}:\n{t}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The batch summaries a Slurm array and the local run of the same cases both write.
const SUMMARIES: &[&str] = &["summary.csv", "summary_stats.csv"];

fn counts(status: &str) -> String {
    status
        .lines()
        .last()
        .unwrap()
        .split_once(": ")
        .unwrap()
        .1
        .to_string()
}

#[test]
fn slurm_array_matches_the_local_batch_and_resumes_only_what_failed() {
    if !slurm("slurm_array_matches_the_local_batch_and_resumes_only_what_failed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // c1..c4 good, c5: a missing file; c6: a truncated .nii.gz.
    compare_cases_with_two_bad(d, 4);

    let local = run_cases(d, "compare.ron", "local", &[]);
    assert_eq!(local.status.code(), Some(1), "{}", text(&local));

    let t0 = Instant::now();
    let o = voxflow(
        &[
            "submit",
            "compare.ron",
            "--cases",
            "cases.tsv",
            "--slurm",
            "--max-parallel",
            "2",
            "--cpus-per-task",
            "1",
            "--time",
            "0:05:00",
            "--out",
            "out",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let status = wait_idle(d, "out", Duration::from_secs(180));
    eprintln!("6-case array + gather: {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(counts(&status), "4 done, 2 failed", "{status}");
    assert_same_files(&d.join("out"), &d.join("local"), SUMMARIES);
    let json = read_json(&d.join("out/summary.json"));
    let failed: Vec<&str> = json["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["case"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["c5", "c6"], "{json}");
    for c in ["c5", "c6"] {
        let rec = std::fs::read_to_string(d.join(format!("out/{c}/failed/a.txt"))).unwrap();
        assert!(
            rec.contains("type: LoadLabels") && rec.contains("re-run:"),
            "{rec}"
        );
    }
    let prov = read_json(&d.join("out/c3/provenance.json"));
    assert_eq!(
        (prov["status"].as_str(), prov["case"].as_str()),
        (Some("ok"), Some("c3"))
    );

    // Fix the two; --resume resubmits only them.
    fix_the_two_bad(d, 4);
    let before = modified(&d.join("out/c3/provenance.json"));
    let o = voxflow(&["submit", "--slurm", "--resume", "out"], d);
    assert!(o.status.success(), "{}", text(&o));
    let spec = read_json(&d.join("out/.voxflow-slurm/submit.json"));
    assert_eq!(spec["arrays"][1]["indices"], serde_json::json!([4, 5]));
    let status = wait_idle(d, "out", Duration::from_secs(120));
    assert_eq!(counts(&status), "6 done", "{status}");
    assert_eq!(modified(&d.join("out/c3/provenance.json")), before);
    let local = run_cases(d, "compare.ron", "local", &["--resume"]);
    assert!(local.status.success(), "{}", text(&local));
    assert_same_files(&d.join("out"), &d.join("local"), SUMMARIES);
    assert!(!d.join("out/c6/failed").exists());
}

/// A case slow enough to cancel while it runs: the reference Dilation over a phantom.
const SLOW_GRAPH: &str = r#"Graph(name: "slow", params: {"seed": None}, nodes: {
  "p": (node: "Phantom", params: (seed: "${seed}", dims: (256, 256, 96))),
  "m": (node: "SelectLabel", inputs: (labels: "p.truth"), params: (labels: [1])),
  "d": (node: "Dilation", inputs: (mask: "m"), params: (kernel: (11, 11, 5))),
  "t": (node: "SaveNifti", inputs: (volume: "d"), params: (path: "dil.nii.gz")),
})
"#;

#[test]
fn scancel_of_a_running_task_then_resume_completes_it() {
    if !slurm("scancel_of_a_running_task_then_resume_completes_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("slow.ron"), SLOW_GRAPH).unwrap();
    std::fs::write(d.join("cases.tsv"), "case\tseed\nk1\t1\n").unwrap();
    let o = voxflow(
        &[
            "submit",
            "slow.ron",
            "--cases",
            "cases.tsv",
            "--slurm",
            "--impl",
            "Dilation=naive",
            "--cpus-per-task",
            "1",
            "--out",
            "out",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let spec = read_json(&d.join("out/.voxflow-slurm/submit.json"));
    let job = spec["arrays"][0]["job"].as_str().unwrap().to_string();
    // Wait until the task runs (its heartbeat is written as it starts), then cancel it.
    let t0 = Instant::now();
    while !d.join("out/.voxflow-slurm/tasks/0.heartbeat").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = Command::new("scancel")
        .arg(format!("{job}_0"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let status = wait_idle(d, "out", Duration::from_secs(60));
    // Slurm signals the script and voxflow together: usually no exit record is left
    // (missing); a script that outlives its child by a moment records 143 (failed).
    // Either way the case is resubmitted.
    assert!(
        ["1 missing", "1 failed"].contains(&counts(&status).as_str()),
        "{status}"
    );
    assert!(!d.join("out/k1/provenance.json").exists());
    let json = read_json(&d.join("out/summary.json"));
    assert_eq!(json["failed"][0]["case"], "k1", "{json}");

    let o = voxflow(&["submit", "--slurm", "--resume", "out"], d);
    assert!(o.status.success(), "{}", text(&o));
    let status = wait_idle(d, "out", Duration::from_secs(120));
    assert_eq!(counts(&status), "1 done", "{status}");
    let prov = read_json(&d.join("out/k1/provenance.json"));
    assert_eq!(prov["status"], "ok");
}

// ---- Training: `voxflow submit SERVER_GRAPH --train --slurm` ----

/// One training submission at a time: each holds a CPU for its server while its trainer
/// needs another, and two on a 2-CPU node would wait for each other forever.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn training_slot() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cancels a training submission's jobs when the test ends, passed or not: a failed
/// test leaves nothing holding the node for the next one.
struct CancelJobs(PathBuf);

impl Drop for CancelJobs {
    fn drop(&mut self) {
        let read = |p: PathBuf| -> serde_json::Value {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default()
        };
        let train = read(self.0.join(".voxflow-slurm/train.json"));
        let pre = read(self.0.join("train/presegment/.voxflow-slurm/submit.json"));
        let mut jobs: Vec<String> = [&train["server_job"], &train["train_job"], &pre["gather"]]
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        for a in pre["arrays"].as_array().into_iter().flatten() {
            jobs.extend(a["job"].as_str().map(String::from));
        }
        if !jobs.is_empty() {
            let _ = Command::new("scancel").args(&jobs).output();
        }
    }
}

/// What a test with a real training submission holds until it ends: its jobs are
/// cancelled first, then the slot is free for the next one.
struct TrainingTest {
    _cancel: CancelJobs,
    _slot: std::sync::MutexGuard<'static, ()>,
}

/// Takes the training slot, writes `d/serve.ron` (`steps` iterations, validated every
/// 20) and submits it with `voxflow submit serve.ron --train --slurm FLAGS... --out out`,
/// which must succeed; the jobs are cancelled when the returned guard drops.
fn submit_training(d: &Path, steps: u64, flags: &[&str]) -> TrainingTest {
    let slot = training_slot();
    let cancel = CancelJobs(d.join("out"));
    sparse_server_graph(d, steps, 20);
    let mut args = vec!["submit", "serve.ron", "--train", "--slurm"];
    args.extend(flags);
    args.extend(["--out", "out"]);
    let o = voxflow(&args, d);
    assert!(o.status.success(), "{}", text(&o));
    TrainingTest {
        _cancel: cancel,
        _slot: slot,
    }
}

#[test]
fn train_dry_run_prints_a_server_and_a_requeueable_trainer_script() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sparse_server_graph(d, 20, 20);
    let bin = fake_bin(d, &[]);
    let path = [("PATH", bin.to_str().unwrap())];
    let o = voxflow_env(
        &[
            "submit",
            "serve.ron",
            "--train",
            "--slurm",
            "--dry-run",
            "--gpu",
            "--partition",
            "cpu",
            "--train-partition",
            "gpu",
            "--time",
            "2:00:00",
            "--train-arg=--presegment",
            "--train-arg=cases.tsv",
            "--out",
            "out",
        ],
        d,
        &path,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let (server, trainer) = t.split_once("train.sbatch").unwrap();
    for want in [
        "-server\n",
        "#SBATCH --partition=cpu",
        "#SBATCH --time=2:00:00",
        "hostname > ",
        " run ",
        "--set 'server.bind=\"0.0.0.0:0\"'",
        "--set 'server.address_file=\"patch_server.addr\"'",
    ] {
        assert!(server.contains(want), "server script lacks {want}:\n{t}");
    }
    assert!(!server.contains("gres"), "{t}");
    for want in [
        "-train\n",
        "#SBATCH --dependency=after:<server job id>",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@60",
        "#SBATCH --open-mode=append",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "RESUME=--resume",
        " train --connect \"$ADDR\" --token-file ",
        "--presegment cases.tsv",
    ] {
        assert!(trainer.contains(want), "trainer script lacks {want}:\n{t}");
    }
    assert!(!d.join("out/.voxflow-slurm").exists());
    // Graphs that cannot serve one trainer are refused before anything is submitted.
    std::fs::write(
        d.join("none.ron"),
        r#"Graph(name: "n", nodes: { "p": (node: "Phantom", params: (seed: 1, dims: (32, 32, 4))) })"#,
    )
    .unwrap();
    let o = voxflow_env(
        &["submit", "none.ron", "--train", "--slurm", "--dry-run"],
        d,
        &path,
    );
    assert!(text(&o).contains("no PatchServer node"), "{}", text(&o));
    let o = voxflow_env(
        &[
            "submit",
            "serve.ron",
            "--cases",
            "x.tsv",
            "--train",
            "--slurm",
        ],
        d,
        &path,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot be used with"), "{}", text(&o));
}

/// (iteration, loss) per step; (event, iteration) per event.
type Metrics = (Vec<(u64, f64)>, Vec<(String, u64)>);

/// Per step: (iteration, loss) from `metrics.jsonl`, and the events logged.
fn metrics(run: &Path) -> Metrics {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        // A line being written is not whole yet.
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let losses = lines
        .iter()
        .filter(|v| v.get("loss").is_some())
        .map(|v| {
            (
                v["iteration"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect();
    let events = lines
        .iter()
        .filter_map(|v| Some((v["event"].as_str()?.to_string(), v["iteration"].as_u64()?)))
        .collect();
    (losses, events)
}

#[test]
fn slurm_training_requeued_resumes_from_its_checkpoint_with_the_same_loss_curve() {
    if !slurm("slurm_training_requeued_resumes_from_its_checkpoint_with_the_same_loss_curve") {
        return;
    }
    const STEPS: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t0 = Instant::now();
    let _training = submit_training(
        d,
        STEPS,
        &[
            "--cpus-per-task",
            "1",
            "--time",
            "0:10:00",
            "--train-device",
            "cpu",
            "--train-arg=-q",
        ],
    );
    let spec = read_json(&d.join("out/.voxflow-slurm/train.json"));
    let job = spec["train_job"].as_str().unwrap().to_string();
    let run = d.join("out/train");
    // Requeue the trainer mid-run: Slurm sends SIGTERM, the trainer checkpoints.
    while metrics(&run).0.len() < 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the trainer did not reach step 200"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = Command::new("scontrol")
        .args(["requeue", &job])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stopped_at = loop {
        if let Some((_, i)) = metrics(&run).1.into_iter().find(|(e, _)| e == "stopped") {
            break i;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "no checkpoint on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Slurm holds a requeued job for 120 s (BeginTime); once it is pending again, start
    // it now instead.
    while {
        let o = Command::new("squeue")
            .args(["-h", "-j", &job, "-o", "%t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim() != "PD"
    } {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the requeued job is not pending"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // That hold is what keeps a restart clear of the revoked credential of the run just
    // ended: slurmd compares times in whole seconds, so a start in the same second as the
    // revocation is refused ("Job credential revoked") and the job fails without running
    // its script. Let two seconds pass first.
    std::thread::sleep(Duration::from_secs(2));
    let o = Command::new("scontrol")
        .args(["update", &format!("JobId={job}"), "StartTime=now"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t1 = Instant::now();
    loop {
        let o = voxflow(&["status", "out"], d);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        if t.contains("server ended, trainer done") {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(240),
            "not done after requeue:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "server + trainer jobs, requeued at step {stopped_at}: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let (losses, events) = metrics(&run);
    assert!((200..STEPS).contains(&stopped_at), "{stopped_at}");
    assert_eq!(
        events,
        [
            ("start".to_string(), 0),
            ("stopped".to_string(), stopped_at),
            ("resume".to_string(), stopped_at)
        ]
    );
    let log = std::fs::read_to_string(
        d.join("out/.voxflow-slurm/logs")
            .join(format!("train-{job}.out")),
    )
    .unwrap();
    assert!(
        log.contains("start 0,") && log.contains("start 1,") && log.contains("DUE TO JOB REQUEUE"),
        "{log}"
    );
    assert!(run.join("best.vxmodel/model.json").is_file());
    let o = voxflow(&["status", "out"], d);
    assert!(
        text(&o).contains(&format!(
            "step {STEPS}, checkpoint at {STEPS}, stopped by SIGTERM 1"
        )),
        "{}",
        text(&o)
    );

    // The same training without Slurm and without interruption: the same curve, exactly.
    let server = Command::new(env!("CARGO_BIN_EXE_voxflow"))
        .args(["run", "serve.ron", "--out", "local", "-q"])
        .current_dir(d)
        .spawn()
        .unwrap();
    let addr = d.join("local/patch_server.addr");
    let t2 = Instant::now();
    while !addr.exists() {
        assert!(t2.elapsed() < Duration::from_secs(60), "local server");
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = std::fs::read_to_string(addr).unwrap();
    let o = voxflow(
        &[
            "train",
            "--connect",
            addr.trim(),
            "--token-file",
            "local/patch_server.token",
            "--out",
            "ref",
            "--device",
            "cpu",
            "-q",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success());
    let reference = metrics(&d.join("ref")).0;
    assert_eq!(reference.len() as u64, STEPS);
    assert_eq!(losses, reference);
}

// ---- Presegmentation after training, and a failed trainer ----

/// Phantom CTs `c<seed>` as NIfTI files under `d/data/`, and a case file naming them.
fn ct_cases(d: &Path, seeds: &[u64]) {
    let mut tsv = String::from("case\tct\n");
    for s in seeds {
        let dir = d.join(format!("data/c{s}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ct.ron"),
            format!(
                r#"Graph(name: "ct", nodes: {{
            "p": (node: "Phantom", params: (seed: {s}, dims: (64, 48, 4))),
            "s": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
        }})"#
            ),
        )
        .unwrap();
        let o = voxflow(&["run", "ct.ron", "--out", ".", "-q"], &dir);
        assert!(o.status.success(), "{}", text(&o));
        tsv.push_str(&format!("c{s}\t{}\n", dir.join("ct.nii.gz").display()));
    }
    std::fs::write(d.join("cases.tsv"), tsv).unwrap();
}

#[test]
fn train_dry_run_with_presegment_prints_an_array_after_the_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sparse_server_graph(d, 20, 20);
    std::fs::write(
        d.join("cases.tsv"),
        "case\tct\nc1\tc1.nii.gz\nc2\tc2.nii.gz\n",
    )
    .unwrap();
    let bin = fake_bin(d, &[]);
    let path = [("PATH", bin.to_str().unwrap())];
    let args = [
        "submit",
        "serve.ron",
        "--train",
        "--slurm",
        "--dry-run",
        "--max-parallel",
        "2",
        "--presegment",
        "cases.tsv",
        "--out",
        "out",
    ];
    let o = voxflow_env(&args, d, &path);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let (jobs, presegment) = t
        .split_once("presegment/.voxflow-slurm/array-0-0.sbatch")
        .unwrap();
    let (server, trainer) = jobs.split_once("train.sbatch").unwrap();
    // The server stops once its trainer has ended; the trainer's exits are recorded.
    for want in ["trainer_ended", "train.job", "squeue -h -t all -j"] {
        assert!(server.contains(want), "server script lacks {want}:\n{t}");
    }
    for want in ["train.exits", "finish \"$rc\"", "kill -TERM \"$pid\""] {
        assert!(trainer.contains(want), "trainer script lacks {want}:\n{t}");
    }
    let (array, gather) = presegment.split_once("gather-0.sbatch").unwrap();
    for want in [
        "-presegment\n",
        "#SBATCH --array=0-1%2",
        "#SBATCH --dependency=afterok:<trainer job id>",
        "#SBATCH --kill-on-invalid-dep=yes",
        " slurm task ",
        "out/train/presegment",
    ] {
        assert!(array.contains(want), "presegment array lacks {want}:\n{t}");
    }
    assert!(gather.contains("-presegment-gather\n") && gather.contains("--dependency=afterany:"));
    assert!(!d.join("out/.voxflow-slurm").exists() && !d.join("out/train").exists());
    // A case file the presegment graph cannot run is refused before anything is submitted.
    std::fs::write(d.join("bad.tsv"), "case\timage\nc1\tc1.nii.gz\n").unwrap();
    let mut bad = args;
    bad[8] = "bad.tsv";
    let o = voxflow_env(&bad, d, &path);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--presegment bad.tsv: case `c1` does not validate"),
        "{}",
        text(&o)
    );
}

#[test]
fn slurm_training_then_presegment_array_matches_a_local_presegment_run() {
    if !slurm("slurm_training_then_presegment_array_matches_a_local_presegment_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ct_cases(d, &[5, 6, 7]);
    let t0 = Instant::now();
    let _training = submit_training(
        d,
        40,
        &[
            "--cpus-per-task",
            "1",
            "--train-device",
            "cpu",
            "--presegment",
            "cases.tsv",
        ],
    );
    let t = wait_idle(d, "out", Duration::from_secs(180));
    eprintln!(
        "training (40 steps) + presegment array (3 cases) + gather through Slurm: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let last = t.lines().last().unwrap();
    assert!(
        last.contains("server ended, trainer done") && last.ends_with("-presegment: 3 done"),
        "{t}"
    );
    // The same model over the same cases without Slurm, as `voxflow train --presegment`
    // runs it: the same label volumes, statistics and summary, byte for byte.
    let model = d.join("out/train/best.vxmodel");
    let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("../graphs/presegment.ron");
    let o = voxflow(
        &[
            "run",
            graph.to_str().unwrap(),
            "--cases",
            "cases.tsv",
            "--set",
            &format!("model={}", model.display()),
            "--out",
            "local",
            "-q",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let slurm = d.join("out/train/presegment");
    for c in ["c5", "c6", "c7"] {
        assert_same_files(
            &d.join("local").join(c),
            &slurm.join(c),
            &[
                "presegment_labels.nii.gz",
                "unet_labels.nii.gz",
                "presegment_stats.csv",
            ],
        );
        let prov = std::fs::read_to_string(slurm.join(c).join("provenance.json")).unwrap();
        assert!(prov.contains("best.vxmodel"), "{prov}");
    }
    assert_same_files(&d.join("local"), &slurm, SUMMARIES);
}

#[test]
fn slurm_failed_trainer_stops_its_server_and_cancels_the_presegment_array() {
    if !slurm("slurm_failed_trainer_stops_its_server_and_cancels_the_presegment_array") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ct_cases(d, &[5]);
    let _training = submit_training(
        d,
        40,
        &[
            "--train-device",
            "cpu",
            "--train-arg=--no-such-option",
            "--presegment",
            "cases.tsv",
        ],
    );
    let spec = read_json(&d.join("out/.voxflow-slurm/train.json"));
    let server = spec["server_job"].as_str().unwrap();
    let t0 = Instant::now();
    // The server job waits for its trainer; once the trainer has failed it leaves the
    // queue within its watch interval (10 s) and a scheduler pass.
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-j", server, "-t", "PD,CF,R,CG", "-o", "%t"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server job {server} still runs after its trainer failed"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "server job gone {:.1} s after submission",
        t0.elapsed().as_secs_f64()
    );
    let t = wait_idle(d, "out", Duration::from_secs(90));
    assert!(
        t.contains("failed with exit code 2") && t.contains("trainer failed"),
        "{t}"
    );
    let log = std::fs::read_to_string(
        d.join("out/.voxflow-slurm/logs")
            .join(format!("server-{server}.out")),
    )
    .unwrap();
    assert!(
        log.contains("has ended: stopping the patch server"),
        "{log}"
    );
    // The presegment array never ran: Slurm cancelled it (afterok can never be met).
    assert!(t.contains("-presegment: 1 missing"), "{t}");
    assert!(!d.join("out/train/presegment/c5").exists());
}
