//! Slice-by-slice inference on a CT volume: normalise, pad, tile, batch, run the network,
//! blend tiles with Gaussian weights (nnU-Net style), restore the input grid.
//!
//! # Tiling
//!
//! Each axial slice (`ny` rows of `nx` pixels) is padded on the high side to a multiple of
//! `m = 2^(levels-1)` with the normalised clip minimum (air), so every pooling halves an
//! even size. Without `tile` the whole padded slice is one network input. With `tile`, the
//! padded slice is covered by `tile` x `tile` windows (clamped to the padded slice) whose
//! origins are multiples of `m` — so their pooling grids coincide with the whole slice's
//! and a pixel far enough from every tile edge gets exactly the whole-slice value — spaced
//! at most `tile * (1 - overlap)` apart. Tile softmax outputs are averaged with a Gaussian
//! weight (sigma = tile / 8, as nnU-Net), which favours tile centres where the context is
//! complete. A slice covered by a single window is copied without weighting, so whole-slice
//! inference is exact.
//!
//! # Batching
//!
//! All windows of a volume have the same shape; `batch_size` of them (from one slice or
//! several) go through the network together. Results do not depend on the batch size
//! (tested): each sample's convolution is computed independently.

use std::time::Instant;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, ExecutionError, Tensor, TensorData};
use rayon::prelude::*;
use voxflow_engine::volume::ShapeError;
use voxflow_engine::{Image, Labels, Volume};

use crate::artifact::SavedModel;
use crate::config::TileError;
use crate::cpu::CpuUNet;

/// How to run inference.
#[derive(Debug, Clone, PartialEq)]
pub struct InferOptions {
    /// Network inputs (slices or tiles) per forward pass.
    pub batch_size: usize,
    /// Tile size in pixels (a multiple of `2^(levels-1)`); `None`: whole slices.
    pub tile: Option<usize>,
    /// Fraction of a tile shared with its neighbour, in `[0, 1)`.
    pub overlap: f64,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions {
            batch_size: 8,
            tile: None,
            overlap: 0.25,
        }
    }
}

/// What inference produced.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Argmax class per voxel (class `i` is label `i`), on the input grid.
    pub labels: Labels,
    /// Probability of the chosen class per voxel, on the input grid.
    pub max_probability: Volume<f32>,
    /// Where the time went.
    pub stats: InferStats,
}

/// Counters and timings of one inference run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InferStats {
    /// Network inputs (tiles or whole slices) run.
    pub inputs: usize,
    /// Forward passes (batches).
    pub batches: usize,
    /// Input size `(height, width)` in pixels of every network input.
    pub input_size: (usize, usize),
    /// Seconds in the network (tensor upload, forward, softmax, download).
    pub network_s: f64,
    /// Seconds in total (including normalisation, blending and argmax).
    pub total_s: f64,
    /// What ran the forward pass: [`FORWARD_OWN`] or [`FORWARD_BURN`].
    pub forward: &'static str,
}

/// Placement of windows along one axis of length `n`.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisPlan {
    /// Window length (a multiple of `m`).
    pub window: usize,
    /// Window origins (multiples of `m`), ascending; the last ends at the padded length.
    pub starts: Vec<usize>,
}

/// Windows along an axis of `n` pixels for size multiple `m`, optional tile and overlap.
pub fn plan_axis(n: usize, m: usize, tile: Option<usize>, overlap: f64) -> AxisPlan {
    let padded = n.div_ceil(m).max(1) * m;
    let window = tile.map_or(padded, |t| t.min(padded));
    if window == padded {
        return AxisPlan {
            window,
            starts: vec![0],
        };
    }
    let span = padded - window;
    let step = ((window as f64) * (1.0 - overlap)).max(1.0);
    let count = (span as f64 / step).ceil() as usize + 1;
    let mut starts: Vec<usize> = (0..count)
        .map(|i| {
            // Evenly spaced, rounded down onto the pooling grid; the last is `span`
            // exactly (a multiple of m, since padded and window are).
            let s = (i as f64 * span as f64 / (count - 1) as f64).round() as usize;
            (s / m * m).min(span)
        })
        .collect();
    starts.dedup();
    AxisPlan { window, starts }
}

