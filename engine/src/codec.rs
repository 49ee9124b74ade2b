//! Values as bytes, for the result cache: a small JSON header (kind, voxel type, grid or
//! table) followed by the raw voxels in little-endian, x-fastest order.
//!
//! Why not a NIfTI file: tables and labels travel too, and the cache must restore a value
//! exactly (voxel type and affine in f64), which NIfTI's f32 header fields cannot.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::mask::Mask;
use crate::table::{Cell, Table};
use crate::value::Value;
use crate::volume::{Geometry, Image, Volume};

const MAGIC: &[u8; 8] = b"VXFLVAL1";

/// Errors decoding a stored value.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not a stored value (wrong magic, truncated, bad header).
    #[error("not a stored voxflow value: {0}")]
    Corrupt(String),
    /// This kind of value cannot be stored (models and configs).
    #[error("values of type {0} cannot be cached")]
    Unsupported(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    kind: String,
    dtype: String,
    dims: [usize; 3],
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    /// The NIfTI header fields of a loaded grid (absent in entries written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nifti: Option<crate::volume::NiftiHeaderMeta>,
    columns: Vec<String>,
    rows: Vec<Vec<serde_json::Value>>,
}

/// Whether a value can be stored.
pub fn storable(v: &Value) -> bool {
    !matches!(v, Value::Opaque(..))
}

/// Write a value.
pub fn encode(v: &Value, w: &mut dyn Write) -> Result<(), CodecError> {
    let (kind, dtype, geometry) = match v {
        Value::Image(i) => ("image", i.dtype(), Some(i.geometry().clone())),
        Value::Mask(m) => ("mask", "u8", Some(m.geometry().clone())),
        Value::Labels(l) => ("labels", "u16", Some(l.geometry().clone())),
        Value::Table(_) => ("table", "", None),
        Value::Opaque(t, _) => return Err(CodecError::Unsupported(t.to_string())),
    };
    let g = geometry.unwrap_or_else(|| Geometry::new([0, 0, 0], [1.0; 3]));
    let (columns, rows) = match v {
        Value::Table(t) => (
            t.columns.clone(),
            t.rows
                .iter()
                .map(|r| r.iter().map(cell_json).collect())
                .collect(),
        ),
        _ => (vec![], vec![]),
    };
    let header = Header {
        kind: kind.into(),
        dtype: dtype.into(),
        dims: g.dims,
        spacing: g.spacing,
        affine: g.affine,
        nifti: g.nifti.as_deref().cloned(),
        columns,
        rows,
    };
    let h = serde_json::to_vec(&header).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    w.write_all(MAGIC)?;
    w.write_all(&(h.len() as u64).to_le_bytes())?;
    w.write_all(&h)?;
    match v {
        Value::Image(i) => match i.as_ref() {
            Image::I16(v) => write_le(w, v.as_slice(), |x| x.to_le_bytes())?,
            Image::F32(v) => write_le(w, v.as_slice(), |x| x.to_le_bytes())?,
        },
        Value::Mask(m) => {
            let [nx, ny, nz] = m.dims();
            let mut slice = vec![0u8; nx * ny];
            for z in 0..nz {
                m.unpack_slice(z, &mut slice);
                w.write_all(&slice)?;
            }
        }
        Value::Labels(l) => write_le(w, l.as_slice(), |x| x.to_le_bytes())?,
        _ => {}
    }
    Ok(())
}

fn write_le<T: Copy, const N: usize>(
    w: &mut dyn Write,
    data: &[T],
    f: impl Fn(T) -> [u8; N],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for chunk in data.chunks(1 << 14) {
        buf.clear();
        chunk.iter().for_each(|&x| buf.extend_from_slice(&f(x)));
        w.write_all(&buf)?;
    }
    Ok(())
}

/// A cell as tagged JSON that keeps floats bit for bit (`{"f": bits}`).
pub fn cell_json(c: &Cell) -> serde_json::Value {
    match c {
        Cell::Int(i) => serde_json::json!({ "i": i }),
        Cell::Float(f) => serde_json::json!({ "f": f.to_bits() }),
        Cell::Text(t) => serde_json::json!({ "t": t }),
        Cell::Null => serde_json::Value::Null,
    }
}

