//! Intensity kernels: the HU window, with a fast integer path for `i16` CTs.

use voxflow_engine::mask::pack_row_with;
use voxflow_engine::{Image, Mask};

/// Integer bounds `[lo, hi]` on i16 equivalent to `min <= v <= max` for every i16 `v`,
/// or `None` when no i16 value qualifies.
pub fn i16_bounds(min: f64, max: f64) -> Option<(i16, i16)> {
    let lo = min.ceil().max(i16::MIN as f64);
    let hi = max.floor().min(i16::MAX as f64);
    (lo <= hi).then_some((lo as i16, hi as i16))
}

/// Row `(y, z)` of the window on i16 voxels, ANDed with the mask row when given. One
/// unsigned compare per voxel: `(v - lo) as u16 <= (hi - lo) as u16` (wrapping). With a
/// mask, CT voxels are read only under non-zero mask words, so a window on a sparse
/// structure mask touches a fraction of the CT; each such word is 64 branch-free
/// compares.
fn window_row_i16(ct: &[i16], lo: i16, width: u16, mask: Option<&[u64]>, out: &mut [u64]) {
    let inside = |x: i16| x.wrapping_sub(lo) as u16 <= width;
    let word = |wi: usize| -> u64 {
        let c = &ct[wi * 64..ct.len().min(wi * 64 + 64)];
        match <&[i16; 64]>::try_from(c) {
            // Whole words: eight fixed-size groups of 8, which the compiler vectorises.
            Ok(c) => c.chunks_exact(8).enumerate().fold(0u64, |v, (g, c8)| {
                let byte = c8
                    .iter()
                    .enumerate()
                    .fold(0u64, |b, (i, &x)| b | (u64::from(inside(x)) << i));
                v | (byte << (8 * g))
            }),
            Err(_) => c
                .iter()
                .enumerate()
                .fold(0u64, |v, (b, &x)| v | (u64::from(inside(x)) << b)),
        }
    };
    match mask {
        None => out.iter_mut().enumerate().for_each(|(wi, o)| *o = word(wi)),
        Some(m) => {
            for (wi, (o, &mw)) in out.iter_mut().zip(m).enumerate() {
                *o = if mw == 0 { 0 } else { word(wi) & mw };
            }
        }
    }
}

/// Row `(y, z)` of the window on f32 voxels, compared in f64 (NaN voxels are outside).
fn window_row_f32(ct: &[f32], min: f64, max: f64, mask: Option<&[u64]>, out: &mut [u64]) {
    let inside = |v: f32| v as f64 >= min && v as f64 <= max;
    pack_row_with(ct.len(), out, |x| inside(ct[x]));
    if let Some(m) = mask {
        out.iter_mut().zip(m).for_each(|(o, m)| *o &= m);
    }
}

/// The mask of voxels with `min <= value <= max` (inclusive), ANDed with `mask` when
/// given. The caller checks that `mask` is on the image's grid.
pub fn hu_window(image: &Image, min: f64, max: f64, mask: Option<&Mask>) -> Mask {
    let g = image.geometry().clone();
    let [nx, ny, _] = g.dims;
    let row = move |y: usize, z: usize| nx * (y + ny * z)..nx * (y + ny * z + 1);
    match image {
        Image::I16(v) => {
            let Some((lo, hi)) = i16_bounds(min, max) else {
                return Mask::zeros(g);
            };
            let width = hi.wrapping_sub(lo) as u16;
            let ct = v.as_slice();
            Mask::from_rows(g, |y, z, out| {
                window_row_i16(&ct[row(y, z)], lo, width, mask.map(|m| m.row(y, z)), out)
            })
        }
        Image::F32(v) => {
            let ct = v.as_slice();
            Mask::from_rows(g, |y, z, out| {
                window_row_f32(&ct[row(y, z)], min, max, mask.map(|m| m.row(y, z)), out)
            })
        }
    }
}
