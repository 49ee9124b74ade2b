//! The patch server: listens on TCP, checks each client's token, sends the training config,
//! then serves batches and the validation set on request.
//!
//! Each connection has its own prefetch pipeline: `workers` sampler threads produce batches
//! `next, next+1, ...` round-robin into bounded channels (`prefetch` batches in all), so
//! the trainer finds its next batch ready and memory stays bounded whatever the trainer's
//! speed. Batches are requested by number; a request off the expected sequence (a resumed
//! trainer) restarts the pipeline there, and since batch `k` is a pure function of `k`
//! ([`crate::patches`]), any server and any number of workers give the same batches.
//! A connection's threads end when its client says `Bye`, disconnects, sends garbage or
//! overruns a deadline ([`ConnectionLimits`]); nothing a client does can stop the server
//! or another client's stream.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::patches::{Sampler, ValidationSet};
use crate::protocol::{self, GetBatch, Hello, Kind, ProtocolError, Refused, Welcome};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free loopback port).
    pub bind: String,
    /// The secret clients must present.
    pub token: String,
    /// Batches prepared ahead per connection.
    pub prefetch: usize,
    /// Sampler threads per connection.
    pub workers: usize,
    /// Time limits and the connection cap.
    pub limits: ConnectionLimits,
}

/// What one client may hold of the server. Deadlines are absolute: a peer that sends one
/// byte at a time cannot stretch them (a plain socket read timeout restarts with every
/// byte, so 2,000 trickling clients could hold 2,000 threads forever).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// From accepting a connection to a complete `Hello` frame.
    pub handshake: Duration,
    /// From the first byte of a request frame to its last.
    pub frame: Duration,
    /// Between requests of a connected trainer (a validation pass or a checkpoint
    /// happens in this gap).
    pub idle: Duration,
    /// Connections served at once, handshakes included; more are refused at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake: Duration::from_secs(10),
            frame: Duration::from_secs(10),
            idle: Duration::from_secs(600),
            max_connections: 64,
        }
    }
}

/// Counters, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    /// Connections accepted (before the handshake).
    pub connections: usize,
    /// Clients refused (bad token, bad frames, wrong version).
    pub refused: usize,
    /// Clients past the handshake and still connected.
    pub active: usize,
    /// Clients that said `Bye`.
    pub finished: usize,
    /// Clients that disconnected without `Bye`.
    pub vanished: usize,
    /// Batches sent.
    pub batches: u64,
}

struct Shared {
    sampler: Arc<Sampler>,
    welcome: Welcome,
    validation: Vec<u8>,
    token: String,
    prefetch: usize,
    workers: usize,
    limits: ConnectionLimits,
    /// Connection threads alive (for `max_connections`).
    open: AtomicUsize,
    stop: AtomicBool,
    batches: AtomicU64,
    stats: Mutex<ServerStats>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut ServerStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        self.changed.notify_all();
    }
}

