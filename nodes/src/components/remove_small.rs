//! `RemoveSmallComponents`: drop connected components below a volume in ml.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, Impls, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use super::connectivity::Connectivity;
use super::kernels::{self, Method};

node_params! {
    /// Params of `RemoveSmallComponents`.
    pub struct RemoveSmallComponentsParams {
        /// Smallest volume kept; components strictly below it are removed.
        #[param(unit = "ml")]
        pub min_volume_ml: f64 = 0.5,
        /// Find components within each axial slice.
        pub per_slice: bool = true,
        #[doc = connectivity_doc!()]
        pub connectivity: Option<u8> = None,
    }
}

/// The `RemoveSmallComponents` node type.
pub struct RemoveSmallComponents;

impl NodeType for RemoveSmallComponents {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "RemoveSmallComponents",
            summary: "Remove the connected components smaller than a volume in ml.",
            doc: "A component is removed when its volume, voxel count x voxel volume, is \
                  strictly below `min_volume_ml`; the comparison is `count * voxel_ml >= \
                  min_volume_ml` in f64, the formula of sarcopenia_ref.remove_small_per_slice, \
                  with voxel_ml = sx * sy * sz / 1000 multiplied in f32 when the spacing comes \
                  from a float32 NIfTI header (as numpy does on nibabel's zooms), so \
                  thresholds that fall exactly on a voxel count behave the same. By default components are found per axial \
                  slice with 8-connectivity, as in the sarcopenia chain.",
            category: "components",
            inputs: vec![InputSpec::required("mask", &[PortType::Mask], "The mask to clean.")],
            outputs: vec![OutputSpec::new(
                "mask",
                PortType::Mask,
                "The mask without its small components, on the input's grid.",
            )],
            params: RemoveSmallComponentsParams::param_specs(),
            impls: Method::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "The sarcopenia clean-up of the abdominal prediction: muscle HU, 3x3 closing, drop specks below 0.1 ml per slice.",
            graph: r#"Graph(
    name: "remove_small_components_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "abd": (node: "SelectLabel", inputs: (labels: "phantom.prediction"), params: (labels: [1])),
        "win": (node: "HuWindow", inputs: (image: "phantom.ct", mask: "abd"), params: (min: -29, max: 150)),
        "closed": (node: "Closing", inputs: (mask: "win"), params: (kernel: (3, 3, 1))),
        "clean": (node: "RemoveSmallComponents", inputs: (mask: "closed"), params: (min_volume_ml: 0.1, per_slice: true, connectivity: 8)),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = RemoveSmallComponentsParams::from_json(params)?;
        let mut errors = Vec::new();
        if !(p.min_volume_ml.is_finite() && p.min_volume_ml >= 0.0) {
            errors.push(ParamError::field(
                "min_volume_ml",
                format!("must be a finite number >= 0 ml, got {}", p.min_volume_ml),
            ));
        }
        let conn = Connectivity::from_params(p.connectivity, p.per_slice);
        if let Err(e) = &conn {
            errors.push(ParamError::field("connectivity", e.to_string()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(RemoveSmallComponentsNode {
            min_ml: p.min_volume_ml,
            conn: conn.expect("checked"),
            method: Method::from_name(implementation)?,
        }))
    }
}

struct RemoveSmallComponentsNode {
    min_ml: f64,
    conn: Connectivity,
    method: Method,
}

impl Node for RemoveSmallComponentsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let mask = ctx.mask("mask")?;
        let out = kernels::remove_small(&mask, self.conn, self.min_ml, self.method);
        ctx.set_output("mask", Value::Mask(Arc::new(out)));
        Ok(())
    }
}
