//! `SelectLabel`: the mask of one or more labels of a label map.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

node_params! {
    /// Params of `SelectLabel`.
    pub struct SelectLabelParams {
        /// Labels to select, at least one, e.g. [1] or [86, 87].
        #[param(required)]
        pub labels: Vec<u16> = Vec::new(),
    }
}

/// The `SelectLabel` node type.
pub struct SelectLabel;

impl NodeType for SelectLabel {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "SelectLabel",
            summary: "Make a mask of the voxels carrying any of the given labels.",
            doc: "Output voxel = 1 when the label map's value is in `labels`. Selecting a label \
                  that does not occur gives an empty mask, not an error (a prediction may miss \
                  a structure).",
            category: "masks",
            inputs: vec![InputSpec::required(
                "labels",
                &[PortType::Labels],
                "The label map.",
            )],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "The selected voxels, on the label map's grid.",
            )],
            params: SelectLabelParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "One parallel pass through a 65536-entry lookup table.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Both muscle labels (1 abdominal, 2 paravertebral) of the phantom's prediction as one mask.",
            graph: r#"Graph(
    name: "select_label_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "muscle": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1, 2])),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = SelectLabelParams::from_json(params)?;
        if p.labels.is_empty() {
            return Err(vec![ParamError::field(
                "labels",
                "must list at least one label, got []",
            )]);
        }
        Ok(Box::new(SelectLabelNode { labels: p.labels }))
    }
}

struct SelectLabelNode {
    labels: Vec<u16>,
}

impl Node for SelectLabelNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let labels = ctx.labels("labels")?;
        let out = kernels::select_labels(&labels, &self.labels);
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
