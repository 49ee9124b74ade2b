//! Mask and label-map kernels: label selection, merging, and voxel-wise logic.
//!
//! All run as one parallel pass over the voxels in chunks. Any non-zero mask byte
//! counts as set; outputs are always 0/1.

use rayon::prelude::*;
use voxflow_engine::{Labels, Mask};

use crate::morphology::buffer::zeroed;

/// Voxels per parallel task.
const CHUNK: usize = 1 << 16;

/// The voxels whose label is one of `which`.
pub fn select_labels(labels: &Labels, which: &[u16]) -> Mask {
    let mut table = vec![0u8; 1 << 16];
    for &l in which {
        table[l as usize] = 1;
    }
    let mut out = zeroed::<u8>(labels.as_slice().len());
    out.par_chunks_mut(CHUNK)
        .zip(labels.as_slice().par_chunks(CHUNK))
        .for_each(|(o, l)| {
            for (o, &l) in o.iter_mut().zip(l) {
                *o = table[l as usize];
            }
        });
    Mask::from_vec(labels.geometry().clone(), out).expect("same grid")
}

/// A label map from masks: voxel = `labels[i]` of the last mask `i` that contains it, 0
/// where none does (later masks win on overlap). The caller checks the grids and that
/// `masks` and `labels` have the same length.
pub fn merge(masks: &[&Mask], labels: &[u16]) -> Labels {
    assert_eq!(masks.len(), labels.len(), "one label per mask");
    assert!(!masks.is_empty(), "at least one mask");
    let g = masks[0].geometry().clone();
    let mut out = zeroed::<u16>(g.len());
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
        let base = k * CHUNK;
        for (m, &l) in masks.iter().zip(labels) {
            let m = &m.as_slice()[base..base + o.len()];
            for (o, &v) in o.iter_mut().zip(m) {
                *o = if v != 0 { l } else { *o };
            }
        }
    });
    Labels::from_vec(g, out).expect("same grid")
}

/// `f(a[i] != 0, b[i] != 0)` for every voxel, on `a`'s grid (the caller checks `b`'s).
fn zip(a: &Mask, b: &Mask, f: impl Fn(bool, bool) -> bool + Sync) -> Mask {
    let mut out = zeroed::<u8>(a.as_slice().len());
    out.par_chunks_mut(CHUNK)
        .zip(
            a.as_slice()
                .par_chunks(CHUNK)
                .zip(b.as_slice().par_chunks(CHUNK)),
        )
        .for_each(|(o, (a, b))| {
            for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                *o = f(x != 0, y != 0) as u8;
            }
        });
    Mask::from_vec(a.geometry().clone(), out).expect("same grid")
}

/// Voxels set in both `a` and `b`.
pub fn and(a: &Mask, b: &Mask) -> Mask {
    zip(a, b, |x, y| x & y)
}

/// Voxels set in `a` or `b`.
pub fn or(a: &Mask, b: &Mask) -> Mask {
    zip(a, b, |x, y| x | y)
}

/// Voxels set in `a` and not in `b`.
pub fn subtract(a: &Mask, b: &Mask) -> Mask {
    zip(a, b, |x, y| x & !y)
}

/// Voxels not set in `m`.
pub fn not(m: &Mask) -> Mask {
    let mut out = zeroed::<u8>(m.as_slice().len());
    out.par_chunks_mut(CHUNK)
        .zip(m.as_slice().par_chunks(CHUNK))
        .for_each(|(o, m)| {
            for (o, &v) in o.iter_mut().zip(m) {
                *o = (v == 0) as u8;
            }
        });
    Mask::from_vec(m.geometry().clone(), out).expect("same grid")
}