/// nnU-Net's Gaussian importance map for an `h` x `w` window: sigma = size / 8, maximum
/// 1, no zeros (so every pixel of a window counts a little and a division is safe).
pub fn gaussian_weights(h: usize, w: usize) -> Vec<f32> {
    let axis = |n: usize| -> Vec<f64> {
        let c = (n as f64 - 1.0) / 2.0;
        let s = n as f64 / 8.0;
        (0..n)
            .map(|i| (-((i as f64 - c).powi(2)) / (2.0 * s * s)).exp())
            .collect()
    };
    let (gy, gx) = (axis(h), axis(w));
    let max = gy.iter().cloned().fold(0.0, f64::max) * gx.iter().cloned().fold(0.0, f64::max);
    let mut out: Vec<f32> = gy
        .iter()
        .flat_map(|y| gx.iter().map(move |x| (y * x / max) as f32))
        .collect();
    let min_pos = out
        .iter()
        .cloned()
        .filter(|v| *v > 0.0)
        .fold(f32::INFINITY, f32::min);
    for v in &mut out {
        if *v <= 0.0 {
            *v = min_pos;
        }
    }
    out
}

/// What a device failure says, in one line: CubeCL's reason lists every kernel it skipped
/// because of the failure ("skipped `Kernel`: it needed memory ..."), hundreds of lines
/// that bury the cause (e.g. "can't allocate buffer of size: 268435456"); those and the
/// "Caused by:" / backtrace headers are left out, and the causes joined by ": ".
pub fn device_failure(e: &ExecutionError) -> String {
    let lines: Vec<&str> = e
        .reason()
        .lines()
        .map(str::trim)
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("skipped `")
                || l.contains("skip record(s) were dropped")
                || matches!(*l, "Caused by:" | "Asked at:" | "No backtrace available"))
        })
        .collect();
    let text = lines.join(": ");
    if e.is_device_poisoned() {
        format!("the device is lost ({text}); restart the process to use it again")
    } else {
        text
    }
}

/// One network input: slice `z`, window origin `(y0, x0)`.
#[derive(Debug, Clone, Copy)]
struct Unit {
    z: usize,
    y0: usize,
    x0: usize,
}

/// Why [`predict`] refused a model, image or options, or failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model takes more than the CT's one channel per network input.
    #[error(
        "the model expects {0} input channels, but a CT image has 1 (one axial slice per \
         network input)"
    )]
    InputChannels(usize),
    /// `batch_size` 0.
    #[error("batch_size must be >= 1")]
    BatchSize,
    /// `overlap` outside `[0, 1)`.
    #[error("overlap must be in [0, 1), got {0}")]
    Overlap(f64),
    /// A tile the network cannot take.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// An image with no voxels (its dims).
    #[error("the image is empty ({}x{}x{})", .0[0], .0[1], .0[2])]
    EmptyImage([usize; 3]),
    /// burn's output could not be read as f32 values (its message).
    #[error("reading the network output: {0}")]
    Output(String),
    /// The device failed running a batch: typically a GPU out of memory, where burn would
    /// otherwise panic when the output is read back.
    #[error(
        "the device failed on a batch of {inputs} input(s) of {height}x{width}: {reason}; a \
         smaller batch_size (or tile) needs less device memory"
    )]
    Device {
        /// Network inputs in the batch.
        inputs: usize,
        /// Input height (pixels).
        height: usize,
        /// Input width (pixels).
        width: usize,
        /// The device's words, see [`device_failure`].
        reason: String,
    },
    /// The output volumes did not match the input grid (a bug).
    #[error("building the output volumes: {0}")]
    Shape(#[from] ShapeError),
}

/// Which implementation runs the network's forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// This crate's fused CPU kernels ([`CpuUNet`]) where they apply (burn Flex without
    /// autodiff, the U-Net's layers as built by [`crate::model`]), burn elsewhere.
    Auto,
    /// burn's modules (with this crate's 3x3 convolution kernels on Flex): the reference
    /// the fused kernels are checked against.
    Burn,
}

/// [`InferStats::forward`] when [`CpuUNet`] ran the network.
pub const FORWARD_OWN: &str = "voxflow fused CPU kernels";
/// [`InferStats::forward`] when burn's modules ran it.
pub const FORWARD_BURN: &str = "burn modules";

/// Run `model` on every axial slice of `image` (HU) on `device`.
///
/// Errors when the model cannot take a CT (more than one input channel), the tile does not
/// fit the network, or the options are out of range.
pub fn predict(
    model: &SavedModel,
    device: &Device,
    image: &Image,
    opts: &InferOptions,
) -> Result<Prediction, InferError> {
    predict_with(model, device, image, opts, Forward::Auto)
}

