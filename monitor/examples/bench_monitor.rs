//! `voxflow monitor` with a 1,000,000-point loss curve: decimation time per update
//! (append, then redo the open chunk), the JSON a page gets, and, when Chromium is there,
//! the browser's time to fetch, parse and draw it (read from the page's data attributes
//! over the DevTools protocol) next to uPlot drawing all raw points.
//!
//! `cargo run --release -p voxflow-monitor --example bench_monitor -- [POINTS]`
//!
//! TensorBoard keeps a reservoir sample of 1,000 scalars per series and MLflow draws 320
//! points: both drop spikes. Here every chunk's and every overview segment's minimum and
//! maximum are kept; the bench counts the spikes that survive.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use voxflow_monitor::decimate::Chunked;
use voxflow_monitor::server::{self, Monitor};

/// Decaying noisy loss with a spike every 49,999 steps.
fn curve(n: usize) -> Vec<(f64, f64)> {
    let mut state = 42u64;
    (1..=n)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let noise = (state >> 33) as f64 / (1u64 << 31) as f64;
            let mut y = 2.0 / (1.0 + i as f64 / 5_000.0) + 0.1 * noise;
            if i % 49_999 == 0 {
                y += 5.0;
            }
            (i as f64, y)
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("POINTS: a number"))
        .unwrap_or(1_000_000);
    let pts = curve(n);
    let spikes: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1 > 3.0).collect();
    println!("{n} loss points, {} spikes", spikes.len());

    // Decimation: the whole series at once, then live updates of one point each (a
    // training appends a few points per 250 ms refresh).
    let live = 1_000.min(n / 2);
    let t = Instant::now();
    let mut c = Chunked::default();
    c.extend(&pts[..n - live]);
    let build = t.elapsed().as_secs_f64();
    let mut per_update: Vec<f64> = pts[n - live..]
        .iter()
        .map(|p| {
            let t = Instant::now();
            c.extend(std::slice::from_ref(p));
            t.elapsed().as_secs_f64()
        })
        .collect();
    let width = 2 * 1256; // the page asks for 2 points per pixel of a 1256 px chart
    let mut overview_s: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(c.overview(width));
            t.elapsed().as_secs_f64()
        })
        .collect();
    let overview = c.overview(width);
    let kept = spikes.iter().filter(|s| overview.contains(s)).count();
    println!(
        "decimation: first build of {} points {:.1} ms; per update (append 1 point, redo the \
         open chunk) median {:.1} us, max {:.1} us over {live} updates",
        n - live,
        build * 1e3,
        median(&mut per_update) * 1e6,
        per_update.iter().copied().fold(0.0, f64::max) * 1e6
    );
    println!(
        "overview to {width} points: median {:.2} ms -> {} points, {kept}/{} spikes kept",
        median(&mut overview_s) * 1e3,
        overview.len(),
        spikes.len()
    );

    // The run on disk, read by the monitor as `voxflow monitor` does.
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    write_metrics(&run.join("metrics.jsonl"), &pts);
    let t = Instant::now();
    let m = Monitor::new(dir.path(), None).expect("monitor");
    println!(
        "first read of metrics.jsonl ({:.0} MB): {:.2} s",
        std::fs::metadata(run.join("metrics.jsonl"))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1e6,
        t.elapsed().as_secs_f64()
    );
    let runs = ["run".to_string()];
    let t = Instant::now();
    let series = m.series(&runs, None, width).expect("series").to_string();
    let series_s = t.elapsed().as_secs_f64();
    let raw = json!({
        "x": pts.iter().map(|p| p.0).collect::<Vec<_>>(),
        "loss": pts.iter().map(|p| p.1).collect::<Vec<_>>(),
    })
    .to_string();
    println!(
        "page payload (GET /api/series, {width} points asked): {} bytes in {:.1} ms; all raw \
         points would be {} bytes ({:.0}x)",
        series.len(),
        series_s * 1e3,
        raw.len(),
        raw.len() as f64 / series.len() as f64
    );

    match chromium() {
        Some(chromium) => browser(&chromium, dir.path()),
        None => println!("browser: no chromium on PATH (VOXFLOW_CHROMIUM); not measured"),
    }
}

