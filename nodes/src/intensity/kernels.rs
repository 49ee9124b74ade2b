//! Intensity kernels: the HU window, with a fast integer path for `i16` CTs.

use rayon::prelude::*;
use voxflow_engine::{Image, Mask};

use crate::morphology::buffer::zeroed;

/// Voxels per parallel task (large enough to amortise scheduling, small enough to
/// balance two to a few dozen cores).
const CHUNK: usize = 1 << 16;

/// Integer bounds `[lo, hi]` on i16 equivalent to `min <= v <= max` for every i16 `v`,
/// or `None` when no i16 value qualifies.
pub fn i16_bounds(min: f64, max: f64) -> Option<(i16, i16)> {
    let lo = min.ceil().max(i16::MIN as f64);
    let hi = max.floor().min(i16::MAX as f64);
    (lo <= hi).then_some((lo as i16, hi as i16))
}

/// `out[i] = min <= ct[i] <= max && mask[i] != 0` on i16 voxels. One unsigned compare
/// per voxel: `(v - lo) as u16 <= (hi - lo) as u16` (wrapping), which the compiler
/// vectorises.
pub fn window_i16(ct: &[i16], min: f64, max: f64, mask: Option<&[u8]>, out: &mut [u8]) {
    let Some((lo, hi)) = i16_bounds(min, max) else {
        out.par_chunks_mut(CHUNK).for_each(|o| o.fill(0));
        return;
    };
    let width = hi.wrapping_sub(lo) as u16;
    let inside = move |v: i16| (v.wrapping_sub(lo) as u16 <= width) as u8;
    match mask {
        None => out
            .par_chunks_mut(CHUNK)
            .zip(ct.par_chunks(CHUNK))
            .for_each(|(o, c)| {
                for (o, &v) in o.iter_mut().zip(c) {
                    *o = inside(v);
                }
            }),
        Some(m) => out
            .par_chunks_mut(CHUNK)
            .zip(ct.par_chunks(CHUNK))
            .zip(m.par_chunks(CHUNK))
            .for_each(|((o, c), m)| {
                for ((o, &v), &m) in o.iter_mut().zip(c).zip(m) {
                    *o = inside(v) & (m != 0) as u8;
                }
            }),
    }
}

/// `out[i] = min <= ct[i] <= max && mask[i] != 0` on f32 voxels, compared in f64 (NaN
/// voxels are outside).
pub fn window_f32(ct: &[f32], min: f64, max: f64, mask: Option<&[u8]>, out: &mut [u8]) {
    let inside = move |v: f32| (v as f64 >= min && v as f64 <= max) as u8;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
        let c = &ct[k * CHUNK..k * CHUNK + o.len()];
        match mask {
            None => o.iter_mut().zip(c).for_each(|(o, &v)| *o = inside(v)),
            Some(m) => {
                let m = &m[k * CHUNK..k * CHUNK + o.len()];
                o.iter_mut()
                    .zip(c)
                    .zip(m)
                    .for_each(|((o, &v), &m)| *o = inside(v) & (m != 0) as u8);
            }
        }
    });
}

/// The mask of voxels with `min <= value <= max` (inclusive), ANDed with `mask` when
/// given. The caller checks that `mask` is on the image's grid.
pub fn hu_window(image: &Image, min: f64, max: f64, mask: Option<&Mask>) -> Mask {
    let g = image.geometry().clone();
    let mut out = zeroed::<u8>(g.len());
    let m = mask.map(|m| m.as_slice());
    match image {
        Image::I16(v) => window_i16(v.as_slice(), min, max, m, &mut out),
        Image::F32(v) => window_f32(v.as_slice(), min, max, m, &mut out),
    }
    Mask::from_vec(g, out).expect("same grid")
}
