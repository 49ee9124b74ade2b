//! # voxflow
//!
//! voxflow as a library: [`registry`] returns the engine's [`Registry`] with every node
//! type of every crate, in a fixed order. The CLI, the end-to-end tests and the benches
//! all take their registry from here, so there is one list.
//!
//! ```
//! let registry = voxflow::registry();
//! assert!(registry.get("LoadNifti").is_some());
//! assert!(registry.get("UNetInfer").is_some());
//! ```
//!
//! Why a crate of its own: the node crates sit side by side on the engine
//! (`voxflow-nodes`, `voxflow-unet`; `voxflow-train` above both) and none of them should
//! depend on another only to register it. Each registers its own node types; this crate
//! calls them in order.
#![deny(missing_docs)]

pub use voxflow_engine::Registry;

/// Register every node type: the general families, then U-Net inference, then training.
pub fn register_all(reg: &mut Registry) {
    voxflow_nodes::register_all(reg);
    voxflow_unet::register(reg);
    voxflow_train::register(reg);
}

/// A registry with every node type.
pub fn registry() -> Registry {
    let mut reg = Registry::new();
    register_all(&mut reg);
    reg
}
