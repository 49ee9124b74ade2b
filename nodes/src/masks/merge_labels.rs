//! `MergeLabels`: a label map from a list of masks, one label per mask.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Mask, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

node_params! {
    /// Params of `MergeLabels`.
    pub struct MergeLabelsParams {
        /// Label for each mask of `masks`, same order and length.
        #[param(required)]
        pub labels: Vec<u16> = Vec::new(),
    }
}

/// The `MergeLabels` node type.
pub struct MergeLabels;

impl NodeType for MergeLabels {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "MergeLabels",
            summary: "Combine masks into one label map, later masks winning on overlap.",
            doc: "Output voxel = labels[i] for the last mask i (in the order of the `masks` list) \
                  that contains it, 0 where no mask does. So on overlap the later mask wins: \
                  put the structure that must take precedence last. A label of 0 erases what \
                  earlier masks wrote. The number of labels must equal the number of masks \
                  (checked when the node runs), and all masks must share one grid.",
            category: "masks",
            inputs: vec![InputSpec::list(
                "masks",
                &[PortType::Mask],
                "The masks, in order of increasing precedence.",
            )],
            outputs: vec![OutputSpec::new(
                "labels",
                PortType::Labels,
                "The merged label map.",
            )],
            params: MergeLabelsParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "One parallel pass over voxel chunks, masks in order.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Rebuild a two-label map from the closed abdominal and paravertebral masks; paravertebral wins on overlap.",
            graph: r#"Graph(
    name: "merge_labels_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "para": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [2])),
        "abd_closed": (node: "Closing", inputs: (mask: "abd")),
        "merged": (node: "MergeLabels", inputs: (masks: ["abd_closed", "para"]), params: (labels: [1, 2])),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = MergeLabelsParams::from_json(params)?;
        if p.labels.is_empty() {
            return Err(vec![ParamError::field(
                "labels",
                "must give one label per mask, got []",
            )]);
        }
        Ok(Box::new(MergeLabelsNode { labels: p.labels }))
    }
}

struct MergeLabelsNode {
    labels: Vec<u16>,
}

impl Node for MergeLabelsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let values = ctx.input_list("masks");
        let mut masks: Vec<Arc<Mask>> = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match v {
                Value::Mask(m) => masks.push(m.clone()),
                other => {
                    return Err(NodeError::Input {
                        port: "masks".into(),
                        message: format!("item {i}: expected Mask, got {}", other.port_type()),
                    })
                }
            }
        }
        if masks.len() != self.labels.len() {
            return Err(NodeError::Other(format!(
                "param `labels` has {} entries but {} masks are connected to `masks`; give \
                 exactly one label per mask, in the same order",
                self.labels.len(),
                masks.len()
            )));
        }
        let g0 = masks[0].geometry();
        for (i, m) in masks.iter().enumerate().skip(1) {
            if !m.geometry().same_grid(g0) {
                return Err(ctx.grid_mismatch(
                    "masks[0]",
                    g0,
                    &format!("masks[{i}]"),
                    m.geometry(),
                ));
            }
        }
        let refs: Vec<&Mask> = masks.iter().map(|m| m.as_ref()).collect();
        let out = kernels::merge(&refs, &self.labels);
        ctx.set_output("labels", Value::Labels(Arc::new(out)));
        Ok(())
    }
}
