//! `HuWindow`: the voxels whose value lies in an inclusive HU range, optionally within a
//! mask (the "muscle HU" step of body-composition pipelines: -29..150 HU).

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::kernels;

node_params! {
    /// Params of `HuWindow`.
    pub struct HuWindowParams {
        /// Lowest value kept (inclusive).
        #[param(unit = "HU")]
        pub min: f64 = -29.0,
        /// Highest value kept (inclusive).
        #[param(unit = "HU")]
        pub max: f64 = 150.0,
    }
}

/// The `HuWindow` node type.
pub struct HuWindow;

impl NodeType for HuWindow {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "HuWindow",
            summary: "Keep the voxels whose value lies in an inclusive HU range.",
            doc: "Output voxel = min <= value <= max (both ends inclusive, as numpy's \
                  `(ct >= min) & (ct <= max)`), ANDed with `mask` when it is connected; \
                  `mask` must be on the image's grid. Integer (i16) images are compared \
                  against the integer bounds ceil(min)..floor(max), which selects exactly \
                  the same voxels; float images are compared in f64 and NaN is outside.",
            category: "intensity",
            inputs: vec![
                InputSpec::required("image", &[PortType::Image], "The CT (or any image) in HU."),
                InputSpec::optional(
                    "mask",
                    &[PortType::Mask],
                    "Restrict the result to this mask (same grid as `image`).",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "Voxels in the window (and in `mask` when given), on the image's grid.",
            )],
            params: HuWindowParams::param_specs(),
            impls: vec![ImplSpec::new(
                "default",
                "One parallel pass; i16 voxels use a single wrapping unsigned compare each.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Muscle HU (-29..150) inside the predicted abdominal muscles.",
                graph: r#"Graph(
    name: "hu_window_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "win": (node: "HuWindow", inputs: (image: "phantom.ct", mask: "abd"), params: (min: -29, max: 150)),
    },
)"#,
            },
            Example {
                description:
                    "Every voxel of the phantom CT between -190 and -30 HU (fat), no mask.",
                graph: r#"Graph(
    name: "hu_window_fat_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 2, dims: (64, 64, 8))),
        "fat": (node: "HuWindow", inputs: (image: "phantom.ct"), params: (min: -190, max: -30)),
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
        let p = HuWindowParams::from_json(params)?;
        let mut errors = Vec::new();
        for (name, v) in [("min", p.min), ("max", p.max)] {
            if v.is_nan() {
                errors.push(ParamError::field(name, "must be a number, got NaN"));
            }
        }
        if p.min > p.max {
            errors.push(ParamError::field(
                "min",
                format!("must be <= max, got min {} > max {}", p.min, p.max),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(HuWindowNode {
            min: p.min,
            max: p.max,
        }))
    }
}

struct HuWindowNode {
    min: f64,
    max: f64,
}

impl Node for HuWindowNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let image = ctx.image("image")?;
        let mask = match ctx.input("mask") {
            Some(_) => {
                ctx.check_same_grid("image", "mask")?;
                Some(ctx.mask("mask")?)
            }
            None => None,
        };
        let out = kernels::hu_window(&image, self.min, self.max, mask.as_deref());
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
