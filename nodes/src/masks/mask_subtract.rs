//! `MaskSubtract`: keep the voxels of the first mask that are not in the second.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::{binary, kernels};

/// The `MaskSubtract` node type (no params).
pub struct MaskSubtract;

impl NodeType for MaskSubtract {
    fn spec(&self) -> NodeSpec {
        binary::spec2(
            "MaskSubtract",
            "Keep the voxels of the first mask that are not in the second.",
            "Output voxel = a AND NOT b (a minus b). Both masks must be on the same grid.",
            "Voxels set in `a` but not in `b`.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description:
                "Abdominal prediction minus the paravertebral prediction grown by a 3x3x1 box.",
            graph: r#"Graph(
    name: "mask_subtract_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "para_grown": (node: "Dilation", inputs: (mask: "para")),
        "abd_only": (node: "MaskSubtract", inputs: (a: "abd", b: "para_grown")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        binary::build2(params, kernels::subtract)
    }
}
