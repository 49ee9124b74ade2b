//! Binary morphology: `Dilation`, `Erosion`, `Closing`, `Opening`.
//!
//! All four take a box (`kernel`, odd voxel sizes) or an ellipsoid (`radius_mm`, turned
//! into voxels with the input's spacing) and have two implementations: `fast`
//! ([`kernels`], bit-packed, the default) and `naive` ([`naive`], the direct definition).
//! Border conventions are documented in [`kernels`]; in short, dilation sees background
//! outside the volume, erosion foreground, closing pads with background (ITK SafeBorder,
//! `sarcopenia_ref.closing`) and opening is its dual.
//!
//! ```
//! use voxflow_engine::{Geometry, Mask};
//! use voxflow_nodes::morphology::{element::Element, kernels};
//!
//! let mut m = Mask::zeros(Geometry::new([5, 5, 1], [1.0; 3]));
//! m.set(2, 2, 0, true); // centre voxel
//! let d = kernels::dilate(&m, &Element::cuboid([3, 3, 1]).unwrap());
//! assert_eq!(d.count(), 9);
//! ```

use voxflow_engine::Registry;

pub mod bits;
mod closing;
pub mod common;
mod dilation;
pub mod element;
mod erosion;
pub mod kernels;
pub mod naive;
mod opening;
#[cfg(test)]
pub(crate) mod tests;

pub use closing::Closing;
pub use dilation::Dilation;
pub use erosion::Erosion;
pub use opening::Opening;

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(Dilation);
    reg.add(Erosion);
    reg.add(Closing);
    reg.add(Opening);
}
