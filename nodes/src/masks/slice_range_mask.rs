//! `SliceRangeMask`: a mask of whole axial slices, for training/validation/test splits.

use std::sync::Arc;

use voxflow_engine::mask::set_bit_range;
use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Mask, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

node_params! {
    /// Params of `SliceRangeMask`.
    pub struct SliceRangeMaskParams {
        /// First slice, inclusive.
        #[param(unit = "slice")]
        pub first: usize = 0,
        /// Last slice, inclusive.
        #[param(unit = "slice", ty = "usize", required)]
        pub last: Option<usize> = None,
    }
}

/// The `SliceRangeMask` node type.
pub struct SliceRangeMask;

impl NodeType for SliceRangeMask {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "SliceRangeMask",
            summary: "A mask set on the axial slices first..=last of a volume's grid.",
            doc: "Output: a Mask on the grid of `like`, 1 on every voxel of slices \
                  `first..=last` (z indices), 0 elsewhere. Splits one volume into training, \
                  validation and test slices (for example PatchServer's `val_weights`), or \
                  restricts any mask with MaskAnd. A range beyond the last slice is an error.",
            category: "masks",
            inputs: vec![InputSpec::required(
                "like",
                &[PortType::Image, PortType::Mask, PortType::Labels],
                "Any volume; only its grid is used.",
            )],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "1 on the chosen slices.",
            )],
            params: SliceRangeMaskParams::param_specs(),
            impls: vec![ImplSpec::new("default", "Fills whole slices.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "The predicted muscle on slices 2 to 5 only.",
            graph: r#"Graph(
    name: "slice_range_mask_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "slices": (node: "SliceRangeMask", inputs: (like: "phantom.ct"), params: (first: 2, last: Some(5))),
        "muscle": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1, 2])),
        "part": (node: "MaskAnd", inputs: (a: "muscle", b: "slices")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = SliceRangeMaskParams::from_json(params)?;
        let Some(last) = p.last else {
            return Err(vec![ParamError::field(
                "last",
                "is required: the last slice of the range",
            )]);
        };
        if p.first > last {
            return Err(vec![ParamError::field(
                "first",
                format!("must be <= last, got first {} > last {last}", p.first),
            )]);
        }
        Ok(Box::new(SliceRangeMaskNode {
            first: p.first,
            last,
        }))
    }
}

struct SliceRangeMaskNode {
    first: usize,
    last: usize,
}

impl Node for SliceRangeMaskNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let g = ctx
            .input("like")
            .and_then(Value::geometry)
            .cloned()
            .ok_or_else(|| NodeError::Input {
                port: "like".into(),
                message: "expected a volume".into(),
            })?;
        let [nx, _, nz] = g.dims;
        if self.last >= nz {
            return Err(NodeError::Input {
                port: "like".into(),
                message: format!(
                    "has {nz} slices (0..={}); param `last` {} is beyond them",
                    nz.saturating_sub(1),
                    self.last
                ),
            });
        }
        let (first, last) = (self.first, self.last);
        let mask = Mask::from_rows(g, |_, z, row| {
            if (first..=last).contains(&z) {
                set_bit_range(row, 0, nx);
            }
        });
        ctx.set_output("mask", Value::Mask(Arc::new(mask)));
        Ok(())
    }
}
