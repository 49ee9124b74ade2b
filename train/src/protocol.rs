//! The patch protocol's frames and messages (docs/patch-protocol.md is the reference;
//! keep the two in step).
//!
//! A frame is a 12-byte header — magic `VXPS`, protocol version (u16 LE), message kind
//! (u16 LE), payload length (u32 LE) — then the payload. Control messages carry JSON;
//! `Batch` and `Validation` carry a JSON header followed by raw little-endian arrays, so a
//! batch of 8 patches of 128² costs 8 x 128² x 6 bytes and no text conversion. Every read
//! is bounded by a size limit chosen by the reader, so garbage or a hostile peer cannot
//! make it allocate without limit.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::patches::{Batch, ValidationSet, ValidationSlice};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"VXPS";
/// Version of this protocol; a peer speaking another is refused with a message.
pub const VERSION: u16 = 1;
/// Largest frame a server accepts from a client (requests are small JSON).
pub const MAX_REQUEST_BYTES: u32 = 64 * 1024;
/// Largest frame a trainer accepts by default (batches and the validation set).
pub const MAX_RESPONSE_BYTES: u32 = 1 << 30;

/// Message kinds (the header's `kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Client -> server, JSON [`Hello`].
    Hello = 1,
    /// Server -> client, JSON [`Welcome`].
    Welcome = 2,
    /// Server -> client, JSON [`Refused`]; the server closes the connection after it.
    Refused = 3,
    /// Client -> server, JSON [`GetBatch`].
    GetBatch = 4,
    /// Server -> client, binary batch.
    Batch = 5,
    /// Client -> server, empty payload.
    GetValidation = 6,
    /// Server -> client, binary validation set.
    Validation = 7,
    /// Client -> server, empty payload: the trainer is done; the server closes.
    Bye = 8,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Refused,
            4 => Kind::GetBatch,
            5 => Kind::Batch,
            6 => Kind::GetValidation,
            7 => Kind::Validation,
            8 => Kind::Bye,
            _ => return None,
        })
    }
}

/// What went wrong reading or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(io::Error),
    /// Not a voxflow patch protocol frame.
    #[error("not a voxflow patch protocol frame (magic {0:02x?}, expected \"VXPS\")")]
    Magic([u8; 4]),
    /// Another protocol version.
    #[error("peer speaks patch protocol version {0}, this voxflow speaks {VERSION}")]
    Version(u16),
    /// Unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// Frame larger than the reader allows.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Announced payload size.
        size: u32,
        /// The reader's limit.
        limit: u32,
    },
    /// A message of the wrong kind at this point of the conversation.
    #[error("expected {expected}, got {got:?}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: Kind,
    },
    /// The payload does not decode.
    #[error("malformed {kind:?} payload: {message}")]
    Malformed {
        /// Message kind.
        kind: Kind,
        /// What is wrong.
        message: String,
    },
    /// The server refused the client.
    #[error("server refused the connection: {0}")]
    Refused(String),
}

// By hand rather than `#[from]`: the message already carries the cause, and a `source`
// as well would print it twice in an error chain (`connection: refused: refused`).
impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> Self {
        ProtocolError::Io(e)
    }
}

/// Read one frame, refusing payloads above `limit` bytes before allocating them.
pub fn read_frame(r: &mut impl Read, limit: u32) -> Result<(Kind, Vec<u8>), ProtocolError> {
    let mut h = [0u8; 12];
    r.read_exact(&mut h)?;
    let magic = [h[0], h[1], h[2], h[3]];
    if magic != MAGIC {
        return Err(ProtocolError::Magic(magic));
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(ProtocolError::Version(version));
    }
    let raw_kind = u16::from_le_bytes([h[6], h[7]]);
    let kind = Kind::from_u16(raw_kind).ok_or(ProtocolError::UnknownKind(raw_kind))?;
    let size = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if size > limit {
        return Err(ProtocolError::TooLarge { size, limit });
    }
    let mut payload = vec![0u8; size as usize];
    r.read_exact(&mut payload)?;
    Ok((kind, payload))
}

