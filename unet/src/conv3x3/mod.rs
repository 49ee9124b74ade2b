//! The U-Net's 3x3 convolutions on burn Flex (the CPU) with this crate's own kernels,
//! forward and backward; every other device runs burn's `Conv2d`.
//!
//! Why: a CPU training step of the seed network spent ~600 of its ~720 ms in burn Flex's
//! convolutions, half of it in the weight gradient (see [`kernels`]). burn 0.22's backend
//! extensions let a crate add an operation with its own kernel per backend and its own
//! backward pass under autodiff: that is [`Conv3x3Backend`]. The model calls
//! [`conv2d_forward`] wherever it ran `Conv2d::forward`.

pub mod kernels;
mod op;

pub use op::{conv2d_forward, runs_own_kernels, Conv3x3Backend};
