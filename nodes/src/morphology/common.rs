//! What the four morphology node types share: params, spec, and the runnable node.

use std::sync::Arc;

use voxflow_engine::{
    node_impls, node_params, Impls, InputSpec, Mask, Node, NodeContext, NodeError, NodeSpec,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::element::Element;
use super::{kernels, naive};

node_params! {
    /// Params of `Dilation`, `Erosion`, `Closing` and `Opening`.
    pub struct MorphologyParams {
        /// Box structuring element: size along x, y, z, each odd (1 = no extent along that
        /// axis). Ignored when `radius_mm` is set.
        #[param(unit = "voxels")]
        pub kernel: (usize, usize, usize) = (3, 3, 1),
        /// Ellipsoid structuring element: semi-axes along x, y, z. Voxel offset (dx, dy, dz)
        /// belongs to it when (dx*sx/rx)^2 + (dy*sy/ry)^2 + (dz*sz/rz)^2 <= 1 with the input's
        /// spacing (sx, sy, sz); a zero semi-axis means no extent along that axis. Replaces
        /// `kernel` when set.
        #[param(unit = "mm")]
        pub radius_mm: Option<(f64, f64, f64)> = None,
    }
}

/// The operation a morphology node applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// See [`kernels::dilate`].
    Dilate,
    /// See [`kernels::erode`].
    Erode,
    /// See [`kernels::close`].
    Close,
    /// See [`kernels::open`].
    Open,
}

node_impls! {
    /// Which kernels run: the implementations of the morphology node types.
    pub enum Imp {
        /// Bit-packed (64 voxels per word along x): separable running ORs for boxes
        /// (direct for short windows, van Herk/Gil-Werman for long ones), row spans for
        /// ellipsoids; parallel over slices.
        Fast = "fast",
        /// Reference: the direct definition, offset by offset on bytes, with the same
        /// border conventions. Slow; for checking.
        Naive = "naive",
    }
}

/// The element, known at build time for boxes, at run time (spacing) for ellipsoids.
#[derive(Clone, Debug)]
enum Shape {
    Box(Element),
    Ellipsoid([f64; 3]),
}

/// The spec of one morphology node type.
pub fn spec(name: &'static str, summary: &'static str, doc: &'static str) -> NodeSpec {
    NodeSpec {
        name,
        summary,
        doc,
        category: "morphology",
        inputs: vec![InputSpec::required(
            "mask",
            &[PortType::Mask],
            "The binary mask to transform.",
        )],
        outputs: vec![OutputSpec::new(
            "mask",
            PortType::Mask,
            "The transformed mask, on the input's grid.",
        )],
        params: MorphologyParams::param_specs(),
        impls: Imp::specs(),
    }
}

/// Parse params and build the node for `op`.
pub fn build(
    op: Op,
    params: &serde_json::Value,
    implementation: &str,
) -> Result<Box<dyn Node>, Vec<ParamError>> {
    let p = MorphologyParams::from_json(params)?;
    let mut errors = Vec::new();
    let (kx, ky, kz) = p.kernel;
    let boxed = Element::cuboid([kx, ky, kz]);
    if let Err(e) = &boxed {
        errors.push(ParamError::field(
            "kernel",
            format!("{e}; got ({kx}, {ky}, {kz})"),
        ));
    }
    if let Some((rx, ry, rz)) = p.radius_mm {
        for (axis, r) in [("x", rx), ("y", ry), ("z", rz)] {
            if !(r.is_finite() && r >= 0.0) {
                errors.push(ParamError::field(
                    "radius_mm",
                    format!("semi-axis along {axis} must be a finite number >= 0 mm, got {r}"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let shape = match p.radius_mm {
        Some((rx, ry, rz)) => Shape::Ellipsoid([rx, ry, rz]),
        None => Shape::Box(boxed.expect("checked")),
    };
    let imp = Imp::from_name(implementation)?;
    Ok(Box::new(MorphologyNode { op, shape, imp }))
}

struct MorphologyNode {
    op: Op,
    shape: Shape,
    imp: Imp,
}

impl Node for MorphologyNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let element = match &self.shape {
            Shape::Box(e) => e.clone(),
            Shape::Ellipsoid(r) => Element::ellipsoid(*r, mask.geometry().spacing)
                .map_err(|e| NodeError::Other(format!("radius_mm: {e}")))?,
        };
        let out: Mask = match (self.imp, self.op) {
            (Imp::Fast, Op::Dilate) => kernels::dilate(&mask, &element),
            (Imp::Fast, Op::Erode) => kernels::erode(&mask, &element),
            (Imp::Fast, Op::Close) => kernels::close(&mask, &element),
            (Imp::Fast, Op::Open) => kernels::open(&mask, &element),
            (Imp::Naive, Op::Dilate) => naive::dilate(&mask, &element),
            (Imp::Naive, Op::Erode) => naive::erode(&mask, &element),
            (Imp::Naive, Op::Close) => naive::close(&mask, &element),
            (Imp::Naive, Op::Open) => naive::open(&mask, &element),
        };
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
