//! 3x3 "same" convolutions (stride 1, one group) on contiguous NCHW `f32` slices, each
//! pass as nine shifted matrix products.
//!
//! Why by hand: burn Flex 0.22 runs a convolution as tiled im2col + gemm on channels-last
//! copies, and its weight gradient as a convolution of the input by the whole output
//! gradient (an im2col matrix of 9 x channels rows by batch x height x width columns,
//! 75 MB for one 128x128 layer of the seed network). No crate offers a CPU convolution
//! with its two gradients for burn's tensors, so this module supplies one, on top of the
//! `gemm` crate that Flex itself uses.
//!
//! The trick: zero-pad every plane by one voxel and read it as one flat row of
//! `(h + 2) * (w + 2)` values. Then the 3x3 window's tap `(ky, kx)` is one fixed column
//! offset, `(ky - 1) * (w + 2) + (kx - 1)`, into that row, and a whole pass is, per tap,
//! one matrix product of the `[channels, positions]` matrix read at that offset. Output
//! positions in the padding columns come out as junk and are skipped when copying out.
//! No im2col copies; the products run on strided views of the padded planes.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Batch and plane size of one convolution (input and output planes are the same size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Images in the batch.
    pub batch: usize,
    /// Plane height.
    pub height: usize,
    /// Plane width.
    pub width: usize,
}

/// Output columns one task computes (whole rows of the padded plane): large enough for
/// efficient products, small enough that the task's `[channels, columns]` block stays in
/// the core's L2 cache across the nine taps.
const CHUNK_COLUMNS: usize = 2048;

impl Geometry {
    /// The geometry of an NCHW tensor with these dims.
    pub fn of_nchw(dims: &[usize]) -> Self {
        Geometry {
            batch: dims[0],
            height: dims[2],
            width: dims[3],
        }
    }

    /// Padded row length.
    fn row(&self) -> usize {
        self.width + 2
    }

    /// Values in one padded plane.
    fn plane(&self) -> usize {
        (self.height + 2) * self.row()
    }

    /// Values in one unpadded plane.
    fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Flat offset of tap `tap` (`ky * 3 + kx`) relative to the window's centre.
    fn tap_offset(&self, tap: usize) -> isize {
        let (ky, kx) = ((tap / 3) as isize, (tap % 3) as isize);
        (ky - 1) * self.row() as isize + (kx - 1)
    }

    /// Padded-plane index of pixel `(0, 0)`.
    fn origin(&self) -> usize {
        self.row() + 1
    }

    /// Flat positions from pixel `(0, 0)` to pixel `(h - 1, w - 1)` inclusive, padding
    /// columns in between included.
    fn span(&self) -> usize {
        (self.height - 1) * self.row() + self.width
    }
}

/// Copies `[batch, channels, h, w]` into zero-padded `[batch, channels, h + 2, w + 2]`.
fn pad(src: &[f32], channels: usize, g: Geometry) -> Vec<f32> {
    let (plane, pixels, row, w) = (g.plane(), g.pixels(), g.row(), g.width);
    assert_eq!(src.len(), g.batch * channels * pixels, "pad: input size");
    let mut out = vec![0.0f32; g.batch * channels * plane];
    if pixels == 0 {
        return out;
    }
    out.par_chunks_mut(plane)
        .zip(src.par_chunks(pixels))
        .for_each(|(dst, src)| {
            for (y, line) in src.chunks_exact(w).enumerate() {
                let start = (y + 1) * row + 1;
                dst[start..start + w].copy_from_slice(line);
            }
        });
    out
}

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct Shared(pub(crate) *mut f32);
// SAFETY: every task writes elements no other task touches (see each use).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer. A method rather than the field, so a closure using it captures the
    /// whole (`Sync`) wrapper, not the raw pointer alone.
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// A strided matrix: element `[r, c]` at `ptr + r * row_stride + c * col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub(crate) ptr: *const f32,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// `dst = lhs * rhs` (or `dst += lhs * rhs` with `accumulate`), `dst` an `m x n` matrix
/// with rows `dst_row_stride` apart and unit column stride, `lhs` `m x k`, `rhs` `k x n`;
/// on the calling thread (callers parallelise over tasks).
///
/// # Safety
/// Every element the three views address must lie inside one live allocation each, and
/// `dst` must not be read or written by anyone else meanwhile.
pub(crate) unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_row_stride as isize,
        accumulate,
        lhs.ptr,
        lhs.col_stride as isize,
        lhs.row_stride as isize,
        rhs.ptr,
        rhs.col_stride as isize,
        rhs.row_stride as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        Parallelism::None,
    );
}

