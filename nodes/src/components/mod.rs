//! Connected components: `ConnectedComponents` (label map), `RemoveSmallComponents`
//! and `KeepLargestComponents` (masks).
//!
//! Connectivity is 4 or 8 within axial slices (`per_slice: true`) or 6, 18 or 26 in 3D
//! ([`connectivity::Connectivity`]). Two implementations: `runs` ([`kernels`], runs
//! per row and union-find, the default) and `flood` ([`flood`], breadth-first flood
//! fill, the reference). Both number components 1..=n in scan order (x fastest, then y,
//! then z).
//!
//! ```
//! use voxflow_engine::{Geometry, Mask};
//! use voxflow_nodes::components::{connectivity::Connectivity, kernels};
//!
//! let g = Geometry::new([5, 1, 1], [1.0; 3]);
//! let m = Mask::from_bytes(g, &[1, 0, 1, 1, 0]).unwrap();
//! let c = kernels::label_runs(&m, Connectivity::Vertex26);
//! assert_eq!((c.count(), c.sizes()), (2, &[0, 1, 2][..]));
//! ```

use voxflow_engine::Registry;

/// The doc of the `connectivity` param, shared by the three node types (a macro so that it
/// is a literal for `#[doc]`).
macro_rules! connectivity_doc {
    () => {
        "Neighbours joining voxels: 4 or 8 in-plane with `per_slice: true`, 6 (faces), 18 \
         (faces and edges) or 26 (the whole cube) in 3D; None means 8 per slice, 26 in 3D."
    };
}

mod connected_components;
pub mod connectivity;
pub mod flood;
mod keep_largest;
pub mod kernels;
mod remove_small;
#[cfg(test)]
mod tests;

pub use connected_components::{ConnectedComponents, ConnectedComponentsParams};
pub use keep_largest::{KeepLargestComponents, KeepLargestComponentsParams};
pub use remove_small::{RemoveSmallComponents, RemoveSmallComponentsParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(ConnectedComponents);
    reg.add(RemoveSmallComponents);
    reg.add(KeepLargestComponents);
}