fn write_metrics(path: &Path, pts: &[(f64, f64)]) {
    let f = std::fs::File::create(path).expect("metrics.jsonl");
    let mut w = std::io::BufWriter::new(f);
    writeln!(
        w,
        "{}",
        json!({"iteration": 0, "event": "start", "device": "cpu", "utc": "-"})
    )
    .expect("write");
    for (i, p) in pts.iter().enumerate() {
        writeln!(w, "{}", json!({"iteration": p.0 as u64, "loss": p.1})).expect("write");
        if (i + 1) % 10_000 == 0 {
            let d = 0.9 * (1.0 - (-(i as f64) / 2e5).exp());
            writeln!(
                w,
                "{}",
                json!({"iteration": p.0 as u64, "validation": {"a": d}, "mean_dice": d})
            )
            .expect("write");
        }
    }
}

fn chromium() -> Option<std::path::PathBuf> {
    std::env::var_os("VOXFLOW_CHROMIUM")
        .map(Into::into)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
}

/// Open the page on the 1M-point run in headless Chromium and read its timings.
fn browser(chromium: &Path, runs: &Path) {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = runs.to_owned();
    std::thread::spawn(move || {
        let _ = server::serve_blocking(&dir, "127.0.0.1:0".parse().unwrap(), None, |url| {
            let _ = tx.send(url.to_string());
        });
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server URL");
    let profile = tempfile::tempdir().expect("profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--window-size=1280,1200",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium");
    let stderr = child.stderr.take().expect("stderr");
    let ws = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("DevTools listening on ").map(str::to_string))
        .expect("DevTools address");
    let http = ws.replace("ws://", "http://");
    let http = http.split("/devtools").next().expect("host");
    let targets: Value = ureq::get(&format!("{http}/json/list"))
        .call()
        .expect("target list")
        .into_json()
        .expect("json");
    let page = targets
        .as_array()
        .and_then(|t| t.iter().find(|t| t["type"] == "page"))
        .expect("a page");
    let (mut sock, _) =
        tungstenite::connect(page["webSocketDebuggerUrl"].as_str().expect("ws url"))
            .expect("devtools websocket");
    let mut id = 0;
    let mut eval = |js: &str| -> Value {
        id += 1;
        let msg = json!({"id": id, "method": "Runtime.evaluate",
                         "params": {"expression": js, "awaitPromise": true, "returnByValue": true}});
        sock.send(tungstenite::Message::text(msg.to_string()))
            .expect("send");
        loop {
            let m = sock.read().expect("read");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).expect("json");
            if v["id"] == id {
                return v["result"]["result"]["value"].clone();
            }
        }
    };
    eval(&format!(
        "location.href = {}",
        json!(format!("{url}?run=run"))
    ));
    let t = Instant::now();
    loop {
        if eval("!!(document.body && document.body.dataset.ready === '1')") == json!(true) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "page not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = eval(
        "(() => { const d = document.getElementById('loss').dataset; \
         return [+d.loadMs, +d.drawMs, +d.drawn]; })()",
    );
    println!(
        "browser (Chromium headless): fetch + parse + first paint {:.0} ms; paint of the loss \
         ({} points) and Dice charts {:.0} ms",
        d[0].as_f64().unwrap_or(f64::NAN),
        d[2],
        d[1].as_f64().unwrap_or(f64::NAN)
    );
    // The same chart fed every raw point, for comparison.
    let js = format!(
        "(() => {{ const n = {n}; const x = new Float64Array(n), y = new Float64Array(n); \
         for (let i = 0; i < n; i++) {{ x[i] = i + 1; y[i] = 2 / (1 + i / 5000) + 0.1 * Math.random(); }} \
         const el = document.createElement('div'); document.body.appendChild(el); \
         const t0 = performance.now(); \
         const u = new uPlot({{ width: 1256, height: 320, scales: {{ x: {{ time: false }} }}, \
           series: [{{}}, {{ stroke: 'red' }}] }}, [x, y], el); \
         return new Promise(r => setTimeout(() => {{ const ms = performance.now() - t0; \
           u.destroy(); el.remove(); r(ms); }}, 0)); }})()",
        n = 1_000_000
    );
    let raw_ms = eval(&js).as_f64().unwrap_or(f64::NAN);
    println!("browser: uPlot drawing all 1,000,000 raw points: {raw_ms:.0} ms");
    let _ = child.kill();
    let _ = child.wait();
}
