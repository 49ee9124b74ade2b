//! Binary masks, bit-packed: 64 voxels per `u64` word along x.
//!
//! Why packed: a byte mask of a 512x512x200 CT is 52 MB, its packed form 6.5 MB. A
//! post-processing chain holds several masks at once (each structure's selection, window,
//! closing, dilation...), so bytes would cost several times the CT in memory, and every
//! mask operation (window with a mask, AND/OR/NOT, Dice, morphology) would stream 8x
//! more memory than it needs. In packed form they are word operations and popcounts.
//!
//! Layout: row `(y, z)` is [`Mask::words_per_row`] words; bit `x % 64` of word `x / 64`
//! is voxel `x`. Bits past `nx` in the last word of a row are always zero: every
//! constructor and mutator keeps them so, which lets counts and comparisons use whole
//! words. Byte views exist for the edges: file and cache writers unpack a range or a
//! slice at a time ([`Mask::bytes_in`], [`Mask::unpack_slice`]); the reference
//! implementations, and label kernels given a mask, take a full copy ([`Mask::to_bytes`]).

use std::ops::Range;

use rayon::prelude::*;

use crate::volume::{Geometry, ShapeError};

/// A binary volume on a grid, packed 64 voxels per word along x. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    geometry: Geometry,
    wpr: usize,
    words: Vec<u64>,
}

/// Mask of the valid bits in the last word of a row of `nx` voxels.
#[inline]
pub fn last_word_mask(nx: usize) -> u64 {
    match nx % 64 {
        0 => !0,
        m => (1u64 << m) - 1,
    }
}

/// Bit i of byte `b` spread to byte i of a u64 (value 0 or 1).
const EXPAND: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut v = 0u64;
        let mut i = 0;
        while i < 8 {
            v |= (((b >> i) & 1) as u64) << (8 * i);
            i += 1;
        }
        t[b] = v;
        b += 1;
    }
    t
};

