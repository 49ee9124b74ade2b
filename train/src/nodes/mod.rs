//! The training node types: `TrainingConfig`, `PatchServer`, `UNetTrain`.

pub mod patch_server;
pub mod training_config;
pub mod unet_train;

use voxflow_engine::Registry;

/// Register the training node types.
pub fn register(reg: &mut Registry) {
    reg.add(training_config::TrainingConfigNode);
    reg.add(patch_server::PatchServerNode);
    reg.add(unet_train::UNetTrainNode);
}
