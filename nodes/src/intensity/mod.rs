//! (family being written)

use voxflow_engine::Registry;

/// Register this family's node types.
pub fn register(_reg: &mut Registry) {}
