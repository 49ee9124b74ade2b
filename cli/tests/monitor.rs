//! `voxflow monitor` in a real headless Chromium during a running phantom training: the
//! curve grows over SSE, a series is toggled from the legend, logs are filtered, a reload
//! keeps the view (URL state), and a screenshot is kept as `target/artifacts/monitor.png`.
//!
//! Chromium is driven over the DevTools protocol (a websocket, `--remote-debugging-port`).
//! Without Chromium (`chromium` on PATH or `VOXFLOW_CHROMIUM`) the test skips with a
//! reason in the skip log; with `VOXFLOW_REQUIRE_CHROMIUM=1` (set by `.ci/run` once it
//! installed Chromium) it fails instead.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{repo, start_patch_server};

/// A child process killed when dropped (also when an assertion fails).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn voxflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_voxflow"))
}

/// The Chromium binary, or `None` (skip recorded) when there is none.
fn chromium(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("VOXFLOW_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        let why = "no chromium on PATH (apt-get install chromium, or set VOXFLOW_CHROMIUM)";
        if std::env::var("VOXFLOW_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
            panic!("{test}: {why} (VOXFLOW_REQUIRE_CHROMIUM=1)");
        }
        voxflow_nodes::testdata::skip(test, why);
    }
    found
}

/// Serve two sparse phantoms and a tiny network for `iterations` steps (the graph train.rs
/// serves too).
fn start_server(dir: &Path, iterations: u64) -> (Proc, String) {
    let (child, addr) = start_patch_server(dir, iterations, 100);
    (Proc(child), addr)
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "waited {secs} s for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A DevTools protocol connection to one page.
struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    id: u64,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let (ws, _) = tungstenite::connect(ws_url).unwrap_or_else(|e| panic!("{ws_url}: {e}"));
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Cdp { ws, id: 0 }
    }

    /// Call `method`; its result (events in between are ignored).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let msg = json!({"id": self.id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap_or_else(|e| panic!("{method}: {e}"));
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == self.id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluate `js` in the page (promises awaited); its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Wait until `js` is truthy (an exception, e.g. while the page loads, counts as not yet).
    fn wait(&mut self, what: &str, secs: u64, js: &str) {
        let t = Instant::now();
        let guarded =
            format!("(() => {{ try {{ return !!({js}); }} catch (e) {{ return false; }} }})()");
        loop {
            let v = self.eval(&guarded);
            if v.as_bool() == Some(true) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {what} ({js} = {v})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A real mouse click at the centre of the element `selector` selects.
    fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({s}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            s = json!(selector)
        );
        let at = self.eval(&js);
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    fn number(&mut self, js: &str) -> f64 {
        let v = self.eval(js);
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("{js} = {v}"))
    }
}

/// Log search: validations at odd hundreds of steps ("validation at step 300: ...").
const REGEX: &str = r"step \d*[13579]00:";

