//! Bit-packed masks: 64 voxels per `u64` word along x.
//!
//! The same layout as [`Mask`], with margins: closing and opening pad the volume by the
//! element radius, so a `BitVolume` is a [`Mask`] grown on every side. Dilation in packed
//! form is a handful of word shifts and ORs per 64 voxels.
//!
//! Layout: row `(y, z)` is `words_per_row` words; bit `x % 64` of word `x / 64` is voxel
//! `x`. Bits past `nx` in the last word of a row are always zero (every operation keeps
//! them so), so no operation ever reads garbage from beyond the row.

use rayon::prelude::*;
use voxflow_engine::mask::{last_word_mask, set_bit_range};
use voxflow_engine::{Geometry, Mask};

use super::element::{Element, Span};

/// Above this window length (2r+1 rows or slices) the y and z passes switch from direct
/// ORs to the van Herk/Gil-Werman scheme (3 ORs per item whatever the length).
const DIRECT_MAX_WINDOW: usize = 9;

/// A binary volume packed 64 voxels per word along x. See the module docs for the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitVolume {
    dims: [usize; 3],
    wpr: usize,
    words: Vec<u64>,
}

/// `dst[x] = src[x - s]` (bits move towards higher x; zeros come in).
fn shl_into(src: &[u64], s: usize, dst: &mut [u64]) {
    let (q, m) = (s / 64, s % 64);
    for (i, d) in dst.iter_mut().enumerate() {
        let hi = if i >= q {
            src.get(i - q).copied().unwrap_or(0)
        } else {
            0
        };
        let lo = if m != 0 && i > q {
            src.get(i - q - 1).copied().unwrap_or(0)
        } else {
            0
        };
        *d = if m == 0 {
            hi
        } else {
            (hi << m) | (lo >> (64 - m))
        };
    }
}

/// `dst[x] = src[x + s]` (bits move towards lower x; zeros come in).
fn shr_into(src: &[u64], s: usize, dst: &mut [u64]) {
    let (q, m) = (s / 64, s % 64);
    for (i, d) in dst.iter_mut().enumerate() {
        let lo = src.get(i + q).copied().unwrap_or(0);
        let hi = if m != 0 {
            src.get(i + q + 1).copied().unwrap_or(0)
        } else {
            0
        };
        *d = if m == 0 {
            lo
        } else {
            (lo >> m) | (hi << (64 - m))
        };
    }
}

/// Scratch rows for the x pass.
struct RowScratch {
    p: Vec<u64>,
    q: Vec<u64>,
    t: Vec<u64>,
}

impl RowScratch {
    fn new(wpr: usize) -> Self {
        RowScratch {
            p: vec![0; wpr],
            q: vec![0; wpr],
            t: vec![0; wpr],
        }
    }
}

/// `acc[x] |= acc[x + s]` (towards lower x) or `acc[x] |= acc[x - s]`, via `t`.
fn or_shifted(acc: &mut [u64], s: usize, lower: bool, t: &mut [u64]) {
    if lower {
        shr_into(acc, s, t);
    } else {
        shl_into(acc, s, t);
    }
    for (a, b) in acc.iter_mut().zip(t.iter()) {
        *a |= *b;
    }
}

/// Dilate one packed row along x by half-width `a` (zeros outside), in place.
///
/// With `m = a + 1`, `P[x] = OR row[x ..= x+a]` and `Q[x] = OR row[x-a ..= x]` are built
/// by doubling (log2 m shifts each) and the result is `P | Q`. Both only ever read
/// indices on their own side of the row, where zeros are the right outside value
/// (a window starting at x < 0 would be lost by the shifts).
fn dilate_row_x(row: &mut [u64], a: usize, last_mask: u64, s: &mut RowScratch) {
    if a == 0 || row.is_empty() {
        return;
    }
    let m = a + 1;
    for (acc, lower) in [(&mut s.p, true), (&mut s.q, false)] {
        acc.copy_from_slice(row);
        let mut l = 1;
        while 2 * l <= m {
            or_shifted(acc, l, lower, &mut s.t);
            l *= 2;
        }
        if m > l {
            or_shifted(acc, m - l, lower, &mut s.t);
        }
    }
    for ((r, p), q) in row.iter_mut().zip(s.p.iter()).zip(s.q.iter()) {
        *r = *p | *q;
    }
    let last = row.len() - 1;
    row[last] &= last_mask;
}

