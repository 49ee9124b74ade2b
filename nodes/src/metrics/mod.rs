//! Metrics: comparing segmentations (overlap and surface distances).
//!
//! [`CompareMasks`] is the node; the work is done by the public kernels in
//! [`kernels`] (overlap counts, surfaces, metrics) and [`crate::shared::edt`] (exact
//! Euclidean distance transforms), which benchmarks and other nodes can call directly.

use voxflow_engine::Registry;

pub mod compare_masks;
pub mod kernels;
#[cfg(test)]
pub(crate) mod test_nifti;

pub use compare_masks::{CompareMasks, CompareMasksParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(CompareMasks);
}
