//! `Dilation`: grow a mask by a box or ellipsoid structuring element. A voxel is set when
//! any voxel of the structuring element centred on it is set. Outside the volume counts
//! as background, so nothing grows in from the border.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::common::{self, Op};

/// The `Dilation` node type. Params: [`common::MorphologyParams`].
pub struct Dilation;

impl NodeType for Dilation {
    fn spec(&self) -> NodeSpec {
        common::spec(
            "Dilation",
            "Grow a mask by a box or ellipsoid structuring element.",
            "A voxel is set when any voxel of the structuring element centred on it is set. \
             Outside the volume counts as background, so nothing grows in from the border.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Grow the paravertebral prediction by a 5x5x3 box (as the sarcopenia chain does).",
                graph: r#"Graph(
    name: "dilation_box_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "out": (node: "Dilation", inputs: (mask: "para"), params: (kernel: (5, 5, 3))),
    },
)"#,
            },
            Example {
                description: "Grow by an ellipsoid of 4.5 mm in-plane and 3 mm along z.",
                graph: r#"Graph(
    name: "dilation_ellipsoid_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "out": (node: "Dilation", inputs: (mask: "para"), params: (radius_mm: Some((4.5, 4.5, 3.0)))),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        common::build(Op::Dilate, params, implementation)
    }
}
