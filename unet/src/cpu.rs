//! Inference of the whole U-Net on the CPU with this crate's kernels, outside burn:
//! [`CpuUNet`].
//!
//! Why: after the 3x3 convolutions got their own kernels ([`crate::conv3x3`]), a 512x512
//! slice still spent a large share of its time between them, in burn Flex's passes over
//! the activations: ReLU, max pooling, transposed convolution, concatenation, softmax, and
//! the zero-padded copy our kernels make of every convolution's input. Here every
//! activation lives in one zero-padded buffer per level for the whole pass, so
//!
//! - a convolution reads its input in place (no padded copy) and writes bias + ReLU into
//!   the next layer's padded buffer as it copies its result out (no ReLU pass); on even
//!   planes by Winograd F(2x2, 3x3) (`cpu/winograd.rs`: 2.25x fewer multiplications);
//! - the encoder's skip output is written straight into the first half of the decoder's
//!   concatenation buffer and the transposed convolution into its second half (no
//!   concatenation copy);
//! - batch norm is folded into the convolutions once, when the network is prepared;
//! - max pooling, the 2x2 transposed convolution (one matrix product per block of rows,
//!   scattered to the four output phases) and the 1x1 head with its softmax are small
//!   kernels of their own;
//! - the buffers are allocated once and reused for every image of every batch.
//!
//! Images go through the network one at a time (each layer parallel over row chunks and
//! output channel blocks), which keeps a 512x512 image's working set (~100 MB) small and
//! makes every result independent of the batch size.

use std::sync::Mutex;

use burn::backend::DispatchDevice;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::conv3x3::kernels::{product, Shared, View};
use crate::model::{ConvBlock, UNet};

mod winograd;

/// Output columns (whole padded rows) one convolution task computes: its
/// `[channels, columns]` block stays in the core's cache across the nine taps. 1024 took
/// 3-10 % less CPU time than 2048 on a 512x512 slice (4096: more).
const CHUNK_COLUMNS: usize = 1024;

/// Smallest block of output channels a task computes when a layer is split by channels.
const MIN_CHANNEL_BLOCK: usize = 16;

/// A plane of `h` x `w` pixels stored with a one-pixel ring of zeros, `(h + 2) * (w + 2)`
/// values, so a 3x3 window's taps are fixed offsets into the flat plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plane {
    h: usize,
    w: usize,
}

impl Plane {
    /// Padded row length.
    fn row(self) -> usize {
        self.w + 2
    }

    /// Values in one padded plane.
    fn len(self) -> usize {
        (self.h + 2) * self.row()
    }

    /// Flat index of pixel `(y, x)`.
    fn at(self, y: usize, x: usize) -> usize {
        (y + 1) * self.row() + x + 1
    }

    /// The plane one level down (2x2 pooling).
    fn half(self) -> Plane {
        Plane {
            h: self.h / 2,
            w: self.w / 2,
        }
    }

    /// Rows per task so a task covers about [`CHUNK_COLUMNS`] columns, and the task count.
    fn chunks(self) -> (usize, usize) {
        let rows = (CHUNK_COLUMNS / self.row()).clamp(1, self.h.max(1));
        (rows, self.h.div_ceil(rows))
    }
}

/// Output channel blocks for a layer with `chunks` row tasks: split until there are
/// about four tasks per thread (small planes deep in the network have one row chunk),
/// never below [`MIN_CHANNEL_BLOCK`] channels. Returns the block size.
fn channel_block(channels: usize, chunks: usize) -> usize {
    let want = 4 * rayon::current_num_threads();
    let mut blocks = 1;
    while chunks * blocks < want && channels / (blocks * 2) >= MIN_CHANNEL_BLOCK {
        blocks *= 2;
    }
    channels.div_ceil(blocks).max(1)
}

/// Runs `task(rows, channels)` in parallel for every block of a layer's output on `p`
/// with `channels` output channels: row chunks of [`Plane::chunks`] times channel blocks
/// of [`channel_block`], as half-open ranges `(y0, y1)` and `(c0, c1)`.
fn for_each_block(
    p: Plane,
    channels: usize,
    task: impl Fn((usize, usize), (usize, usize)) + Sync + Send,
) {
    let (rows, chunks) = p.chunks();
    let mb = channel_block(channels, chunks);
    let blocks = channels.div_ceil(mb);
    (0..chunks * blocks).into_par_iter().for_each(|t| {
        let (chunk, blk) = (t / blocks, t % blocks);
        task(
            (chunk * rows, ((chunk + 1) * rows).min(p.h)),
            (blk * mb, ((blk + 1) * mb).min(channels)),
        );
    });
}