/// Eight mask bytes (any non-zero byte counts as set) gathered into 8 bits, byte i to
/// bit i: a SWAR non-zero test, then one multiply that moves bit 8i to bit 56+i.
#[inline]
fn gather8(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let nz = (((w & LOW7).wrapping_add(LOW7)) | w) & HIGH;
    ((nz >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Pack a row of bytes (non-zero = set) into `dst`; all `ceil(src.len() / 64)` words
/// are written.
pub fn pack_row(src: &[u8], dst: &mut [u64]) {
    let mut chunks = src.chunks_exact(64);
    let mut wi = 0;
    for c in &mut chunks {
        let mut w = 0u64;
        for (g, b) in c.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            w |= gather8(v) << (8 * g);
        }
        dst[wi] = w;
        wi += 1;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = 0u64;
        for (i, &b) in rest.iter().enumerate() {
            w |= ((b != 0) as u64) << i;
        }
        dst[wi] = w;
    }
}

/// Unpack the first `dst.len()` bits of `src` into bytes 0/1.
pub fn unpack_row(src: &[u64], dst: &mut [u8]) {
    let mut chunks = dst.chunks_exact_mut(8);
    let mut i = 0usize;
    for c in &mut chunks {
        let byte = (src[i / 8] >> (8 * (i % 8))) & 0xff;
        c.copy_from_slice(&EXPAND[byte as usize].to_le_bytes());
        i += 1;
    }
    let rest = chunks.into_remainder();
    let base = i * 8;
    for (j, d) in rest.iter_mut().enumerate() {
        let x = base + j;
        *d = ((src[x / 64] >> (x % 64)) & 1) as u8;
    }
}

/// Set bits `lo..hi` of a row.
pub fn set_bit_range(row: &mut [u64], lo: usize, hi: usize) {
    let mut x = lo;
    while x < hi {
        let (w, b) = (x / 64, x % 64);
        let n = (hi - x).min(64 - b);
        let bits = if n == 64 { !0 } else { ((1u64 << n) - 1) << b };
        row[w] |= bits;
        x += n;
    }
}

/// Pack a row from a per-voxel predicate: bit `x` of the row is `f(x)`.
#[inline]
pub fn pack_row_with(nx: usize, dst: &mut [u64], mut f: impl FnMut(usize) -> bool) {
    for (wi, w) in dst.iter_mut().enumerate() {
        let base = wi * 64;
        let n = (nx - base).min(64);
        let mut v = 0u64;
        for b in 0..n {
            v |= (f(base + b) as u64) << b;
        }
        *w = v;
    }
}

impl Mask {
    /// An all-background mask.
    pub fn zeros(geometry: Geometry) -> Self {
        let [nx, ny, nz] = geometry.dims;
        let wpr = nx.div_ceil(64);
        Mask {
            geometry,
            wpr,
            words: vec![0; wpr * ny * nz],
        }
    }

    /// A mask from bytes in x-fastest order; any non-zero byte is foreground.
    pub fn from_bytes(geometry: Geometry, bytes: &[u8]) -> Result<Self, ShapeError> {
        if bytes.len() != geometry.len() {
            return Err(ShapeError {
                got: bytes.len(),
                want: geometry.len(),
                dims: geometry.dims,
            });
        }
        let nx = geometry.dims[0];
        Ok(Mask::zeros(geometry).fill_from(|r, row| pack_row(&bytes[r * nx..(r + 1) * nx], row)))
    }

    /// A mask whose rows are written by `f(y, z, row)`; `row` arrives zeroed. `f` must
    /// leave the bits past `nx` zero ([`pack_row`] and [`pack_row_with`] do).
    pub fn from_rows(
        geometry: Geometry,
        f: impl Fn(usize, usize, &mut [u64]) + Sync + Send,
    ) -> Self {
        let out = Mask::zeros(geometry);
        let ny = out.geometry.dims[1];
        out.fill_from(|r, row| f(r % ny, r / ny, row))
    }

    /// Write every row with `f(row_index, row)`, row index `y + ny * z`, in parallel.
    fn fill_from(mut self, f: impl Fn(usize, &mut [u64]) + Sync + Send) -> Self {
        let wpr = self.wpr;
        // A few rows per task: a row of a 512-wide grid is only 8 words.
        if let Some(rows_per_task) = 4096usize.checked_div(wpr) {
            let rows_per_task = rows_per_task.max(1);
            self.words
                .par_chunks_mut(wpr * rows_per_task)
                .enumerate()
                .for_each(|(c, chunk)| {
                    for (i, row) in chunk.chunks_mut(wpr).enumerate() {
                        f(c * rows_per_task + i, row);
                    }
                });
        }
        self
    }

    /// A mask where voxel with linear (x-fastest) index `i` is set when `f(i)`.
    pub fn from_fn(geometry: Geometry, f: impl Fn(usize) -> bool + Sync + Send) -> Self {
        let nx = geometry.dims[0];
        Mask::zeros(geometry).fill_from(|r, row| pack_row_with(nx, row, |x| f(r * nx + x)))
    }

    /// The voxels as bytes 0/1 in x-fastest order (a full-size copy: for tests and
    /// small grids; kernels unpack slices instead).
    pub fn to_bytes(&self) -> Vec<u8> {
        let [nx, ny, _] = self.geometry.dims;
        let mut out = vec![0u8; self.geometry.len()];
        if nx * ny > 0 {
            out.par_chunks_mut(nx * ny)
                .enumerate()
                .for_each(|(z, s)| self.unpack_slice(z, s));
        }
        out
    }

    /// Voxels `range` (linear, x-fastest indices) as bytes 0/1, unpacked row by row.
    pub fn bytes_in(&self, range: Range<usize>) -> Vec<u8> {
        let nx = self.geometry.dims[0];
        let mut out = Vec::with_capacity(range.len());
        let mut row = vec![0u8; nx];
        let mut i = range.start;
        while i < range.end {
            let (r, x0) = (i / nx, i % nx);
            let x1 = nx.min(x0 + (range.end - i));
            unpack_row(&self.words[r * self.wpr..(r + 1) * self.wpr], &mut row);
            out.extend_from_slice(&row[x0..x1]);
            i += x1 - x0;
        }
        out
    }

    /// Unpack slice `z` into `out` (`nx * ny` bytes 0/1, x fastest).
    pub fn unpack_slice(&self, z: usize, out: &mut [u8]) {
        let [nx, ny, _] = self.geometry.dims;
        for (y, row) in out[..nx * ny].chunks_mut(nx.max(1)).enumerate() {
            unpack_row(self.row(y, z), row);
        }
    }

    /// The grid.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Grid size (nx, ny, nz).
    pub fn dims(&self) -> [usize; 3] {
        self.geometry.dims
    }

    /// Words per row of x (`ceil(nx / 64)`).
    pub fn words_per_row(&self) -> usize {
        self.wpr
    }

    /// All words, rows in y then z order.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// The words of row `(y, z)`.
    #[inline]
    pub fn row(&self, y: usize, z: usize) -> &[u64] {
        let r = (y + self.geometry.dims[1] * z) * self.wpr;
        &self.words[r..r + self.wpr]
    }

    /// Voxel `(x, y, z)`.
    #[inline]
    pub fn get(&self, x: usize, y: usize, z: usize) -> bool {
        let r = (y + self.geometry.dims[1] * z) * self.wpr;
        (self.words[r + x / 64] >> (x % 64)) & 1 == 1
    }

    /// Voxel with linear (x-fastest) index `i`.
    #[inline]
    pub fn get_index(&self, i: usize) -> bool {
        let nx = self.geometry.dims[0];
        let (x, r) = (i % nx, i / nx);
        (self.words[r * self.wpr + x / 64] >> (x % 64)) & 1 == 1
    }

    /// Set or clear voxel `(x, y, z)`.
    #[inline]
    pub fn set(&mut self, x: usize, y: usize, z: usize, on: bool) {
        let r = (y + self.geometry.dims[1] * z) * self.wpr;
        let bit = 1u64 << (x % 64);
        let w = &mut self.words[r + x / 64];
        if on {
            *w |= bit
        } else {
            *w &= !bit
        }
    }

    /// Number of foreground voxels.
    pub fn count(&self) -> usize {
        self.words
            .par_chunks(1 << 14)
            .map(|c| c.iter().map(|w| w.count_ones() as usize).sum::<usize>())
            .sum()
    }

    /// A mask on the same grid, each word `f(a, b)` of this mask's and `other`'s words;
    /// the bits past `nx` are cleared afterwards, so `f` may set them (e.g. a NOT).
    pub fn zip_words(&self, other: &Mask, f: impl Fn(u64, u64) -> u64 + Sync + Send) -> Mask {
        assert_eq!(
            self.geometry.dims, other.geometry.dims,
            "zip_words: grids differ"
        );
        let mut out = Mask::zeros(self.geometry.clone());
        let wpr = self.wpr;
        if wpr > 0 {
            let last = last_word_mask(self.geometry.dims[0]);
            out.words
                .par_chunks_mut(wpr * 512)
                .zip(self.words.par_chunks(wpr * 512))
                .zip(other.words.par_chunks(wpr * 512))
                .for_each(|((o, a), b)| {
                    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                        *o = f(*a, *b);
                    }
                    for row in o.chunks_mut(wpr) {
                        row[wpr - 1] &= last;
                    }
                });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(dims: [usize; 3]) -> Geometry {
        Geometry::new(dims, [1.0, 1.0, 2.0])
    }

    #[test]
    fn bytes_round_trip_on_awkward_widths() {
        for nx in [1, 7, 63, 64, 65, 130] {
            let g = grid([nx, 3, 2]);
            let bytes: Vec<u8> = (0..g.len())
                .map(|i| ((i * 7919) % 5 == 0) as u8 * 3)
                .collect();
            let m = Mask::from_bytes(g.clone(), &bytes).unwrap();
            let want: Vec<u8> = bytes.iter().map(|&b| (b != 0) as u8).collect();
            assert_eq!(m.to_bytes(), want, "nx = {nx}");
            assert_eq!(m.count(), want.iter().filter(|&&b| b == 1).count());
            for (i, &w) in want.iter().enumerate() {
                assert_eq!(m.get_index(i), w == 1);
            }
            let f = Mask::from_fn(g.clone(), |i| want[i] == 1);
            assert_eq!(f, m);
            for r in [0..g.len(), 1..nx + 2, nx - 1..g.len() - 1, 3..3] {
                assert_eq!(m.bytes_in(r.clone()), want[r], "nx = {nx}");
            }
        }
    }

    #[test]
    fn padding_bits_stay_clear() {
        let g = grid([70, 2, 2]);
        let ones = Mask::from_fn(g.clone(), |_| true);
        let zeros = Mask::zeros(g);
        let not = zeros.zip_words(&zeros, |a, _| !a);
        assert_eq!(not, ones);
        assert_eq!(not.count(), 70 * 4);
    }

    #[test]
    fn gather_and_expand_are_inverse() {
        for b in 0..256u64 {
            let bytes: u64 = (0..8).map(|i| ((b >> i) & 1) << (8 * i)).sum();
            assert_eq!(gather8(bytes), b);
            assert_eq!(EXPAND[b as usize], bytes);
            // any non-zero byte counts as set
            assert_eq!(gather8(bytes * 0xff), b);
        }
    }

    #[test]
    fn bit_ranges_cross_words() {
        for (lo, hi) in [(0, 0), (3, 5), (60, 70), (0, 128), (5, 190), (64, 128)] {
            let mut row = [0u64; 3];
            set_bit_range(&mut row, lo, hi);
            for x in 0..192 {
                assert_eq!(
                    (row[x / 64] >> (x % 64)) & 1 == 1,
                    (lo..hi).contains(&x),
                    "{lo}..{hi} at {x}"
                );
            }
        }
    }

    #[test]
    fn set_and_get_agree() {
        let mut m = Mask::zeros(grid([65, 4, 3]));
        m.set(64, 3, 2, true);
        m.set(0, 0, 0, true);
        assert!(m.get(64, 3, 2) && m.get(0, 0, 0) && !m.get(63, 3, 2));
        assert_eq!(m.count(), 2);
        m.set(64, 3, 2, false);
        assert_eq!(m.count(), 1);
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(Mask::from_bytes(grid([4, 4, 4]), &[0u8; 10]).is_err());
    }
}