/// `dst[i] = OR src[i-r ..= i+r]` (clipped), where item i is `src[i*item .. (i+1)*item]`.
/// Sequential; `g` and `h` are scratch for the van Herk scheme.
fn window_or(
    src: &[u64],
    item: usize,
    r: usize,
    dst: &mut [u64],
    g: &mut Vec<u64>,
    h: &mut Vec<u64>,
) {
    let n = src.len() / item;
    let k = 2 * r + 1;
    if k <= DIRECT_MAX_WINDOW || n <= k {
        for i in 0..n {
            let (lo, hi) = (i.saturating_sub(r), (i + r).min(n - 1));
            let out = &mut dst[i * item..(i + 1) * item];
            out.copy_from_slice(&src[lo * item..(lo + 1) * item]);
            for j in lo + 1..=hi {
                for (o, s) in out.iter_mut().zip(&src[j * item..(j + 1) * item]) {
                    *o |= *s;
                }
            }
        }
        return;
    }
    let m = n + 2 * r;
    g.clear();
    g.resize(m * item, 0);
    h.clear();
    h.resize(m * item, 0);
    for b0 in (0..m).step_by(k) {
        vh_block(
            src,
            item,
            r,
            b0,
            (b0 + k).min(m),
            &mut g[b0 * item..],
            &mut h[b0 * item..],
        );
    }
    for i in 0..n {
        let out = &mut dst[i * item..(i + 1) * item];
        let hp = &h[i * item..(i + 1) * item];
        let gp = &g[(i + k - 1) * item..(i + k) * item];
        for ((o, a), b) in out.iter_mut().zip(hp).zip(gp) {
            *o = *a | *b;
        }
    }
}

/// Prefix (`g`) and suffix (`h`) ORs of one van Herk block `[b0, b1)` in padded item
/// coordinates (padded item p is source item p - r, zeros outside). `g` and `h` start
/// at item b0.
fn vh_block(
    src: &[u64],
    item: usize,
    r: usize,
    b0: usize,
    b1: usize,
    g: &mut [u64],
    h: &mut [u64],
) {
    let n = src.len() / item;
    let get = |p: usize| -> Option<&[u64]> {
        (p >= r && p - r < n).then(|| &src[(p - r) * item..(p - r + 1) * item])
    };
    for p in b0..b1 {
        let off = (p - b0) * item;
        let (prev, cur) = g.split_at_mut(off);
        let cur = &mut cur[..item];
        if p == b0 {
            cur.fill(0);
        } else {
            cur.copy_from_slice(&prev[off - item..]);
        }
        if let Some(s) = get(p) {
            for (c, v) in cur.iter_mut().zip(s) {
                *c |= *v;
            }
        }
    }
    for p in (b0..b1).rev() {
        let off = (p - b0) * item;
        let (cur, next) = h.split_at_mut(off + item);
        let cur = &mut cur[off..];
        if p + 1 == b1 {
            cur.fill(0);
        } else {
            cur.copy_from_slice(&next[..item]);
        }
        if let Some(s) = get(p) {
            for (c, v) in cur.iter_mut().zip(s) {
                *c |= *v;
            }
        }
    }
}

impl BitVolume {
    /// An all-zero volume.
    pub fn zeros(dims: [usize; 3]) -> Self {
        let wpr = dims[0].div_ceil(64);
        BitVolume {
            dims,
            wpr,
            words: vec![0; wpr * dims[1] * dims[2]],
        }
    }

    /// Size (nx, ny, nz).
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Words per row along x.
    pub fn words_per_row(&self) -> usize {
        self.wpr
    }

    /// The packed words (rows in y then z order).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Voxel `(x, y, z)`.
    pub fn get(&self, x: usize, y: usize, z: usize) -> bool {
        let row = (y + self.dims[1] * z) * self.wpr;
        (self.words[row + x / 64] >> (x % 64)) & 1 == 1
    }

    /// Number of set voxels.
    pub fn count_ones(&self) -> usize {
        self.words.par_iter().map(|w| w.count_ones() as usize).sum()
    }

    fn slice_words(&self) -> usize {
        self.wpr * self.dims[1]
    }