/// A 3x3 convolution with batch norm folded in: per tap `t`, the `[c_out, c_in]` matrix
/// at `weight[t * c_out * c_in..]` (row-major), and the bias.
#[derive(Debug, Clone)]
struct Conv3 {
    weight: Vec<f32>,
    /// `[c_out, c_in * 9]` (burn's layout, folded): the matrix of [`conv3x3_relu_cols`].
    matrix: Vec<f32>,
    /// `[16, c_out, c_in]`: the Winograd-transformed weights of [`winograd`].
    winograd: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// Two convolutions, each followed by ReLU.
#[derive(Debug, Clone)]
struct Block {
    conv1: Conv3,
    conv2: Conv3,
}

/// A 2x2 transposed convolution, stride 2: the `[4 * c_out, c_in]` matrix whose row
/// `o * 4 + dy * 2 + dx` gives output channel `o`'s phase `(dy, dx)`.
#[derive(Debug, Clone)]
struct Up2 {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// The 1x1 head: `[classes, c_in]` and bias.
#[derive(Debug, Clone)]
struct Head {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    classes: usize,
}

/// The U-Net's weights prepared for [`CpuUNet::forward`], and its reusable buffers.
#[derive(Debug)]
pub struct CpuUNet {
    in_channels: usize,
    /// Level 0 first, the bottleneck last.
    blocks: Vec<Block>,
    /// From the bottleneck up: `ups[i]` goes from level `levels - 1 - i` to the one above.
    ups: Vec<(Up2, Block)>,
    head: Head,
    buffers: Mutex<Option<Buffers>>,
}

/// The activations of one image, per level: `x` the block's input (the image at level 0,
/// the pooled level above elsewhere), `t` the first convolution's output, `cat` the
/// second's (the skip) followed by the upsampled level below (the decoder's input), whose
/// first half then takes the decoder's output. All planes padded, the ring always zero.
#[derive(Debug)]
struct Buffers {
    top: Plane,
    x: Vec<Vec<f32>>,
    t: Vec<Vec<f32>>,
    cat: Vec<Vec<f32>>,
}

/// The f32 values of a tensor, or `None` for another dtype.
fn values<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.into_data().try_into_vec::<f32>().ok()
}

/// A 3x3 "same" convolution (stride 1, one group) with `norm` folded in as at inference
/// (`w * s`, `(b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`, as
/// [`crate::model`] folds it for burn), or `None` for any other convolution.
fn conv3(conv: &Conv2d, norm: Option<&BatchNorm>) -> Option<Conv3> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    let same = matches!(
        conv.padding,
        PaddingConfig2d::Same | PaddingConfig2d::Explicit(1, 1, 1, 1)
    );
    if [kh, kw] != [3, 3]
        || conv.stride != [1, 1]
        || conv.dilation != [1, 1]
        || conv.groups != 1
        || !same
    {
        return None;
    }
    let mut w = values(conv.weight.val())?;
    let mut bias = match &conv.bias {
        Some(b) => values(b.val())?,
        None => vec![0.0; c_out],
    };
    if let Some(n) = norm {
        let (gamma, beta) = (values(n.gamma.val())?, values(n.beta.val())?);
        let (mean, var) = (
            values(n.running_mean.value())?,
            values(n.running_var.value())?,
        );
        for o in 0..c_out {
            let s = gamma[o] / (var[o] + n.epsilon as f32).sqrt();
            for v in &mut w[o * c_in * 9..(o + 1) * c_in * 9] {
                *v *= s;
            }
            bias[o] = (bias[o] - mean[o]) * s + beta[o];
        }
    }
    // [c_out, c_in, 3, 3] -> per tap [c_out, c_in].
    let mut weight = vec![0.0f32; w.len()];
    for o in 0..c_out {
        for i in 0..c_in {
            for t in 0..9 {
                weight[(t * c_out + o) * c_in + i] = w[(o * c_in + i) * 9 + t];
            }
        }
    }
    Some(Conv3 {
        weight,
        winograd: winograd::weights(&w, c_in, c_out),
        matrix: w,
        bias,
        c_in,
        c_out,
    })
}

fn block(b: &ConvBlock) -> Option<Block> {
    Some(Block {
        conv1: conv3(&b.conv1, b.norm1.as_ref())?,
        conv2: conv3(&b.conv2, b.norm2.as_ref())?,
    })
}

