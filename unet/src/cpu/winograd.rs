//! Winograd F(2x2, 3x3) for [`CpuUNet`](super::CpuUNet)'s 3x3 convolutions.
//!
//! Why: the nine per-tap products of the other paths were about 88 % of a 512x512 slice,
//! half of it at levels 0 and 1 (16-32 channels on 512x512 and 256x256), where they are
//! narrow (16-32 rows, 16-64 summed) and far from the CPU's peak; a direct AVX2 kernel was
//! slower than them (docs/benchmarks.md). Winograd's minimal filtering computes each 2x2
//! output tile from its 4x4 input tile with 16 multiplications per channel pair instead
//! of 36, so the products shrink 2.25x: per task, 16 products `[c_out, c_in] x [c_in,
//! tiles]` (one per position of the transformed 4x4 tile) instead of nine `[c_out, c_in]
//! x [c_in, pixels]`. The input and output transforms around them are additions only,
//! over data that stays in the core's cache; they cost about as much as the products
//! save at the 512x512 level and less below, so a layer takes 8-40 % less time (a whole
//! slice about 1.3x less CPU time).
//!
//! With `G`, `B^T`, `A^T` as in Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks" (2016): the weights `U = G g G^T` once per network, per tile `V = B^T d B`
//! (`d` the 4x4 input window, read in place from the zero-padded plane), `M = U . V`
//! summed over input channels (the products), and the 2x2 output `A^T M A`, written with
//! bias and ReLU into the padded output plane. Needs even plane sizes (2x2 tiles), which
//! every level above the bottleneck has. F(4x4, 3x3) (36 products per 16 outputs) was
//! tried: slower here (its transforms did not vectorise as well) and 2e-4 off the direct
//! sum on a 1 -> 16 channel layer, outside the crate's 1e-4 agreement.

use std::cell::RefCell;

use rayon::prelude::*;

use super::{Conv3, Plane};
use crate::conv3x3::kernels::{product, Shared, View};

/// Values (transformed input and products) one task keeps: they stay in the core's L2
/// cache between the transforms and the products. Per layer of the seed network, 2^18
/// took 10-40 % less time than 2^16 (products over fewer tiles) and the same as 2^19.
const TASK_VALUES: usize = 1 << 18;

/// Fewest tiles a task takes: the deep layers (128-256 channels on 64x64 and 32x32),
/// where [`TASK_VALUES`] would give 32 tiles, then multiply their 16 weight matrices
/// (up to 4 MB) by few columns; 64 took 9-21 % less time there than 16 (CPU time of
/// both threads, medians of 9: 256 -> 128 channels on 64x64 10.5 vs 12.5 ms), 128 no
/// less than 64.
const MIN_TASK_TILES: usize = 64;

/// Transforms the folded `[c_out, c_in, 3, 3]` weights into the 16 `[c_out, c_in]`
/// matrices `U` (position `a * 4 + b` of `G g G^T` first), `[16, c_out, c_in]`.
pub(super) fn weights(w: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * c_out * c_in];
    for o in 0..c_out {
        for i in 0..c_in {
            let g = &w[(o * c_in + i) * 9..][..9];
            // G g: 4 x 3, combining the kernel's rows.
            let mut t = [[0.0f32; 3]; 4];
            for c in 0..3 {
                let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                t[0][c] = g0;
                t[1][c] = 0.5 * (g0 + g1 + g2);
                t[2][c] = 0.5 * (g0 - g1 + g2);
                t[3][c] = g2;
            }
            // (G g) G^T: 4 x 4, combining its columns.
            for (a, [t0, t1, t2]) in t.into_iter().enumerate() {
                let row = [t0, 0.5 * (t0 + t1 + t2), 0.5 * (t0 - t1 + t2), t2];
                for (b, v) in row.into_iter().enumerate() {
                    u[((a * 4 + b) * c_out + o) * c_in + i] = v;
                }
            }
        }
    }
    u
}

/// Whether [`conv3x3_relu`] computes this convolution on planes of `p`: even plane sizes.
pub(super) fn fits(p: Plane) -> bool {
    p.h % 2 == 0 && p.w % 2 == 0 && p.h > 0 && p.w > 0
}

