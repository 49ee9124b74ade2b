//! End-to-end tests, one binary (so the nodes link once): shipped graphs, node examples
//! with every implementation, registry invariants.

mod examples;
mod graphs;
mod registry;