fn up2(up: &ConvTranspose2d) -> Option<Up2> {
    let [c_in, c_out, kh, kw] = up.weight.dims();
    if [kh, kw] != [2, 2]
        || up.stride != [2, 2]
        || up.padding != [0, 0]
        || up.padding_out != [0, 0]
        || up.dilation != [1, 1]
        || up.groups != 1
    {
        return None;
    }
    let w = values(up.weight.val())?;
    // [c_in, c_out, 2, 2] -> [c_out * 4, c_in].
    let mut weight = vec![0.0f32; w.len()];
    for i in 0..c_in {
        for r in 0..c_out * 4 {
            weight[r * c_in + i] = w[i * c_out * 4 + r];
        }
    }
    let bias = match &up.bias {
        Some(b) => values(b.val())?,
        None => vec![0.0; c_out],
    };
    Some(Up2 {
        weight,
        bias,
        c_in,
        c_out,
    })
}

fn is_2x2_pool(p: &MaxPool2d) -> bool {
    p.kernel_size == [2, 2]
        && p.stride == [2, 2]
        && p.dilation == [1, 1]
        && matches!(p.padding, PaddingConfig2d::Valid)
}

impl CpuUNet {
    /// The network prepared for [`forward`](Self::forward) when `device` is burn Flex
    /// without autodiff and `net` is what these kernels compute (3x3 "same" convolutions,
    /// 2x2 pooling and 2x2 stride-2 transposed convolutions, f32); `None` otherwise, and
    /// the caller runs burn.
    pub fn for_device(net: &UNet, device: &Device) -> Option<Self> {
        if device.is_autodiff() || !matches!(device.as_dispatch(), DispatchDevice::Flex(_)) {
            return None;
        }
        Self::new(net)
    }

    /// The network prepared for [`forward`](Self::forward), or `None` when it has a layer
    /// these kernels do not compute.
    pub fn new(net: &UNet) -> Option<Self> {
        let mut blocks = vec![block(&net.input)?];
        for down in &net.downs {
            if !is_2x2_pool(&down.pool) {
                return None;
            }
            blocks.push(block(&down.block)?);
        }
        let ups = net
            .ups
            .iter()
            .map(|u| Some((up2(&u.up)?, block(&u.block)?)))
            .collect::<Option<Vec<_>>>()?;
        let head_dims = net.head.weight.dims();
        if head_dims[2..] != [1, 1] || net.head.stride != [1, 1] || net.head.groups != 1 {
            return None;
        }
        let head = Head {
            weight: values(net.head.weight.val())?,
            bias: match &net.head.bias {
                Some(b) => values(b.val())?,
                None => vec![0.0; head_dims[0]],
            },
            c_in: head_dims[1],
            classes: head_dims[0],
        };
        // Channel counts must chain as UNet::forward chains them.
        let c: Vec<usize> = blocks.iter().map(|b| b.conv2.c_out).collect();
        let levels = blocks.len();
        let chained = blocks.iter().enumerate().all(|(l, b)| {
            b.conv1.c_out == c[l] && b.conv2.c_in == c[l] && (l == 0 || b.conv1.c_in == c[l - 1])
        }) && ups.len() == levels - 1
            && ups.iter().enumerate().all(|(i, (up, b))| {
                let l = levels - 2 - i;
                up.c_in == c[l + 1]
                    && up.c_out == c[l]
                    && b.conv1.c_in == 2 * c[l]
                    && b.conv1.c_out == c[l]
                    && b.conv2.c_in == c[l]
                    && b.conv2.c_out == c[l]
            })
            && head.c_in == c[0];
        if !chained {
            return None;
        }
        Some(CpuUNet {
            in_channels: blocks[0].conv1.c_in,
            blocks,
            ups,
            head,
            buffers: Mutex::new(None),
        })
    }

    /// Levels (resolutions) of the network.
    fn levels(&self) -> usize {
        self.blocks.len()
    }