#[test]
fn monitor_page_in_headless_chromium_during_a_training() {
    let test = "monitor_page_in_headless_chromium_during_a_training";
    let Some(chromium) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    // Long enough to stay running while the page watches; killed at the end.
    let (_server, addr) = start_server(dir.path(), 1_000_000);

    let mut monitor = voxflow()
        .args(["monitor", runs.to_str().unwrap(), "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Kept open to the end: the monitor's stdout stays a pipe with a reader.
    let mut monitor_out = BufReader::new(monitor.stdout.take().unwrap());
    monitor_out.read_line(&mut first).unwrap();
    let _monitor = Proc(monitor);
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    eprintln!("voxflow monitor bound at {url}");

    let run = runs.join("live");
    let _trainer = Proc(
        voxflow()
            .args(["train", "--connect", &addr, "--token-file"])
            .arg(dir.path().join("server/patch_server.token"))
            .arg("--out")
            .arg(&run)
            .args(["--device", "cpu", "-q"])
            .env("VOXFLOW_PROGRESS_SECS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the first validation", 120, || {
        std::fs::read_to_string(run.join("logs.jsonl"))
            .is_ok_and(|t| t.contains("validation at step"))
    });

    let profile = dir.path().join("chromium-profile");
    let mut browser = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,1200",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = browser.stderr.take().unwrap();
    let _browser = Proc(browser);
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
    let mut devtools = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(ws) = line.strip_prefix("DevTools listening on ") {
            devtools = Some(ws.trim().to_string());
            break;
        }
    }
    let devtools = devtools.expect("chromium printed no DevTools address");
    let http = devtools
        .replace("ws://", "http://")
        .split("/devtools")
        .next()
        .unwrap()
        .to_string();
    let targets: Value = ureq::get(&format!("{http}/json/list"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .expect("a page target");
    let mut cdp = Cdp::connect(page["webSocketDebuggerUrl"].as_str().unwrap());
    cdp.call("Page.enable", json!({}));
    cdp.call("Page.navigate", json!({"url": format!("{url}?run=live")}));
    cdp.wait("the page", 60, "document.body.dataset.ready === '1'");

    // The curve grows through the event stream, with no polling of the API.
    let p0 = cdp.number("+document.getElementById('loss').dataset.points");
    cdp.wait(
        "points pushed by SSE",
        60,
        &format!(
            "+document.getElementById('loss').dataset.points > {p0} + 50 && \
             +document.getElementById('loss').dataset.events >= 2"
        ),
    );
    let runs_fetches = cdp.number(
        "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/runs')).length",
    );
    assert_eq!(runs_fetches, 1.0, "the run list is pushed, not polled");

    // Toggle the raw loss series from the legend (a real click).
    cdp.click("#loss .u-legend tr.u-series:nth-child(2) th");
    cdp.wait("the series hidden", 10, "lossPlot.series[1].show === false");
    cdp.wait(
        "hide= in the URL",
        10,
        "new URLSearchParams(location.search).get('hide') === 'loss'",
    );

    // Filter the logs: progress lines off, a regex typed in. Before, lines of both kinds
    // are there.
    cdp.wait(
        "progress lines and a validation at an even hundred",
        60,
        "(() => { const t = document.getElementById('logs').textContent; \
         return t.includes('[progress]') && /validation at step \\d*[02468]00:/.test(t); })()",
    );
    cdp.click(".src[value=progress]");
    cdp.click("#q");
    cdp.call("Input.insertText", json!({"text": REGEX}));
    for kind in ["keyDown", "keyUp"] {
        cdp.call(
            "Input.dispatchKeyEvent",
            json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
        );
    }
    let logs_ok = "(() => { const l = [...document.querySelectorAll('#logs > div')]; \
                   return l.length > 0 && l.every(d => /step \\d*[13579]00:/.test(d.textContent) && !d.textContent.includes('[progress]')); })()";
    cdp.wait("filtered logs", 20, logs_ok);
    let q = cdp.eval("location.search");
    let q = q.as_str().unwrap();
    assert!(
        q.contains("q=step+%5Cd*%5B13579%5D00%3A")
            && q.contains("source=stdout%2Cstderr%2Ctracing"),
        "{q}"
    );

    // Reload: the view comes back from the URL, and the curve keeps growing.
    cdp.call("Page.reload", json!({}));
    cdp.wait(
        "the reloaded page",
        60,
        "document.body.dataset.ready === '1'",
    );
    assert_eq!(cdp.eval("location.search").as_str(), Some(q));
    assert_eq!(cdp.eval("lossPlot.series[1].show"), json!(false));
    assert_eq!(cdp.eval("lossPlot.series[2].show"), json!(true));
    assert_eq!(cdp.eval("document.getElementById('q').value"), json!(REGEX));
    assert_eq!(
        cdp.eval("document.querySelector('.src[value=progress]').checked"),
        json!(false)
    );
    cdp.wait("filtered logs after the reload", 20, logs_ok);
    let p1 = cdp.number("+document.getElementById('loss').dataset.points");
    cdp.wait(
        "points after the reload",
        60,
        &format!("+document.getElementById('loss').dataset.points > {p1}"),
    );
    let render_ms = cdp.number("+document.getElementById('loss').dataset.renderMs");
    eprintln!("loss chart: last render {render_ms} ms");

    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = repo().join("target/artifacts");
    std::fs::create_dir_all(&out).unwrap();
    let tmp = out.join("monitor.png.tmp");
    std::fs::write(&tmp, &png).unwrap();
    std::fs::rename(&tmp, out.join("monitor.png")).unwrap();
    eprintln!("screenshot: {}", out.join("monitor.png").display());
}