/// The inverse of [`cell_json`].
pub fn json_cell(v: &serde_json::Value) -> Cell {
    if let Some(i) = v.get("i").and_then(|x| x.as_i64()) {
        Cell::Int(i)
    } else if let Some(f) = v.get("f").and_then(|x| x.as_u64()) {
        Cell::Float(f64::from_bits(f))
    } else if let Some(t) = v.get("t").and_then(|x| x.as_str()) {
        Cell::Text(t.to_string())
    } else {
        Cell::Null
    }
}

/// Read a value written by [`encode`].
pub fn decode(r: &mut dyn Read) -> Result<Value, CodecError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(CodecError::Corrupt("bad magic".into()));
    }
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    if len > 1 << 30 {
        return Err(CodecError::Corrupt("header too large".into()));
    }
    let mut h = vec![0u8; len];
    r.read_exact(&mut h)?;
    let h: Header = serde_json::from_slice(&h).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    let g = Geometry {
        dims: h.dims,
        spacing: h.spacing,
        affine: h.affine,
        nifti: h.nifti.map(Arc::new),
    };
    let n = g.len();
    let bad = |e: crate::volume::ShapeError| CodecError::Corrupt(e.to_string());
    Ok(match (h.kind.as_str(), h.dtype.as_str()) {
        ("image", "i16") => Value::Image(Arc::new(Image::I16(
            Volume::from_vec(g, read_le(r, n, i16::from_le_bytes)?).map_err(bad)?,
        ))),
        ("image", "f32") => Value::Image(Arc::new(Image::F32(
            Volume::from_vec(g, read_le(r, n, f32::from_le_bytes)?).map_err(bad)?,
        ))),
        ("mask", _) => {
            let mut v = vec![0u8; n];
            r.read_exact(&mut v)?;
            Value::Mask(Arc::new(Mask::from_bytes(g, &v).map_err(bad)?))
        }
        ("labels", _) => Value::Labels(Arc::new(
            Volume::from_vec(g, read_le(r, n, u16::from_le_bytes)?).map_err(bad)?,
        )),
        ("table", _) => Value::Table(Arc::new(Table {
            columns: h.columns,
            rows: h
                .rows
                .iter()
                .map(|r| r.iter().map(json_cell).collect())
                .collect(),
        })),
        (k, d) => return Err(CodecError::Corrupt(format!("unknown value kind {k}/{d}"))),
    })
}

fn read_le<T, const N: usize>(
    r: &mut dyn Read,
    n: usize,
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, CodecError> {
    let mut bytes = vec![0u8; n * N];
    r.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_exactly() {
        let mut g = Geometry::new([3, 2, 2], [0.7, 0.8, 2.5]);
        g.affine[0][3] = -12.25;
        let vals = vec![
            Value::Image(Arc::new(Image::I16(
                Volume::from_vec(g.clone(), (0..12).map(|i| i * 100 - 600).collect()).unwrap(),
            ))),
            Value::Image(Arc::new(Image::F32(
                Volume::from_vec(g.clone(), (0..12).map(|i| i as f32 * 0.1).collect()).unwrap(),
            ))),
            Value::Mask(Arc::new(
                Mask::from_bytes(
                    g.clone(),
                    &(0..12).map(|i| (i % 2) as u8).collect::<Vec<_>>(),
                )
                .unwrap(),
            )),
            Value::Labels(Arc::new(
                Volume::from_vec(g, (0..12).map(|i| i * 1000).collect()).unwrap(),
            )),
            Value::Table(Arc::new(Table {
                columns: vec!["a".into(), "b".into()],
                rows: vec![
                    vec![Cell::Int(3), Cell::Float(0.1)],
                    vec![Cell::Text("x,y".into()), Cell::Null],
                ],
            })),
        ];
        for v in vals {
            let mut buf = Vec::new();
            encode(&v, &mut buf).unwrap();
            let back = decode(&mut buf.as_slice()).unwrap();
            let same = match (&v, &back) {
                (Value::Image(a), Value::Image(b)) => a == b,
                (Value::Mask(a), Value::Mask(b)) => a == b,
                (Value::Labels(a), Value::Labels(b)) => a == b,
                (Value::Table(a), Value::Table(b)) => a == b,
                _ => false,
            };
            assert!(same, "{v:?} did not round-trip");
            assert!(decode(&mut &buf[..buf.len() - 1]).is_err() || matches!(v, Value::Table(_)));
        }
    }
}