    /// Softmax class probabilities `[batch, classes, h, w]` of `input`
    /// `[batch, in_channels, h, w]`; `h` and `w` must be multiples of `2^(levels - 1)`.
    pub fn forward(&self, input: &[f32], batch: usize, h: usize, w: usize) -> Vec<f32> {
        let m = 1 << (self.levels() - 1);
        assert!(
            h % m == 0 && w % m == 0,
            "CpuUNet: {h}x{w} not a multiple of {m}"
        );
        let (cin, classes) = (self.in_channels, self.head.classes);
        assert_eq!(input.len(), batch * cin * h * w, "CpuUNet: input size");
        let top = Plane { h, w };
        let mut bufs = match self.buffers.lock().map(|mut b| b.take()) {
            Ok(Some(b)) if b.top == top => b,
            _ => self.buffers_for(top),
        };
        let mut out = vec![0.0f32; batch * classes * h * w];
        for (image, probs) in input
            .chunks_exact(cin * h * w)
            .zip(out.chunks_exact_mut(classes * h * w))
        {
            self.forward_one(image, &mut bufs, probs);
        }
        if let Ok(mut slot) = self.buffers.lock() {
            *slot = Some(bufs);
        }
        out
    }

    fn buffers_for(&self, top: Plane) -> Buffers {
        let levels = self.levels();
        let mut b = Buffers {
            top,
            x: Vec::new(),
            t: Vec::new(),
            cat: Vec::new(),
        };
        let mut p = top;
        for l in 0..levels {
            let c = self.blocks[l].conv2.c_out;
            b.x.push(vec![0.0; self.blocks[l].conv1.c_in * p.len()]);
            b.t.push(vec![0.0; c * p.len()]);
            let cat = if l + 1 < levels { 2 * c } else { c };
            b.cat.push(vec![0.0; cat * p.len()]);
            p = p.half();
        }
        b
    }

    fn forward_one(&self, image: &[f32], bufs: &mut Buffers, probs: &mut [f32]) {
        let levels = self.levels();
        let top = bufs.top;
        let planes: Vec<Plane> = std::iter::successors(Some(top), |p| Some(p.half()))
            .take(levels)
            .collect();
        // The image into level 0's padded input.
        for (c, src) in image.chunks_exact(top.h * top.w).enumerate() {
            for (y, line) in src.chunks_exact(top.w).enumerate() {
                let at = c * top.len() + top.at(y, 0);
                bufs.x[0][at..at + top.w].copy_from_slice(line);
            }
        }
        // Encoder.
        for (l, b) in self.blocks.iter().enumerate() {
            let p = planes[l];
            if l > 0 {
                let (above, x) = (&bufs.cat[l - 1], &mut bufs.x[l]);
                max_pool(above, b.conv1.c_in, planes[l - 1], x, p);
            }
            conv3x3_relu(&bufs.x[l], &b.conv1, &mut bufs.t[l], p);
            conv3x3_relu(&bufs.t[l], &b.conv2, &mut bufs.cat[l], p);
        }
        // Decoder: the level below's output (first channels of its `cat`) is upsampled
        // into the second half of this level's `cat`.
        for (i, (up, b)) in self.ups.iter().enumerate() {
            let l = levels - 2 - i;
            let (upper, lower) = bufs.cat.split_at_mut(l + 1);
            let c = up.c_out;
            let cat = &mut upper[l];
            let p = planes[l];
            up2x2(&lower[0], up, planes[l + 1], &mut cat[c * p.len()..], p);
            conv3x3_relu(cat, &b.conv1, &mut bufs.t[l], p);
            conv3x3_relu(&bufs.t[l], &b.conv2, cat, p);
        }
        head_softmax(&bufs.cat[0], &self.head, probs, top);
    }
}

/// `dst = relu(conv(src) + bias)`: `src` `conv.c_in` padded planes of `p`, `dst` the first
/// `conv.c_out` padded planes of a buffer (its ring is not written). By Winograd
/// F(2x2, 3x3) ([`winograd`]) wherever the plane's sizes are even and the layer sums over
/// at least [`WINOGRAD_FROM_CHANNELS`] input channels (every layer of the seed network on
/// a 512x512 slice but the first); otherwise as one column-matrix product
/// ([`conv3x3_relu_cols`]: the first layer, and deep layers on odd planes) or nine per-tap
/// products ([`conv3x3_relu_taps`]: shallow layers on odd planes).
fn conv3x3_relu(src: &[f32], conv: &Conv3, dst: &mut [f32], p: Plane) {
    if conv.c_in >= WINOGRAD_FROM_CHANNELS && winograd::fits(p) {
        winograd::conv3x3_relu(src, conv, dst, p)
    } else if conv.c_out >= COLUMNS_FROM_CHANNELS || conv.c_in < WINOGRAD_FROM_CHANNELS {
        conv3x3_relu_cols(src, conv, dst, p)
    } else {
        conv3x3_relu_taps(src, conv, dst, p)
    }
}

