//! The `Phantom` node type: params, spec and the node that calls [`super::generate`].

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, Image, ImplSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::generate::generate;

node_params! {
    /// Parameters of the `Phantom` node.
    pub struct PhantomParams {
        /// Seed of every random choice (anatomy, errors, noise).
        pub seed: u64 = 1,
        /// Grid size (x, y, z): x and y 16..=1024, z 1..=1024.
        #[param(unit = "voxels")]
        pub dims: (usize, usize, usize) = (192, 160, 24),
        /// Voxel spacing (x, y, z), each in (0, 10].
        #[param(unit = "mm")]
        pub spacing_mm: (f64, f64, f64) = (1.5, 1.5, 3.0),
    }
}

/// Largest size along any axis.
pub const MAX_DIM: usize = 1024;
/// Largest voxel spacing in mm.
pub const MAX_SPACING_MM: f64 = 10.0;

impl PhantomParams {
    /// Range checks, one error per offending field.
    pub fn validate(&self) -> Result<(), Vec<ParamError>> {
        let mut errs = Vec::new();
        let (x, y, z) = self.dims;
        for (axis, n, min) in [("x", x, 16), ("y", y, 16), ("z", z, 1)] {
            if n < min || n > MAX_DIM {
                errs.push(ParamError::field(
                    "dims",
                    format!("{axis} size must be between {min} and {MAX_DIM} voxels, got {n}"),
                ));
            }
        }
        let (sx, sy, sz) = self.spacing_mm;
        for (axis, s) in [("x", sx), ("y", sy), ("z", sz)] {
            // `!(s > 0)` also rejects NaN.
            if !(s > 0.0 && s <= MAX_SPACING_MM) {
                errs.push(ParamError::field(
                    "spacing_mm",
                    format!("{axis} spacing must be > 0 and <= {MAX_SPACING_MM} mm, got {s}"),
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Generates a deterministic synthetic abdominal CT with truth and prediction labels.
pub struct Phantom;

const DOC: &str = "\
An axial abdominal CT at the level of the lumbar spine, made up from simple shapes in \
physical millimetres and scaled to the field of view (the body ellipse spans about 85% of \
it), so the same params give the same picture at any spacing. From outside in: air \
(-1000 HU), skin (+30), subcutaneous fat (-100), the abdominal wall muscles (rectus, \
obliques, transversus, +45, with quadratus lumborum: label 1), the paravertebral muscles \
behind the spine (+50: label 2), the vertebra (cortical bone +700, cancellous +250, spinal \
canal), psoas (muscle density, unlabelled), and in the cavity the liver (+60), kidneys \
(+30), aorta and vena cava, bowel loops with fluid and gas (-900), all in visceral fat. \
Small intramuscular fat speckles (-85) sit inside the muscles and are not labelled. Noise is \
near-Gaussian with sd 15 HU; shapes drift smoothly along z so every slice differs.

Orientation: identity direction (RAS+), so +x is the patient's Right and +y Anterior. The \
liver is on the patient's right, that is at high x indices (the image's left when shown \
radiologically); the spine is at low y. The grid is centred on the world origin.

`prediction` imitates a weak U-Net: speckles (1-4 voxel false positives in fat and organs, \
either label), small holes inside muscles, leaks a few mm into the neighbouring fat and \
sometimes organs, intramuscular fat labelled as muscle, confusion between the groups where \
they meet, and a sector of the abdominal wall missed on a third of the slices. Most false \
positives lie outside the muscle HU window (-29..150) or in small components, which is what \
the sarcopenia post-processing removes.

Deterministic: the same params give bit-identical outputs on any number of threads \
(per-slice ChaCha8 streams keyed by seed and slice index).";

impl NodeType for Phantom {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Phantom",
            summary: "Generates a synthetic abdominal CT with truth and predicted muscle labels.",
            doc: DOC,
            category: "phantom",
            inputs: vec![],
            outputs: vec![
                OutputSpec::new("ct", PortType::Image, "CT in HU (i16) with noise."),
                OutputSpec::new(
                    "truth",
                    PortType::Labels,
                    "Ground truth: 1 abdominal wall muscles, 2 paravertebral muscles.",
                ),
                OutputSpec::new(
                    "prediction",
                    PortType::Labels,
                    "Simulated imperfect segmentation with the same labels as `truth`.",
                ),
            ],
            params: PhantomParams::param_specs(),
            impls: vec![ImplSpec::new(
                "native",
                "Rust, slices generated in parallel with rayon; bit-identical at any thread count.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "A small phantom (64x64x8 voxels) with seed 3.",
            graph: r#"Graph(
    name: "phantom",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 3, dims: (64, 64, 8))),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        PhantomNode::build(params, |p, ctx| {
            let v = generate(p);
            ctx.set_output("ct", Value::Image(Arc::new(Image::I16(v.ct))));
            ctx.set_output("truth", Value::Labels(Arc::new(v.truth)));
            ctx.set_output("prediction", Value::Labels(Arc::new(v.prediction)));
        })
    }
}

/// The runnable of both phantom node types (`Phantom`, `PhantomVertebrae`): checked params
/// and what the node type makes of them.
pub(super) struct PhantomNode {
    params: PhantomParams,
    outputs: fn(&PhantomParams, &mut NodeContext),
}

impl PhantomNode {
    /// Parse and check the params; `outputs` sets the node type's outputs when it runs.
    pub(super) fn build(
        params: &serde_json::Value,
        outputs: fn(&PhantomParams, &mut NodeContext),
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let params = PhantomParams::from_json(params)?;
        params.validate()?;
        Ok(Box::new(PhantomNode { params, outputs }))
    }
}

impl Node for PhantomNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        (self.outputs)(&self.params, ctx);
        Ok(())
    }
}
