//! `voxflow monitor`: one page and a small JSON + Server-Sent Events API over a folder of
//! runs.
//!
//! A run is a folder (the runs folder itself or up to three levels under it) holding
//! `metrics.jsonl` (the trainer's steps, validations and session records) or `logs.jsonl`
//! (see [`crate::logs`]). A background task reads what was appended to those files every
//! 250 ms and wakes the open event streams; the page never polls.
//!
//! - `GET /`: the page, self-contained (uPlot inlined; no CDN, no second request).
//! - `GET /api/runs`: the runs with their last step, last loss, best Dice.
//! - `GET /api/series?run=A[,B..][&from=X&to=X][&max=N]`: per run the loss decimated with
//!   [`crate::decimate`] (raw when the range holds at most `max` points), validations and
//!   sessions (start/resume records with their config diff), and `seq`, the metrics
//!   sequence number the answer is complete up to.
//! - `GET /api/logs?run=R[&before=SEQ][&limit=N][&level=a,b][&source=a,b][&q=REGEX]`: log
//!   lines older than the cursor, newest first, and `next_before`, the cursor for "load
//!   more" (absent at the oldest line).
//! - `GET /api/events?kind=metrics&runs=A[,B..]`: new loss points, validations and sessions
//!   of those runs. Every record read from any `metrics.jsonl` gets the next number of one
//!   server-wide metrics sequence; the event id is the last number an event includes.
//! - `GET /api/events?kind=logs&run=R`: new log lines; the event id is the last line's
//!   capture `seq`.
//!
//!   Both resume after `Last-Event-ID` (sent by a reconnecting browser) or after
//!   `last_event_id=` (a first connection of a page that already holds data up to it), so
//!   no record is lost or sent twice. One metrics stream serves any number of overlaid
//!   runs: a browser holds at most six HTTP/1.1 connections to a host.
//!
//! Bound to a loopback address the server is open to the local user, as TensorBoard is.
//! Bound beyond loopback every request needs the token (`?token=` or
//! `Authorization: Bearer`), printed in the URL at start; without it the answer is 401.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::decimate::{Chunked, Point};
use crate::logs::LogLine;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or serving.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The runs folder.
    #[error("{0}: not a folder")]
    NotAFolder(PathBuf),
}

/// A run the monitor does not know (the `run` of an API request).
#[derive(Debug, thiserror::Error)]
#[error("no run {0:?} under the runs folder")]
pub struct UnknownRun(pub String);

/// Whether binding to `addr` requires a token: anything beyond loopback does.
pub fn needs_token(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// A fresh random token (128 bits, hex).
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Points a page gets for a whole curve unless it asks otherwise (a wide chart has about
/// 2,000 pixels; two points per pixel column keep its min and max).
pub const OVERVIEW: usize = 2000;
/// Log lines or metrics records per event at most.
pub const BATCH: usize = 2000;
/// How long lines after a gap in the log sequence wait for the missing line (writers take
/// their number before the file lock, so a line may land in the file after its successor).
const GAP_WAIT: Duration = Duration::from_secs(1);

/// What the monitor has read of one run.
#[derive(Default)]
struct Run {
    dir: PathBuf,
    metrics: Tail,
    logs_tail: Tail,
    loss: Chunked,
    /// Metrics sequence number of each raw loss point.
    loss_seq: Vec<u64>,
    /// Validation lines, each with its metrics sequence number.
    validations: Vec<(u64, Value)>,
    /// Session records (`event`: start, resume, stopped), with their sequence numbers.
    sessions: Vec<(u64, Value)>,
    /// Log lines in `seq` order.
    logs: Vec<LogLine>,
    /// How many of `logs` the streams may send (up to the first unfilled gap).
    published: usize,
    /// Since when `published` has waited at a gap.
    gap_since: Option<Instant>,
    /// Whether the run's files were read once (a first read publishes everything).
    seen: bool,
}

/// Where reading a file stopped: its inode and the byte after the last full line.
#[derive(Default)]
struct Tail {
    ino: u64,
    at: u64,
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<String, Run>,
    /// The last metrics sequence number given out (0: none yet; numbers start at 1).
    seq: u64,
}

/// Shared state: the runs folder, the token, what was read.
pub struct Monitor {
    dir: PathBuf,
    token: Option<String>,
    inner: Mutex<Inner>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// New complete lines appended to `path` since `t`, and whether the file was replaced
/// (a resumed training rewrites `metrics.jsonl` through a temporary file) or truncated:
/// then it is read again from the start.
fn tail(path: &Path, t: &mut Tail) -> (Vec<String>, bool) {
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), false);
    };
    let Ok(meta) = f.metadata() else {
        return (Vec::new(), false);
    };
    let mut reread = false;
    if (t.ino != 0 && meta.ino() != t.ino) || meta.len() < t.at {
        t.at = 0;
        reread = true;
    }
    t.ino = meta.ino();
    if f.seek(SeekFrom::Start(t.at)).is_err() {
        return (Vec::new(), reread);
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return (Vec::new(), reread);
    }
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return (Vec::new(), reread);
    };
    t.at += end as u64 + 1;
    let lines = String::from_utf8_lossy(&buf[..end])
        .lines()
        .map(str::to_string)
        .collect();
    (lines, reread)
}