/// Input channels from which a convolution runs by Winograd. Per layer of the seed
/// network (one thread, CPU time, medians of 7, 2-core Xeon, docs/benchmarks.md), F(2x2)
/// against the best other path: 16 -> 16 channels on 512x512 14.9 vs 15.8 ms, 64 -> 32 on
/// 256x256 15.6 vs 23.0, 256 -> 128 on 64x64 12.3 vs 18.2; but the first layer (1 -> 16
/// on 512x512), whose products sum over one channel, 5.2 ms against 4.0 as a column
/// matrix.
const WINOGRAD_FROM_CHANNELS: usize = 8;

/// [`conv3x3_relu`] as nine matrix products per task (a chunk of rows, a block of output
/// channels), one per tap, each reading the source planes at the tap's offset (see
/// [`crate::conv3x3::kernels`]), then bias and ReLU on the way out.
fn conv3x3_relu_taps(src: &[f32], conv: &Conv3, dst: &mut [f32], p: Plane) {
    let (plane, row) = (p.len(), p.row());
    let (c_in, c_out) = (conv.c_in, conv.c_out);
    assert!(src.len() >= c_in * plane && dst.len() >= c_out * plane);
    let out = Shared(dst.as_mut_ptr());
    for_each_block(p, c_out, |(y0, y1), (m0, m1)| {
        let m = m1 - m0;
        let n = (y1 - y0 - 1) * row + p.w;
        let mut acc = bias_rows(&conv.bias[m0..m1], n);
        let first = p.at(y0, 0) as isize;
        for tap in 0..9 {
            let offset = (tap / 3) as isize - 1;
            let start = (first + offset * row as isize + (tap % 3) as isize - 1) as usize;
            debug_assert!(start + (c_in.max(1) - 1) * plane + n <= src.len());
            // SAFETY: `acc` is `m x n`; the weights view reads rows m0..m1 of tap `tap`'s
            // `[c_out, c_in]` matrix; the source view reads `c_in` planes, `n` values from
            // `start` in each, which stays inside the padded plane (the span from pixel
            // (y0, 0) to (y1 - 1, w - 1) plus at most one row and one column each way).
            unsafe {
                product(
                    (m, n, c_in),
                    acc.as_mut_ptr(),
                    n,
                    true,
                    View {
                        ptr: conv.weight.as_ptr().add((tap * c_out + m0) * c_in),
                        row_stride: c_in,
                        col_stride: 1,
                    },
                    View {
                        ptr: src.as_ptr().add(start),
                        row_stride: plane,
                        col_stride: 1,
                    },
                );
            }
        }
        // SAFETY: this task alone writes rows y0..y1 of channels m0..m1, inside
        // `dst` (asserted above).
        unsafe { store_relu(&acc, n, out, m0, (y0, y1), p) };
    });
}

/// A task's accumulator before its products add onto it: one row of `n` values per output
/// channel, each starting at that channel's bias.
fn bias_rows(bias: &[f32], n: usize) -> Vec<f32> {
    let mut acc = Vec::with_capacity(bias.len() * n);
    for &b in bias {
        acc.resize(acc.len() + n, b);
    }
    acc
}

/// Writes a task's accumulator through ReLU into `out`: row `i` of `acc` (`n` values,
/// image rows `y0..y1` of the padded plane `p`, `p.row()` apart) is output channel
/// `c0 + i`; the padding columns between the image rows are skipped.
///
/// # Safety
/// Only the calling task writes rows `y0..y1` of those channels, and they lie inside the
/// buffer `out` points into (`(c0 + acc.len() / n) * p.len()` values at least).
unsafe fn store_relu(
    acc: &[f32],
    n: usize,
    out: Shared,
    c0: usize,
    (y0, y1): (usize, usize),
    p: Plane,
) {
    let row = p.row();
    for (i, line) in acc.chunks_exact(n).enumerate() {
        for y in y0..y1 {
            let from = &line[(y - y0) * row..(y - y0) * row + p.w];
            // SAFETY: by the caller's contract, these `p.w` values of channel `c0 + i` are
            // inside `out` and written by this task alone.
            let to = unsafe {
                std::slice::from_raw_parts_mut(out.ptr().add((c0 + i) * p.len() + p.at(y, 0)), p.w)
            };
            // A comparison rather than f32::max, whose NaN rule keeps the compiler from
            // using maxps; NaN gives 0.0 both ways.
            for (t, &f) in to.iter_mut().zip(from) {
                *t = if f > 0.0 { f } else { 0.0 };
            }
        }
    }
}