thread_local! {
    /// A task's transformed input and products, reused by every task on the thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `dst = relu(conv(src) + bias)` as [`super::conv3x3_relu`], by Winograd F(2x2, 3x3):
/// `src` `conv.c_in` padded planes of `p`, `dst` the first `conv.c_out` padded planes of a
/// buffer (its ring is not written). Per task (a block of 2x2 output tiles: whole tile
/// rows, or a segment of one) the input transform, 16 products and the output transform.
pub(super) fn conv3x3_relu(src: &[f32], conv: &Conv3, dst: &mut [f32], p: Plane) {
    assert!(fits(p), "winograd: {}x{} plane", p.h, p.w);
    let (c_in, c_out) = (conv.c_in, conv.c_out);
    assert!(src.len() >= c_in * p.len() && dst.len() >= c_out * p.len());
    assert_eq!(conv.winograd.len(), 16 * c_out * c_in);
    let (tile_rows, tile_cols) = (p.h / 2, p.w / 2);
    // At least MIN_TASK_TILES tiles (the deep layers' products read large weights), but
    // at least two tasks.
    let want = (TASK_VALUES / (16 * (c_in + c_out)))
        .max(MIN_TASK_TILES)
        .min((tile_rows * tile_cols).div_ceil(2));
    // Whole tile rows per task where a row is small enough, else segments of a row.
    let (rows, cols) = if want >= tile_cols {
        ((want / tile_cols).min(tile_rows), tile_cols)
    } else {
        (1, tile_cols.div_ceil(tile_cols.div_ceil(want)))
    };
    let (bands, segments) = (tile_rows.div_ceil(rows), tile_cols.div_ceil(cols));
    let out = Shared(dst.as_mut_ptr());
    (0..bands * segments).into_par_iter().for_each(|task| {
        let (band, seg) = (task / segments, task % segments);
        let (r0, r1) = (band * rows, ((band + 1) * rows).min(tile_rows));
        let (j0, j1) = (seg * cols, ((seg + 1) * cols).min(tile_cols));
        SCRATCH.with_borrow_mut(|scratch| {
            let tiles = (r1 - r0) * (j1 - j0);
            let need = 16 * (c_in + c_out) * tiles;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (v, m) = scratch[..need].split_at_mut(16 * c_in * tiles);
            input_transform(src, c_in, p, (r0, r1), (j0, j1), v);
            for xi in 0..16 {
                // SAFETY: `m`'s matrix `xi` is `c_out x tiles`, `U`'s `c_out x c_in`,
                // `v`'s `c_in x tiles`, all inside their buffers (sizes above).
                unsafe {
                    product(
                        (c_out, tiles, c_in),
                        m.as_mut_ptr().add(xi * c_out * tiles),
                        tiles,
                        false,
                        View {
                            ptr: conv.winograd.as_ptr().add(xi * c_out * c_in),
                            row_stride: c_in,
                            col_stride: 1,
                        },
                        View {
                            ptr: v.as_ptr().add(xi * c_in * tiles),
                            row_stride: tiles,
                            col_stride: 1,
                        },
                    );
                }
            }
            // SAFETY: task (band, seg) alone writes output rows 2*r0..2*r1, columns
            // 2*j0..2*j1 of every channel, inside `dst` (asserted above).
            unsafe { output_transform(m, &conv.bias, out, p, (r0, r1), (j0, j1)) };
        });
    });
}

/// `V = B^T d B` of tiles `(r, j)`, `r` in `r0..r1`, `j` in `j0..j1`, of every input
/// channel into `v` `[16, c_in, tiles]` (tiles row-major). Tile `(r, j)`'s window is
/// padded rows `2r..2r + 4`, padded columns `2j..2j + 4`. The row combinations run over
/// whole rows first (the two commute), then the column ones per tile.
fn input_transform(
    src: &[f32],
    c_in: usize,
    p: Plane,
    (r0, r1): (usize, usize),
    (j0, j1): (usize, usize),
    v: &mut [f32],
) {
    let (plane, row) = (p.len(), p.row());
    let jn = j1 - j0;
    let tiles = (r1 - r0) * jn;
    // Padded columns 2*j0 .. 2*j1 + 2 of the four row combinations.
    let span = 2 * jn + 2;
    let mut rows = vec![0.0f32; 4 * span];
    for ci in 0..c_in {
        if ci + 1 < c_in {
            prefetch_window(
                src,
                (ci + 1) * plane + 2 * r0 * row + 2 * j0,
                row,
                2 * (r1 - r0) + 2,
                span,
            );
        }
        for r in r0..r1 {
            let at = |k: usize| &src[ci * plane + (2 * r + k) * row + 2 * j0..][..span];
            let (d0, d1, d2, d3) = (at(0), at(1), at(2), at(3));
            let (e0, rest) = rows.split_at_mut(span);
            let (e1, rest) = rest.split_at_mut(span);
            let (e2, e3) = rest.split_at_mut(span);
            for x in 0..span {
                e0[x] = d0[x] - d2[x];
                e1[x] = d1[x] + d2[x];
                e2[x] = d2[x] - d1[x];
                e3[x] = d1[x] - d3[x];
            }
            let t0 = (r - r0) * jn;
            for (a, ea) in rows.chunks_exact(span).enumerate() {
                let [v0, v1, v2, v3] =
                    four_rows(v, ((a * 4) * c_in + ci) * tiles + t0, c_in * tiles, jn);
                for jj in 0..jn {
                    let (x0, x1, x2, x3) =
                        (ea[2 * jj], ea[2 * jj + 1], ea[2 * jj + 2], ea[2 * jj + 3]);
                    v0[jj] = x0 - x2;
                    v1[jj] = x1 + x2;
                    v2[jj] = x2 - x1;
                    v3[jj] = x1 - x3;
                }
            }
        }
    }
}

/// Asks the CPU to fetch `lines` rows of `len` values, `row` apart, from `start` of `src`
/// into its caches: the next channel's window, while the task works on this one. The
/// window's rows are short runs 1 MB apart (at 512x512) that the hardware prefetcher
/// does not foresee; the loads waiting for them were most of the input transform's time.
/// A slice took 183 instead of 190 ms of CPU time with it (one thread, three alternating
/// pairs of runs).
fn prefetch_window(src: &[f32], start: usize, row: usize, lines: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in 0..lines {
        for chunk in src[start + l * row..][..len].chunks(16) {
            // SAFETY: a prefetch has no effect but on the caches; the address is inside
            // `src` anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    chunk.as_ptr().cast(),
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, start, row, lines, len);
}

/// The four rows of `len` values at `start`, `start + stride`, ... of `v` (`stride >= len`).
fn four_rows(v: &mut [f32], start: usize, stride: usize, len: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = v[start..].split_at_mut(stride);
    let (r1, rest) = rest.split_at_mut(stride);
    let (r2, r3) = rest.split_at_mut(stride);
    [
        &mut r0[..len],
        &mut r1[..len],
        &mut r2[..len],
        &mut r3[..len],
    ]
}

/// `A^T M A` plus bias through ReLU of every output channel's tiles (`m` `[16, c_out,
/// tiles]`) into the padded output planes at `out`.
///
/// # Safety
/// Only the calling task writes output rows `2*r0..2*r1`, columns `2*j0..2*j1` of the
/// `bias.len()` channels, and they lie inside the buffer `out` points into.
unsafe fn output_transform(
    m: &[f32],
    bias: &[f32],
    out: Shared,
    p: Plane,
    (r0, r1): (usize, usize),
    (j0, j1): (usize, usize),
) {
    let c_out = bias.len();
    let jn = j1 - j0;
    let tiles = (r1 - r0) * jn;
    // The tile row's four outputs per tile (rows 0-1, columns 0-1), before interleaving.
    let mut y = vec![0.0f32; 4 * jn];
    for (o, &b) in bias.iter().enumerate() {
        for r in r0..r1 {
            let t0 = (r - r0) * jn;
            let mm: [&[f32]; 16] =
                std::array::from_fn(|xi| &m[(xi * c_out + o) * tiles + t0..][..jn]);
            {
                let (y00, rest) = y.split_at_mut(jn);
                let (y01, rest) = rest.split_at_mut(jn);
                let (y10, y11) = rest.split_at_mut(jn);
                let relu = |v: f32| if v > 0.0 { v } else { 0.0 };
                for jj in 0..jn {
                    // A^T over the rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, per column
                    // c; then the same over the columns.
                    let s0: [f32; 4] =
                        std::array::from_fn(|c| mm[c][jj] + mm[4 + c][jj] + mm[8 + c][jj]);
                    let s1: [f32; 4] =
                        std::array::from_fn(|c| mm[4 + c][jj] - mm[8 + c][jj] - mm[12 + c][jj]);
                    y00[jj] = relu(b + s0[0] + s0[1] + s0[2]);
                    y01[jj] = relu(b + s0[1] - s0[2] - s0[3]);
                    y10[jj] = relu(b + s1[0] + s1[1] + s1[2]);
                    y11[jj] = relu(b + s1[1] - s1[2] - s1[3]);
                }
            }
            let (top, bottom) = y.split_at(2 * jn);
            for (dy, half) in [top, bottom].into_iter().enumerate() {
                let (even, odd) = half.split_at(jn);
                // SAFETY: by the caller's contract, output row 2r + dy, columns
                // 2*j0..2*j1 of channel o are this task's and inside the buffer.
                let to = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.ptr().add(o * p.len() + p.at(2 * r + dy, 2 * j0)),
                        2 * jn,
                    )
                };
                for ((t, &u), &v) in to.chunks_exact_mut(2).zip(even).zip(odd) {
                    t[0] = u;
                    t[1] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conv3x3_relu_taps, Conv3, Plane};
    use super::*;
    use crate::testing::assert_close;

    /// Values in [-1, 1) from a small xorshift generator.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// A convolution with random folded weights and bias.
    fn conv(c_in: usize, c_out: usize, seed: u64) -> Conv3 {
        let matrix = values(c_out * c_in * 9, seed);
        let mut weight = vec![0.0f32; matrix.len()];
        for o in 0..c_out {
            for i in 0..c_in {
                for t in 0..9 {
                    weight[(t * c_out + o) * c_in + i] = matrix[(o * c_in + i) * 9 + t];
                }
            }
        }
        Conv3 {
            weight,
            winograd: weights(&matrix, c_in, c_out),
            matrix,
            bias: values(c_out, seed + 1),
            c_in,
            c_out,
        }
    }

    /// Padded input planes: random inside, zero ring.
    fn input(c: usize, p: Plane, seed: u64) -> Vec<f32> {
        let mut x = vec![0.0f32; c * p.len()];
        let v = values(c * p.h * p.w, seed);
        for ci in 0..c {
            for y in 0..p.h {
                let at = ci * p.len() + p.at(y, 0);
                x[at..at + p.w].copy_from_slice(&v[(ci * p.h + y) * p.w..][..p.w]);
            }
        }
        x
    }

    /// Against the nine-tap products (which the crate's tests check against burn): shapes
    /// of the seed network's levels 0-1, one and several tasks per plane (whole tile rows
    /// and segments of one), a plane of one tile row, odd channel counts; the padding ring
    /// of the output stays untouched.
    #[test]
    fn matches_the_nine_tap_products() {
        for (c_in, c_out, h, w) in [
            (1, 16, 512, 512),
            (16, 16, 34, 70),
            (32, 16, 6, 2),
            (16, 32, 256, 256),
            (64, 32, 18, 600),
            (3, 5, 2, 4),
        ] {
            let p = Plane { h, w };
            let (cv, x) = (
                conv(c_in, c_out, (c_in * 31 + h) as u64),
                input(c_in, p, w as u64),
            );
            // Output buffers with a ring of NaN: the ring must stay untouched.
            let (mut want, mut got) = (
                vec![f32::NAN; c_out * p.len()],
                vec![f32::NAN; c_out * p.len()],
            );
            conv3x3_relu_taps(&x, &cv, &mut want, p);
            conv3x3_relu(&x, &cv, &mut got, p);
            let inner = |v: &[f32]| {
                (0..c_out)
                    .flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c, y, x))))
                    .map(|(c, y, x)| v[c * p.len() + p.at(y, x)])
                    .collect::<Vec<f32>>()
            };
            assert_close(&inner(&got), &inner(&want));
            assert_eq!(
                got.iter().filter(|v| v.is_nan()).count(),
                c_out * (p.len() - h * w),
                "{c_in}->{c_out} {h}x{w}: the padding ring written"
            );
        }
    }
}
