//! # voxflow-unet
//!
//! The seed's 2D U-Net on [burn](https://burn.dev) 0.22: the model ([`model`]), its
//! architecture and input normalisation from JSON ([`config`]), saved models as
//! self-describing folders ([`artifact`]), slice-by-slice tiled inference ([`infer`]) and
//! the `UNetInfer` node ([`node`]). Training lives in `voxflow-train`.
//!
//! ## Backends and cargo features
//!
//! burn 0.22 chooses the backend at run time through its `Device` (tensors carry no
//! backend type parameter), so the node's implementations (`impl`) are devices:
//!
//! - default build: burn's **Flex** CPU backend with `rayon` and `simd` (pure Rust, builds
//!   offline in a few minutes): implementation `burn-flex`. The CPU device is always named
//!   explicitly (`Device::flex()`), because `Device::default()` silently picks a GPU
//!   backend once one is compiled in. The network's 3x3 convolutions run this crate's own
//!   kernels on Flex, forward and backward ([`conv3x3`], a burn backend extension): 2.4x
//!   less time than Flex's own at the training step's shapes, which made a CPU training
//!   step faster than Keras + JAX (369 vs 549 ms on the 2-core EPYC).
//!   Inference on Flex goes further: [`cpu::CpuUNet`] runs the whole network outside
//!   burn (3x3 convolutions by Winograd F(2x2, 3x3) + bias + ReLU into per-level padded
//!   buffers, folded batch norm, own pooling, transposed convolution and head), 2.3-3.6x
//!   faster than burn's modules for a 512x512 slice (see `docs/benchmarks.md`). SIMD there
//!   comes from the `gemm` crate's matrix products, which choose AVX-512 (burn's `x86-v4`
//!   feature enables gemm's), AVX2 + FMA or portable kernels at run time; AVX2 and
//!   AVX-512 builds of our own loops around them (and of the Winograd transforms),
//!   dispatched the same way, measured no gain, so the crate has no SIMD code of its own
//!   (the compiler vectorises its loops for SSE2) and a fast CPU build needs no
//!   `target-cpu`.
//! - feature `wgpu`: burn's wgpu backend (Vulkan on Linux, which drives NVIDIA GPUs when
//!   the Vulkan loader `libvulkan1` is installed): implementation `burn-wgpu`, which
//!   becomes the default implementation of that build so `device: auto` picks the GPU when
//!   present (and falls back to Flex when wgpu finds no adapter). Its kernels are fixed:
//!   burn without `autotune` falls back to a direct convolution, and for the weight
//!   gradient to a convolution by the whole output gradient, which is what made training
//!   slow (below).
//! - feature `wgpu-tuned`: `wgpu` plus burn's `autotune`, `fusion` and `vulkan` (the SPIR-V
//!   compiler, so convolutions can use cooperative-matrix instructions); the first two
//!   are burn's defaults for its GPU backends. Kernels are tuned and compiled for each
//!   new shape first (about 55 s for the seed network's training run, 13 s for an
//!   inference run on an H200); after that a training step is 6x faster. The tuning
//!   results and compiled kernels persist in one folder per user ([`gpu_cache`],
//!   `VOXFLOW_GPU_CACHE`), so later processes on the same machine skip that work.
//!   Two features rather than one because cargo features are fixed at build time and the
//!   trade (a minute at start for 6x per step) suits training, not one-off inference.
//!
//! ## CUDA: why there is no `cuda` feature
//!
//! burn 0.22's `cuda` (and CubeCL `cpu`) backends pull `cubecl-cuda` 0.11, which depends
//! on `cubecl-llvm` unconditionally; its build script downloads a prebuilt LLVM bundle
//! from outside the package registries, so it cannot build on these offline machines,
//! and no feature switch of burn 0.22 avoids it. burn 0.21's CUDA backend builds without
//! the LLVM bundle (CubeCL 0.10 compiles kernels with NVRTC at run time), but 0.21 has the
//! older generic-backend API (`Tensor<B, D>`, `Module<B>`) — a second code path for one
//! backend. A feature that cannot build is not shipped; on NVIDIA GPUs use `wgpu`.
//!
//! ## Measured on an NVIDIA H200 (`bench/gpu_check.sh`, Keras 3.15 + JAX 0.11 on CUDA
//! in the same run)
//!
//! Forward of a batch of 8 x 1 x 128 x 128 (seed network, batch norm): burn wgpu 5.6 ms,
//! Keras + JAX 6.1 ms. Whole 512x512 slices through `predict` (padding, batching,
//! argmax, copies back): 16 ms a slice at batch 8 (the network 83 % of it), 19 ms at batch
//! 32, 28 ms at batch 1, i.e. about 3 s for a 512x512x200 CT, vs 4 ms a slice for
//! `predict_on_batch` in Keras + JAX: burn is 4x slower on whole slices on that GPU
//! although at par on 128 px batches. Labels are identical across runs on the GPU and
//! were equal to the CPU's on the real-data model of `graphs/train_ct_sm.ron`, with both
//! features (measured before the CPU got its own convolution kernels, which sum in
//! another order). With `wgpu-tuned`, after tuning: 15 ms a slice at batch 8 (same order), and
//! a training step (seed network, batch 8 of 128x128) 22 ms instead of 132 ms, vs 8.4 ms
//! for Keras + JAX; the forward of a batch of 8 x 128 x 128 takes 2.3 ms (Keras 6.1 ms).
#![deny(missing_docs)]

use voxflow_engine::Registry;

pub mod alloc;
pub mod artifact;
pub mod config;
pub mod conv3x3;
pub mod cpu;
#[cfg(feature = "wgpu")]
pub mod gpu;
#[cfg(any(test, feature = "wgpu"))]
pub mod gpu_cache;
pub mod infer;
pub mod model;
pub mod node;
#[cfg(test)]
mod testing;

pub use artifact::{write_random_model, InvalidModel, ModelError, ModelMeta, SavedModel};
pub use config::{
    ArchitectureError, ArchitectureProblem, Normalization, NormalizationError, TileError,
    UNetConfig,
};
pub use infer::{predict, predict_with, Forward, InferOptions, InferStats, Prediction};
pub use model::UNet;
pub use node::{UNetInfer, UNetInferParams};

/// The burn version this crate is built on, so callers name the same `Device`.
pub use burn;

/// Register this crate's node types (`UNetInfer`).
pub fn register(reg: &mut Registry) {
    reg.add(UNetInfer);
}

/// File name extension of saved model folders (`NAME.vxmodel/`).
pub const MODEL_EXTENSION: &str = "vxmodel";