/// Weights of one pass as a matrix per tap: element `[m, k]` of tap `t` is
/// `weights[t + m * m_stride + k * k_stride]`.
#[derive(Clone, Copy)]
struct TapMatrices<'a> {
    weights: &'a [f32],
    m_stride: usize,
    k_stride: usize,
}

/// `out[b, m, y, x] = bias[m] + sum over taps t and k of
/// A_t[m, k] * src[b, k, (y, x) + direction * offset(t)]`, with `src`
/// `[batch, k_channels, h, w]` (zero outside the plane) and `out` `[batch, m_channels, h, w]`.
fn shifted_products(
    src: &[f32],
    k_channels: usize,
    m_channels: usize,
    taps: TapMatrices<'_>,
    direction: isize,
    bias: Option<&[f32]>,
    g: Geometry,
) -> Vec<f32> {
    assert_eq!(
        taps.weights.len(),
        m_channels * k_channels * 9,
        "conv3x3: weight size"
    );
    let (plane, pixels, row) = (g.plane(), g.pixels(), g.row());
    let src = pad(src, k_channels, g);
    let mut out = vec![0.0f32; g.batch * m_channels * pixels];
    if out.is_empty() || k_channels == 0 {
        // Nothing to sum over: the output is the bias.
        if let Some(bias) = bias {
            for (i, v) in out.iter_mut().enumerate() {
                *v = bias[(i / pixels) % m_channels];
            }
        }
        return out;
    }
    let rows = (CHUNK_COLUMNS / row).clamp(1, g.height);
    let chunks = g.height.div_ceil(rows);
    let (src, shared) = (&src, Shared(out.as_mut_ptr()));

    (0..g.batch * chunks).into_par_iter().for_each(move |task| {
        let shared = shared;
        let (b, chunk) = (task / chunks, task % chunks);
        let (y0, y1) = (chunk * rows, ((chunk + 1) * rows).min(g.height));
        let n = (y1 - y0 - 1) * row + g.width;
        let mut block = vec![0.0f32; m_channels * n];
        if let Some(bias) = bias {
            for (line, &v) in block.chunks_exact_mut(n).zip(bias) {
                line.fill(v);
            }
        }
        let image = &src[b * k_channels * plane..(b + 1) * k_channels * plane];
        let first = g.origin() + y0 * row;
        for tap in 0..9 {
            let start = (first as isize + direction * g.tap_offset(tap)) as usize;
            debug_assert!(start + (k_channels - 1) * plane + n <= image.len());
            // SAFETY: `block` is `m_channels x n`; the tap's weights stay inside
            // `taps.weights` (tap < 9, m < m_channels, k < k_channels); the source view
            // reads `k_channels` rows of `n` values from `start` in planes of `plane`,
            // inside `image` (the flat span plus a tap offset stays inside the padding).
            unsafe {
                product(
                    (m_channels, n, k_channels),
                    block.as_mut_ptr(),
                    n,
                    bias.is_some() || tap > 0,
                    View {
                        ptr: taps.weights.as_ptr().add(tap),
                        row_stride: taps.m_stride,
                        col_stride: taps.k_stride,
                    },
                    View {
                        ptr: image.as_ptr().add(start),
                        row_stride: plane,
                        col_stride: 1,
                    },
                );
            }
        }
        for (m, line) in block.chunks_exact(n).enumerate() {
            for y in y0..y1 {
                let from = &line[(y - y0) * row..(y - y0) * row + g.width];
                let at = (b * m_channels + m) * pixels + y * g.width;
                // SAFETY: task (b, chunk) alone writes rows y0..y1 of image b.
                unsafe {
                    std::ptr::copy_nonoverlapping(from.as_ptr(), shared.0.add(at), g.width);
                }
            }
        }
    });
    out
}

