//! What `MaskAnd`, `MaskOr` and `MaskSubtract` share: the spec of a two-mask node, and a
//! node that applies a voxel-wise kernel after checking grids.

use std::sync::Arc;

use voxflow_engine::params::NoParams;
use voxflow_engine::{
    ImplSpec, InputSpec, Mask, Node, NodeContext, NodeError, NodeSpec, OutputSpec, ParamError,
    Params, PortType, Value,
};

/// The spec of a two-input mask node (`a`, `b` -> `mask`).
pub fn spec2(
    name: &'static str,
    summary: &'static str,
    doc: &'static str,
    out_doc: &'static str,
) -> NodeSpec {
    NodeSpec {
        name,
        summary,
        doc,
        category: "masks",
        inputs: vec![
            InputSpec::required("a", &[PortType::Mask], "First mask."),
            InputSpec::required("b", &[PortType::Mask], "Second mask, on the grid of `a`."),
        ],
        outputs: vec![OutputSpec::new("mask", PortType::Mask, out_doc)],
        params: NoParams::param_specs(),
        impls: vec![ImplSpec::new("default", "One parallel voxel-wise pass.")],
    }
}

/// A node applying `f` to inputs `a` and `b`.
pub fn build2(
    params: &serde_json::Value,
    f: fn(&Mask, &Mask) -> Mask,
) -> Result<Box<dyn Node>, Vec<ParamError>> {
    NoParams::from_json(params)?;
    Ok(Box::new(BinaryNode { f }))
}

struct BinaryNode {
    f: fn(&Mask, &Mask) -> Mask,
}

impl Node for BinaryNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let (a, b) = (ctx.mask("a")?, ctx.mask("b")?);
        ctx.check_same_grid("a", "b")?;
        ctx.set_output("mask", Value::Mask(Arc::new((self.f)(&a, &b))));
        Ok(())
    }
}
