//! `Reorient`: take a label map's voxels in the axis order of another grid (flips and
//! permutations only), so that a segmentation stored LAS combines with the LPS DICOM
//! series it was made from. Exact: no voxel value is computed, only moved.

use std::sync::Arc;

use voxflow_engine::axes::{axis_map, corner_distance_mm, is_identity, permuted_affine};
use voxflow_engine::{
    node_params, Example, Geometry, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

node_params! {
    /// Params of `Reorient`.
    pub struct ReorientParams {
        /// Largest distance allowed between corresponding corner voxel centres of the
        /// reordered labels and `like`.
        #[param(unit = "mm")]
        pub tolerance_mm: f64 = 0.1,
    }
}

/// The `Reorient` node type.
pub struct Reorient;

impl NodeType for Reorient {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Reorient",
            summary: "Take a label map's voxels in another grid's axis order (flips, swaps).",
            doc: "The voxel axes of `labels` are matched to those of `like` by direction \
                  (each parallel or antiparallel to one of them, within 0.001 in the direction \
                  cosines) and the voxels are reordered accordingly: flipping and permuting \
                  axes, nothing interpolated, so every label keeps its voxel count. The result \
                  carries `like`'s grid, so it combines with `like` in any node. It fails, \
                  naming what differs, when the axes are rotated relative to each other, when \
                  the dims differ after matching the axes, or when the voxel centres lie \
                  further than `tolerance_mm` apart (another spacing or field of view): \
                  ResampleLabels handles those. Typical use: a NIfTI segmentation (often \
                  stored LAS) onto its DICOM series (LPS).",
            category: "geometry",
            inputs: vec![
                InputSpec::required("labels", &[PortType::Labels], "The label map to reorder."),
                InputSpec::required(
                    "like",
                    &[PortType::Image, PortType::Mask, PortType::Labels],
                    "The volume whose grid (axis order and position) the result takes.",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "labels",
                PortType::Labels,
                "The same labels on `like`'s grid.",
            )],
            params: ReorientParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "One strided copy, parallel over the output's slices.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "A DICOM series (LPS) and its NIfTI segmentation (stored LAS, y \
                              flipped): reorient the segmentation onto the CT, then measure HU \
                              per label (needs ../shared/data).",
                graph: r#"Graph(
    name: "reorient_dicom_example",
    params: {
        "series": "../shared/data/dicom/ct_series",
        "seg": "../shared/data/dicom/ct_series_seg.nii.gz",
    },
    nodes: {
        "ct":      (node: "LoadDicomSeries", params: (dir: "${series}")),
        "seg":     (node: "LoadLabels", params: (path: "${seg}")),
        "onto_ct": (node: "Reorient", inputs: (labels: "seg", like: "ct")),
        "stats":   (node: "LabelStats", inputs: (labels: "onto_ct", image: "ct")),
    },
)"#,
            },
            Example {
                description: "Put a segmentation on the CT's axes before combining them (here \
                          the phantom's truth, already in the CT's order, comes back \
                          unchanged).",
                graph: r#"Graph(
    name: "reorient_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 48, 6))),
        "onto_ct": (node: "Reorient", inputs: (labels: "phantom.truth", like: "phantom.ct")),
        "stats":   (node: "LabelStats", inputs: (labels: "onto_ct", image: "phantom.ct")),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = ReorientParams::from_json(params)?;
        if !(p.tolerance_mm.is_finite() && p.tolerance_mm >= 0.0) {
            return Err(vec![ParamError::field(
                "tolerance_mm",
                format!("must be a finite number >= 0 mm, got {}", p.tolerance_mm),
            )]);
        }
        Ok(Box::new(ReorientNode {
            tolerance_mm: p.tolerance_mm,
        }))
    }
}

struct ReorientNode {
    tolerance_mm: f64,
}

impl Node for ReorientNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let labels = ctx.labels("labels")?;
        let like: Geometry = ctx
            .input("like")
            .and_then(Value::geometry)
            .cloned()
            .ok_or_else(|| NodeError::Input {
                port: "like".into(),
                message: "not connected".into(),
            })?;
        let src = labels.geometry();
        let refuse = |ctx: &NodeContext| {
            Err(NodeError::Input {
                port: "labels".into(),
                message: format!(
                    "cannot be reoriented onto `like`: {}",
                    voxflow_engine::axes::describe_difference("like", &like, "labels", src)
                        + &format!(" ({})", ctx.describe_input("like"))
                ),
            })
        };
        // The map from the labels' axes to like's.
        let Some(map) = axis_map(src, &like) else {
            return refuse(ctx);
        };
        let (dims, affine) = permuted_affine(src, &map);
        if dims != like.dims {
            return refuse(ctx);
        }
        let moved = Geometry::from_affine(dims, affine);
        let distance = corner_distance_mm(&moved, &like);
        if distance > self.tolerance_mm {
            return refuse(ctx);
        }
        if is_identity(&map) {
            ctx.note("axes already in `like`'s order");
        } else {
            let axes = ["x", "y", "z"];
            let order: Vec<String> = map
                .iter()
                .map(|&(a, flip)| format!("{}{}", if flip { "-" } else { "" }, axes[a]))
                .collect();
            ctx.note(format!(
                "output x, y, z = input {}; corner voxel centres {distance:.2e} mm from `like`'s",
                order.join(", ")
            ));
        }
        let out = kernels::reorient(&labels, &map, like);
        ctx.set_output("labels", Value::Labels(Arc::new(out)));
        Ok(())
    }
}