/// Values of the column matrix a [`conv3x3_relu_cols`] task builds: it and the task's
/// output block stay in the core's L2 cache.
const COLUMN_VALUES: usize = 1 << 16;

/// Output channels from which a convolution that Winograd does not take runs as
/// [`conv3x3_relu_cols`] rather than [`conv3x3_relu_taps`]: the deep, small-plane layers
/// (128 and 256 channels of the seed network), where nine products over `c_in` and nine
/// passes over the output block cost most; e.g. the first decoder convolution (256 -> 128
/// channels on 64x64) took 19 instead of 31 ms. On the shallow layers the two ways
/// measured the same within the noise of the shared 2-core machine.
const COLUMNS_FROM_CHANNELS: usize = 128;

/// [`conv3x3_relu`] as one matrix product per task: the task copies its `[c_in * 9, n]`
/// column matrix (row `ci * 9 + tap` = channel `ci` read at the tap's offset, contiguous
/// runs of the padded plane) and multiplies it by the `[c_out, c_in * 9]` weights, so the
/// product sums over `9 * c_in` at once and writes its output once, instead of nine
/// products over `c_in` each reading and writing the output block.
fn conv3x3_relu_cols(src: &[f32], conv: &Conv3, dst: &mut [f32], p: Plane) {
    let (plane, row) = (p.len(), p.row());
    let (c_in, c_out) = (conv.c_in, conv.c_out);
    assert!(src.len() >= c_in * plane && dst.len() >= c_out * plane);
    let k = 9 * c_in;
    let rows = (COLUMN_VALUES / (k * row)).clamp(1, p.h.max(1));
    let chunks = p.h.div_ceil(rows);
    let out = Shared(dst.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|chunk| {
        let (y0, y1) = (chunk * rows, ((chunk + 1) * rows).min(p.h));
        let n = (y1 - y0 - 1) * row + p.w;
        let first = p.at(y0, 0);
        let mut cols = vec![0.0f32; k * n];
        for (r, line) in cols.chunks_exact_mut(n).enumerate() {
            let (ci, tap) = (r / 9, r % 9);
            let start = ci * plane + first + (tap / 3) * row + tap % 3 - row - 1;
            line.copy_from_slice(&src[start..start + n]);
        }
        let mut acc = bias_rows(&conv.bias, n);
        // SAFETY: `acc` is `c_out x n`, the weights `c_out x k`, `cols` `k x n`.
        unsafe {
            product(
                (c_out, n, k),
                acc.as_mut_ptr(),
                n,
                true,
                View {
                    ptr: conv.matrix.as_ptr(),
                    row_stride: k,
                    col_stride: 1,
                },
                View {
                    ptr: cols.as_ptr(),
                    row_stride: n,
                    col_stride: 1,
                },
            );
        }
        // SAFETY: task `chunk` alone writes rows y0..y1 of every channel, inside `dst`
        // (asserted above).
        unsafe { store_relu(&acc, n, out, 0, (y0, y1), p) };
    });
}

/// 2x2 max pooling, stride 2: `c` padded planes of `ps` into `c` padded planes of `pd`.
fn max_pool(src: &[f32], c: usize, ps: Plane, dst: &mut [f32], pd: Plane) {
    dst[..c * pd.len()]
        .par_chunks_mut(pd.len())
        .zip(src[..c * ps.len()].par_chunks(ps.len()))
        .for_each(|(d, s)| {
            for y in 0..pd.h {
                let a = &s[ps.at(2 * y, 0)..][..ps.w];
                let b = &s[ps.at(2 * y + 1, 0)..][..ps.w];
                let o = &mut d[pd.at(y, 0)..][..pd.w];
                for (x, v) in o.iter_mut().enumerate() {
                    *v = a[2 * x].max(a[2 * x + 1]).max(b[2 * x].max(b[2 * x + 1]));
                }
            }
        });
}

