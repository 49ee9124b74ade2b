//! # voxflow-engine
//!
//! The dataflow engine of voxflow: it loads graph files (RON), validates them as a
//! whole, and runs them with independent nodes in parallel. It knows no node type and
//! nothing of medicine; node types come from a [`Registry`] filled by another crate.
//!
//! - [`volume`], [`mask`] (bit-packed), [`table`], [`value`]: what travels on edges
//!   (`Image`, `Mask`, `Labels`, `Table`), always shared behind `Arc`.
//! - [`node`]: the [`NodeType`] interface: spec (ports, params, implementations,
//!   examples), `build` (params only, no I/O) and `run`.
//! - [`params`]: [`node_params!`] and [`node_impls!`], one definition per parameter and
//!   per implementation, from which the specs and docs are generated.
//! - [`graph`]: loading a graph file with positions for every value, `${param}`
//!   substitution and macro expansion (a graph file used as a node).
//! - [`validate`]: every problem at once, each with `file:line:col`.
//! - [`run`]: the scheduler (petgraph DAG on the rayon pool) and the run report.
//! - [`session`]: one run's lifecycle (cleanup, resume, run, failure records,
//!   provenance), the same for `voxflow run` and every case of a batch.
//!
//!
//! Why a hand-written RON reader ([`ron_spanned`]): the `ron` crate reports positions
//! only for syntax errors, and validation must point at the exact value that is wrong.
#![deny(missing_docs)]

pub mod axes;
pub mod batch;
pub mod cache;
pub mod clock;
pub mod codec;
pub mod diag;
pub mod dot;
pub mod fsutil;
pub mod graph;
pub mod mask;
pub mod node;
pub mod params;
pub mod provenance;
pub mod registry;
pub mod ron_spanned;
pub mod run;
pub mod session;
pub mod suggest;
pub mod table;
pub mod validate;
pub mod value;
pub mod volume;

pub use mask::Mask;
pub use node::{
    parse_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, ParamSpec,
};
pub use params::{Impls, Params};
pub use registry::Registry;
pub use table::{Cell, Table};
pub use value::{PortType, Value};
pub use volume::{Geometry, Image, Labels, Volume};
