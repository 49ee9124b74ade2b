//! # voxflow-nodes
//!
//! The node types of voxflow, one module per family and one file per node type. Each
//! family has a `register` function; [`register_all`] calls them in order, so the list of
//! node types is explicit and greppable (see `docs/architecture.md`).
//!
//! Every node type declares its ports, params (with units and defaults) and at least one
//! example graph; the test suite runs every example with every implementation.
#![deny(missing_docs)]

use voxflow_engine::Registry;

pub mod annotation;
pub mod components;
pub mod docs;
pub mod geometry;
pub mod intensity;
pub mod io;
pub mod masks;
pub mod metrics;
pub mod morphology;
pub mod phantom;
pub mod render;
pub mod shared;
pub mod stats;
pub mod testdata;

/// Register every node type of this crate.
pub fn register_all(reg: &mut Registry) {
    io::register(reg);
    phantom::register(reg);
    geometry::register(reg);
    stats::register(reg);
    intensity::register(reg);
    masks::register(reg);
    morphology::register(reg);
    components::register(reg);
    metrics::register(reg);
    render::register(reg);
    annotation::register(reg);
}

/// A registry with every node type of this crate (the full one, with U-Net inference and
/// training, is `voxflow::registry()`).
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    register_all(&mut reg);
    reg
}
