//! The `PhantomVertebrae` node type: the vertebra label map of a `Phantom` with the same
//! params (a separate node, so the `Phantom`'s outputs and every snapshot of them stay as
//! they were).

use std::sync::Arc;

use voxflow_engine::{
    Example, ImplSpec, Node, NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

use super::generate::vertebrae;
use super::phantom::PhantomNode;
use super::PhantomParams;

/// Vertebra labels (TotalSegmentator v2 numbering) of the phantom with the same params.
pub struct PhantomVertebrae;

const DOC: &str = "\
The spine of the `Phantom` with the same `seed`, `dims` and `spacing_mm` (so the map is on \
its grid and its bone), labelled by vertebral level as TotalSegmentator (v2) numbers them: \
27 L5, 28 L4, 29 L3, 30 L2, 31 L1, 32 T12, 33 T11; 0 elsewhere. Every bone voxel of the \
spine (body, arch, spinous and transverse processes, not the canal) is labelled. L3's \
mid-height is at world z = 0, the centre of the phantom's grid; vertebrae repeat every 36 mm \
(a 28 mm body, then an 8 mm disc that carries no label), +z superior. The default phantom \
(24 slices of 3 mm) holds L4's top, all of L3 and L2's bottom. Levels beyond T11..L5 stay 0. \
The phantom's CT has bone in every slice; the discs exist only in this map.";

impl NodeType for PhantomVertebrae {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "PhantomVertebrae",
            summary: "Vertebra labels (L5..T11, TotalSegmentator numbering) of the phantom's spine.",
            doc: DOC,
            category: "phantom",
            inputs: vec![],
            outputs: vec![OutputSpec::new(
                "vertebrae",
                PortType::Labels,
                "Vertebra label map on the phantom's grid: 27 L5 .. 29 L3 .. 33 T11, 0 elsewhere.",
            )],
            params: PhantomParams::param_specs(),
            impls: vec![ImplSpec::new(
                "native",
                "Rust, the phantom's anatomy sampled again per slice in parallel (rayon); deterministic.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "The vertebrae of the default-height phantom (L4 top, L3, L2 bottom).",
            graph: r#"Graph(
    name: "phantom_vertebrae",
    nodes: {
        "spine": (node: "PhantomVertebrae", params: (seed: 3, dims: (64, 64, 24))),
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
            ctx.set_output("vertebrae", Value::Labels(Arc::new(vertebrae(p))));
        })
    }
}
