//! Mask and label-map nodes: `SelectLabel`, `MergeLabels`, `MaskAnd`, `MaskOr`,
//! `MaskSubtract`, `MaskNot`, `SliceRangeMask`. Kernels are in [`kernels`]; every two-input node checks
//! that its inputs share a grid.
//!
//! ```
//! use voxflow_engine::{Geometry, Labels, Mask};
//! use voxflow_nodes::masks::kernels;
//!
//! let g = Geometry::new([4, 1, 1], [1.0; 3]);
//! let labels = Labels::from_vec(g.clone(), vec![0, 1, 2, 1]).unwrap();
//! let one = kernels::select_labels(&labels, &[1]);
//! assert_eq!(one.to_bytes(), [0, 1, 0, 1]);
//! let two = kernels::select_labels(&labels, &[2]);
//! assert_eq!(kernels::merge(&[&one, &two], &[5, 7]).as_slice(), &[0, 5, 7, 5]);
//! ```

use voxflow_engine::Registry;

pub mod binary;
pub mod kernels;
mod mask_and;
mod mask_not;
mod mask_or;
mod mask_subtract;
mod merge_labels;
mod select_label;
mod slice_range_mask;
#[cfg(test)]
mod tests;

pub use mask_and::MaskAnd;
pub use mask_not::MaskNot;
pub use mask_or::MaskOr;
pub use mask_subtract::MaskSubtract;
pub use merge_labels::{MergeLabels, MergeLabelsParams};
pub use select_label::{SelectLabel, SelectLabelParams};
pub use slice_range_mask::{SliceRangeMask, SliceRangeMaskParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(SelectLabel);
    reg.add(MergeLabels);
    reg.add(SliceRangeMask);
    reg.add(MaskAnd);
    reg.add(MaskOr);
    reg.add(MaskSubtract);
    reg.add(MaskNot);
}