/// A session record's settings flattened to `a.b.c` keys, without what always differs.
pub fn session_settings(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    for k in ["iteration", "event", "utc", "run_id"] {
        out.remove(k);
    }
    out
}

/// What changed from `before` to `after` (settings of two sessions): `[key, old, new]`.
pub fn settings_diff(before: &Value, after: &Value) -> Vec<Value> {
    let (a, b) = (session_settings(before), session_settings(after));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| json!([k, a.get(k), b.get(k)]))
        .collect()
}

impl Run {
    /// Sessions with `diff` (against the run's previous start/resume record) and `seq`.
    fn sessions_json(&self, after: u64) -> Vec<Value> {
        let mut prev: Option<&Value> = None;
        let mut out = Vec::new();
        for (seq, s) in &self.sessions {
            let starts = matches!(
                s.get("event").and_then(Value::as_str),
                Some("start" | "resume")
            );
            let mut v = s.clone();
            if let Value::Object(m) = &mut v {
                m.insert("seq".into(), json!(seq));
                if starts {
                    let diff = prev.map_or_else(Vec::new, |p| settings_diff(p, s));
                    m.insert("diff".into(), Value::Array(diff));
                }
            }
            if starts {
                prev = Some(s);
            }
            if *seq > after {
                out.push(v);
            }
        }
        out
    }

