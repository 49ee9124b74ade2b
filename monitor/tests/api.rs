//! The monitor's HTTP API on a real loopback server: run list, decimated and raw series,
//! SSE resume with Last-Event-ID, "load more" over 2 x 100k tied-timestamp log lines,
//! and the token.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use voxflow_monitor::logs::RunLog;
use voxflow_monitor::server::{self, Monitor};

/// A server over `dir` on 127.0.0.1:0 (its own runtime thread); its base URL.
fn start(dir: &Path, token: Option<&str>) -> String {
    let m = Monitor::new(dir, token.map(str::to_string)).unwrap();
    start_monitor(m)
}

fn start_monitor(m: Arc<Monitor>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            server::serve_on(m, l).await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    format!("http://{addr}")
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(20))
        .build()
}

fn get(url: &str) -> Value {
    agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .into_json()
        .unwrap()
}

fn status(url: &str, header: Option<(&str, &str)>) -> u16 {
    let mut req = agent().get(url);
    if let Some((k, v)) = header {
        req = req.set(k, v);
    }
    match req.call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Append JSON lines to a file.
fn append(path: &Path, lines: &[Value]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn start_record(event: &str, iteration: u64, device: &str, lr: f64) -> Value {
    json!({"iteration": iteration, "event": event, "config_hash": "c", "device": device,
           "utc": format!("t{iteration}"), "run_id": "r", "hyper": {"learning_rate": lr, "seed": 1}})
}

/// A loss curve with spikes, `(step, loss)` for steps 1..=n.
fn spiky(n: u64) -> Vec<(f64, f64)> {
    (1..=n)
        .map(|i| {
            let mut y = 1.0 / (1.0 + i as f64 / 500.0) + 0.01 * ((i * 7919) % 13) as f64;
            if i % 25_013 == 0 {
                y += 10.0;
            }
            (i as f64, y)
        })
        .collect()
}

/// Equal up to JSON's decimal round trip (serde_json parses within an ulp or two).
fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
}

fn step_line(p: (f64, f64)) -> Value {
    json!({"iteration": p.0 as u64, "loss": p.1, "ce": 0.1, "dice_loss": 0.2})
}

/// The steps (x values) of run `.` that metrics events carry, in order.
fn steps_of(evs: &[(String, String, Value)]) -> Vec<f64> {
    evs.iter()
        .flat_map(|e| {
            e.2["."]["x"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
        })
        .collect()
}

/// Events from an SSE response until `done` says so: `(id, event, data)`.
fn sse(
    url: &str,
    last_id: Option<&str>,
    mut done: impl FnMut(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let mut req = agent().get(url);
    if let Some(id) = last_id {
        req = req.set("Last-Event-ID", id);
    }
    let resp = req.call().unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.content_type(), "text/event-stream");
    let mut r = BufReader::new(resp.into_reader());
    let mut events = Vec::new();
    let (mut id, mut ev, mut data) = (String::new(), String::new(), String::new());
    let t = Instant::now();
    let mut line = String::new();
    while !done(&events) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "SSE: timed out with {} events",
            events.len()
        );
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() {
                events.push((id.clone(), ev.clone(), serde_json::from_str(&data).unwrap()));
            }
            data.clear();
            ev.clear();
        } else if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("event:") {
            ev = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    events
}

#[test]
fn run_list_and_series_decimated_and_raw() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    let pts = spiky(200_000);
    let mut lines = vec![start_record("start", 0, "cpu", 1e-3)];
    lines.push(
        json!({"iteration": 0, "validation": {"wall": 0.1}, "mean_dice": 0.1, "best": false}),
    );
    lines.extend(pts.iter().map(|&p| step_line(p)));
    lines.push(
        json!({"iteration": 200_000, "validation": {"wall": 0.7}, "mean_dice": 0.7, "best": true}),
    );
    append(&a.join("metrics.jsonl"), &lines);
    let b = dir.path().join("group/b");
    let log = RunLog::default();
    log.open(&b.join("logs.jsonl")).unwrap();
    log.record("info", "stdout", "hello");
    log.close();
    let base = start(dir.path(), None);

    let runs = get(&format!("{base}/api/runs"));
    let names: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "group/b"]);
    assert_eq!(runs[0]["step"], 200_000.0);
    assert_eq!(runs[0]["points"], 200_000);
    assert_eq!(runs[0]["best_dice"], 0.7);
    assert_eq!(runs[1]["log_lines"], 1);

    let s = get(&format!("{base}/api/series?run=a&max=2000"));
    let r = &s["runs"]["a"];
    let xs = r["x"].as_array().unwrap();
    let ys = r["loss"].as_array().unwrap();
    assert!(xs.len() <= 2000 && xs.len() >= 1000, "{} points", xs.len());
    assert_eq!(r["total"], 200_000);
    assert_eq!(r["raw"], false);
    // Every spike is in the decimated curve, with its exact value.
    for p in pts.iter().filter(|p| p.1 > 5.0) {
        let i = xs
            .iter()
            .position(|x| x.as_f64() == Some(p.0))
            .unwrap_or_else(|| panic!("spike at {} dropped", p.0));
        close(ys[i].as_f64().unwrap(), p.1);
    }
    assert_eq!(r["validations"].as_array().unwrap().len(), 2);
    assert_eq!(r["sessions"][0]["event"], "start");
    // The answer is complete up to the metrics sequence: 1 start + 2 validations + points.
    assert_eq!(s["seq"], 200_003);

    // Zoomed: the raw points of the range, exactly.
    let z = get(&format!(
        "{base}/api/series?run=a&from=1000&to=2999&max=4000"
    ));
    let z = &z["runs"]["a"];
    assert_eq!(z["raw"], true);
    let want: Vec<f64> = pts[999..2999].iter().map(|p| p.1).collect();
    let got: Vec<f64> = z["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        close(*g, *w);
    }
    assert_eq!(z["x"][0], 1000.0);

    assert_eq!(status(&format!("{base}/api/series?run=nope"), None), 404);
    assert_eq!(
        status(&format!("{base}/api/series?run=a&from=3"), None),
        400
    );
    // The page is one self-contained document: uPlot inlined, nothing fetched elsewhere.
    let page = agent()
        .get(&format!("{base}/"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(page.contains("uPlot") && page.contains("u-legend"));
    assert!(!page.contains("<script src") && !page.contains("<link"));
}

#[test]
fn metrics_events_resume_after_last_event_id_and_go_live() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let pts = spiky(300);
    let mut lines = vec![start_record("start", 0, "cpu", 1e-3)];
    lines.extend(pts[..100].iter().map(|&p| step_line(p)));
    append(&path, &lines);
    let base = start(dir.path(), None);
    let url = format!("{base}/api/events?kind=metrics&runs=.");
    // Seq 1 is the start record, seq 2..=101 the steps 1..=100: after 41, steps 41..=100.
    let evs = sse(&url, Some("41"), |e| e.last().is_some_and(|l| l.0 == "101"));
    let xs = steps_of(&evs);
    assert_eq!(xs, (41..=100).map(f64::from).collect::<Vec<_>>());
    assert!(evs.iter().all(|e| e.1 == "metrics"));
    assert!(evs
        .iter()
        .all(|e| e.2["."]["sessions"].as_array().unwrap().is_empty()));

    // Live: lines appended while connected arrive, after exactly the ones held. A resume
    // rewrites the file (fewer lines, new inode) and recomputes steps 91..=100: they are
    // not sent again, the resume record is, with what changed.
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let kept: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .take(91)
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, kept).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            let mut more = vec![start_record("resume", 90, "wgpu", 1e-3)];
            more.extend(pts[90..300].iter().map(|&p| step_line(p)));
            append(&path, &more);
        })
    };
    let evs = sse(&url, Some("101"), |e| {
        e.iter()
            .flat_map(|e| e.2["."]["x"].as_array().unwrap().iter())
            .last()
            .and_then(Value::as_f64)
            == Some(300.0)
    });
    writer.join().unwrap();
    let xs = steps_of(&evs);
    assert_eq!(xs, (101..=300).map(f64::from).collect::<Vec<_>>());
    let sessions: Vec<&Value> = evs
        .iter()
        .flat_map(|e| e.2["."]["sessions"].as_array().unwrap())
        .collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["event"], "resume");
    assert_eq!(sessions[0]["diff"], json!([["device", "cpu", "wgpu"]]));
    // Ids increase and each event's id is the number of its last record.
    let ids: Vec<u64> = evs.iter().map(|e| e.0.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // The series agrees: 300 points once each.
    let s = get(&format!("{base}/api/series?run=.&max=1000"));
    assert_eq!(s["runs"]["."]["total"], 300);
    assert_eq!(s["runs"]["."]["x"].as_array().unwrap().len(), 300);
}

