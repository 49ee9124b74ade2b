//! `SimulateSparseAnnotation`: a sparse SPLAT annotation of one structure, simulated
//! from a dense label map.
//!
//! Real SPLAT annotations are sparse strokes on a few slices; the U-Net training path
//! (`SplatWeights`, weighted loss) must be exercised and tested without them. This node
//! fakes what an annotator does, deterministically per seed, from any dense
//! segmentation (the phantom's truth in the examples).

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels::{self, SparseOptions};

node_params! {
    /// Params of `SimulateSparseAnnotation`.
    pub struct SimulateSparseAnnotationParams {
        /// Label values forming the structure, at least one.
        pub labels: Vec<u16> = vec![1],
        /// Annotate every Nth slice holding the structure, from a seeded offset; >= 1.
        #[param(unit = "slice")]
        pub slices_every: usize = 4,
        /// Inclusive z index range that may be annotated; None: all slices.
        #[param(unit = "slice")]
        pub slice_range: Option<(usize, usize)> = None,
        /// Width of the painted background band around the structure (in-plane); > 0.
        #[param(unit = "mm")]
        pub background_band_mm: f64 = 10.0,
        /// Seed of the random choices (first slice, gaps in the band).
        pub seed: u64 = 1,
        /// Foreground = the whole structure, background without the one-voxel gap (for
        /// coarse grids, where thin muscles are only 2-3 voxels thick).
        pub paint_to_edges: bool = false,
    }
}

impl SimulateSparseAnnotationParams {
    /// Range checks that need no input, one error per offending field.
    pub fn validate(&self) -> Result<(), Vec<ParamError>> {
        let mut errs = Vec::new();
        if self.labels.is_empty() {
            errs.push(ParamError::field(
                "labels",
                "must list at least one label, got []",
            ));
        }
        if self.slices_every == 0 {
            errs.push(ParamError::field(
                "slices_every",
                "must be at least 1 (1 annotates every slice), got 0",
            ));
        }
        if let Some((first, last)) = self.slice_range {
            if first > last {
                errs.push(ParamError::field(
                    "slice_range",
                    format!("first slice must not exceed last, got ({first}, {last})"),
                ));
            }
        }
        let b = self.background_band_mm;
        // `!(b > 0)` also rejects NaN.
        if !(b > 0.0 && b.is_finite()) {
            errs.push(ParamError::field(
                "background_band_mm",
                format!("must be a finite width > 0 mm, got {b}"),
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// The `SimulateSparseAnnotation` node type.
pub struct SimulateSparseAnnotation;

const DOC: &str = "\
Simulates how an annotator paints one structure (the voxels of the input carrying any of \
`labels`) with sparse strokes, as in SPLAT annotation. Output values: 0 unannotated, 1 \
background, 2 foreground. Slices: among the axial slices (within `slice_range`, inclusive z \
indices) that hold the structure, every `slices_every`-th is annotated, starting at an offset \
in 0..slices_every drawn from `seed` (wrapping round when the structure has fewer slices, so \
at least one is annotated); all other slices stay 0. On an annotated slice, everything is \
2D, in-plane: foreground = structure voxels whose four in-plane neighbours are all structure \
(eroded by a 3x3 cross, as strokes stay off the edge; voxels beyond the slice edge count as \
outside). Background = voxels outside the structure whose centre lies within \
`background_band_mm` of the nearest structure voxel centre (exact Euclidean distance with the \
x/y spacing), except a one-voxel gap: voxels touching the structure (any of their eight \
in-plane neighbours) stay 0. Then a random 10-30% of that band is cleared in disks of radius \
0.5-1.5 band widths (shrunk when one would clear more than 30%), so it looks like strokes \
rather than a perfect ring. So foreground is always inside the structure and background \
always outside it and within the band. The same input and params always give the same \
output; each slice has its own random stream, so the result does not depend on threads. \
SplatWeights paints background only where both annotations do: annotate the structures with \
one seed so that, where they occupy the same slices, they share the annotated slices (as one \
annotator's would). With `paint_to_edges`, foreground is the whole structure and background \
has no gap (for coarse grids where the margins would swallow thin structures).";

impl NodeType for SimulateSparseAnnotation {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "SimulateSparseAnnotation",
            summary: "Simulate a sparse SPLAT annotation of one structure from dense labels.",
            doc: DOC,
            category: "annotation",
            inputs: vec![InputSpec::required(
                "labels",
                &[PortType::Labels],
                "Dense label map holding the structure (e.g. a ground truth).",
            )],
            outputs: vec![OutputSpec::new(
                "splat",
                PortType::Labels,
                "The simulated annotation on the input's grid: 0 unannotated, 1 background, \
                 2 foreground.",
            )],
            params: SimulateSparseAnnotationParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "Slices in parallel; exact 2D distance transform for the band.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "A sparse annotation of the phantom's abdominal wall muscles (label 1) with the defaults (every 4th slice, 10 mm background band); the stats count SPLAT values (1 background, 2 foreground).",
                graph: r#"Graph(
    name: "simulate_sparse_annotation_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SimulateSparseAnnotation", inputs: (labels: "phantom.truth"), params: (labels: [1])),
        "stats": (node: "LabelStats", inputs: (labels: "abd")),
    },
)"#,
            },
            Example {
                description: "The paravertebral muscles (label 2), every 2nd slice within slices 2-9, with a 6 mm band and another seed; stats per SPLAT value.",
                graph: r#"Graph(
    name: "simulate_sparse_annotation_range_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "para": (node: "SimulateSparseAnnotation", inputs: (labels: "phantom.truth"),
                 params: (labels: [2], slices_every: 2, slice_range: Some((2, 9)), background_band_mm: 6.0, seed: 7)),
        "stats": (node: "LabelStats", inputs: (labels: "para")),
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
        let p = SimulateSparseAnnotationParams::from_json(params)?;
        p.validate()?;
        Ok(Box::new(SimulateSparseAnnotationNode { p }))
    }
}

struct SimulateSparseAnnotationNode {
    p: SimulateSparseAnnotationParams,
}

impl Node for SimulateSparseAnnotationNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let labels = ctx.labels("labels")?;
        let nz = labels.dims()[2];
        let range = match self.p.slice_range {
            None => (0, nz.saturating_sub(1)),
            Some((first, last)) => {
                if last >= nz {
                    return Err(NodeError::Other(format!(
                        "param `slice_range`: ({first}, {last}) reaches past the last slice, {} \
                         (the input has {nz} slices)",
                        nz.saturating_sub(1)
                    )));
                }
                (first, last)
            }
        };
        let opts = SparseOptions {
            labels: self.p.labels.clone(),
            slices_every: self.p.slices_every,
            slice_range: range,
            background_band_mm: self.p.background_band_mm,
            seed: self.p.seed,
            paint_to_edges: self.p.paint_to_edges,
        };
        let out = kernels::simulate_sparse(&labels, &opts);
        ctx.set_output("splat", Value::Labels(Arc::new(out)));
        Ok(())
    }
}
