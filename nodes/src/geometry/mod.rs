//! Geometry nodes: put volumes on each other's grids. `Reorient` reorders a label map's
//! voxels into another grid's axis order (exact: flips and permutations only);
//! `Resample` (images, trilinear) and `ResampleLabels` (nearest neighbour) interpolate
//! onto a new spacing or another volume's grid.
//!
//! ```
//! use voxflow_engine::{Geometry, Volume};
//! use voxflow_nodes::geometry::kernels::{grid_with_spacing, resample_nearest};
//!
//! let labels = Volume::from_vec(Geometry::new([2, 1, 1], [2.0; 3]), vec![1u16, 2]).unwrap();
//! let fine = grid_with_spacing(labels.geometry(), [1.0, 2.0, 2.0]).unwrap();
//! assert_eq!(resample_nearest(&labels, &fine).unwrap().as_slice(), [1, 1, 2, 2]);
//! ```

use voxflow_engine::Registry;

pub mod kernels;
mod reorient;
mod resample;
mod resample_labels;
#[cfg(test)]
mod tests;

pub use reorient::{Reorient, ReorientParams};
pub use resample::{Resample, ResampleParams};
pub use resample_labels::{ResampleLabels, ResampleLabelsParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(Reorient);
    reg.add(Resample);
    reg.add(ResampleLabels);
}