/// Write one frame (header and payload in one `write_all`, then flush).
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let size = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut buf = Vec::with_capacity(12 + payload.len());
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(kind as u16).to_le_bytes());
    buf.extend_from_slice(&size.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Write a JSON message.
pub fn write_json<T: Serialize>(w: &mut impl Write, kind: Kind, msg: &T) -> io::Result<()> {
    write_frame(
        w,
        kind,
        &serde_json::to_vec(msg).expect("message serialises"),
    )
}

/// Decode a JSON message.
pub fn decode_json<T: for<'de> Deserialize<'de>>(
    kind: Kind,
    payload: &[u8],
) -> Result<T, ProtocolError> {
    serde_json::from_slice(payload).map_err(|e| ProtocolError::Malformed {
        kind,
        message: e.to_string(),
    })
}

/// Client greeting.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The shared secret from the server's token file.
    pub token: String,
    /// Free text naming the client (host, program), for the server's log.
    pub client: String,
}

/// Server answer to a good [`Hello`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Welcome {
    /// The training config as canonical JSON ([`crate::TrainingConfig::to_json`]).
    pub config: serde_json::Value,
    /// Its hash ([`crate::TrainingConfig::hash`]); the client checks it.
    pub config_hash: String,
    /// BLAKE3 (16 hex digits) of the training cases (dims, normalised CT, labels, weights)
    /// and the validation set the server serves; a resumed run checks it against its
    /// checkpoint. Empty from servers that predate it.
    #[serde(default)]
    pub data_hash: String,
    /// Annotated training slices the server samples from.
    pub training_slices: usize,
    /// Validation slices available.
    pub validation_slices: usize,
}

/// Why the server refuses a client.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    /// Human-readable reason.
    pub reason: String,
}

/// Request for batch number `index`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GetBatch {
    /// Batch number (0-based training step).
    pub index: u64,
}

/// JSON header of a binary batch.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct BatchHeader {
    index: u64,
    n: usize,
    size: usize,
}

/// JSON header of the binary validation set.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct ValidationHeader {
    slices: Vec<SliceHeader>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
struct SliceHeader {
    case: String,
    z: usize,
    width: usize,
    height: usize,
}

/// `u32 LE json length, json, f32 LE image, u8 labels, u8 weights`.
fn encode_arrays(header: &[u8], arrays: &[(&[f32], &[u8], &[u8])]) -> Vec<u8> {
    let total: usize = arrays
        .iter()
        .map(|(f, l, w)| f.len() * 4 + l.len() + w.len())
        .sum();
    let mut out = Vec::with_capacity(4 + header.len() + total);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    for (f, l, w) in arrays {
        for v in f.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(l);
        out.extend_from_slice(w);
    }
    out
}

/// Split the payload into its JSON header and the raw arrays.
fn split_header(kind: Kind, payload: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let bad = |m: &str| ProtocolError::Malformed {
        kind,
        message: m.to_string(),
    };
    if payload.len() < 4 {
        return Err(bad("shorter than its header length"));
    }
    let n = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    let rest = &payload[4..];
    if rest.len() < n {
        return Err(bad("header length beyond the payload"));
    }
    Ok(rest.split_at(n))
}

/// CT, labels and weights of some pixels.
type Arrays = (Vec<f32>, Vec<u8>, Vec<u8>);

/// Reads `pixels` f32 + u8 + u8 from `data` at `*at`.
fn take_arrays(
    kind: Kind,
    data: &[u8],
    at: &mut usize,
    pixels: usize,
) -> Result<Arrays, ProtocolError> {
    let need = pixels.checked_mul(6).ok_or(ProtocolError::Malformed {
        kind,
        message: "sizes overflow".into(),
    })?;
    if data.len() < *at + need {
        return Err(ProtocolError::Malformed {
            kind,
            message: format!(
                "arrays need {need} bytes, {} left",
                data.len().saturating_sub(*at)
            ),
        });
    }
    let f = &data[*at..*at + 4 * pixels];
    let image = f
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let l = data[*at + 4 * pixels..*at + 5 * pixels].to_vec();
    let w = data[*at + 5 * pixels..*at + 6 * pixels].to_vec();
    *at += need;
    Ok((image, l, w))
}

/// Payload of a `Batch` frame.
pub fn encode_batch(b: &Batch) -> Vec<u8> {
    let header = serde_json::to_vec(&BatchHeader {
        index: b.index,
        n: b.n,
        size: b.size,
    })
    .expect("header serialises");
    encode_arrays(&header, &[(&b.image, &b.labels, &b.weights)])
}