/// [`predict`] with the forward pass chosen by the caller.
pub fn predict_with(
    model: &SavedModel,
    device: &Device,
    image: &Image,
    opts: &InferOptions,
    forward: Forward,
) -> Result<Prediction, InferError> {
    let t_total = Instant::now();
    crate::alloc::keep_network_buffers();
    let arch = &model.meta.architecture;
    if arch.in_channels != 1 {
        return Err(InferError::InputChannels(arch.in_channels));
    }
    if opts.batch_size == 0 {
        return Err(InferError::BatchSize);
    }
    if !(0.0..1.0).contains(&opts.overlap) {
        return Err(InferError::Overlap(opts.overlap));
    }
    if let Some(t) = opts.tile {
        arch.check_tile(t)?;
    }
    let geometry = image.geometry().clone();
    let [nx, ny, nz] = geometry.dims;
    if nx == 0 || ny == 0 || nz == 0 {
        return Err(InferError::EmptyImage([nx, ny, nz]));
    }
    let m = arch.size_multiple();
    let classes = arch.classes;
    let px = plan_axis(nx, m, opts.tile, opts.overlap);
    let py = plan_axis(ny, m, opts.tile, opts.overlap);
    let (th, tw) = (py.window, px.window);
    let single = px.starts.len() == 1 && py.starts.len() == 1;
    let weights = gaussian_weights(th, tw);
    let norm = &model.meta.normalization;
    let pad = norm.pad_value();
    let slice_len = nx * ny;

    // Every window of every slice, slice-major so a slice's windows are contiguous.
    let tiles_per_slice = px.starts.len() * py.starts.len();
    let units: Vec<Unit> = (0..nz)
        .flat_map(|z| {
            let xs = px.starts.clone();
            py.starts
                .clone()
                .into_iter()
                .flat_map(move |y0| xs.clone().into_iter().map(move |x0| Unit { z, y0, x0 }))
        })
        .collect();

    let mut labels = vec![0u16; slice_len * nz];
    let mut maxp = vec![0f32; slice_len * nz];
    let cpu = match forward {
        Forward::Auto => CpuUNet::for_device(&model.net, device),
        Forward::Burn => None,
    };
    let mut stats = InferStats {
        input_size: (th, tw),
        forward: if cpu.is_some() {
            FORWARD_OWN
        } else {
            FORWARD_BURN
        },
        ..InferStats::default()
    };
    // Slices per chunk: enough windows for one batch, at least one slice; a chunk's
    // accumulators are all that is held besides the output.
    let chunk_slices = (opts.batch_size / tiles_per_slice).max(1);
    let hu = |i: usize| image.get_f64(i) as f32;
    for z0 in (0..nz).step_by(chunk_slices) {
        let z1 = (z0 + chunk_slices).min(nz);
        let chunk_units = &units[z0 * tiles_per_slice..z1 * tiles_per_slice];
        // Network outputs (softmax) of each unit, [classes, th, tw] each.
        let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(chunk_units.len());
        for batch in chunk_units.chunks(opts.batch_size) {
            let mut input = vec![pad; batch.len() * th * tw];
            input
                .par_chunks_mut(th * tw)
                .zip(batch.par_iter())
                .for_each(|(dst, u)| {
                    let base = u.z * slice_len;
                    for y in 0..th.min(ny.saturating_sub(u.y0)) {
                        let row = base + (u.y0 + y) * nx;
                        let w = tw.min(nx.saturating_sub(u.x0));
                        for x in 0..w {
                            dst[y * tw + x] = norm.apply(hu(row + u.x0 + x));
                        }
                    }
                });
            let t_net = Instant::now();
            let flat: Vec<f32> = match &cpu {
                Some(net) => net.forward(&input, batch.len(), th, tw),
                None => {
                    let data = TensorData::new(input, [batch.len(), 1, th, tw]);
                    let x = Tensor::<4>::from_data(data, device);
                    softmax(model.net.forward(x), 1)
                        .try_into_data()
                        .map_err(|e| InferError::Device {
                            inputs: batch.len(),
                            height: th,
                            width: tw,
                            reason: device_failure(&e),
                        })?
                        .try_into_vec::<f32>()
                        .map_err(|e| InferError::Output(format!("{e:?}")))?
                }
            };
            stats.network_s += t_net.elapsed().as_secs_f64();
            stats.batches += 1;
            stats.inputs += batch.len();
            outputs.extend(flat.chunks(classes * th * tw).map(<[f32]>::to_vec));
        }
        // Blend each slice's windows and take the argmax.
        let lab_chunk = &mut labels[z0 * slice_len..z1 * slice_len];
        let p_chunk = &mut maxp[z0 * slice_len..z1 * slice_len];
        lab_chunk
            .par_chunks_mut(slice_len)
            .zip(p_chunk.par_chunks_mut(slice_len))
            .enumerate()
            .for_each(|(k, (lab, mp))| {
                let first = k * tiles_per_slice;
                let slice_units = &chunk_units[first..first + tiles_per_slice];
                let slice_outs = &outputs[first..first + tiles_per_slice];
                let mut acc = vec![0f32; classes * slice_len];
                let mut wsum = vec![0f32; slice_len];
                for (u, out) in slice_units.iter().zip(slice_outs) {
                    let h = th.min(ny.saturating_sub(u.y0));
                    let w = tw.min(nx.saturating_sub(u.x0));
                    for y in 0..h {
                        for x in 0..w {
                            let dst = (u.y0 + y) * nx + u.x0 + x;
                            let src = y * tw + x;
                            let g = if single { 1.0 } else { weights[src] };
                            wsum[dst] += g;
                            for c in 0..classes {
                                acc[c * slice_len + dst] += g * out[c * th * tw + src];
                            }
                        }
                    }
                }
                for i in 0..slice_len {
                    let (mut best, mut best_p) = (0usize, f32::NEG_INFINITY);
                    for c in 0..classes {
                        let p = if single {
                            acc[c * slice_len + i]
                        } else {
                            acc[c * slice_len + i] / wsum[i]
                        };
                        // Strictly greater: ties go to the lower class (background first).
                        if p > best_p {
                            best = c;
                            best_p = p;
                        }
                    }
                    lab[i] = best as u16;
                    mp[i] = best_p;
                }
            });
    }
    let labels = Volume::from_vec(geometry.clone(), labels)?;
    let max_probability = Volume::from_vec(geometry, maxp)?;
    stats.total_s = t_total.elapsed().as_secs_f64();
    Ok(Prediction {
        labels,
        max_probability,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the reason CubeCL gave when llvmpipe could not allocate a 256 MiB
    /// buffer for a batch of 8 whole slices (the skipped-kernel list is hundreds of lines).
    #[test]
    fn device_failures_keep_the_cause_and_drop_the_skipped_kernels() {
        let mut reason = String::from("Several failures at once\nCaused by:\n");
        for id in 0..300 {
            reason += &format!("  skipped `DirectConv2dKernel`: it needed memory {id}\n");
        }
        reason += "  (25 older skip record(s) were dropped; the walk may stop before the root)\n";
        reason += "  The bytes were never written\nCaused by:\n  can't allocate buffer of \
                   size: 268435456\nNo backtrace available\nAsked at:\nNo backtrace available";
        let text = device_failure(&ExecutionError::with_context(reason));
        assert_eq!(
            text,
            "Several failures at once: The bytes were never written: can't allocate buffer \
             of size: 268435456"
        );
        let lost = device_failure(&ExecutionError::device_poisoned("illegal address"));
        assert!(
            lost.contains("illegal address") && lost.contains("restart"),
            "{lost}"
        );
    }

    #[test]
    fn axis_plans_cover_the_padded_slice_on_the_pooling_grid() {
        // Whole slice: one window, padded to the multiple.
        assert_eq!(
            plan_axis(100, 16, None, 0.25),
            AxisPlan {
                window: 112,
                starts: vec![0]
            }
        );
        // A tile larger than the slice shrinks to the padded slice.
        assert_eq!(plan_axis(100, 16, Some(256), 0.25).starts, vec![0]);
        for (n, m, t, o) in [(512, 16, 128, 0.25), (500, 4, 64, 0.5), (70, 8, 32, 0.0)] {
            let p = plan_axis(n, m, Some(t), o);
            let padded = n.div_ceil(m) * m;
            assert_eq!(p.window, t);
            assert_eq!(p.starts[0], 0);
            assert_eq!(*p.starts.last().unwrap() + t, padded);
            for w in p.starts.windows(2) {
                assert!(w[1] > w[0] && w[1] - w[0] <= t, "{p:?}");
            }
            assert!(p.starts.iter().all(|s| s % m == 0), "{p:?}");
            // Overlap: consecutive windows share about overlap * tile (origins are rounded
            // down onto the pooling grid, so a step can grow by up to m).
            let max_step = ((t as f64 * (1.0 - o)) as usize).max(1) + m;
            for w in p.starts.windows(2) {
                assert!(w[1] - w[0] <= max_step, "{p:?}");
            }
        }
    }

    #[test]
    fn gaussian_weights_peak_in_the_centre_and_never_vanish() {
        let g = gaussian_weights(64, 32);
        let max = g.iter().cloned().fold(0.0, f32::max);
        assert!((max - 1.0).abs() < 1e-3, "{max}");
        assert!(g.iter().all(|v| *v > 0.0));
        assert!(g[0] < 1e-3);
        // symmetric
        assert_eq!(g[0], g[64 * 32 - 1]);
    }
}
