//! The patch server against a hand-written client: raw frames over a TcpStream, so these
//! tests check the wire format of docs/patch-protocol.md, not just our own client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use voxflow_train::protocol::Kind;
use voxflow_train::{Client, PatchServer};

/// A raw frame: magic, version, kind, length, payload.
fn frame(version: u16, kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = b"VXPS".to_vec();
    f.extend_from_slice(&version.to_le_bytes());
    f.extend_from_slice(&kind.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Read one raw frame: (kind, payload).
fn read_raw(s: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut h = [0u8; 12];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..4], b"VXPS");
    assert_eq!(u16::from_le_bytes([h[4], h[5]]), 1);
    let kind = u16::from_le_bytes([h[6], h[7]]);
    let n = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).unwrap();
    (kind, p)
}

fn raw_connect(server: &PatchServer) -> TcpStream {
    let s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn hello(s: &mut TcpStream, token: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"token": token, "client": "test"}).to_string();
    s.write_all(&frame(1, 1, body.as_bytes())).unwrap();
    let (k, p) = read_raw(s);
    (k, serde_json::from_slice(&p).unwrap())
}

/// The server is still healthy: a proper client gets a batch.
fn still_serves(server: &PatchServer) {
    let mut c = common::connect(server);
    assert_eq!(c.batch(0).unwrap().index, 0);
    c.bye();
}

