//! Sparse annotation nodes for the U-Net training path: `SimulateSparseAnnotation`
//! fakes an annotator's SPLAT strokes from a dense label map, and `SplatWeights`
//! combines one SPLAT annotation per structure into training labels and a loss weight
//! map. Kernels are in [`kernels`].
//!
//! SPLAT values: 0 unannotated, 1 background (painted "not this structure"), 2
//! foreground (painted "this structure"). Training labels: 0 background, 1 abdominal
//! wall muscles, 2 paravertebral muscles; weight 1 where the label is known.
//!
//! ```
//! use voxflow_engine::{Geometry, Labels};
//! use voxflow_nodes::annotation::kernels;
//!
//! let g = Geometry::new([4, 1, 1], [1.0; 3]);
//! let abd = Labels::from_vec(g.clone(), vec![2, 1, 0, 2]).unwrap();
//! let para = Labels::from_vec(g, vec![1, 1, 1, 2]).unwrap();
//! let (labels, weights) = kernels::splat_weights(&abd, &para);
//! assert_eq!(labels.as_slice(), &[1, 0, 0, 0]);
//! assert_eq!(weights.to_bytes(), [1, 1, 0, 0]); // last voxel: a conflict
//! ```

use voxflow_engine::Registry;

pub mod kernels;
mod simulate_sparse;
mod splat_weights;
#[cfg(test)]
mod tests;

pub use simulate_sparse::{SimulateSparseAnnotation, SimulateSparseAnnotationParams};
pub use splat_weights::SplatWeights;

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(SimulateSparseAnnotation);
    reg.add(SplatWeights);
}
