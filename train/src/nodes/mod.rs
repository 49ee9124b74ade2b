//! The training node types: `TrainingConfig`, `PatchServer`, `UNetTrain`.

pub mod patch_server;
pub mod training_config;
pub mod unet_train;

pub use patch_server::{PatchServer, PatchServerParams, PatchService};
pub use training_config::{TrainingConfig, TrainingConfigParams};
pub use unet_train::{UNetTrain, UNetTrainParams};

use voxflow_engine::value::{OpaqueType, PortType};
use voxflow_engine::Registry;

/// A checked training config (`TrainingConfig`'s output): architecture and
/// hyperparameters with their hash.
pub const CONFIG: PortType = PortType::Opaque(OpaqueType::new("Config"));

/// A running patch server (`PatchServer`'s output) that lives while a reader holds it; a
/// server nobody reads runs alone in the foreground, so validation does not warn.
pub const SERVICE: PortType = PortType::Opaque(OpaqueType::new("Service").runs_alone());

/// Register the training node types.
pub fn register(reg: &mut Registry) {
    reg.add(TrainingConfig);
    reg.add(PatchServer);
    reg.add(UNetTrain);
}