/// Wait until the server's counters satisfy `f` (they are updated by its threads).
fn eventually(server: &PatchServer, f: impl Fn(&voxflow_train::ServerStats) -> bool) {
    let t = Instant::now();
    while !f(&server.stats()) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            server.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn handshake_sends_the_config_with_its_hash() {
    let cfg = common::config(10);
    let server = common::server(&cfg);
    let mut s = raw_connect(&server);
    let (kind, welcome) = hello(&mut s, common::TOKEN);
    assert_eq!(kind, Kind::Welcome as u16);
    assert_eq!(welcome["config_hash"], cfg.hash());
    assert_eq!(welcome["config"]["hyper"]["patch_size"], 16);
    // A batch by hand: JSON header then f32 image, u8 labels, u8 weights.
    s.write_all(&frame(1, 4, br#"{"index":3}"#)).unwrap();
    let (kind, p) = read_raw(&mut s);
    assert_eq!(kind, Kind::Batch as u16);
    let hl = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
    let header: serde_json::Value = serde_json::from_slice(&p[4..4 + hl]).unwrap();
    assert_eq!(header["index"], 3);
    assert_eq!(p.len(), 4 + hl + 4 * 16 * 16 * 6);
    s.write_all(&frame(1, 8, b"")).unwrap();
    eventually(&server, |st| st.finished == 1 && st.active == 0);
}

#[test]
fn wrong_token_is_refused() {
    let server = common::server(&common::config(10));
    let mut s = raw_connect(&server);
    let (kind, msg) = hello(&mut s, "guess");
    assert_eq!(kind, Kind::Refused as u16);
    assert!(
        msg["reason"].as_str().unwrap().contains("wrong token"),
        "{msg}"
    );
    // The connection is closed after the refusal.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    // And our own client reports it as a refusal.
    let e = Client::connect(&server.addr().to_string(), "guess", Duration::ZERO)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("refused") && e.to_string().contains("wrong token"),
        "{e}"
    );
    eventually(&server, |st| st.refused == 2);
    still_serves(&server);
}

#[test]
fn garbage_and_oversized_frames_are_refused_without_harm() {
    let server = common::server(&common::config(10));
    // Not our protocol at all.
    let mut s = raw_connect(&server);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (kind, msg) = read_raw(&mut s);
    assert_eq!(kind, Kind::Refused as u16);
    assert!(
        String::from_utf8_lossy(&msg).contains("not a voxflow"),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    // A frame announcing 3 GiB: refused from the header, nothing allocated or read.
    let mut s = raw_connect(&server);
    let mut f = frame(1, 1, b"");
    f[8..12].copy_from_slice(&(3u32 << 30).to_le_bytes());
    s.write_all(&f).unwrap();
    let (kind, msg) = read_raw(&mut s);
    assert_eq!(kind, Kind::Refused as u16);
    assert!(String::from_utf8_lossy(&msg).contains("exceeds the limit"));
    // Another protocol version.
    let mut s = raw_connect(&server);
    s.write_all(&frame(9, 1, b"{}")).unwrap();
    let (kind, msg) = read_raw(&mut s);
    assert_eq!(kind, Kind::Refused as u16);
    assert!(String::from_utf8_lossy(&msg).contains("version 9"));
    // Garbage after a good handshake: malformed JSON in a request.
    let mut s = raw_connect(&server);
    assert_eq!(hello(&mut s, common::TOKEN).0, Kind::Welcome as u16);
    s.write_all(&frame(1, 4, b"{not json")).unwrap();
    let (kind, _) = read_raw(&mut s);
    assert_eq!(kind, Kind::Refused as u16);
    eventually(&server, |st| st.refused == 3 && st.vanished == 1);
    still_serves(&server);
}

#[test]
fn client_vanishing_mid_batch_is_harmless() {
    let server = common::server(&common::config(10));
    for _ in 0..3 {
        let mut s = raw_connect(&server);
        assert_eq!(hello(&mut s, common::TOKEN).0, Kind::Welcome as u16);
        s.write_all(&frame(1, 4, br#"{"index":0}"#)).unwrap();
        // Read a few bytes of the batch, then disappear.
        let mut part = [0u8; 20];
        s.read_exact(&mut part).unwrap();
        drop(s);
    }
    // Half a frame, then gone.
    let mut s = raw_connect(&server);
    assert_eq!(hello(&mut s, common::TOKEN).0, Kind::Welcome as u16);
    s.write_all(&frame(1, 4, br#"{"index":0}"#)[..7]).unwrap();
    drop(s);
    eventually(&server, |st| st.vanished == 4 && st.active == 0);
    still_serves(&server);
}

#[test]
fn two_trainers_are_served_at_once_with_the_same_batches() {
    let server = common::server(&common::config(10));
    let mut a = common::connect(&server);
    let mut b = common::connect(&server);
    let a5 = a.batch(5).unwrap();
    let b0 = b.batch(0).unwrap();
    let b5 = b.batch(5).unwrap();
    let a0 = a.batch(0).unwrap();
    assert_eq!(a5, b5);
    assert_eq!(a0, b0);
    assert_ne!(a0.image, a5.image);
    assert_eq!(server.stats().active, 2);
    a.bye();
    b.bye();
    let st = server.wait_until_trainers_done();
    assert_eq!((st.finished, st.active, st.batches), (2, 0, 4));
}

#[test]
fn same_seed_same_batches_across_servers_and_worker_counts() {
    let cfg = common::config(10);
    let one = common::server_with(&cfg, 1);
    let mut c1 = common::connect(&one);
    let first: Vec<_> = (0..6).map(|i| c1.batch(i).unwrap()).collect();
    let two = common::server_with(&cfg, 3);
    let mut c2 = common::connect(&two);
    // Out of order: the pipeline restarts, the batches do not change.
    assert_eq!(c2.batch(4).unwrap(), first[4]);
    assert_eq!(c2.batch(1).unwrap(), first[1]);
    assert_eq!(c2.batch(2).unwrap(), first[2]);
    let mut other = cfg.clone();
    other.hyper.seed = 99;
    let three = common::server(&other);
    let mut c3 = common::connect(&three);
    assert_ne!(c3.batch(1).unwrap().image, first[1].image);
}

/// Limits small enough for a test: 1 s per handshake and per frame, 2 s idle, 3 clients.
fn tight() -> voxflow_train::ConnectionLimits {
    voxflow_train::ConnectionLimits {
        handshake: Duration::from_secs(1),
        frame: Duration::from_secs(1),
        idle: Duration::from_secs(2),
        max_connections: 3,
    }
}

/// Send `bytes` one at a time, `gap` apart, until the server hangs up; how long it took.
fn trickle(s: &mut TcpStream, bytes: &[u8], gap: Duration) -> Duration {
    let t = Instant::now();
    for b in bytes.iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(gap);
        // A refusal or a close shows up as readable.
        s.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let closed =
            !matches!(s.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).unwrap();
        if closed {
            break;
        }
    }
    t.elapsed()
}

#[test]
fn a_trickling_hello_cannot_extend_the_handshake_deadline() {
    let server = common::server_limited(&common::config(10), [1, 2], 1, tight());
    let body = serde_json::json!({"token": common::TOKEN, "client": "slow"}).to_string();
    let mut s = raw_connect(&server);
    // One byte every 200 ms: each read succeeds, but the whole Hello needs ~15 s.
    let took = trickle(
        &mut s,
        &frame(1, 1, body.as_bytes()),
        Duration::from_millis(200),
    );
    assert!(
        took < Duration::from_secs(4),
        "held the server for {took:?}"
    );
    eventually(&server, |st| st.refused == 1 && st.active == 0);
    still_serves(&server);
}

#[test]
fn half_sent_and_silent_trainers_are_dropped() {
    let server = common::server_limited(&common::config(10), [1, 2], 1, tight());
    // Half a request frame after the handshake, then silence: dropped after `frame`.
    let mut half = raw_connect(&server);
    assert_eq!(hello(&mut half, common::TOKEN).0, Kind::Welcome as u16);
    half.write_all(&frame(1, 4, br#"{"index":0}"#)[..7])
        .unwrap();
    // Connected and silent: dropped after `idle`.
    let mut silent = raw_connect(&server);
    assert_eq!(hello(&mut silent, common::TOKEN).0, Kind::Welcome as u16);
    let t = Instant::now();
    eventually(&server, |st| st.vanished == 2 && st.active == 0);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Both sockets see the server hang up.
    for s in [&mut half, &mut silent] {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    }
    still_serves(&server);
}

#[test]
fn connections_beyond_the_cap_are_refused_at_once() {
    let server = common::server_limited(&common::config(10), [1, 2], 1, tight());
    // Three silent connections fill the cap (each would be dropped after 1 s).
    let held: Vec<TcpStream> = (0..3).map(|_| raw_connect(&server)).collect();
    eventually(&server, |st| st.connections == 3);
    let mut fourth = raw_connect(&server);
    let t = Instant::now();
    let (kind, msg) = read_raw(&mut fourth);
    assert_eq!(kind, Kind::Refused as u16);
    assert!(
        String::from_utf8_lossy(&msg).contains("too many connections (at most 3)"),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    drop(held);
    // Once they are gone the server takes new clients again.
    eventually(&server, |st| st.refused >= 4);
    still_serves(&server);
}