/// 2x2 transposed convolution, stride 2: `up.c_in` padded planes of `ps` into the first
/// `up.c_out` padded planes of `dst` (of `pd`, twice the size). Per task (a chunk of input
/// rows, a block of output channels) one matrix product of the `[4 * channels, c_in]`
/// weights by the input rows, each result row then written to its output phase.
fn up2x2(src: &[f32], up: &Up2, ps: Plane, dst: &mut [f32], pd: Plane) {
    let (plane, row) = (ps.len(), ps.row());
    let (c_in, c_out) = (up.c_in, up.c_out);
    assert!(src.len() >= c_in * plane && dst.len() >= c_out * pd.len());
    let out = Shared(dst.as_mut_ptr());
    for_each_block(ps, c_out, |(y0, y1), (o0, o1)| {
        let m = 4 * (o1 - o0);
        let n = (y1 - y0 - 1) * row + ps.w;
        let mut acc = vec![0.0f32; m * n];
        for (r, line) in acc.chunks_exact_mut(n).enumerate() {
            line.fill(up.bias[o0 + r / 4]);
        }
        // SAFETY: `acc` is `m x n`; the weights view reads rows 4*o0..4*o1 of the
        // `[4 * c_out, c_in]` matrix; the source view reads `c_in` planes, `n` values from
        // pixel (y0, 0) in each, inside the padded plane.
        unsafe {
            product(
                (m, n, c_in),
                acc.as_mut_ptr(),
                n,
                true,
                View {
                    ptr: up.weight.as_ptr().add(4 * o0 * c_in),
                    row_stride: c_in,
                    col_stride: 1,
                },
                View {
                    ptr: src.as_ptr().add(ps.at(y0, 0)),
                    row_stride: plane,
                    col_stride: 1,
                },
            );
        }
        // Rows 2r and 2r + 1 are the phases dx = 0 and 1 of output channel o, row dy:
        // interleaved into one output row.
        for (r, pair) in acc.chunks_exact(2 * n).enumerate() {
            let (o, dy) = (o0 + r / 2, r % 2);
            let (even, odd) = pair.split_at(n);
            for y in y0..y1 {
                let (a, b) = (
                    &even[(y - y0) * row..][..ps.w],
                    &odd[(y - y0) * row..][..ps.w],
                );
                // SAFETY: this task alone writes output rows 2*y0..2*y1 of
                // channels o0..o1; the row's 2 * ps.w = pd.w pixels lie inside `dst`.
                let to = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.ptr().add(o * pd.len() + pd.at(2 * y + dy, 0)),
                        pd.w,
                    )
                };
                for ((t, &u), &v) in to.chunks_exact_mut(2).zip(a).zip(b) {
                    t[0] = u;
                    t[1] = v;
                }
            }
        }
    });
}

