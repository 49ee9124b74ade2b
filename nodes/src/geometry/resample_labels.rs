//! `ResampleLabels`: a label map on another grid by nearest neighbour, so that labels
//! stay labels (no averaged, meaningless in-between values).

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;
use super::resample::{check_spacing, like_input, spacing_doc, target_grid};

node_params! {
    /// Params of `ResampleLabels`.
    pub struct ResampleLabelsParams {
        #[doc = spacing_doc!()]
        #[param(unit = "mm")]
        pub spacing_mm: Option<(f64, f64, f64)> = None,
    }
}

/// The `ResampleLabels` node type.
pub struct ResampleLabels;

impl NodeType for ResampleLabels {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "ResampleLabels",
            summary: "Put a label map onto another spacing or grid (nearest neighbour).",
            doc: "Each target voxel takes the label of the input voxel containing its centre \
                  (mapped through both affines, so rotated and flipped grids work too; a \
                  centre exactly on a voxel face goes to the higher index), and 0 when the \
                  centre lies outside the input volume. With `spacing_mm` the grid keeps the \
                  input's field of view and directions (as Resample); with `like` it is that \
                  volume's grid. Upsampling by an integer factor and back returns the input \
                  exactly. For masks, merge them into labels first (MergeLabels) and select \
                  after (SelectLabel).",
            category: "geometry",
            inputs: vec![
                InputSpec::required("labels", &[PortType::Labels], "The label map to resample."),
                like_input(),
            ],
            outputs: vec![OutputSpec::new(
                "labels",
                PortType::Labels,
                "The labels on the target grid.",
            )],
            params: ResampleLabelsParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "Nearest neighbour, parallel over target slices.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "The phantom's truth at 0.75 x 0.75 x 3 mm, then back onto the CT's \
                          grid with `like` (the same voxels as before).",
            graph: r#"Graph(
    name: "resample_labels_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 48, 6))),
        "fine":    (node: "ResampleLabels", inputs: (labels: "phantom.truth"), params: (spacing_mm: Some((0.75, 0.75, 3.0)))),
        "back":    (node: "ResampleLabels", inputs: (labels: "fine", like: "phantom.ct")),
        "same":    (node: "CompareMasks", inputs: (a: "phantom.truth", b: "back")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = ResampleLabelsParams::from_json(params)?;
        check_spacing(p.spacing_mm).map_err(|e| vec![e])?;
        Ok(Box::new(ResampleLabelsNode {
            spacing_mm: p.spacing_mm,
        }))
    }
}

struct ResampleLabelsNode {
    spacing_mm: Option<(f64, f64, f64)>,
}

impl Node for ResampleLabelsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let labels = ctx.labels("labels")?;
        let Some(target) = target_grid(ctx, labels.geometry(), self.spacing_mm)? else {
            ctx.set_output("labels", Value::Labels(labels));
            return Ok(());
        };
        let out = kernels::resample_nearest(&labels, &target).map_err(|e| NodeError::Input {
            port: "labels".into(),
            message: e.to_string(),
        })?;
        ctx.set_output("labels", Value::Labels(Arc::new(out)));
        Ok(())
    }
}
