//! Intensity nodes: `HuWindow` (inclusive HU range, optionally within a mask).
//!
//! ```
//! use voxflow_engine::{Geometry, Image, Volume};
//! use voxflow_nodes::intensity::kernels::hu_window;
//!
//! let ct = Volume::from_vec(Geometry::new([4, 1, 1], [1.0; 3]), vec![-30i16, -29, 150, 151]).unwrap();
//! let m = hu_window(&Image::I16(ct), -29.0, 150.0, None);
//! assert_eq!(m.to_bytes(), [0, 1, 1, 0]);
//! ```

use voxflow_engine::Registry;

mod hu_window;
pub mod kernels;
#[cfg(test)]
mod tests;

pub use hu_window::{HuWindow, HuWindowParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(HuWindow);
}
