//! `Closing`: dilate then erode a mask, filling small holes and gaps. Closing is
//! extensive: the output contains the input. It is the closing of the mask in an
//! unbounded space whose outside is background, computed like ITK's closing with
//! SafeBorder and sarcopenia_ref.closing: pad by the element radius with background,
//! dilate, erode, crop. This is not erosion-with-foreground-outside applied after
//! dilation on the unpadded grid, which would also fill the background between an object
//! and the border.

use voxflow_engine::{Example, Node, NodeSpec, NodeType, ParamError};

use super::common::{self, Op};

/// The `Closing` node type. Params: [`common::MorphologyParams`].
pub struct Closing;

impl NodeType for Closing {
    fn spec(&self) -> NodeSpec {
        common::spec(
            "Closing",
            "Dilate then erode a mask, filling small holes and gaps.",
            "Closing is extensive: the output contains the input. It is the closing of the \
             mask in an unbounded space whose outside is background, computed like ITK's \
             closing with SafeBorder and sarcopenia_ref.closing: pad by the element radius \
             with background, dilate, erode, crop. This is not erosion-with-foreground-outside \
             applied after dilation on the unpadded grid, which would also fill the \
             background between an object and the border.",
        )
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description:
                "Close the abdominal prediction with a 3x3 in-plane box (sarcopenia chain step).",
            graph: r#"Graph(
    name: "closing_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "out": (node: "Closing", inputs: (mask: "abd"), params: (kernel: (3, 3, 1))),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        common::build(Op::Close, params, implementation)
    }
}
