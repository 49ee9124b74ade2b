//! Mask and label-map kernels: label selection, merging, and voxel-wise logic.
//!
//! Masks are bit-packed ([`Mask`]), so the logic operations are one word operation per
//! 64 voxels; selection and merging walk label rows beside mask rows.

use rayon::prelude::*;
use voxflow_engine::mask::pack_row_with;
use voxflow_engine::{Labels, Mask};

use crate::shared::buffer::zeroed;

/// The voxels whose label is one of `which`.
pub fn select_labels(labels: &Labels, which: &[u16]) -> Mask {
    let mut table = vec![false; 1 << 16];
    for &l in which {
        table[l as usize] = true;
    }
    let g = labels.geometry().clone();
    let [nx, ny, _] = g.dims;
    let src = labels.as_slice();
    Mask::from_rows(g, |y, z, out| {
        let r = &src[nx * (y + ny * z)..nx * (y + ny * z + 1)];
        pack_row_with(nx, out, |x| table[r[x] as usize]);
    })
}

/// A label map from masks: voxel = `labels[i]` of the last mask `i` that contains it, 0
/// where none does (later masks win on overlap). The caller checks the grids and that
/// `masks` and `labels` have the same length.
pub fn merge(masks: &[&Mask], labels: &[u16]) -> Labels {
    assert_eq!(masks.len(), labels.len(), "one label per mask");
    assert!(!masks.is_empty(), "at least one mask");
    let g = masks[0].geometry().clone();
    let [nx, ny, _] = g.dims;
    let mut out = zeroed::<u16>(g.len());
    if nx * ny > 0 {
        out.par_chunks_mut(nx * ny).enumerate().for_each(|(z, o)| {
            for (m, &l) in masks.iter().zip(labels) {
                for (y, o) in o.chunks_mut(nx).enumerate() {
                    for (wi, &w) in m.row(y, z).iter().enumerate() {
                        let mut bits = w;
                        while bits != 0 {
                            o[wi * 64 + bits.trailing_zeros() as usize] = l;
                            bits &= bits - 1;
                        }
                    }
                }
            }
        });
    }
    Labels::from_vec(g, out).expect("same grid")
}

/// Voxels set in both `a` and `b` (on `a`'s grid; the caller checks `b`'s).
pub fn and(a: &Mask, b: &Mask) -> Mask {
    a.zip_words(b, |x, y| x & y)
}

/// Voxels set in `a` or `b`.
pub fn or(a: &Mask, b: &Mask) -> Mask {
    a.zip_words(b, |x, y| x | y)
}

/// Voxels set in `a` and not in `b`.
pub fn subtract(a: &Mask, b: &Mask) -> Mask {
    a.zip_words(b, |x, y| x & !y)
}

/// Voxels not set in `m`.
pub fn not(m: &Mask) -> Mask {
    m.zip_words(m, |x, _| !x)
}
