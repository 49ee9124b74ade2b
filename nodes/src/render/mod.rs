//! Render: pictures for people checking results (PNG montages of CT slices with
//! segmentations on top).
//!
//! [`RenderOverlay`] is the node; [`kernels`] holds the orientation logic and tile
//! rendering, [`png`] the PNG encoder (also of the training loss plot), and [`font`] a
//! 5x7 digit font for slice numbers (no font crate needed).

use voxflow_engine::Registry;

pub mod font;
pub mod kernels;
pub mod png;
pub mod render_overlay;

pub use render_overlay::{RenderOverlay, RenderOverlayParams};

/// Register this family's node types.
pub fn register(reg: &mut Registry) {
    reg.add(RenderOverlay);
}