/// Forward pass: `x` `[batch, c_in, h, w]`, `weight` `[c_out, c_in, 3, 3]`, `bias`
/// `[c_out]`; returns `[batch, c_out, h, w]`.
pub fn forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    c_in: usize,
    c_out: usize,
    g: Geometry,
) -> Vec<f32> {
    let taps = TapMatrices {
        weights: weight,
        m_stride: c_in * 9,
        k_stride: 9,
    };
    shifted_products(x, c_in, c_out, taps, 1, bias, g)
}

/// Gradient of the input from the output's gradient `grad` `[batch, c_out, h, w]`:
/// the forward pass with each tap's weights transposed and its offset reversed.
pub fn input_grad(
    grad: &[f32],
    weight: &[f32],
    c_in: usize,
    c_out: usize,
    g: Geometry,
) -> Vec<f32> {
    let taps = TapMatrices {
        weights: weight,
        m_stride: 9,
        k_stride: c_in * 9,
    };
    shifted_products(grad, c_out, c_in, taps, -1, None, g)
}

/// Gradient of the weights, `[c_out, c_in, 3, 3]`: per tap, the output gradient's
/// `[c_out, positions]` matrix times the input's `[positions, c_in]` read at the tap's
/// offset, summed over the batch. Long products (all positions of an image), so tasks are
/// (tap, group of images), summed afterwards.
pub fn weight_grad(x: &[f32], grad: &[f32], c_in: usize, c_out: usize, g: Geometry) -> Vec<f32> {
    if g.batch * g.pixels() * c_in * c_out == 0 {
        return vec![0.0; c_out * c_in * 9];
    }
    let x = pad(x, c_in, g);
    let grad = pad(grad, c_out, g);
    let (plane, span) = (g.plane(), g.span());
    let groups = g.batch.min(4);
    let per_group = g.batch.div_ceil(groups);
    let partials: Vec<Vec<f32>> = (0..9 * groups)
        .into_par_iter()
        .map(|task| {
            let (tap, group) = (task / groups, task % groups);
            let mut acc = vec![0.0f32; c_out * c_in];
            let rhs_start = (g.origin() as isize + g.tap_offset(tap)) as usize;
            let images = group * per_group..((group + 1) * per_group).min(g.batch);
            for (i, b) in images.enumerate() {
                let lhs = &grad[(b * c_out * plane) + g.origin()..];
                let rhs = &x[b * c_in * plane + rhs_start..];
                debug_assert!((c_out - 1) * plane + span <= lhs.len());
                debug_assert!((c_in - 1) * plane + span <= rhs.len());
                // SAFETY: `acc` is `c_out x c_in`; both views read `span` values from each
                // of their planes, inside the padded image (checked above in debug).
                unsafe {
                    product(
                        (c_out, c_in, span),
                        acc.as_mut_ptr(),
                        c_in,
                        i > 0,
                        View {
                            ptr: lhs.as_ptr(),
                            row_stride: plane,
                            col_stride: 1,
                        },
                        View {
                            ptr: rhs.as_ptr(),
                            row_stride: 1,
                            col_stride: plane,
                        },
                    );
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0.0f32; c_out * c_in * 9];
    for (task, partial) in partials.iter().enumerate() {
        let tap = task / groups;
        for (oc, v) in partial.iter().enumerate() {
            out[oc * 9 + tap] += v;
        }
    }
    out
}

/// Gradient of the bias: the output gradient summed over batch and plane, per channel.
pub fn bias_grad(grad: &[f32], c_out: usize, g: Geometry) -> Vec<f32> {
    let pixels = g.pixels();
    if pixels == 0 {
        return vec![0.0; c_out];
    }
    (0..c_out)
        .into_par_iter()
        .map(|c| {
            (0..g.batch)
                .map(|b| lane_sum(&grad[(b * c_out + c) * pixels..(b * c_out + c + 1) * pixels]))
                .sum()
        })
        .collect()
}

/// Sum in 16 interleaved partial sums, which the compiler vectorises (a plain
/// `iter().sum()` must add in order, one value at a time).
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_close as close;

    /// Direct definition of the convolution, for agreement.
    fn naive_forward(x: &[f32], w: &[f32], c_in: usize, c_out: usize, g: Geometry) -> Vec<f32> {
        let (h, wd) = (g.height as isize, g.width as isize);
        let mut out = vec![0.0f32; g.batch * c_out * g.pixels()];
        for b in 0..g.batch {
            for o in 0..c_out {
                for y in 0..h {
                    for x0 in 0..wd {
                        let mut s = 0.0f64;
                        for i in 0..c_in {
                            for t in 0..9 {
                                let (yy, xx) = (y + t as isize / 3 - 1, x0 + t as isize % 3 - 1);
                                if yy < 0 || xx < 0 || yy >= h || xx >= wd {
                                    continue;
                                }
                                let xi = ((b * c_in + i) as isize * h + yy) * wd + xx;
                                s += (w[(o * c_in + i) * 9 + t] * x[xi as usize]) as f64;
                            }
                        }
                        out[((b * c_out + o) as isize * h * wd + y * wd + x0) as usize] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A small deterministic generator: values in [-1, 1).
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Plane sizes that hit one chunk, several chunks and a one-pixel-wide plane.
    const SHAPES: [(usize, usize, usize, usize, usize); 6] = [
        (2, 3, 4, 5, 7),
        (1, 1, 2, 1, 1),
        (3, 2, 3, 40, 70),
        (1, 5, 2, 9, 1),
        (0, 2, 3, 4, 4),
        (2, 2, 3, 0, 5),
    ];

    #[test]
    fn forward_matches_the_definition() {
        for (batch, c_in, c_out, height, width) in SHAPES {
            let g = Geometry::of_nchw(&[batch, c_in, height, width]);
            let x = values(batch * c_in * g.pixels(), 1);
            let w = values(c_out * c_in * 9, 2);
            let bias = values(c_out, 3);
            let mut want = naive_forward(&x, &w, c_in, c_out, g);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[(i / g.pixels()) % c_out];
            }
            close(&forward(&x, &w, Some(&bias), c_in, c_out, g), &want);
        }
    }

    /// The gradients against their definitions as sums of products with the forward map:
    /// `<grad, conv(x)> = <input_grad(grad), x>` and `= <weight_grad(x, grad), w>`.
    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        for (batch, c_in, c_out, height, width) in SHAPES {
            let g = Geometry::of_nchw(&[batch, c_in, height, width]);
            let x = values(batch * c_in * g.pixels(), 4);
            let w = values(c_out * c_in * 9, 5);
            let grad = values(batch * c_out * g.pixels(), 6);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum();
            let y: f64 = dot(&grad, &naive_forward(&x, &w, c_in, c_out, g));
            let via_x: f64 = dot(&input_grad(&grad, &w, c_in, c_out, g), &x);
            let dw = weight_grad(&x, &grad, c_in, c_out, g);
            let via_w: f64 = dot(&dw, &w);
            assert!((y - via_x).abs() < 1e-3 * (1.0 + y.abs()), "{y} vs {via_x}");
            assert!((y - via_w).abs() < 1e-3 * (1.0 + y.abs()), "{y} vs {via_w}");
            // Each weight's gradient alone: the forward pass with a one-hot weight.
            for k in [0, c_out * c_in * 9 - 1, (c_out * c_in * 9) / 2] {
                let mut one = vec![0.0f32; w.len()];
                one[k] = 1.0;
                let want: f64 = dot(&grad, &naive_forward(&x, &one, c_in, c_out, g));
                let got = dw[k] as f64;
                assert!(
                    (want - got).abs() < 1e-3 * (1.0 + want.abs()),
                    "{want} vs {got}"
                );
            }
            let bias_want: Vec<f32> = (0..c_out)
                .map(|o| {
                    (0..batch)
                        .flat_map(|b| {
                            let p = (b * c_out + o) * g.pixels();
                            grad[p..p + g.pixels()].iter().copied()
                        })
                        .sum()
                })
                .collect();
            close(&bias_grad(&grad, c_out, g), &bias_want);
        }
    }
}