/// A running patch server; dropping it stops accepting connections.
pub struct PatchServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl PatchServer {
    /// Bind and start accepting in a background thread.
    pub fn start(
        sampler: Sampler,
        validation: ValidationSet,
        opts: ServerOptions,
    ) -> io::Result<Self> {
        let addrs: Vec<SocketAddr> = opts.bind.to_socket_addrs()?.collect();
        let listener = TcpListener::bind(&addrs[..])?;
        let addr = listener.local_addr()?;
        let config = sampler.config();
        let validation_slices = validation.slices.len();
        let validation = protocol::encode_validation(&validation);
        // What the trainer learns from, so a resumed run can tell it is fed the same data.
        let mut data = blake3::Hasher::new();
        sampler.hash_data(&mut data);
        data.update(&validation);
        let welcome = Welcome {
            config: serde_json::to_value(config).expect("config serialises"),
            config_hash: config.hash(),
            data_hash: data.finalize().to_hex()[..16].to_string(),
            training_slices: sampler.slices(),
            validation_slices,
        };
        let shared = Arc::new(Shared {
            sampler: Arc::new(sampler),
            welcome,
            validation,
            token: opts.token,
            prefetch: opts.prefetch.max(1),
            workers: opts.workers.max(1),
            limits: opts.limits,
            open: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            stats: Mutex::default(),
            changed: Condvar::new(),
        });
        let acc = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("patch-server".into())
            .spawn(move || accept_loop(listener, acc))?;
        tracing::info!(%addr, "patch server listening");
        Ok(PatchServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The config hash clients receive.
    pub fn config_hash(&self) -> &str {
        &self.shared.welcome.config_hash
    }

    /// Current counters.
    pub fn stats(&self) -> ServerStats {
        let mut s = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.batches = self.shared.batches.load(Ordering::Relaxed);
        s
    }

    /// Block until at least one trainer has finished (said `Bye`) and no trainer is
    /// connected: how a standalone server knows training is over. A trainer that vanishes
    /// (killed, crashed) does not end the service, so it can come back with `--resume`.
    pub fn wait_until_trainers_done(&self) -> ServerStats {
        let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        while !(s.finished > 0 && s.active == 0) {
            s = self
                .shared
                .changed
                .wait(s)
                .unwrap_or_else(|e| e.into_inner());
        }
        drop(s);
        self.stats()
    }

    /// Stop accepting connections (connected clients are served until they leave).
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

impl Drop for PatchServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(mut stream) = conn else { continue };
        shared.update(|s| s.connections += 1);
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.limits.max_connections {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            shared.update(|s| s.refused += 1);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            refuse(
                &mut stream,
                format!(
                    "too many connections (at most {})",
                    shared.limits.max_connections
                ),
            );
            continue;
        }
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("patch-conn".into())
            .spawn(move || {
                serve_connection(stream, &sh);
                sh.open.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// Reads from a socket until an absolute deadline: each read may wait only for the time
/// that is left.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn new(stream: &TcpStream, within: Duration) -> Deadline<'_> {
        Deadline {
            stream,
            until: Instant::now() + within,
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Wait up to `idle` for the next request to begin; false when the peer closed, failed
/// or stayed silent.
fn request_begins(stream: &TcpStream, idle: Duration) -> bool {
    let mut b = [0u8; 1];
    stream.set_read_timeout(Some(idle)).is_ok() && matches!(stream.peek(&mut b), Ok(1))
}

/// Send a `Refused` (best effort: the peer may already be gone).
fn refuse(stream: &mut TcpStream, reason: String) {
    tracing::warn!(peer = ?stream.peer_addr().ok(), "refused: {reason}");
    let _ = protocol::write_json(stream, Kind::Refused, &Refused { reason });
}

/// Token comparison whose time does not depend on where the first difference is.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a connection was refused before its Welcome; the text is sent in `Refused`.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    /// The first frame did not arrive or did not decode.
    #[error("{0}")]
    Frame(#[from] ProtocolError),
    /// The first frame was not a Hello.
    #[error("expected Hello, got {0:?}")]
    NotHello(Kind),
    /// The Hello's token is not the server's.
    #[error("wrong token from client {0:?}")]
    WrongToken(String),
}

fn handshake(stream: &mut TcpStream, shared: &Shared) -> Result<(), HandshakeError> {
    let mut r = Deadline::new(stream, shared.limits.handshake);
    let (kind, payload) = protocol::read_frame(&mut r, protocol::MAX_REQUEST_BYTES)?;
    if kind != Kind::Hello {
        return Err(HandshakeError::NotHello(kind));
    }
    let hello: Hello = protocol::decode_json(kind, &payload)?;
    if !same_token(&hello.token, &shared.token) {
        return Err(HandshakeError::WrongToken(hello.client));
    }
    tracing::info!(client = %hello.client, "trainer connected");
    Ok(())
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    // A trainer that stops reading must not hold the thread forever either.
    let _ = stream.set_write_timeout(Some(shared.limits.idle));
    if let Err(reason) = handshake(&mut stream, shared) {
        shared.update(|s| s.refused += 1);
        refuse(&mut stream, reason.to_string());
        return;
    }
    if protocol::write_json(&mut stream, Kind::Welcome, &shared.welcome).is_err() {
        shared.update(|s| s.vanished += 1);
        return;
    }
    shared.update(|s| s.active += 1);
    let said_bye = serve_requests(&mut stream, shared);
    shared.update(|s| {
        s.active -= 1;
        if said_bye {
            s.finished += 1;
        } else {
            s.vanished += 1;
        }
    });
}

/// Answer requests until `Bye` (true) or the end of the connection (false).
fn serve_requests(stream: &mut TcpStream, shared: &Shared) -> bool {
    let mut pipeline: Option<Pipeline> = None;
    loop {
        if !request_begins(stream, shared.limits.idle) {
            return false;
        }
        let mut r = Deadline::new(stream, shared.limits.frame);
        let (kind, payload) = match protocol::read_frame(&mut r, protocol::MAX_REQUEST_BYTES) {
            Ok(f) => f,
            Err(ProtocolError::Io(_)) => return false,
            Err(e) => {
                refuse(stream, e.to_string());
                return false;
            }
        };
        let sent = match kind {
            Kind::GetBatch => {
                let req: GetBatch = match protocol::decode_json(kind, &payload) {
                    Ok(r) => r,
                    Err(e) => {
                        refuse(stream, e.to_string());
                        return false;
                    }
                };
                let p = match &mut pipeline {
                    Some(p) if p.next == req.index => p,
                    _ => pipeline.insert(Pipeline::start(shared, req.index)),
                };
                let bytes = p.next_batch();
                shared.batches.fetch_add(1, Ordering::Relaxed);
                protocol::write_frame(stream, Kind::Batch, &bytes)
            }
            Kind::GetValidation => {
                protocol::write_frame(stream, Kind::Validation, &shared.validation)
            }
            Kind::Bye => return true,
            other => {
                refuse(stream, format!("unexpected {other:?} from a client"));
                return false;
            }
        };
        if sent.is_err() {
            return false;
        }
    }
}

/// Sampler threads producing encoded batches `start, start+1, ...` in order.
struct Pipeline {
    start: u64,
    next: u64,
    queues: Vec<Receiver<Vec<u8>>>,
    cancel: Arc<AtomicBool>,
}

impl Pipeline {
    fn start(shared: &Shared, start: u64) -> Self {
        let workers = shared.workers;
        let cap = shared.prefetch.div_ceil(workers).max(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let queues = (0..workers)
            .map(|w| {
                let (tx, rx) = bounded(cap);
                let sampler = shared.sampler.clone();
                let cancel = cancel.clone();
                std::thread::spawn(move || {
                    let mut index = start + w as u64;
                    while !cancel.load(Ordering::Relaxed) {
                        let bytes = protocol::encode_batch(&sampler.batch(index));
                        // A closed queue means the connection ended or restarted.
                        if tx.send(bytes).is_err() {
                            break;
                        }
                        index += workers as u64;
                    }
                });
                rx
            })
            .collect();
        Pipeline {
            start,
            next: start,
            queues,
            cancel,
        }
    }

    fn next_batch(&mut self) -> Vec<u8> {
        let w = ((self.next - self.start) % self.queues.len() as u64) as usize;
        self.next += 1;
        self.queues[w]
            .recv()
            .expect("sampler threads only stop when the pipeline is dropped")
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}
