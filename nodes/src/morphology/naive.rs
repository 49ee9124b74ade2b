//! Reference binary morphology (the `naive` implementation): the direct definitions,
//! offset by offset on unpacked (byte) masks, with the border conventions written out. Slow
//! (work = voxels x element size) but easy to check; the fast kernels are tested
//! against it.

use rayon::prelude::*;
use voxflow_engine::mask::pack_row_with;
use voxflow_engine::{Geometry, Mask};

use super::element::Element;
use crate::shared::grid::{index, neighbour};

/// `out[v] = any/all over offsets o of in[v + o]`, with `outside` for voxels off the grid.
fn apply(mask: &Mask, element: &Element, all: bool, outside: bool) -> Mask {
    let [nx, ny, nz] = mask.dims();
    let src = mask.to_bytes();
    let offsets = element.offsets();
    let mut out = vec![0u8; src.len()];
    if !out.is_empty() {
        out.par_chunks_mut(nx * ny)
            .enumerate()
            .for_each(|(z, slice)| {
                for y in 0..ny {
                    for x in 0..nx {
                        let dims = [nx, ny, nz];
                        let value = |o: &[isize; 3]| -> bool {
                            neighbour(dims, [x, y, z], o)
                                .map_or(outside, |q| src[index(dims, q)] != 0)
                        };
                        let v = if all {
                            offsets.iter().all(value)
                        } else {
                            offsets.iter().any(value)
                        };
                        slice[x + nx * y] = v as u8;
                    }
                }
            });
    }
    Mask::from_bytes(mask.geometry().clone(), &out).expect("same grid")
}

/// `mask` grown by `pad` voxels on both sides of each axis, the margin set to `fill`.
fn padded(mask: &Mask, pad: [usize; 3], fill: bool) -> Mask {
    let [nx, ny, nz] = mask.dims();
    let dims = [nx + 2 * pad[0], ny + 2 * pad[1], nz + 2 * pad[2]];
    let g = Geometry::new(dims, mask.geometry().spacing);
    Mask::from_rows(g, |y, z, row| {
        let (yi, zi) = (y.wrapping_sub(pad[1]), z.wrapping_sub(pad[2]));
        pack_row_with(dims[0], row, |x| {
            let xi = x.wrapping_sub(pad[0]);
            if xi < nx && yi < ny && zi < nz {
                mask.get(xi, yi, zi)
            } else {
                fill
            }
        })
    })
}

/// The inner part of a mask padded by `pad`, on the original grid.
fn cropped(m: &Mask, pad: [usize; 3], original: &Mask) -> Mask {
    let nx = original.dims()[0];
    Mask::from_rows(original.geometry().clone(), |y, z, row| {
        pack_row_with(nx, row, |x| m.get(x + pad[0], y + pad[1], z + pad[2]))
    })
}

/// Dilation: `out[v] = 1` when some `v + o` (o in the element) is set; outside is
/// background.
pub fn dilate(mask: &Mask, element: &Element) -> Mask {
    apply(mask, element, false, false)
}

/// Erosion: `out[v] = 1` when every `v + o` is set or outside the volume (outside is
/// foreground).
pub fn erode(mask: &Mask, element: &Element) -> Mask {
    apply(mask, element, true, true)
}

/// Closing: pad by the element radius with background, dilate, erode, crop (the
/// recipe of `sarcopenia_ref.closing` and ITK's `SafeBorder`).
pub fn close(mask: &Mask, element: &Element) -> Mask {
    let pad = element.radius();
    let p = padded(mask, pad, false);
    cropped(&erode(&dilate(&p, element), element), pad, mask)
}

/// Opening: pad by the element radius with foreground, erode, dilate, crop.
pub fn open(mask: &Mask, element: &Element) -> Mask {
    let pad = element.radius();
    let p = padded(mask, pad, true);
    cropped(&dilate(&erode(&p, element), element), pad, mask)
}