    fn validations_json(&self, after: u64) -> Vec<Value> {
        self.validations
            .iter()
            .filter(|(s, _)| *s > after)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Monitor {
    /// A monitor of `dir` (which may not exist yet); `token` required on every request
    /// when set. Reads the runs once before returning.
    pub fn new(dir: &Path, token: Option<String>) -> Result<Arc<Monitor>, ServerError> {
        // A folder that does not exist yet is fine (the monitor is often started before
        // the training); a file is not.
        if dir.exists() && !dir.is_dir() {
            return Err(ServerError::NotAFolder(dir.to_owned()));
        }
        let m = Arc::new(Monitor {
            dir: dir.to_owned(),
            token,
            inner: Mutex::new(Inner::default()),
            changed: tokio::sync::watch::channel(0).0,
        });
        m.refresh();
        Ok(m)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run folders under the runs folder (itself included), up to three levels down.
    fn run_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut found = Vec::new();
        let mut stack = vec![(self.dir.clone(), 0)];
        while let Some((d, depth)) = stack.pop() {
            if d.join("metrics.jsonl").is_file() || d.join("logs.jsonl").is_file() {
                let name = d
                    .strip_prefix(&self.dir)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                found.push((if name.is_empty() { ".".into() } else { name }, d.clone()));
            }
            if depth < 3 {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    for e in rd.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            stack.push((e.path(), depth + 1));
                        }
                    }
                }
            }
        }
        found
    }

    /// Read what was appended to every run's files; wake the event streams when anything
    /// new became visible.
    pub fn refresh(&self) {
        let dirs = self.run_dirs();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut changed = false;
        for (name, dir) in dirs {
            let run = inner.runs.entry(name).or_insert_with(|| Run {
                dir: dir.clone(),
                ..Run::default()
            });
            changed |= read_metrics(run, &mut inner.seq);
            changed |= read_logs(run);
            run.seen = true;
        }
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Log lines after `cursor` that the streams may send (at most [`BATCH`]).
    pub fn logs_after(&self, run: &str, cursor: Option<u64>) -> Vec<LogLine> {
        let inner = self.lock();
        let Some(r) = inner.runs.get(run) else {
            return Vec::new();
        };
        let published = &r.logs[..r.published];
        let s = cursor.map_or(0, |c| published.partition_point(|l| l.seq <= c));
        published[s..].iter().take(BATCH).cloned().collect()
    }

    /// Metrics records of `runs` numbered after `cursor`, at most [`BATCH`] of them: the
    /// highest number included and per run `{x, loss, validations, sessions}`. `None`
    /// when there is nothing new.
    pub fn metrics_after(&self, runs: &[String], cursor: u64) -> Option<(u64, Value)> {
        let inner = self.lock();
        // The numbers of every new record, merged over the runs; cut at BATCH.
        let mut seqs: Vec<u64> = Vec::new();
        for name in runs {
            let Some(r) = inner.runs.get(name) else {
                continue;
            };
            let s = r.loss_seq.partition_point(|&q| q <= cursor);
            seqs.extend(r.loss_seq[s..].iter().take(BATCH));
            seqs.extend(r.validations.iter().map(|v| v.0).filter(|&q| q > cursor));
            seqs.extend(r.sessions.iter().map(|v| v.0).filter(|&q| q > cursor));
        }
        if seqs.is_empty() {
            return None;
        }
        seqs.sort_unstable();
        seqs.truncate(BATCH);
        let hi = *seqs.last()?;
        let mut out = Map::new();
        for name in runs {
            let Some(r) = inner.runs.get(name) else {
                continue;
            };
            let s = r.loss_seq.partition_point(|&q| q <= cursor);
            let e = r.loss_seq.partition_point(|&q| q <= hi);
            let pts = &r.loss.raw()[s..e];
            let within = |q: &u64| *q > cursor && *q <= hi;
            let vals: Vec<Value> = r
                .validations
                .iter()
                .filter(|v| within(&v.0))
                .map(|v| v.1.clone())
                .collect();
            let sessions: Vec<Value> = r
                .sessions_json(cursor)
                .into_iter()
                .filter(|v| {
                    v.get("seq")
                        .and_then(Value::as_u64)
                        .is_some_and(|q| q <= hi)
                })
                .collect();
            if pts.is_empty() && vals.is_empty() && sessions.is_empty() {
                continue;
            }
            out.insert(
                name.clone(),
                json!({
                    "x": pts.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "loss": pts.iter().map(|p| p.1).collect::<Vec<_>>(),
                    "validations": vals,
                    "sessions": sessions,
                }),
            );
        }
        Some((hi, Value::Object(out)))
    }

    /// The run list (`GET /api/runs`, and the `runs` event stream).
    pub fn runs_json(&self) -> Value {
        let inner = self.lock();
        let list: Vec<Value> = inner
            .runs
            .iter()
            .map(|(name, r)| {
                let best = r
                    .validations
                    .iter()
                    .filter_map(|v| v.1.get("mean_dice").and_then(Value::as_f64))
                    .fold(None, |b: Option<f64>, d| Some(b.map_or(d, |b| b.max(d))));
                json!({
                    "name": name,
                    "step": r.loss.raw().last().map(|p| p.0),
                    "last_loss": r.loss.raw().last().map(|p| p.1),
                    "points": r.loss.raw().len(),
                    "best_dice": best,
                    "log_lines": r.logs.len(),
                    "last_event": r.sessions.last().and_then(|s| s.1.get("event")),
                })
            })
            .collect();
        Value::Array(list)
    }

    /// The `GET /api/series` answer (see the module docs); an error names the first
    /// unknown run.
    pub fn series(
        &self,
        runs: &[String],
        range: Option<(f64, f64)>,
        max: usize,
    ) -> Result<Value, UnknownRun> {
        let inner = self.lock();
        let mut out = Map::new();
        for name in runs {
            let r = inner
                .runs
                .get(name)
                .ok_or_else(|| UnknownRun(name.clone()))?;
            let pts = match range {
                Some((a, b)) => r.loss.range(a, b, max),
                // Few enough to send as they are (the chunks' cache is decimated).
                None if r.loss.raw().len() <= max => r.loss.raw().to_vec(),
                None => r.loss.overview(max),
            };
            let in_range = match range {
                Some((a, b)) => {
                    let raw = r.loss.raw();
                    raw.partition_point(|p| p.0 <= b) - raw.partition_point(|p| p.0 < a)
                }
                None => r.loss.raw().len(),
            };
            out.insert(
                name.clone(),
                json!({
                    "x": pts.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "loss": pts.iter().map(|p| p.1).collect::<Vec<_>>(),
                    "raw": pts.len() == in_range,
                    "total": r.loss.raw().len(),
                    "validations": r.validations_json(0),
                    "sessions": r.sessions_json(0),
                }),
            );
        }
        Ok(json!({ "seq": inner.seq, "runs": out }))
    }
}

