//! `MaskAnd`: keep the voxels set in both masks.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::{binary, kernels};

/// The `MaskAnd` node type (no params).
pub struct MaskAnd;

impl NodeType for MaskAnd {
    fn spec(&self) -> NodeSpec {
        binary::spec2(
            "MaskAnd",
            "Keep the voxels set in both masks.",
            "Output voxel = a AND b. Both masks must be on the same grid.",
            "Voxels set in both `a` and `b`.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Where the prediction and the truth agree on muscle.",
            graph: r#"Graph(
    name: "mask_and_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "pred": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1, 2])),
        "truth": (node: "SelectLabel", inputs: (labels: "phantom.truth"), params: (labels: [1, 2])),
        "both": (node: "MaskAnd", inputs: (a: "pred", b: "truth")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        binary::build2(params, kernels::and)
    }
}
