//! `ConnectedComponents`: label the connected components of a mask.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, Impls, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::connectivity::Connectivity;
use super::kernels::{self, Method};

node_params! {
    /// Params of `ConnectedComponents`.
    pub struct ConnectedComponentsParams {
        #[doc = connectivity_doc!()]
        pub connectivity: Option<u8> = None,
        /// Label each axial slice on its own.
        pub per_slice: bool = false,
    }
}

/// The `ConnectedComponents` node type.
pub struct ConnectedComponents;

impl NodeType for ConnectedComponents {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "ConnectedComponents",
            summary: "Label the connected components of a mask 1..n in scan order.",
            doc: "Component ids are 1..=n in scan order of each component's first voxel: x \
                  fastest, then y, then z (scipy.ndimage.label on the array viewed [z, y, x] \
                  numbers them the same way). With `per_slice`, components never cross axial \
                  slices and the ids of slice z follow those of slice z-1. A label map holds \
                  at most 65535 ids: more components is an error (remove small ones first).",
            category: "components",
            inputs: vec![InputSpec::required(
                "mask",
                &[PortType::Mask],
                "The mask to label.",
            )],
            outputs: vec![OutputSpec::new(
                "labels",
                PortType::Labels,
                "Component ids (0 = background), on the mask's grid.",
            )],
            params: ConnectedComponentsParams::param_specs(),
            impls: Method::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "26-connected components of the predicted paravertebral muscles.",
                graph: r#"Graph(
    name: "connected_components_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "cc": (node: "ConnectedComponents", inputs: (mask: "para"), params: (connectivity: 26)),
    },
)"#,
            },
            Example {
                description:
                    "4-connected components of each axial slice of the predicted abdominal muscles.",
                graph: r#"Graph(
    name: "connected_components_per_slice_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "cc": (node: "ConnectedComponents", inputs: (mask: "abd"), params: (connectivity: 4, per_slice: true)),
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
        let p = ConnectedComponentsParams::from_json(params)?;
        let conn = Connectivity::from_params(p.connectivity, p.per_slice)
            .map_err(|e| vec![ParamError::field("connectivity", e.to_string())])?;
        Ok(Box::new(ConnectedComponentsNode {
            conn,
            method: Method::from_name(implementation)?,
        }))
    }
}

struct ConnectedComponentsNode {
    conn: Connectivity,
    method: Method,
}

impl Node for ConnectedComponentsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let c = kernels::label(&mask, self.conn, self.method);
        let labels = c.to_labels(mask.geometry()).map_err(|e| NodeError::Input {
            port: "mask".into(),
            message: e.to_string(),
        })?;
        ctx.note(format!("{} components ({})", c.count(), self.conn));
        ctx.set_output("labels", Value::Labels(Arc::new(labels)));
        Ok(())
    }
}
