//! `Opening`: erode then dilate a mask, removing small specks and spurs. Opening is anti-
//! extensive: the output is inside the input. It is the dual of Closing: the opening of
//! the mask in an unbounded space whose outside is foreground (pad by the element radius
//! with foreground, erode, dilate, crop; ITK's grayscale opening with SafeBorder), so
//! Opening(m) = not Closing(not m) and objects touching the border keep their border
//! voxels.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::common::{self, Op};

/// The `Opening` node type. Params: [`common::MorphologyParams`].
pub struct Opening;

impl NodeType for Opening {
    fn spec(&self) -> NodeSpec {
        common::spec(
            "Opening",
            "Erode then dilate a mask, removing small specks and spurs.",
            "Opening is anti-extensive: the output is inside the input. It is the dual of \
             Closing: the opening of the mask in an unbounded space whose outside is \
             foreground (pad by the element radius with foreground, erode, dilate, crop; \
             ITK's grayscale opening with SafeBorder), so Opening(m) = not Closing(not m) and \
             objects touching the border keep their border voxels.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Open the abdominal prediction with a 3x3 in-plane box.",
            graph: r#"Graph(
    name: "opening_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "out": (node: "Opening", inputs: (mask: "abd"), params: (kernel: (3, 3, 1))),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        common::build(Op::Open, params, implementation)
    }
}
