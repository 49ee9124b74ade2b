//! `KeepLargestComponents`: keep only the n largest connected components.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use voxflow_engine::{
    parse_params, Example, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType, OutputSpec,
    ParamError, ParamSpec, PortType, Value,
};

use super::connectivity::Connectivity;
use super::kernels::{self, Method};

/// Params of `KeepLargestComponents`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepLargestComponentsParams {
    /// How many components to keep (per slice with `per_slice`). Default 1; at least 1.
    pub n: usize,
    /// Keep the largest of each axial slice instead of the whole volume. Default false.
    pub per_slice: bool,
    /// Neighbours: 4 or 8 with `per_slice`, 6, 18 or 26 in 3D. Default None: 8 per
    /// slice, 26 in 3D. No unit.
    pub connectivity: Option<u8>,
}

impl Default for KeepLargestComponentsParams {
    fn default() -> Self {
        KeepLargestComponentsParams {
            n: 1,
            per_slice: false,
            connectivity: None,
        }
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
            params: vec![
                ParamSpec::new(
                    "n",
                    "usize",
                    "1",
                    "",
                    "How many components to keep (at least 1).",
                ),
                ParamSpec::new(
                    "per_slice",
                    "bool",
                    "false",
                    "",
                    "Keep the n largest of each axial slice instead of the volume.",
                ),
                super::connectivity_param(),
            ],
            impls: super::impls(),
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
        let p: KeepLargestComponentsParams = parse_params(params).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        if p.n == 0 {
            errors.push(ParamError::field("n", "must be at least 1, got 0"));
        }
        let conn = Connectivity::from_params(p.connectivity, p.per_slice);
        if let Err(e) = &conn {
            errors.push(ParamError::field("connectivity", e.clone()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(KeepLargestNode {
            n: p.n,
            conn: conn.expect("checked"),
            method: Method::from_impl(implementation),
        }))
    }
}

struct KeepLargestNode {
    n: usize,
    conn: Connectivity,
    method: Method,
}

impl Node for KeepLargestNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let out = kernels::keep_largest(&mask, self.conn, self.n, self.method);
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
