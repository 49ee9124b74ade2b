//! The trainer's side of the patch protocol.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::TrainingConfig;
use crate::patches::{Batch, ValidationSet};
use crate::protocol::{
    self, GetBatch, Hello, Kind, ProtocolError, Refused, Welcome, MAX_RESPONSE_BYTES,
};

/// A connection to a patch server, past the handshake.
pub struct Client {
    stream: TcpStream,
    welcome: Welcome,
}

impl Client {
    /// Connect, present `token`, receive the config. Retries a refused TCP connection for
    /// up to `wait` (a trainer may start before its server).
    pub fn connect(addr: &str, token: &str, wait: Duration) -> Result<Self, ProtocolError> {
        let deadline = Instant::now() + wait;
        let mut stream = loop {
            let attempt = addr
                .to_socket_addrs()
                .and_then(|mut a| {
                    a.next().ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                    })
                })
                .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)));
            match attempt {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("connecting to {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(ProtocolError::Io(e)),
            }
        };
        let _ = stream.set_nodelay(true);
        let hello = Hello {
            token: token.to_string(),
            client: format!(
                "voxflow-train {} pid {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ),
        };
        protocol::write_json(&mut stream, Kind::Hello, &hello)?;
        let welcome: Welcome = expect(&mut stream, Kind::Welcome, "Welcome")?;
        Ok(Client { stream, welcome })
    }

    /// The server's greeting (config, hash, slice counts).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The streamed config, checked against its hash.
    pub fn config(&self) -> Result<TrainingConfig, ProtocolError> {
        let malformed = |message: String| ProtocolError::Malformed {
            kind: Kind::Welcome,
            message,
        };
        let cfg: TrainingConfig = serde_json::from_value(self.welcome.config.clone())
            .map_err(|e| malformed(format!("config: {e}")))?;
        if cfg.hash() != self.welcome.config_hash {
            return Err(malformed(format!(
                "config hash {} does not match the announced {}",
                cfg.hash(),
                self.welcome.config_hash
            )));
        }
        cfg.check().map_err(|e| malformed(e.to_string()))?;
        Ok(cfg)
    }

    /// Batch number `index`.
    pub fn batch(&mut self, index: u64) -> Result<Batch, ProtocolError> {
        protocol::write_json(&mut self.stream, Kind::GetBatch, &GetBatch { index })?;
        let payload = expect_raw(&mut self.stream, Kind::Batch, "Batch")?;
        let b = protocol::decode_batch(&payload)?;
        if b.index != index {
            return Err(ProtocolError::Malformed {
                kind: Kind::Batch,
                message: format!("asked for batch {index}, got {}", b.index),
            });
        }
        Ok(b)
    }

    /// The validation slices.
    pub fn validation(&mut self) -> Result<ValidationSet, ProtocolError> {
        protocol::write_frame(&mut self.stream, Kind::GetValidation, &[])?;
        let payload = expect_raw(&mut self.stream, Kind::Validation, "Validation")?;
        protocol::decode_validation(&payload)
    }

    /// Tell the server this trainer is done.
    pub fn bye(mut self) {
        let _ = protocol::write_frame(&mut self.stream, Kind::Bye, &[]);
    }
}

/// Read a frame of `kind`, turning a `Refused` into its reason.
fn expect_raw(
    stream: &mut TcpStream,
    kind: Kind,
    name: &'static str,
) -> Result<Vec<u8>, ProtocolError> {
    let (got, payload) = protocol::read_frame(stream, MAX_RESPONSE_BYTES)?;
    if got == Kind::Refused {
        let r: Refused = protocol::decode_json(got, &payload)?;
        return Err(ProtocolError::Refused(r.reason));
    }
    if got != kind {
        return Err(ProtocolError::Unexpected {
            expected: name,
            got,
        });
    }
    Ok(payload)
}

fn expect<T: for<'de> serde::Deserialize<'de>>(
    stream: &mut TcpStream,
    kind: Kind,
    name: &'static str,
) -> Result<T, ProtocolError> {
    let payload = expect_raw(stream, kind, name)?;
    protocol::decode_json(kind, &payload)
}
