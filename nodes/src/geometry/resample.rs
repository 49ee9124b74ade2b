//! `Resample`: an image on another grid by trilinear interpolation, either a new voxel
//! spacing over the same field of view or the grid of another volume. Kernels written in
//! voxels (and networks trained at one spacing) act differently on other spacings;
//! resampling first is one way to give them the grid they were made for.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, Geometry, Image, ImplSpec, InputSpec, Node, NodeContext, NodeError,
    NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

/// The doc of `spacing_mm`, shared by both resampling nodes (a macro so that it is a literal
/// for `#[doc]`).
macro_rules! spacing_doc {
    () => {
        "Target voxel spacing (x, y, z) over the input's field of view: round(n * s / \
         spacing) voxels per axis, outer voxel edges kept. None: the grid of `like`. Give \
         at most one of the two; neither passes the input on unchanged (so a graph param \
         left at None switches resampling off)."
    };
}
pub(super) use spacing_doc;

node_params! {
    /// Params of `Resample`.
    pub struct ResampleParams {
        #[doc = spacing_doc!()]
        #[param(unit = "mm")]
        pub spacing_mm: Option<(f64, f64, f64)> = None,
        /// Value of target voxels whose centre lies outside the input volume.
        #[param(unit = "image unit (HU)")]
        pub fill: f64 = -1024.0,
    }
}

/// The `like` input both resampling nodes share.
pub(super) fn like_input() -> InputSpec {
    InputSpec::optional(
        "like",
        &[PortType::Image, PortType::Mask, PortType::Labels],
        "Resample onto this volume's grid (instead of `spacing_mm`).",
    )
}

/// Check a `spacing_mm` param at build time.
pub(super) fn check_spacing(spacing: Option<(f64, f64, f64)>) -> Result<(), ParamError> {
    if let Some((x, y, z)) = spacing {
        for (axis, s) in [("x", x), ("y", y), ("z", z)] {
            if !(s.is_finite() && s > 0.0) {
                return Err(ParamError::field(
                    "spacing_mm",
                    format!("spacing along {axis} must be a finite number > 0 mm, got {s}"),
                ));
            }
        }
    }
    Ok(())
}

/// The target grid: `like`'s, or `src`'s field of view at `spacing`; at most one.
/// `None` when neither is given: the node passes its input on (a graph can then make
/// resampling opt-in with a `spacing_mm` graph param that defaults to None).
pub(super) fn target_grid(
    ctx: &mut NodeContext,
    src: &Geometry,
    spacing: Option<(f64, f64, f64)>,
) -> Result<Option<Geometry>, NodeError> {
    let like = ctx.input("like").and_then(Value::geometry).cloned();
    match (like, spacing) {
        (Some(_), Some(_)) => Err(NodeError::Input {
            port: "like".into(),
            message: "is connected and `spacing_mm` is set: give one target grid, not both".into(),
        }),
        (None, None) => {
            ctx.note("no target grid (`like` not connected, `spacing_mm` None): input unchanged");
            Ok(None)
        }
        (Some(g), None) => Ok(Some(g)),
        (None, Some((x, y, z))) => kernels::grid_with_spacing(src, [x, y, z])
            .map(Some)
            .map_err(|e| NodeError::Other(format!("spacing_mm: {e}"))),
    }
}

/// The `Resample` node type.
pub struct Resample;

impl NodeType for Resample {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "Resample",
            summary: "Interpolate an image onto another spacing or grid (trilinear).",
            doc: "Each target voxel centre is mapped into the input's voxel indices through \
                  both affines (so rotated and flipped grids work too) and the value is \
                  interpolated trilinearly from the 8 surrounding voxels, in f64, stored as \
                  f32. Within half a voxel beyond the outer voxel centres the indices are \
                  clamped (scipy.ndimage's mode=\"nearest\"); further out the voxel takes \
                  `fill`. With `spacing_mm` the grid keeps the input's field of view and \
                  directions (the outer voxel edges stay where they were, as \
                  scipy.ndimage.zoom(grid_mode=True)); with `like` it is that volume's grid. \
                  Label maps need nearest-neighbour sampling: ResampleLabels.",
            category: "geometry",
            inputs: vec![
                InputSpec::required("image", &[PortType::Image], "The image to resample."),
                like_input(),
            ],
            outputs: vec![OutputSpec::new(
                "image",
                PortType::Image,
                "The image on the target grid, f32.",
            )],
            params: ResampleParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "Trilinear, parallel over target slices.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "The phantom CT at 3 mm isotropic (from 1.5 x 1.5 x 3 mm).",
                graph: r#"Graph(
    name: "resample_spacing_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 48, 6))),
        "coarse":  (node: "Resample", inputs: (image: "phantom.ct"), params: (spacing_mm: Some((3.0, 3.0, 3.0)))),
    },
)"#,
            },
            Example {
                description: "Back onto the original grid with `like`: muscle HU on the \
                              round trip.",
                graph: r#"Graph(
    name: "resample_like_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 48, 6))),
        "coarse":  (node: "Resample", inputs: (image: "phantom.ct"), params: (spacing_mm: Some((3.0, 3.0, 3.0)))),
        "back":    (node: "Resample", inputs: (image: "coarse", like: "phantom.ct")),
        "muscle":  (node: "HuWindow", inputs: (image: "back"), params: (min: -29, max: 150)),
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
        let p = ResampleParams::from_json(params)?;
        let mut errors = Vec::new();
        if let Err(e) = check_spacing(p.spacing_mm) {
            errors.push(e);
        }
        if !p.fill.is_finite() || p.fill.abs() > f32::MAX as f64 {
            errors.push(ParamError::field(
                "fill",
                format!("must be a finite f32 number, got {}", p.fill),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(ResampleNode {
            spacing_mm: p.spacing_mm,
            fill: p.fill as f32,
        }))
    }
}

struct ResampleNode {
    spacing_mm: Option<(f64, f64, f64)>,
    fill: f32,
}

impl Node for ResampleNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let image = ctx.image("image")?;
        let Some(target) = target_grid(ctx, image.geometry(), self.spacing_mm)? else {
            ctx.set_output("image", Value::Image(image));
            return Ok(());
        };
        let out =
            kernels::resample_linear(&image, &target, self.fill).map_err(|e| NodeError::Input {
                port: "image".into(),
                message: e.to_string(),
            })?;
        ctx.note(format!(
            "{} -> {} voxels",
            image.geometry().dims.map(|d| d.to_string()).join("x"),
            target.dims.map(|d| d.to_string()).join("x")
        ));
        ctx.set_output("image", Value::Image(Arc::new(Image::F32(out))));
        Ok(())
    }
}