/// The 1x1 head and softmax over classes: `head.c_in` padded planes of `p` into
/// `[classes, h, w]` (unpadded) probabilities. As burn's softmax: `exp(x - max) / sum`.
fn head_softmax(src: &[f32], head: &Head, probs: &mut [f32], p: Plane) {
    let (plane, row) = (p.len(), p.row());
    let (c_in, classes) = (head.c_in, head.classes);
    let pixels = p.h * p.w;
    assert!(src.len() >= c_in * plane && probs.len() == classes * pixels);
    let (rows, chunks) = p.chunks();
    let out = Shared(probs.as_mut_ptr());
    (0..chunks).into_par_iter().for_each(|chunk| {
        let (y0, y1) = (chunk * rows, ((chunk + 1) * rows).min(p.h));
        let n = (y1 - y0 - 1) * row + p.w;
        let mut acc = bias_rows(&head.bias, n);
        // SAFETY: `acc` is `classes x n`; the weights are `[classes, c_in]`; the source
        // view reads `c_in` planes, `n` values from pixel (y0, 0) in each.
        unsafe {
            product(
                (classes, n, c_in),
                acc.as_mut_ptr(),
                n,
                true,
                View {
                    ptr: head.weight.as_ptr(),
                    row_stride: c_in,
                    col_stride: 1,
                },
                View {
                    ptr: src.as_ptr().add(p.at(y0, 0)),
                    row_stride: plane,
                    col_stride: 1,
                },
            );
        }
        let mut e = vec![0.0f32; classes];
        for y in y0..y1 {
            for x in 0..p.w {
                let i = (y - y0) * row + x;
                let max = (0..classes)
                    .map(|c| acc[c * n + i])
                    .fold(f32::NEG_INFINITY, f32::max);
                for (c, v) in e.iter_mut().enumerate() {
                    *v = (acc[c * n + i] - max).exp();
                }
                let sum: f32 = e.iter().sum();
                for (c, v) in e.iter().enumerate() {
                    // SAFETY: task `chunk` alone writes rows y0..y1 of every class plane.
                    unsafe { *out.ptr().add(c * pixels + y * p.w + x) = v / sum };
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Param, RunningState};
    use burn::tensor::activation::softmax;
    use burn::tensor::{Distribution, TensorData};

    use crate::config::UNetConfig;
    use crate::testing::assert_close;

    /// A seeded network with random batch norm statistics and affine parameters (a
    /// freshly initialised batch norm is the identity, which would not test the folding).
    fn network(cfg: &UNetConfig, seed: u64) -> UNet {
        let device = Device::flex();
        let mut net = UNet::seeded(cfg, &device, seed);
        let normal = Distribution::Normal(0.0, 0.3);
        let mut blocks: Vec<&mut ConvBlock> = vec![&mut net.input];
        blocks.extend(net.downs.iter_mut().map(|d| &mut d.block));
        blocks.extend(net.ups.iter_mut().map(|u| &mut u.block));
        for b in blocks {
            for norm in [&mut b.norm1, &mut b.norm2].into_iter().flatten() {
                let [c] = norm.gamma.dims();
                norm.running_mean = RunningState::new(Tensor::random([c], normal, &device));
                norm.running_var = RunningState::new(Tensor::random(
                    [c],
                    Distribution::Uniform(0.5, 2.0),
                    &device,
                ));
                norm.gamma = Param::from_tensor(Tensor::random(
                    [c],
                    Distribution::Uniform(0.5, 1.5),
                    &device,
                ));
                norm.beta = Param::from_tensor(Tensor::random([c], normal, &device));
            }
        }
        net
    }

    /// burn's forward and softmax, the reference.
    fn burn_probs(net: &UNet, x: &[f32], dims: [usize; 4]) -> Vec<f32> {
        let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), dims), &Device::flex());
        softmax(net.forward(t), 1)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn input(n: usize, seed: u64) -> Vec<f32> {
        let device = Device::flex();
        device.seed(seed);
        Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    }

    /// The seed architecture (5 levels, 16 filters, batch norm) on a whole 512x512 slice,
    /// and a batch of two non-square inputs: the same probabilities as burn's forward and
    /// softmax on the same (folded at inference) weights. At 512x512 every convolution but
    /// the first runs by Winograd (the first as a column matrix); at 48x80 the bottleneck
    /// (3x5, odd) runs as a column matrix.
    #[test]
    fn seed_network_matches_burn_on_real_size_and_batched_inputs() {
        let cfg = UNetConfig::seed();
        let net = network(&cfg, 21);
        let cpu = CpuUNet::for_device(&net, &Device::flex()).expect("seed network is ours");
        for (batch, h, w) in [(1, 512, 512), (2, 48, 80)] {
            let x = input(batch * h * w, (h + w) as u64);
            let want = burn_probs(&net, &x, [batch, 1, h, w]);
            let got = cpu.forward(&x, batch, h, w);
            assert_close(&got, &want);
            // Not a saturated network: the probabilities vary from pixel to pixel.
            let mut distinct: Vec<u32> = got.iter().map(|p| p.to_bits()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            assert!(
                distinct.len() > got.len() / 10,
                "{} distinct",
                distinct.len()
            );
            // Twice: the reused buffers give the same result.
            assert_eq!(cpu.forward(&x, batch, h, w), got);
        }
    }

    /// Without batch norm, with two input channels and three levels.
    #[test]
    fn other_shapes_match_burn() {
        let cfg = UNetConfig {
            in_channels: 2,
            classes: 4,
            levels: 3,
            base_filters: 8,
            batch_norm: false,
            ..UNetConfig::seed()
        };
        let net = network(&cfg, 4);
        let cpu = CpuUNet::new(&net).expect("ours");
        let x = input(2 * 2 * 36 * 20, 9);
        assert_close(
            &cpu.forward(&x, 2, 36, 20),
            &burn_probs(&net, &x, [2, 2, 36, 20]),
        );
    }

    /// Kernels other than 3x3, or an autodiff device, stay with burn.
    #[test]
    fn other_networks_and_devices_stay_with_burn() {
        let five = UNetConfig {
            kernel: 5,
            levels: 2,
            ..UNetConfig::seed()
        };
        assert!(CpuUNet::new(&UNet::seeded(&five, &Device::flex(), 1)).is_none());
        let seed = UNetConfig {
            levels: 2,
            ..UNetConfig::seed()
        };
        let net = UNet::seeded(&seed, &Device::flex(), 1);
        assert!(CpuUNet::for_device(&net, &Device::flex().autodiff()).is_none());
        assert!(CpuUNet::for_device(&net, &Device::flex()).is_some());
    }
}