#[test]
fn two_writers_tied_timestamps_come_back_in_capture_order_via_load_more_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/logs.jsonl");
    let log = RunLog::with_fixed_clock(1_700_000_000_000);
    log.open(&path).unwrap();
    const N: usize = 100_000;
    std::thread::scope(|s| {
        for w in ["stdout", "stderr"] {
            let log = &log;
            s.spawn(move || {
                for i in 0..N {
                    log.record("info", w, &i.to_string());
                }
            });
        }
    });
    log.close();
    // The file itself: every line once, seq 0..2N, each writer's lines in capture order.
    let direct: Vec<Value> = voxflow_monitor::logs::read(&path)
        .unwrap()
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .collect();
    check_capture_order(&direct, 2 * N, 0);
    let base = start(dir.path(), None);

    // "load more": newest first, page by page by cursor.
    let mut all: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    let mut pages = 0;
    loop {
        let cursor = before.map_or(String::new(), |b| format!("&before={b}"));
        let page = get(&format!("{base}/api/logs?run=run&limit=2000{cursor}"));
        all.extend(page["lines"].as_array().unwrap().iter().cloned());
        pages += 1;
        match page["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(pages, 100);
    all.reverse();
    check_capture_order(&all, 2 * N, 0);

    // SSE resume after the 100,000th line: exactly the lines after it, in order.
    let last = (2 * N - 1).to_string();
    let evs = sse(
        &format!("{base}/api/events?kind=logs&run=run"),
        Some("99999"),
        |e| e.last().is_some_and(|l| l.0 == last),
    );
    let lines: Vec<Value> = evs
        .iter()
        .flat_map(|e| e.2.as_array().unwrap().iter().cloned())
        .collect();
    assert!(evs.iter().all(
        |e| e.0.parse::<u64>().ok() == e.2.as_array().unwrap().last().unwrap()["seq"].as_u64()
    ));
    check_capture_order(&lines, N, N as u64);
}

/// `lines` are seq `first..first+n` in order, all with the tied timestamp, and each
/// writer's counter increases.
fn check_capture_order(lines: &[Value], n: usize, first: u64) {
    assert_eq!(lines.len(), n);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"].as_u64(), Some(first + i as u64));
        assert_eq!(l["ts_ms"], 1_700_000_000_000u64);
    }
    for w in ["stdout", "stderr"] {
        let mine: Vec<u64> = lines
            .iter()
            .filter(|l| l["source"] == w)
            .map(|l| l["message"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(
            mine.windows(2).all(|p| p[0] + 1 == p[1]),
            "{w} out of order"
        );
        if first == 0 {
            assert_eq!(mine.first(), Some(&0), "{w} starts at its first line");
        }
    }
}

#[test]
fn log_filters_and_regex() {
    let dir = tempfile::tempdir().unwrap();
    let log = RunLog::default();
    log.open(&dir.path().join("logs.jsonl")).unwrap();
    for i in 0..50 {
        log.record("info", "progress", &format!("step {i}: loss 0.{i}"));
        if i % 10 == 0 {
            log.record("warn", "tracing", &format!("slow batch {i}"));
        }
    }
    log.close();
    let base = start(dir.path(), None);
    let warn = get(&format!("{base}/api/logs?run=.&level=warn"));
    assert_eq!(warn["lines"].as_array().unwrap().len(), 5);
    let q = get(&format!(
        "{base}/api/logs?run=.&q=step%20(1%7C2)%3A&source=progress"
    ));
    let msgs: Vec<&str> = q["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["step 2: loss 0.2", "step 1: loss 0.1"]);
    assert_eq!(
        status(&format!("{base}/api/logs?run=.&q=(unclosed"), None),
        400
    );
    assert_eq!(status(&format!("{base}/api/logs?run=nope"), None), 404);
}

#[test]
fn a_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    append(
        &dir.path().join("metrics.jsonl"),
        &[start_record("start", 0, "cpu", 1e-3)],
    );
    let token = server::new_token();
    assert_eq!(token.len(), 32);
    let base = start(dir.path(), Some(&token));
    for path in [
        "/",
        "/api/runs",
        "/api/series?run=.",
        "/api/events?kind=runs",
    ] {
        assert_eq!(status(&format!("{base}{path}"), None), 401, "{path}");
        let wrong = if path.contains('?') {
            "&token=0"
        } else {
            "?token=0"
        };
        assert_eq!(status(&format!("{base}{path}{wrong}"), None), 401, "{path}");
    }
    assert_eq!(status(&format!("{base}/api/runs?token={token}"), None), 200);
    assert_eq!(status(&format!("{base}/?token={token}"), None), 200);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        status(
            &format!("{base}/api/runs"),
            Some(("Authorization", &bearer))
        ),
        200
    );
    // Which addresses need it: everything beyond loopback.
    assert!(!server::needs_token(&"127.0.0.1:6006".parse().unwrap()));
    assert!(!server::needs_token(&"[::1]:6006".parse().unwrap()));
    assert!(server::needs_token(&"0.0.0.0:6006".parse().unwrap()));
    assert!(server::needs_token(&"10.1.2.3:6006".parse().unwrap()));
    assert_eq!(
        server::url("10.1.2.3:80".parse().unwrap(), Some("ab")),
        "http://10.1.2.3:80/?token=ab"
    );
}