/// Decode a `Batch` payload.
pub fn decode_batch(payload: &[u8]) -> Result<Batch, ProtocolError> {
    let (h, data) = split_header(Kind::Batch, payload)?;
    let h: BatchHeader = decode_json(Kind::Batch, h)?;
    let pixels =
        h.n.checked_mul(h.size)
            .and_then(|v| v.checked_mul(h.size))
            .unwrap_or(usize::MAX);
    let mut at = 0;
    let (image, labels, weights) = take_arrays(Kind::Batch, data, &mut at, pixels)?;
    Ok(Batch {
        index: h.index,
        n: h.n,
        size: h.size,
        image,
        labels,
        weights,
    })
}

/// Payload of a `Validation` frame.
pub fn encode_validation(v: &ValidationSet) -> Vec<u8> {
    let header = serde_json::to_vec(&ValidationHeader {
        slices: v
            .slices
            .iter()
            .map(|s| SliceHeader {
                case: s.case.clone(),
                z: s.z,
                width: s.width,
                height: s.height,
            })
            .collect(),
    })
    .expect("header serialises");
    let arrays: Vec<_> = v
        .slices
        .iter()
        .map(|s| {
            (
                s.image.as_slice(),
                s.labels.as_slice(),
                s.weights.as_slice(),
            )
        })
        .collect();
    encode_arrays(&header, &arrays)
}

/// Decode a `Validation` payload.
pub fn decode_validation(payload: &[u8]) -> Result<ValidationSet, ProtocolError> {
    let (h, data) = split_header(Kind::Validation, payload)?;
    let h: ValidationHeader = decode_json(Kind::Validation, h)?;
    let mut at = 0;
    let mut slices = Vec::with_capacity(h.slices.len());
    for s in h.slices {
        let pixels = s.width.saturating_mul(s.height);
        let (image, labels, weights) = take_arrays(Kind::Validation, data, &mut at, pixels)?;
        slices.push(ValidationSlice {
            case: s.case,
            z: s.z,
            width: s.width,
            height: s.height,
            image,
            labels,
            weights,
        });
    }
    Ok(ValidationSet { slices })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::GetBatch, b"{\"index\":3}").unwrap();
        let (k, p) = read_frame(&mut buf.as_slice(), 100).unwrap();
        assert_eq!(k, Kind::GetBatch);
        let g: GetBatch = decode_json(k, &p).unwrap();
        assert_eq!(g.index, 3);
        let e = read_frame(&mut buf.as_slice(), 5).unwrap_err();
        assert!(
            matches!(e, ProtocolError::TooLarge { size: 11, limit: 5 }),
            "{e}"
        );
        let e = read_frame(&mut &b"GET / HTTP/1.1\r\n"[..], 100).unwrap_err();
        assert!(e.to_string().contains("not a voxflow"), "{e}");
        let mut v2 = buf.clone();
        v2[4] = 2;
        assert!(matches!(
            read_frame(&mut v2.as_slice(), 100).unwrap_err(),
            ProtocolError::Version(2)
        ));
    }

    #[test]
    fn batches_and_validation_round_trip_exactly() {
        let b = Batch {
            index: 7,
            n: 2,
            size: 2,
            image: vec![0.5, -1.0, 3.25, 1e-7, 2.0, 0.0, -0.0, 9.0],
            labels: vec![0, 1, 2, 0, 1, 1, 2, 2],
            weights: vec![1, 0, 1, 1, 0, 0, 1, 1],
        };
        assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
        let v = ValidationSet {
            slices: vec![ValidationSlice {
                case: "c".into(),
                z: 4,
                width: 3,
                height: 1,
                image: vec![1.0, 2.0, 3.0],
                labels: vec![0, 1, 2],
                weights: vec![1, 1, 0],
            }],
        };
        assert_eq!(decode_validation(&encode_validation(&v)).unwrap(), v);
        let mut cut = encode_batch(&b);
        cut.truncate(cut.len() - 1);
        assert!(decode_batch(&cut)
            .unwrap_err()
            .to_string()
            .contains("arrays need"));
    }
}
