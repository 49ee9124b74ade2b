//! The registry of node types: an explicit list, filled by each node family's
//! `register` function (no link-time magic, so it is never silently empty).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::node::{NodeSpec, NodeType};

/// Node types by name, with their specs computed once.
#[derive(Default, Clone)]
pub struct Registry {
    types: BTreeMap<&'static str, (Arc<dyn NodeType>, NodeSpec)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node type. Panics on a duplicate name or a spec without implementations:
    /// both are programming errors caught by the registry tests.
    pub fn add<T: NodeType>(&mut self, node: T) {
        let spec = node.spec();
        assert!(
            !spec.impls.is_empty(),
            "node type {} declares no implementation",
            spec.name
        );
        let name = spec.name;
        let previous = self.types.insert(name, (Arc::new(node), spec));
        assert!(previous.is_none(), "node type {name} registered twice");
    }

    /// The node type with this name.
    pub fn get(&self, name: &str) -> Option<(&Arc<dyn NodeType>, &NodeSpec)> {
        self.types.get(name).map(|(t, s)| (t, s))
    }

    /// All specs, sorted by name.
    pub fn specs(&self) -> impl Iterator<Item = &NodeSpec> {
        self.types.values().map(|(_, s)| s)
    }

    /// All node types with their specs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<dyn NodeType>, &NodeSpec)> {
        self.types.values().map(|(t, s)| (t, s))
    }

    /// All type names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }
}
