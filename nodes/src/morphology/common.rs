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
        /// border conventions. Slow; for checking: refuses elements that would take it
        /// past 1e11 (voxel, offset) pairs.
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

/// Why an ellipsoid written in mm does less than asked on this grid, or `None`: a
/// semi-axis shorter than the voxel spacing along it gives the element no extent there,
/// and when that holds for every axis the node leaves its input unchanged. Graphs with mm
/// kernels (graphs/macros/postprocess_structure.ron) are written for sub-mm grids and
/// shrink on coarse ones by design; this says so instead of staying silent (issue 21.4).
pub fn coarse_grid_warning(radius_mm: [f64; 3], spacing: [f64; 3], e: &Element) -> Option<String> {
    let lost: Vec<&str> = (0..3)
        .filter(|&a| radius_mm[a] > 0.0 && e.radius()[a] == 0)
        .map(|a| ["x", "y", "z"][a])
        .collect();
    if lost.is_empty() {
        return None;
    }
    let grid = format!(
        "{:.2} x {:.2} x {:.2} mm",
        spacing[0], spacing[1], spacing[2]
    );
    let r = format!(
        "radius_mm ({}, {}, {})",
        radius_mm[0], radius_mm[1], radius_mm[2]
    );
    Some(if e.radius() == [0, 0, 0] {
        format!(
            "{r} is a single voxel on this grid (spacing {grid}): the node leaves its input \
             unchanged; the graph was written for a finer grid"
        )
    } else {
        format!(
            "{r} has no extent along {} on this grid (spacing {grid}: a semi-axis shorter \
             than the spacing); the graph was written for a finer grid",
            lost.join(", ")
        )
    })
}

/// Most (voxel, element offset) pairs the `naive` implementation takes on: about a
/// minute on a 2-core machine. Its work is voxels x element size, so an element of
/// radius 400 on a 32x32x4 mask (2e12 pairs) ran for tens of minutes where `fast` takes
/// a fraction of a second; past this it refuses instead of seeming to hang.
pub const NAIVE_MAX_PAIRS: f64 = 1e11;

/// `Err` when `naive` would test more than [`NAIVE_MAX_PAIRS`] pairs; closing and
/// opening run on the mask padded by the element's radius, twice.
fn naive_work_ok(mask: &Mask, element: &Element, op: Op) -> Result<(), NodeError> {
    let r = element.radius();
    let n = mask.dims();
    let (pad, passes) = match op {
        Op::Dilate | Op::Erode => (0, 1.0),
        Op::Close | Op::Open => (1, 2.0),
    };
    let voxels: f64 = (0..3).map(|a| (n[a] + 2 * pad * r[a]) as f64).product();
    let size: f64 = r.iter().map(|&ra| (2 * ra + 1) as f64).product();
    let pairs = passes * voxels * size;
    if pairs > NAIVE_MAX_PAIRS {
        return Err(NodeError::Other(format!(
            "the naive implementation would test {pairs:.1e} (voxel, offset) pairs for a \
             {}x{}x{} element on this {}x{}x{} mask, over its limit of {NAIVE_MAX_PAIRS:.0e} \
             (it is the slow reference); use the default implementation, fast",
            2 * r[0] + 1,
            2 * r[1] + 1,
            2 * r[2] + 1,
            n[0],
            n[1],
            n[2]
        )));
    }
    Ok(())
}

struct MorphologyNode {
    op: Op,
    shape: Shape,
    imp: Imp,
}

impl Node for MorphologyNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let spacing = mask.geometry().spacing;
        let element = match &self.shape {
            Shape::Box(e) => e.clone(),
            Shape::Ellipsoid(r) => {
                let e = Element::ellipsoid(*r, spacing)
                    .map_err(|e| NodeError::Other(format!("radius_mm: {e}")))?;
                if let Some(w) = coarse_grid_warning(*r, spacing, &e) {
                    tracing::warn!("node `{}` ({}): {w}", ctx.node_id(), ctx.node_type());
                    ctx.note(w);
                }
                e
            }
        };
        if self.imp == Imp::Naive {
            naive_work_ok(&mask, &element, self.op)?;
        }
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

#[cfg(test)]
mod coarse_grid_tests {
    use super::*;

    fn warning(r: [f64; 3], s: [f64; 3]) -> Option<String> {
        coarse_grid_warning(r, s, &Element::ellipsoid(r, s).unwrap())
    }

    #[test]
    fn warns_exactly_when_a_semi_axis_is_shorter_than_the_spacing() {
        // The macro's dilation (1.5, 1.5, 1.0) mm on the grid it was written for: silent.
        assert_eq!(warning([1.5, 1.5, 1.0], [0.75, 0.75, 1.0]), None);
        // A zero semi-axis asks for no extent: not a loss.
        assert_eq!(warning([0.75, 0.75, 0.0], [0.75, 0.75, 1.0]), None);
        // On 3 mm slices z is lost; in-plane still works.
        let w = warning([1.5, 1.5, 1.0], [1.5, 1.5, 3.0]).unwrap();
        assert!(w.contains("no extent along z"), "{w}");
        assert!(w.contains("1.50 x 1.50 x 3.00 mm"), "{w}");
        // The closing (0.75, 0.75, 0) on 1.5 mm pixels does nothing.
        let w = warning([0.75, 0.75, 0.0], [1.5, 1.5, 3.0]).unwrap();
        assert!(w.contains("single voxel") && w.contains("unchanged"), "{w}");
    }
}