    /// Copy a mask into a volume grown by `pad` voxels on both sides of each axis, the
    /// margin set to `fill`.
    pub fn from_mask(mask: &Mask, pad: [usize; 3], fill: bool) -> Self {
        let [nx, ny, nz] = mask.dims();
        let dims = [nx + 2 * pad[0], ny + 2 * pad[1], nz + 2 * pad[2]];
        let mut out = BitVolume::zeros(dims);
        let (wpr, sw) = (out.wpr, out.slice_words());
        if out.words.is_empty() {
            return out;
        }
        out.words
            .par_chunks_mut(sw)
            .enumerate()
            .for_each(|(zp, slice)| {
                let z = zp.wrapping_sub(pad[2]);
                for (yp, row) in slice.chunks_mut(wpr).enumerate() {
                    let y = yp.wrapping_sub(pad[1]);
                    if z >= nz || y >= ny {
                        if fill {
                            set_bit_range(row, 0, dims[0]);
                        }
                        continue;
                    }
                    let src = mask.row(y, z);
                    if pad[0] == 0 {
                        row.copy_from_slice(src);
                    } else {
                        shl_into(src, pad[0], row);
                        if fill {
                            set_bit_range(row, 0, pad[0]);
                            set_bit_range(row, pad[0] + nx, dims[0]);
                        }
                    }
                }
            });
        out
    }

    /// Copy into a mask on `geometry`, dropping `crop` voxels on both sides of each axis
    /// (the inverse of the `pad` of [`BitVolume::from_mask`]).
    pub fn to_mask(&self, crop: [usize; 3], geometry: Geometry) -> Mask {
        assert!(
            (0..3).all(|a| geometry.dims[a] + 2 * crop[a] == self.dims[a]),
            "to_mask: grid does not match the packed volume"
        );
        let (wpr, sw) = (self.wpr, self.slice_words());
        let last = last_word_mask(geometry.dims[0]);
        Mask::from_rows(geometry, |y, z, row| {
            let s = &self.words[(z + crop[2]) * sw + (y + crop[1]) * wpr..][..wpr];
            if crop[0] == 0 {
                row.copy_from_slice(s);
            } else {
                shr_into(s, crop[0], row);
                if let Some(w) = row.last_mut() {
                    *w &= last;
                }
            }
        })
    }

    /// Complement every voxel (the bits past `nx` stay zero).
    pub fn invert(&mut self) {
        if self.wpr == 0 {
            return;
        }
        let (wpr, last_mask) = (self.wpr, last_word_mask(self.dims[0]));
        self.words.par_chunks_mut(wpr * 64).for_each(|rows| {
            for row in rows.chunks_mut(wpr) {
                for w in row.iter_mut() {
                    *w = !*w;
                }
                row[wpr - 1] &= last_mask;
            }
        });
    }

    /// Dilation by `element`, the outside of the volume counting as background.
    pub fn dilate(&self, element: &Element) -> BitVolume {
        if self.words.is_empty() {
            return self.clone();
        }
        if element.is_box() {
            self.dilate_box(element.radius())
        } else {
            self.dilate_spans(element.spans())
        }
    }

    /// Separable box dilation: x and y per slice in place, then z into a new volume.
    fn dilate_box(&self, r: [usize; 3]) -> BitVolume {
        let mut v = self.clone();
        let (wpr, sw, nx) = (self.wpr, self.slice_words(), self.dims[0]);
        let last_mask = last_word_mask(nx);
        if r[0] > 0 || r[1] > 0 {
            v.words.par_chunks_mut(sw).for_each_init(
                || (RowScratch::new(wpr), vec![0u64; sw], Vec::new(), Vec::new()),
                |(rs, copy, g, h), slice| {
                    if r[0] > 0 {
                        for row in slice.chunks_mut(wpr) {
                            dilate_row_x(row, r[0], last_mask, rs);
                        }
                    }
                    if r[1] > 0 {
                        copy.copy_from_slice(slice);
                        window_or(copy, wpr, r[1], slice, g, h);
                    }
                },
            );
        }
        if r[2] > 0 {
            v = v.window_or_z(r[2]);
        }
        v
    }

    /// `out[z] = OR self[z-r ..= z+r]` over whole slices, in parallel.
    fn window_or_z(&self, r: usize) -> BitVolume {
        let sw = self.slice_words();
        let nz = self.dims[2];
        let k = 2 * r + 1;
        let mut out = BitVolume::zeros(self.dims);
        let src = &self.words;
        if k <= DIRECT_MAX_WINDOW || nz <= k {
            out.words.par_chunks_mut(sw).enumerate().for_each(|(z, o)| {
                let (lo, hi) = (z.saturating_sub(r), (z + r).min(nz - 1));
                o.copy_from_slice(&src[lo * sw..(lo + 1) * sw]);
                for j in lo + 1..=hi {
                    for (a, b) in o.iter_mut().zip(&src[j * sw..(j + 1) * sw]) {
                        *a |= *b;
                    }
                }
            });
            return out;
        }
        let m = nz + 2 * r;
        let mut g = vec![0u64; m * sw];
        let mut h = vec![0u64; m * sw];
        g.par_chunks_mut(k * sw)
            .zip(h.par_chunks_mut(k * sw))
            .enumerate()
            .for_each(|(b, (gb, hb))| {
                let b0 = b * k;
                vh_block(src, sw, r, b0, (b0 + k).min(m), gb, hb);
            });
        out.words.par_chunks_mut(sw).enumerate().for_each(|(i, o)| {
            let hp = &h[i * sw..(i + 1) * sw];
            let gp = &g[(i + k - 1) * sw..(i + k) * sw];
            for ((o, a), b) in o.iter_mut().zip(hp).zip(gp) {
                *o = *a | *b;
            }
        });
        out
    }