/// Read new `metrics.jsonl` lines into `run`, numbering each kept record from `seq`.
/// A re-read file (a resume rewrote it) skips what is already known: loss points and
/// validations up to the last step held, session records seen before.
fn read_metrics(run: &mut Run, seq: &mut u64) -> bool {
    let (lines, _reread) = tail(&run.dir.join("metrics.jsonl"), &mut run.metrics);
    let mut pts: Vec<Point> = Vec::new();
    let mut changed = false;
    for l in &lines {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let Some(it) = v.get("iteration").and_then(Value::as_u64) else {
            continue;
        };
        let x = it as f64;
        if let Some(loss) = v.get("loss").and_then(Value::as_f64) {
            // A resume recomputes the steps after its checkpoint (identically): x stays
            // increasing.
            if pts.last().or(run.loss.raw().last()).is_none_or(|p| p.0 < x) {
                pts.push((x, loss));
                *seq += 1;
                run.loss_seq.push(*seq);
            }
        } else if v.get("validation").is_some() {
            let last = run
                .validations
                .last()
                .and_then(|(_, v)| v.get("iteration").and_then(Value::as_u64));
            if last.is_none_or(|l| l < it) {
                *seq += 1;
                run.validations.push((*seq, v));
                changed = true;
            }
        } else if v.get("event").is_some() && !run.sessions.iter().any(|(_, s)| *s == v) {
            *seq += 1;
            run.sessions.push((*seq, v));
            changed = true;
        }
    }
    if !pts.is_empty() {
        run.loss.extend(&pts);
        changed = true;
    }
    changed
}

/// Read new `logs.jsonl` lines into `run` and publish the ones without a gap before them.
fn read_logs(run: &mut Run) -> bool {
    let (lines, reread) = tail(&run.dir.join("logs.jsonl"), &mut run.logs_tail);
    let mut new: Vec<LogLine> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if reread {
        // Known lines come again; keep the ones not held.
        new.retain(|l| run.logs.binary_search_by_key(&l.seq, |k| k.seq).is_err());
    }
    let before = run.published;
    if !new.is_empty() {
        new.sort_by_key(|l| l.seq);
        let in_order = run.logs.last().is_none_or(|last| last.seq < new[0].seq);
        run.logs.extend(new);
        if !in_order {
            run.logs.sort_by_key(|l| l.seq);
            run.logs.dedup_by_key(|l| l.seq);
            // A line landed before lines already sent: it stays for "load more".
            run.published = run.published.min(run.logs.len());
        }
    }
    if !run.seen {
        // The file as found: its gaps are lines recorded before the log was opened.
        run.published = run.logs.len();
    }
    loop {
        let n = run.published;
        if n == run.logs.len() {
            run.gap_since = None;
            break;
        }
        let contiguous = n == 0 || run.logs[n].seq == run.logs[n - 1].seq + 1;
        let waited = run.gap_since.is_some_and(|t| t.elapsed() >= GAP_WAIT);
        if contiguous || waited {
            run.published += 1;
            if !contiguous {
                run.gap_since = None;
            }
        } else {
            run.gap_since.get_or_insert_with(Instant::now);
            break;
        }
    }
    run.published != before
}

