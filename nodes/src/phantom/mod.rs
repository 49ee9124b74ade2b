//! Synthetic data: the `Phantom` node, a deterministic abdominal CT with ground-truth
//! muscle labels and a simulated imperfect segmentation.
//!
//! It powers the README demo, every node's example graph and most tests, so everything
//! runs on a fresh clone with no data. Outside a graph, call [`generate`]:
//!
//! ```
//! use voxflow_nodes::phantom::{generate, PhantomParams};
//!
//! let params = PhantomParams { dims: (64, 64, 4), ..PhantomParams::default() };
//! let v = generate(&params);
//! assert_eq!(v.ct.dims(), [64, 64, 4]);
//! assert!(v.truth.as_slice().contains(&1) && v.truth.as_slice().contains(&2));
//! ```
//!
//! The model lives in `anatomy.rs` (geometry, in millimetres scaled to the field of
//! view) and `generate.rs` (rasterising per slice, voxel-level errors, noise).

use voxflow_engine::Registry;

mod anatomy;
mod generate;
#[allow(clippy::module_inception)]
mod phantom;
mod phantom_vertebrae;
#[cfg(test)]
mod tests;

pub use generate::{
    generate, phantom_geometry, vertebra_label_at, vertebrae, PhantomVolumes, NOISE_SD_HU,
    PHANTOM_L3_LABEL, PHANTOM_VERTEBRA_LABELS,
};
pub use phantom::{Phantom, PhantomParams};
pub use phantom_vertebrae::PhantomVertebrae;

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(Phantom);
    reg.add(PhantomVertebrae);
}
