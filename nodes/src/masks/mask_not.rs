//! `MaskNot`: the complement of a mask.

use std::sync::Arc;

use voxflow_engine::params::NoParams;
use voxflow_engine::{
    Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType, OutputSpec,
    ParamError, Params, PortType, Value,
};

use super::kernels;

/// The `MaskNot` node type (no params).
pub struct MaskNot;

impl NodeType for MaskNot {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "MaskNot",
            summary: "Invert a mask: set voxels become background and vice versa.",
            doc: "Output voxel = NOT mask, on the same grid.",
            category: "masks",
            inputs: vec![InputSpec::required(
                "mask",
                &[PortType::Mask],
                "The mask to invert.",
            )],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "The complement of the input.",
            )],
            params: NoParams::param_specs(),
            impls: vec![ImplSpec::new("default", "One parallel voxel-wise pass.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Everything that is not predicted muscle.",
            graph: r#"Graph(
    name: "mask_not_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "muscle": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1, 2])),
        "rest": (node: "MaskNot", inputs: (mask: "muscle")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        NoParams::from_json(params)?;
        Ok(Box::new(MaskNotNode))
    }
}

struct MaskNotNode;

impl Node for MaskNotNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let m = ctx.mask("mask")?;
        ctx.set_output("mask", Value::Mask(Arc::new(kernels::not(&m))));
        Ok(())
    }
}