/// The router over `m` (also used by the tests).
pub fn router(m: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/runs", get(runs))
        .route("/api/series", get(series))
        .route("/api/logs", get(logs))
        .route("/api/events", get(events))
        .layer(axum::middleware::from_fn_with_state(m.clone(), check_token))
        .with_state(m)
}

/// The address a bound server prints: with `?token=` when there is a token.
pub fn url(local: SocketAddr, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("http://{local}/?token={t}"),
        None => format!("http://{local}/"),
    }
}

/// Bind `addr`, then serve `dir` until the process ends. `on_bound` gets the URL to
/// print (with the token when one is needed: `token`, else a fresh one).
pub async fn serve(
    dir: &Path,
    addr: SocketAddr,
    token: Option<String>,
    on_bound: impl FnOnce(&str),
) -> Result<(), ServerError> {
    let token = needs_token(&addr).then(|| token.unwrap_or_else(new_token));
    let m = Monitor::new(dir, token.clone())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Io { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    on_bound(&url(local, token.as_deref()));
    serve_on(m, listener).await
}

/// Serve `m` on a bound listener, re-reading the runs every 250 ms (the tests bind a
/// loopback listener and give the monitor a token themselves).
pub async fn serve_on(
    m: Arc<Monitor>,
    listener: tokio::net::TcpListener,
) -> Result<(), ServerError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    spawn_refresh(m.clone());
    axum::serve(listener, router(m))
        .await
        .map_err(|source| ServerError::Io { addr, source })
}

/// Re-read the run files every 250 ms.
pub fn spawn_refresh(m: Arc<Monitor>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let m = m.clone();
            let _ = tokio::task::spawn_blocking(move || m.refresh()).await;
        }
    });
}

/// Equal strings, compared in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn check_token(State(m): State<Arc<Monitor>>, req: Request, next: Next) -> Response {
    if let Some(token) = &m.token {
        let q = req.uri().query().unwrap_or("");
        let by_query = q
            .split('&')
            .filter_map(|kv| kv.strip_prefix("token="))
            .any(|t| same(t, token));
        let by_header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| same(t, token));
        if !by_query && !by_header {
            return (
                StatusCode::UNAUTHORIZED,
                "voxflow monitor: a token is required (open the URL printed at start, with \
                 ?token=)\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The page with uPlot inlined, built once.
fn page_html() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        include_str!("../static/index.html")
            .replacen("/*UPLOT_CSS*/", include_str!("../static/uPlot.min.css"), 1)
            .replacen(
                "/*UPLOT_JS*/",
                // A `</script>` inside would end the element early; uPlot has none.
                include_str!("../static/uPlot.iife.min.js"),
                1,
            )
    })
}

async fn page() -> Html<&'static str> {
    Html(page_html())
}

