//! `voxflow train` against a PatchServer in another process: the two-machine setup, on
//! loopback. Includes the SIGKILL-then-resume check.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{repo, start_patch_server, start_server_graph, text, voxflow};

fn start_server(dir: &Path, iterations: u64) -> (Child, String) {
    start_patch_server(dir, iterations, 20)
}

fn trainer(dir: &Path, addr: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxflow"));
    c.args([
        "train",
        "--connect",
        addr,
        "--token-file",
        dir.join("server/patch_server.token").to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
    ])
    .args(extra);
    c
}

fn checkpoint_iteration(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["iteration"].as_u64()
}

#[test]
fn sigkill_then_resume_continues_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), 400);
    let run = dir.path().join("run");
    let mut t = trainer(dir.path(), &addr, &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let checkpoint = loop {
        if let Some(i) = checkpoint_iteration(&run).filter(|&i| i >= 40) {
            break Some(i);
        }
        if start.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = t.kill(); // SIGKILL
    let _ = t.wait();
    let killed_at = checkpoint.expect("a checkpoint within 120 s");
    let done_before: u64 = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .count() as u64;
    assert!(killed_at < 400, "killed too late ({killed_at})");
    // The killed trainer does not end the service; resume continues the same run.
    let out = trainer(dir.path(), &addr, &["--resume"])
        .env("VOXFLOW_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["iterations"], 400);
    let resumed_from = 400 - summary["steps_run"].as_u64().unwrap();
    assert!(resumed_from >= killed_at, "{resumed_from} < {killed_at}");
    // At most one validation period of work is lost.
    assert!(
        done_before - resumed_from <= 20,
        "{done_before} - {resumed_from}"
    );
    // Every step appears once in metrics.jsonl, in order.
    let steps: Vec<u64> = loss_curve(&run).iter().map(|s| s.0).collect();
    assert_eq!(steps, (1..=400).collect::<Vec<_>>());
    // logs.jsonl: both processes' lines, numbered on (the resume continues the
    // sequence), with a progress line per step of the resumed run (-q prints none).
    let logs: Vec<serde_json::Value> = std::fs::read_to_string(run.join("logs.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut seqs: Vec<u64> = logs.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), logs.len(), "sequence numbers repeat");
    let progress: Vec<&str> = logs
        .iter()
        .filter(|v| v["source"] == "progress")
        .map(|v| v["message"].as_str().unwrap())
        .collect();
    assert!(progress.len() as u64 >= 400 - resumed_from, "{progress:?}");
    assert!(progress
        .iter()
        .any(|l| l.starts_with("step 400/400: loss ") && l.contains("steps/s, ETA 0 s")));
    assert!(run.join("best.vxmodel/model.json").is_file());
    assert!(run.join("loss.png").is_file());
    // The trainer said Bye, so the standalone server finishes on its own.
    server_ends_by_itself(&mut server, Duration::from_secs(30));
}

/// Waits up to `within` for the server process to end, and checks it ended well.
fn server_ends_by_itself(server: &mut Child, within: Duration) {
    let t = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "server exit {status}");
            return;
        }
        assert!(
            t.elapsed() < within,
            "server did not finish within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every record of a finished run's `metrics.jsonl` (each line must be whole JSON).
fn metrics_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Per step: (iteration, loss) from `metrics.jsonl`.
fn loss_curve(run: &Path) -> Vec<(u64, f64)> {
    metrics_records(run)
        .into_iter()
        .filter(|v| v.get("loss").is_some())
        .map(|v| {
            (
                v["iteration"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn sigterm_checkpoints_and_resume_continues_the_same_loss_curve() {
    const STEPS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (whole, stopped) = (dir.path().join("whole"), dir.path().join("stopped"));
    std::fs::create_dir_all(&whole).unwrap();
    std::fs::create_dir_all(&stopped).unwrap();
    // The reference: the same training, never interrupted (its own server, at once).
    let (mut server_w, addr_w) = start_server(&whole, STEPS);
    let reference = trainer(&whole, &addr_w, &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut server_s, addr_s) = start_server(&stopped, STEPS);
    let run = stopped.join("run");
    let mut t = trainer(&stopped, &addr_s, &[])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // SIGTERM between two periodic checkpoints (every 20 steps).
    let start = Instant::now();
    while !std::fs::read_to_string(run.join("metrics.jsonl"))
        .is_ok_and(|m| m.matches("\"loss\"").count() >= 30)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no 30 steps in 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(t.id() as i32, libc::SIGTERM) }, 0);
    let status = t.wait().unwrap();
    assert_eq!(status.code(), Some(75), "{status:?}");
    let stopped_at = checkpoint_iteration(&run).unwrap();
    let done = loss_curve(&run);
    // The checkpoint holds every finished step (31 or so), not the last periodic one (20).
    assert_eq!(done.last().map(|s| s.0), Some(stopped_at));
    assert!((30..STEPS).contains(&stopped_at), "stopped at {stopped_at}");
    let out = trainer(&stopped, &addr_s, &["--resume"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps_run"], STEPS - stopped_at);
    let reference = reference.wait_with_output().unwrap();
    assert!(reference.status.success());
    // Batch k is a pure function of the seed and k, and the checkpoint holds weights and
    // Adam moments: the resumed curve is the uninterrupted one, step for step.
    let (a, b) = (loss_curve(&whole.join("run")), loss_curve(&run));
    assert_eq!(a.len() as u64, STEPS);
    assert_eq!(a, b);
    let stop_events: Vec<u64> = metrics_records(&run)
        .into_iter()
        .filter(|v| v["event"] == "stopped")
        .map(|v| v["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(stop_events, [stopped_at]);
    for s in [&mut server_w, &mut server_s] {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// The shipped server-only graph (what docs/cluster.md submits) serves a trainer in
/// another process, and ends when the trainer is done.
#[test]
fn the_shipped_serve_graph_trains_a_trainer_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let graph = repo().join("graphs/serve.ron");
    let (mut server, addr) =
        start_server_graph(dir.path(), &graph, &["iterations=12", "validate_every=6"]);
    let out = trainer(dir.path(), &addr, &[]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let records = metrics_records(&dir.path().join("run"));
    let losses = records.iter().filter(|v| v.get("loss").is_some()).count();
    let validations: Vec<u64> = records
        .iter()
        .filter(|v| v.get("mean_dice").is_some())
        .filter_map(|v| v["iteration"].as_u64())
        .collect();
    assert_eq!(losses, 12, "{records:?}");
    assert_eq!(validations, [0, 6, 12], "validate_every reaches the config");
    assert!(dir.path().join("run/best.vxmodel/model.json").exists());
    // Its trainer done, the server's run ends by itself, successfully.
    server_ends_by_itself(&mut server, Duration::from_secs(60));
}

#[test]
fn a_wrong_token_and_a_missing_token_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), 20);
    let bad = dir.path().join("bad.token");
    std::fs::write(&bad, "nope\n").unwrap();
    let out_dir = dir.path().join("r");
    let out_dir = out_dir.to_str().unwrap();
    let out = voxflow(
        &[
            "train",
            "--connect",
            &addr,
            "--token-file",
            bad.to_str().unwrap(),
            "--out",
            out_dir,
            "--device",
            "cpu",
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("wrong token"), "{err}");
    let out = voxflow(
        &[
            "train",
            "--connect",
            &addr,
            "--token-file",
            "/nonexistent/t",
            "--out",
            out_dir,
        ],
        dir.path(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/t"), "{err}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn presegment_runs_the_best_model_over_a_case_file_after_training() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(dir.path(), 20);
    // One phantom CT as a NIfTI file, and a case file naming it.
    let g = dir.path().join("ct.ron");
    std::fs::write(
        &g,
        r#"Graph(name: "ct", nodes: {
            "p": (node: "Phantom", params: (seed: 5, dims: (64, 48, 4))),
            "s": (node: "SaveNifti", inputs: (volume: "p.ct"), params: (path: "ct.nii.gz")),
        })"#,
    )
    .unwrap();
    let out = voxflow(
        &[
            "run",
            g.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
            "-q",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let cases = dir.path().join("cases.tsv");
    std::fs::write(&cases, "case\tct\np5\tct.nii.gz\n").unwrap();
    let out = trainer(
        dir.path(),
        &addr,
        &["--presegment", cases.to_str().unwrap()],
    )
    .current_dir(repo())
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let case = dir.path().join("run/presegment/p5");
    for f in [
        "presegment_labels.nii.gz",
        "unet_labels.nii.gz",
        "provenance.json",
    ] {
        assert!(case.join(f).is_file(), "{f} missing");
    }
    let prov = std::fs::read_to_string(case.join("provenance.json")).unwrap();
    assert!(prov.contains("best.vxmodel"), "{prov}");
    let _ = server.kill();
    let _ = server.wait();
}
