//! `Erosion`: shrink a mask by a box or ellipsoid structuring element. A voxel stays set
//! when every voxel of the structuring element centred on it is set. Outside the volume
//! counts as foreground (scipy's border_value=1), so objects touching the border do not
//! shrink from it.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::common::{self, Op};

/// The `Erosion` node type. Params: [`common::MorphologyParams`].
pub struct Erosion;

impl NodeType for Erosion {
    fn spec(&self) -> NodeSpec {
        common::spec(
            "Erosion",
            "Shrink a mask by a box or ellipsoid structuring element.",
            "A voxel stays set when every voxel of the structuring element centred on it is \
             set. Outside the volume counts as foreground (scipy's border_value=1), so \
             objects touching the border do not shrink from it.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Shrink the abdominal prediction by a 3x3 in-plane box.",
            graph: r#"Graph(
    name: "erosion_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "out": (node: "Erosion", inputs: (mask: "abd"), params: (kernel: (3, 3, 1))),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        common::build(Op::Erode, params, implementation)
    }
}