fn bad(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

async fn runs(State(m): State<Arc<Monitor>>) -> Json<Value> {
    Json(m.runs_json())
}

#[derive(Deserialize)]
struct SeriesQuery {
    run: String,
    from: Option<f64>,
    to: Option<f64>,
    max: Option<usize>,
}

fn run_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

async fn series(State(m): State<Arc<Monitor>>, Query(q): Query<SeriesQuery>) -> Response {
    let max = q.max.unwrap_or(OVERVIEW).clamp(16, 20_000);
    let range = match (q.from, q.to) {
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => {
            return bad(
                StatusCode::BAD_REQUEST,
                "from and to: give both or neither".into(),
            )
        }
    };
    match m.series(&run_list(&q.run), range, max) {
        Ok(v) => Json(v).into_response(),
        Err(e) => bad(StatusCode::NOT_FOUND, e.to_string()),
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    run: String,
    before: Option<u64>,
    limit: Option<usize>,
    level: Option<String>,
    source: Option<String>,
    q: Option<String>,
}

async fn logs(State(m): State<Arc<Monitor>>, Query(q): Query<LogsQuery>) -> Response {
    let re = match q.q.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => match regex::RegexBuilder::new(s).size_limit(1 << 20).build() {
            Ok(r) => Some(r),
            Err(e) => return bad(StatusCode::BAD_REQUEST, format!("q: {e}")),
        },
        None => None,
    };
    // Absent or empty: every value; otherwise a comma-separated list.
    let listed = |s: &Option<String>, v: &str| {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|s| s.split(',').any(|x| x == v))
    };
    let limit = q.limit.unwrap_or(200).clamp(1, BATCH);
    let inner = m.lock();
    let Some(r) = inner.runs.get(&q.run) else {
        return bad(StatusCode::NOT_FOUND, UnknownRun(q.run.clone()).to_string());
    };
    let end = q
        .before
        .map_or(r.logs.len(), |b| r.logs.partition_point(|l| l.seq < b));
    let mut lines = r.logs[..end]
        .iter()
        .rev()
        .filter(|l| listed(&q.level, &l.level) && listed(&q.source, &l.source))
        .filter(|l| re.as_ref().is_none_or(|re| re.is_match(&l.message)));
    let page: Vec<&LogLine> = lines.by_ref().take(limit).collect();
    let more = lines.next().is_some();
    Json(json!({
        "lines": page,
        "next_before": if more { page.last().map(|l| l.seq) } else { None },
        "newest": r.logs.last().map(|l| l.seq),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    kind: String,
    run: Option<String>,
    runs: Option<String>,
    last_event_id: Option<u64>,
}

/// SSE: from after `Last-Event-ID` (header, or `last_event_id=` for a first connection
/// that already holds data), then live.
async fn events(
    State(m): State<Arc<Monitor>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.last_event_id);
    let logs = match q.kind.as_str() {
        "logs" => true,
        "metrics" => false,
        "runs" => return run_events(m),
        _ => {
            return bad(
                StatusCode::BAD_REQUEST,
                "kind: logs, metrics or runs".into(),
            )
        }
    };
    let runs = run_list(q.runs.as_deref().or(q.run.as_deref()).unwrap_or(""));
    if runs.is_empty() || (logs && runs.len() != 1) {
        return bad(
            StatusCode::BAD_REQUEST,
            "name the run (logs: run=R; metrics: runs=A,B)".into(),
        );
    }
    let rx = m.changed.subscribe();
    let state = (m, runs, last, rx);
    let stream =
        futures_util::stream::unfold(state, move |(m, runs, mut cursor, mut rx)| async move {
            loop {
                // Mark the current state seen before looking, so a change in between
                // wakes the next wait.
                rx.borrow_and_update();
                let ev = if logs {
                    let lines = m.logs_after(&runs[0], cursor);
                    lines.last().map(|l| {
                        cursor = Some(l.seq);
                        Event::default()
                            .event("logs")
                            .id(l.seq.to_string())
                            .data(serde_json::to_string(&lines).expect("lines serialise"))
                    })
                } else {
                    m.metrics_after(&runs, cursor.unwrap_or(0))
                        .map(|(hi, data)| {
                            cursor = Some(hi);
                            Event::default()
                                .event("metrics")
                                .id(hi.to_string())
                                .data(data.to_string())
                        })
                };
                if let Some(ev) = ev {
                    return Some((Ok::<_, Infallible>(ev), (m, runs, cursor, rx)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// [`serve`] on a runtime of its own (two worker threads), for callers without one.
pub fn serve_blocking(
    dir: &Path,
    addr: SocketAddr,
    token: Option<String>,
    on_bound: impl FnOnce(&str),
) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServerError::Io { addr, source })?;
    rt.block_on(serve(dir, addr, token, on_bound))
}

/// SSE of the run list: sent at connection and whenever it changed (new runs, steps).
fn run_events(m: Arc<Monitor>) -> Response {
    let rx = m.changed.subscribe();
    let stream =
        futures_util::stream::unfold((m, Value::Null, rx), |(m, mut last, mut rx)| async move {
            loop {
                rx.borrow_and_update();
                let now = m.runs_json();
                if now != last {
                    last = now.clone();
                    let ev = Event::default().event("runs").data(now.to_string());
                    return Some((Ok::<_, Infallible>(ev), (m, last, rx)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
