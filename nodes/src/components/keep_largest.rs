//! `KeepLargestComponents`: keep only the n largest connected components.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, Impls, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::connectivity::Connectivity;
use super::kernels::{self, Method};

node_params! {
    /// Params of `KeepLargestComponents`.
    pub struct KeepLargestComponentsParams {
        /// How many components to keep (at least 1).
        pub n: usize = 1,
        /// Keep the n largest of each axial slice instead of the volume.
        pub per_slice: bool = false,
        #[doc = connectivity_doc!()]
        pub connectivity: Option<u8> = None,
    }
}

/// The `KeepLargestComponents` node type.
pub struct KeepLargestComponents;

impl NodeType for KeepLargestComponents {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "KeepLargestComponents",
            summary: "Keep only the n largest connected components of a mask.",
            doc: "Components are ranked by voxel count; on equal counts the one whose first \
                  voxel comes first in scan order (x fastest, then y, then z) ranks higher, so \
                  the result is deterministic. With fewer than n components all are kept. \
                  With `per_slice`, the n largest of each axial slice are kept.",
            category: "components",
            inputs: vec![InputSpec::required(
                "mask",
                &[PortType::Mask],
                "The mask to filter.",
            )],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "The n largest components, on the input's grid.",
            )],
            params: KeepLargestComponentsParams::param_specs(),
            impls: Method::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "The two largest 26-connected pieces of the predicted muscles (e.g. left and right).",
            graph: r#"Graph(
    name: "keep_largest_components_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "largest": (node: "KeepLargestComponents", inputs: (mask: "para"), params: (n: 2)),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = KeepLargestComponentsParams::from_json(params)?;
        let mut errors = Vec::new();
        if p.n == 0 {
            errors.push(ParamError::field("n", "must be at least 1, got 0"));
        }
        let conn = Connectivity::from_params(p.connectivity, p.per_slice);
        if let Err(e) = &conn {
            errors.push(ParamError::field("connectivity", e.to_string()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(KeepLargestComponentsNode {
            n: p.n,
            conn: conn.expect("checked"),
            method: Method::from_name(implementation)?,
        }))
    }
}

struct KeepLargestComponentsNode {
    n: usize,
    conn: Connectivity,
    method: Method,
}

impl Node for KeepLargestComponentsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let out = kernels::keep_largest(&mask, self.conn, self.n, self.method);
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