    /// The row-span dilation, also for boxes (tests compare it with the separable one).
    #[cfg(test)]
    pub(crate) fn dilate_spans_for_test(&self, spans: &[Span]) -> BitVolume {
        self.dilate_spans(spans)
    }

    /// Dilation by an element given as rows: for each distinct x half-width `a`, the
    /// volume dilated along x by `a` is ORed in at every `(dy, dz)` of the rows with
    /// that half-width.
    fn dilate_spans(&self, spans: &[Span]) -> BitVolume {
        let (wpr, sw) = (self.wpr, self.slice_words());
        let [nx, ny, nz] = self.dims;
        let last_mask = last_word_mask(nx);
        let mut widths: Vec<usize> = spans.iter().map(|s| s.rx).collect();
        widths.sort_unstable();
        widths.dedup();
        let mut out = BitVolume::zeros(self.dims);
        for a in widths {
            let mut xa = self.clone();
            if a > 0 {
                xa.words.par_chunks_mut(sw).for_each_init(
                    || RowScratch::new(wpr),
                    |rs, slice| {
                        for row in slice.chunks_mut(wpr) {
                            dilate_row_x(row, a, last_mask, rs);
                        }
                    },
                );
            }
            let group: Vec<Span> = spans.iter().copied().filter(|s| s.rx == a).collect();
            let xa = &xa.words;
            out.words.par_chunks_mut(sw).enumerate().for_each(|(z, o)| {
                for s in &group {
                    let zs = z as isize + s.dz;
                    if zs < 0 || zs >= nz as isize {
                        continue;
                    }
                    // rows y with 0 <= y + dy < ny
                    let y0 = (-s.dy).max(0) as usize;
                    let y1 = (ny as isize - s.dy.max(0)).max(0) as usize;
                    if y0 >= y1 {
                        continue;
                    }
                    let ys0 = (y0 as isize + s.dy) as usize;
                    let src =
                        &xa[zs as usize * sw + ys0 * wpr..zs as usize * sw + (ys0 + y1 - y0) * wpr];
                    for (d, v) in o[y0 * wpr..y1 * wpr].iter_mut().zip(src) {
                        *d |= *v;
                    }
                }
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_move_bits_across_words() {
        let src = [1u64 << 63, 1];
        let mut d = [0u64; 3];
        shl_into(&src, 1, &mut d);
        assert_eq!(d, [0, 3, 0]);
        shl_into(&src, 64, &mut d);
        assert_eq!(d, [0, 1 << 63, 1]);
        shr_into(&src, 63, &mut d);
        assert_eq!(d, [3, 0, 0]);
        shr_into(&src, 200, &mut d);
        assert_eq!(d, [0, 0, 0]);
    }

    #[test]
    fn pack_pad_and_crop_round_trip() {
        let g = Geometry::new([70, 3, 2], [1.0; 3]);
        let data: Vec<u8> = (0..g.len())
            .map(|i| ((i * 7919) % 3 == 0) as u8 * 5)
            .collect();
        let m = Mask::from_bytes(g.clone(), &data).unwrap();
        for (pad, fill) in [([0, 0, 0], false), ([3, 1, 2], true), ([65, 0, 1], false)] {
            let b = BitVolume::from_mask(&m, pad, fill);
            let back = b.to_mask(pad, g.clone());
            let want: Vec<u8> = data.iter().map(|&v| (v != 0) as u8).collect();
            assert_eq!(back.to_bytes(), want);
            let d = b.dims();
            let margin = d.iter().product::<usize>() - g.len();
            let ones = want.iter().filter(|&&v| v == 1).count();
            assert_eq!(b.count_ones(), ones + if fill { margin } else { 0 });
        }
    }
}
