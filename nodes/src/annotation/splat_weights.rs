//! `SplatWeights`: training labels and a loss weight map from two sparse SPLAT
//! annotations, one per structure.
//!
//! Annotators paint each structure separately with strokes: some voxels "this
//! structure", some "not this structure", most nothing. The U-Net is trained on one
//! label map with a weight map that keeps unannotated voxels out of the loss; this node
//! makes both, so no voxel is ever trained on a guess.

use std::sync::Arc;

use voxflow_engine::params::NoParams;
use voxflow_engine::{
    Example, ImplSpec, InputSpec, Labels, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

/// The `SplatWeights` node type (no params).
pub struct SplatWeights;

const DOC: &str = "\
Each input is one structure's sparse SPLAT annotation: 0 unannotated, 1 background \
(painted as not this structure), 2 foreground (painted as this structure); any other value \
is an error naming the port and the value. Per voxel (abdominal, paravertebral) -> (label, \
weight): foreground in exactly one structure gives that structure, weight 1 (the structures \
do not overlap, so it is background of the other even where the other annotation is \
silent); background in both gives background, weight 1; foreground in both is a conflict \
and gives label 0, weight 0 (left out of the loss rather than guessed); anything else \
(unannotated in either, and foreground in neither) gives label 0, weight 0. Both inputs \
must share a grid.";

impl NodeType for SplatWeights {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "SplatWeights",
            summary: "Turn two sparse SPLAT annotations into training labels and weights.",
            doc: DOC,
            category: "annotation",
            inputs: vec![
                InputSpec::required(
                    "abdominal",
                    &[PortType::Labels],
                    "SPLAT annotation of the abdominal wall muscles: 0 unannotated, 1 \
                     background, 2 foreground.",
                ),
                InputSpec::required(
                    "paravertebral",
                    &[PortType::Labels],
                    "SPLAT annotation of the paravertebral muscles (0, 1, 2 as above), on the \
                     grid of `abdominal`.",
                ),
            ],
            outputs: vec![
                OutputSpec::new(
                    "labels",
                    PortType::Labels,
                    "Training labels: 0 background, 1 abdominal, 2 paravertebral (0 also where \
                     the weight is 0).",
                ),
                OutputSpec::new(
                    "weights",
                    PortType::Mask,
                    "Loss weights: 1 where the label is known, 0 where it is ignored.",
                ),
            ],
            params: NoParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "A parallel check of the values, then one parallel voxel-wise pass.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Simulate sparse annotations of both phantom muscles (one seed, so the same slices), combine them into training labels and weights, and count the annotated voxels per label.",
            graph: r#"Graph(
    name: "splat_weights_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SimulateSparseAnnotation", inputs: (labels: "phantom.truth"), params: (labels: [1], seed: 1)),
        "para": (node: "SimulateSparseAnnotation", inputs: (labels: "phantom.truth"), params: (labels: [2], seed: 1)),
        "splat": (node: "SplatWeights", inputs: (abdominal: "abd", paravertebral: "para")),
        "stats": (node: "LabelStats", inputs: (labels: "splat.labels")),
        "weighted": (node: "LabelStats", inputs: (labels: "splat.weights")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        NoParams::from_json(params)?;
        Ok(Box::new(SplatWeightsNode))
    }
}

struct SplatWeightsNode;

/// The error for a value that is not 0, 1 or 2 on `port`.
fn check(port: &str, v: &Labels) -> Result<(), NodeError> {
    match kernels::first_invalid(v.as_slice()) {
        None => Ok(()),
        Some((i, value)) => {
            let [nx, ny, _] = v.dims();
            let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
            Err(NodeError::Input {
                port: port.into(),
                message: format!(
                    "value {value} at voxel ({x}, {y}, {z}) is not a SPLAT value (0 \
                     unannotated, 1 background, 2 foreground)"
                ),
            })
        }
    }
}

impl Node for SplatWeightsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let a = ctx.labels("abdominal")?;
        let p = ctx.labels("paravertebral")?;
        ctx.check_same_grid("abdominal", "paravertebral")?;
        check("abdominal", &a)?;
        check("paravertebral", &p)?;
        let (labels, weights) = kernels::splat_weights(&a, &p);
        ctx.set_output("labels", Value::Labels(Arc::new(labels)));
        ctx.set_output("weights", Value::Mask(Arc::new(weights)));
        Ok(())
    }
}
