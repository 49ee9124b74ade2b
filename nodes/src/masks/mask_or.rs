//! `MaskOr`: keep the voxels set in either mask.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::{binary, kernels};

/// The `MaskOr` node type (no params).
pub struct MaskOr;

impl NodeType for MaskOr {
    fn spec(&self) -> NodeSpec {
        binary::spec2(
            "MaskOr",
            "Keep the voxels set in either mask.",
            "Output voxel = a OR b. Both masks must be on the same grid.",
            "Voxels set in `a` or `b` (or both).",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Union of the predicted abdominal and paravertebral muscles.",
            graph: r#"Graph(
    name: "mask_or_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "muscle": (node: "MaskOr", inputs: (a: "abd", b: "para")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        binary::build2(params, kernels::or)
    }
}
