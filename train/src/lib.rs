//! # voxflow-train
//!
//! Training the U-Net of [`voxflow_unet`] from sparse annotations, the way the seed did
//! it through MeVisLab: a patch server prepares data (CPU) and streams it over TCP to a
//! trainer (CPU or GPU), possibly on another machine.
//!
//! - [`config`]: the training config (architecture + hyperparameters) and its hash;
//! - [`patches`]: training cases, deterministic augmented patch batches, validation slices;
//! - [`protocol`]: frames and messages of the patch protocol (docs/patch-protocol.md);
//! - [`server`] and [`client`]: both ends of it;
//! - [`trainer`]: the training loop, checkpoints, metrics; [`plot`]: `loss.png`;
//! - [`device`]: which burn device trains;
//! - [`nodes`]: the node types `TrainingConfig`, `PatchServer` and `UNetTrain`.
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod device;
pub mod nodes;
pub mod patches;
pub mod plot;
pub mod protocol;
pub mod server;
pub mod trainer;

pub use client::Client;
pub use config::{Augmentation, Hyper, TrainingConfig};
pub use device::TrainDevice;
pub use nodes::register;
pub use patches::{Batch, Sampler, TrainCase, ValidationSet, ValidationSlice};
pub use server::{ConnectionLimits, PatchServer, ServerOptions, ServerStats};
pub use trainer::{train, TrainError, TrainOptions, TrainSummary};
