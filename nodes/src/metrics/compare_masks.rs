//! `CompareMasks`: overlap and surface-distance metrics between two segmentations.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use voxflow_engine::{
    node_impls, node_params, Cell, Example, Geometry, Impls, InputSpec, Labels, Mask, Node,
    NodeContext, NodeError, NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType, Table,
    Value,
};

use super::kernels::{
    binary_overlap, label_extent, label_overlap, labels_present, mask_pair_codes, pair_codes,
    surface_distances_with, Overlap, SurfaceDistances, VoxelBox, NO_ROW,
};
use crate::shared::edt::EdtMethod;

/// The columns of the output table, in order.
pub const COLUMNS: [&str; 12] = [
    "label",
    "voxels_a",
    "voxels_b",
    "volume_a_ml",
    "volume_b_ml",
    "volume_diff_ml",
    "dice",
    "jaccard",
    "hausdorff_mm",
    "hd95_mm",
    "mean_surface_distance_mm",
    "hausdorff_voxel_mm",
];

/// Which part of the grid the metrics look at.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegionMode {
    /// The whole grid.
    #[default]
    All,
    /// The slices given by the `slices` param.
    Slices,
    /// The bounding box of the non-zero voxels of the `region` input.
    BoundingBox,
    /// The slices covered by `region_labels` in the `region` input.
    LabelSlices,
}

node_params! {
    /// Params of [`CompareMasks`].
    pub struct CompareMasksParams {
        /// Labels of `a` to compare, one row each; None: every non-zero label present in
        /// either input inside the region.
        pub labels: Option<Vec<u16>> = None,
        /// Pairs (label in a, label in b) when the sources number structures differently;
        /// unlisted labels pair with the same number.
        pub mapping: Vec<(u16, u16)> = Vec::new(),
        /// Part of the grid to compare (see the node doc).
        #[param(ty = "\"all\" | \"slices\" | \"bounding_box\" | \"label_slices\"")]
        pub region: RegionMode = RegionMode::All,
        /// Inclusive z index range for region "slices".
        #[param(unit = "slice")]
        pub slices: Option<(usize, usize)> = None,
        /// Labels of the `region` input whose slices form the region for "label_slices".
        pub region_labels: Vec<u16> = Vec::new(),
    }
}

node_impls! {
    /// The implementations of [`CompareMasks`]: how surface distances are computed.
    pub enum CompareMasksImpl {
        /// Exact distances by a local search per surface voxel over rows of precomputed
        /// distances, falling back to the separable transform for voxels far from the other
        /// mask; fastest when the masks are similar.
        ExactEdt = "exact_edt",
        /// Exact separable (Felzenszwalb-Huttenlocher) distance transforms on every slice of
        /// the masks' bounding box; cost independent of how far apart they are.
        Separable = "separable",
    }
}

impl CompareMasksParams {
    fn check(&self) -> Vec<ParamError> {
        let mut errs = Vec::new();
        if let Some(labels) = &self.labels {
            if labels.is_empty() {
                errs.push(ParamError::field(
                    "labels",
                    "must list at least one label (leave it out for all labels)",
                ));
            }
            if labels.contains(&0) {
                errs.push(ParamError::field(
                    "labels",
                    "0 is background and cannot be compared",
                ));
            }
            if let Some(d) = first_duplicate(labels.iter().copied()) {
                errs.push(ParamError::field(
                    "labels",
                    format!("label {d} is listed twice"),
                ));
            }
        }
        if self.mapping.iter().any(|&(a, b)| a == 0 || b == 0) {
            errs.push(ParamError::field(
                "mapping",
                "0 is background and cannot be mapped",
            ));
        }
        if let Some(d) = first_duplicate(self.mapping.iter().map(|p| p.0)) {
            errs.push(ParamError::field(
                "mapping",
                format!("label {d} of a is mapped twice"),
            ));
        }
        if let Some(d) = first_duplicate(self.mapping.iter().map(|p| p.1)) {
            errs.push(ParamError::field(
                "mapping",
                format!("label {d} of b is the target of two pairs"),
            ));
        }
        match (self.region, self.slices) {
            (RegionMode::Slices, None) => errs.push(ParamError::field(
                "slices",
                "region \"slices\" needs `slices: (first, last)`",
            )),
            (RegionMode::Slices, Some((lo, hi))) if lo > hi => errs.push(ParamError::field(
                "slices",
                format!("first slice must not come after the last, got ({lo}, {hi})"),
            )),
            (RegionMode::Slices, _) | (_, None) => {}
            (_, Some(_)) => errs.push(ParamError::field(
                "slices",
                "only used with region: \"slices\"",
            )),
        }
        match (self.region, self.region_labels.is_empty()) {
            (RegionMode::LabelSlices, true) => errs.push(ParamError::field(
                "region_labels",
                "region \"label_slices\" needs at least one label, e.g. [28, 29, 30, 31]",
            )),
            (RegionMode::LabelSlices, false) | (_, true) => {}
            (_, false) => errs.push(ParamError::field(
                "region_labels",
                "only used with region: \"label_slices\"",
            )),
        }
        errs
    }

    /// The label of `b` paired with label `a`.
    fn partner(&self, a: u16) -> u16 {
        self.mapping
            .iter()
            .find(|p| p.0 == a)
            .map(|p| p.1)
            .unwrap_or(a)
    }
}

fn first_duplicate(it: impl Iterator<Item = u16>) -> Option<u16> {
    let mut seen = std::collections::BTreeSet::new();
    it.into_iter().find(|&v| !seen.insert(v))
}

/// `CompareMasks`: Dice, Jaccard, volumes and surface distances per label.
pub struct CompareMasks;

const DOC: &str = "\
Compares two segmentations of the same grid (`a`, e.g. the reference, and `b`, e.g. a \
prediction) label by label and returns one table row per label. A Mask input counts as \
label 1. Labels of `b` pair with the same number in `a` unless `mapping` says otherwise.

Definitions (the same as `metrics_reference.json` and `peers.py`):
- dice = 2|A∩B| / (|A| + |B|), jaccard = |A∩B| / |A∪B|, volumes in ml from the voxel \
spacing, volume_diff_ml = volume_b_ml - volume_a_ml.
- The surface of a mask is the mask minus its 6-connected erosion; voxels outside the \
grid (or outside the region) count as background, so a mask touching the border has a \
surface there. Distances are Euclidean between voxel centres in mm.
- hausdorff_mm: the largest of both directed surface-to-surface distance sets.
- hd95_mm: the 95th percentile of both directed sets pooled, interpolated linearly \
between order statistics like numpy's default `percentile`.
- mean_surface_distance_mm: the mean of both directed sets pooled (average symmetric \
surface distance, each surface voxel counting once).
- hausdorff_voxel_mm: the symmetric Hausdorff distance over all foreground voxels \
(SimpleITK's HausdorffDistanceImageFilter); it can be much larger than hausdorff_mm \
when a mask has holes, and smaller when surfaces differ inside the other mask.

Empty masks never fail and never give NaN: when both sides are empty, dice and jaccard \
are 1 and the distances 0; when one side is empty, dice and jaccard are 0 and the four \
distances are left empty (Null), with a line in the run report. With no `labels` listed \
and no label in either input, the table has no rows (and the run report says so).

Regions: `region: \"slices\"` keeps the slices `slices: (first, last)`; \
`\"bounding_box\"` keeps the bounding box of the non-zero voxels of the `region` input; \
`\"label_slices\"` keeps the slices where the `region` input has one of `region_labels` \
(e.g. vertebrae L1-L4, labels 28..=31 of a TotalSegmentator map). The metrics are \
computed as if the region were the whole grid: masks are cut at its faces, and the cut \
faces are surface. With the default `labels`, the rows are the labels present inside \
the region.

Distances are exact (not approximated), computed only on the bounding box of both \
masks and only at the voxels that need them (surface voxels, and voxels of one mask \
outside the other). `exact_edt` (default) searches outwards from each such voxel over \
rows of precomputed distances along x and stops when no closer surface can remain; \
voxels whose search would be long are handed to the separable Felzenszwalb-Huttenlocher \
transform. `separable` runs that transform (anisotropic, parallel over slices) alone. \
Both give the same values.";

impl NodeType for CompareMasks {
    fn spec(&self) -> NodeSpec {
        const VOLS: &[PortType] = &[PortType::Mask, PortType::Labels];
        NodeSpec {
            name: "CompareMasks",
            summary: "Dice, Jaccard, volumes and surface distances between two segmentations.",
            doc: DOC,
            category: "metrics",
            inputs: vec![
                InputSpec::required("a", VOLS, "First segmentation (e.g. the reference); a Mask is label 1."),
                InputSpec::required("b", VOLS, "Second segmentation on the same grid (e.g. a prediction)."),
                InputSpec::optional(
                    "region",
                    VOLS,
                    "Volume defining the region for `region: \"bounding_box\"` or `\"label_slices\"` \
                     (same grid), e.g. a TotalSegmentator label map.",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "table",
                PortType::Table,
                "One row per label: label, voxels_a, voxels_b, volume_a_ml, volume_b_ml, volume_diff_ml, \
                 dice, jaccard, hausdorff_mm, hd95_mm, mean_surface_distance_mm, hausdorff_voxel_mm.",
            )],
            params: CompareMasksParams::param_specs(),
            impls: CompareMasksImpl::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Compare the phantom's prediction with its truth, label by label.",
                graph: r#"Graph(
    name: "compare_masks_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "cmp":     (node: "CompareMasks", inputs: (a: "phantom.truth", b: "phantom.prediction"), params: ()),
    },
)"#,
            },
            Example {
                description:
                    "Paravertebral muscle (label 2) only, on the slices where the truth has it.",
                graph: r#"Graph(
    name: "compare_masks_region_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 2, dims: (96, 96, 12))),
        "cmp":     (node: "CompareMasks",
                    inputs: (a: "phantom.truth", b: "phantom.prediction", region: "phantom.truth"),
                    params: (labels: [2], region: "label_slices", region_labels: [2])),
    },
)"#,
            },
        ]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = CompareMasksParams::from_json(params)?;
        let errs = p.check();
        if !errs.is_empty() {
            return Err(errs);
        }
        let method = match CompareMasksImpl::from_name(implementation)? {
            CompareMasksImpl::ExactEdt => EdtMethod::Hybrid,
            CompareMasksImpl::Separable => EdtMethod::Separable,
        };
        Ok(Box::new(CompareMasksNode { p, method }))
    }
}

/// A Mask or Labels input.
#[derive(Clone)]
pub enum LabelInput {
    /// Binary mask, read as label 1.
    Mask(Arc<Mask>),
    /// Label map.
    Labels(Arc<Labels>),
}

impl LabelInput {
    /// Read an optional Mask or Labels input port (`None` when not connected).
    pub fn from_ctx(ctx: &NodeContext, port: &str) -> Result<Option<LabelInput>, NodeError> {
        ctx.input(port)
            .map(|v| LabelInput::from_value(port, v))
            .transpose()
    }

    /// Read a required Mask or Labels input port ("not connected" when it is not).
    pub fn required(ctx: &NodeContext, port: &str) -> Result<LabelInput, NodeError> {
        LabelInput::from_value(port, ctx.required(port)?)
    }

    fn from_value(port: &str, value: &Value) -> Result<LabelInput, NodeError> {
        match value {
            Value::Mask(m) => Ok(LabelInput::Mask(m.clone())),
            Value::Labels(l) => Ok(LabelInput::Labels(l.clone())),
            other => Err(NodeError::Input {
                port: port.into(),
                message: format!("expected Mask or Labels, got {}", other.port_type()),
            }),
        }
    }

    /// The grid.
    pub fn geometry(&self) -> &Geometry {
        match self {
            LabelInput::Mask(m) => m.geometry(),
            LabelInput::Labels(l) => l.geometry(),
        }
    }

    /// The non-zero labels inside `region`, ascending (a mask: `[1]` when it has a voxel
    /// there, counted on the packed words).
    pub fn labels_present(&self, region: &VoxelBox) -> Vec<u16> {
        match self {
            LabelInput::Mask(m) => {
                let any = binary_overlap(m, m, region).voxels_a > 0;
                if any {
                    vec![1]
                } else {
                    vec![]
                }
            }
            LabelInput::Labels(l) => labels_present(l.as_slice(), l.dims(), region),
        }
    }

    /// The label of the voxel at linear index `i` (a mask reads 1 where non-zero).
    #[inline]
    pub fn label_at(&self, i: usize) -> u16 {
        match self {
            LabelInput::Mask(m) => u16::from(m.get_index(i)),
            LabelInput::Labels(l) => l.as_slice()[i],
        }
    }
}

/// Run `$body` with `$s` bound to the voxel slice of a [`LabelInput`] (u8 or u16). A
/// mask is unpacked to bytes for the call: the label kernels index voxels directly, and
/// two masks compared as one label take the packed path instead (no unpacking).
macro_rules! with_voxels {
    ($input:expr, |$s:ident| $body:expr) => {
        match $input {
            LabelInput::Mask(m) => {
                let bytes = m.to_bytes();
                let $s = &bytes[..];
                $body
            }
            LabelInput::Labels(l) => {
                let $s = l.as_slice();
                $body
            }
        }
    };
}

struct CompareMasksNode {
    p: CompareMasksParams,
    method: EdtMethod,
}

/// One row's labels and measurements.
struct RowResult {
    label: u16,
    overlap: Overlap,
    distances: Option<SurfaceDistances>,
}

impl Node for CompareMasksNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let a = LabelInput::required(ctx, "a")?;
        let b = LabelInput::required(ctx, "b")?;
        ctx.check_same_grid("a", "b")?;
        let region_input = LabelInput::from_ctx(ctx, "region")?;
        if region_input.is_some() {
            ctx.check_same_grid("a", "region")?;
        }
        let geom = a.geometry().clone();
        let region = self.region_box(&geom, region_input.as_ref(), ctx)?;
        let (rows, notes) = compare(&a, &b, &geom, &region, &self.p, self.method)?;
        for n in notes {
            ctx.note(n);
        }
        let table = to_table(&rows, geom.voxel_volume_ml());
        ctx.set_output("table", Value::Table(Arc::new(table)));
        Ok(())
    }
}

impl CompareMasksNode {
    fn region_box(
        &self,
        geom: &Geometry,
        region: Option<&LabelInput>,
        ctx: &mut NodeContext,
    ) -> Result<VoxelBox, NodeError> {
        let dims = geom.dims;
        let need_region = || NodeError::Input {
            port: "region".into(),
            message: format!(
                "not connected, but region \"{}\" needs it",
                mode_name(self.p.region)
            ),
        };
        match self.p.region {
            RegionMode::All => {
                if region.is_some() {
                    ctx.note("input `region` is connected but ignored: params `region` is \"all\"");
                }
                Ok(VoxelBox::all(dims))
            }
            RegionMode::Slices => {
                let (lo, hi) = self.p.slices.expect("checked in build");
                if hi >= dims[2] {
                    return Err(NodeError::Other(format!(
                        "params `slices`: ({lo}, {hi}) reaches past the last slice, {} (the grid has {} slices)",
                        dims[2].saturating_sub(1),
                        dims[2]
                    )));
                }
                let mut bx = VoxelBox::all(dims);
                bx.lo[2] = lo;
                bx.hi[2] = hi + 1;
                Ok(bx)
            }
            RegionMode::BoundingBox => {
                let r = region.ok_or_else(need_region)?;
                with_voxels!(r, |v| label_extent(v, dims, &VoxelBox::all(dims), |l| l
                    != 0))
                .ok_or_else(|| NodeError::Input {
                    port: "region".into(),
                    message: "has no non-zero voxel".into(),
                })
            }
            RegionMode::LabelSlices => {
                let r = region.ok_or_else(need_region)?;
                let wanted = &self.p.region_labels;
                let ext = with_voxels!(r, |v| label_extent(v, dims, &VoxelBox::all(dims), |l| l
                    != 0
                    && wanted.contains(&l)));
                let ext = ext.ok_or_else(|| {
                    let present = r.labels_present(&VoxelBox::all(dims));
                    NodeError::Input {
                        port: "region".into(),
                        message: format!(
                            "has none of the region_labels {wanted:?} (labels present: {})",
                            list_labels(&present)
                        ),
                    }
                })?;
                let mut bx = VoxelBox::all(dims);
                bx.lo[2] = ext.lo[2];
                bx.hi[2] = ext.hi[2];
                Ok(bx)
            }
        }
    }
}

fn mode_name(m: RegionMode) -> &'static str {
    match m {
        RegionMode::All => "all",
        RegionMode::Slices => "slices",
        RegionMode::BoundingBox => "bounding_box",
        RegionMode::LabelSlices => "label_slices",
    }
}

fn list_labels(l: &[u16]) -> String {
    if l.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = l.iter().take(20).map(|v| v.to_string()).collect();
    if l.len() > 20 {
        format!("{}, ... ({} in all)", shown.join(", "), l.len())
    } else {
        shown.join(", ")
    }
}

/// Compare `a` and `b` inside `region` with the given params: one result per row
/// (label of `a`), plus notes for the run report.
fn compare(
    a: &LabelInput,
    b: &LabelInput,
    geom: &Geometry,
    region: &VoxelBox,
    p: &CompareMasksParams,
    method: EdtMethod,
) -> Result<(Vec<RowResult>, Vec<String>), NodeError> {
    let dims = geom.dims;
    let mut notes = Vec::new();
    let labels: Vec<u16> = match &p.labels {
        Some(l) => l.clone(),
        None => {
            let (in_a, in_b) =
                rayon::join(|| a.labels_present(region), || b.labels_present(region));
            let mut set: std::collections::BTreeSet<u16> = in_a.into_iter().collect();
            for lb in in_b {
                if let Some(&(la, _)) = p.mapping.iter().find(|m| m.1 == lb) {
                    set.insert(la);
                } else if p.mapping.iter().any(|m| m.0 == lb) {
                    notes.push(format!(
                        "label {lb} of b has no partner in a (a's {lb} is mapped elsewhere); not compared"
                    ));
                } else {
                    set.insert(lb);
                }
            }
            if set.is_empty() {
                notes.push(
                    "no label in a or b inside the region: nothing to compare, the table has no rows"
                        .to_string(),
                );
            }
            set.into_iter().collect()
        }
    };
    let mut row_of_a = vec![NO_ROW; 1 << 16];
    let mut row_of_b = vec![NO_ROW; 1 << 16];
    for (r, &la) in labels.iter().enumerate() {
        let lb = p.partner(la);
        row_of_a[la as usize] = r as u32;
        if row_of_b[lb as usize] != NO_ROW {
            let other = labels[row_of_b[lb as usize] as usize];
            return Err(NodeError::Other(format!(
                "labels {other} and {la} of a would both be compared with label {lb} of b; \
                 list `labels` explicitly or add a `mapping` pair for one of them"
            )));
        }
        row_of_b[lb as usize] = r as u32;
    }
    let both_masks = matches!((a, b), (LabelInput::Mask(_), LabelInput::Mask(_)));
    let overlaps: Vec<Overlap> = if both_masks && labels == [1] && p.partner(1) == 1 {
        let (LabelInput::Mask(ma), LabelInput::Mask(mb)) = (a, b) else {
            unreachable!()
        };
        vec![binary_overlap(ma, mb, region)]
    } else {
        with_voxels!(a, |va| with_voxels!(b, |vb| label_overlap(
            va,
            vb,
            dims,
            region,
            &row_of_a,
            &row_of_b,
            labels.len()
        )))
    };
    let mut rows = Vec::with_capacity(labels.len());
    for (&la, ov) in labels.iter().zip(overlaps) {
        let lb = p.partner(la);
        let distances = match (ov.bbox_a, ov.bbox_b) {
            (Some(ba), Some(bb)) => {
                let bbox = ba.union(&bb);
                let codes = match (a, b) {
                    (LabelInput::Mask(ma), LabelInput::Mask(mb)) => mask_pair_codes(ma, mb, &bbox),
                    _ => with_voxels!(a, |va| with_voxels!(b, |vb| pair_codes(
                        va, vb, dims, &bbox, la, lb
                    ))),
                };
                surface_distances_with(&codes, bbox.dims(), geom.spacing, method)
            }
            (None, None) => None,
            (sa, _) => {
                let side = if sa.is_none() { "a" } else { "b" };
                notes.push(format!(
                    "label {la}: empty in {side}; dice 0, distances left empty"
                ));
                None
            }
        };
        rows.push(RowResult {
            label: la,
            overlap: ov,
            distances,
        });
    }
    Ok((rows, notes))
}

fn to_table(rows: &[RowResult], voxel_ml: f64) -> Table {
    let mut t = Table::new(COLUMNS);
    for r in rows {
        let o = &r.overlap;
        let (va, vb) = (o.voxels_a as f64 * voxel_ml, o.voxels_b as f64 * voxel_ml);
        let both_empty = o.voxels_a == 0 && o.voxels_b == 0;
        let dist = |f: fn(&SurfaceDistances) -> f64| -> Cell {
            match &r.distances {
                Some(d) => Cell::Float(f(d)),
                None if both_empty => Cell::Float(0.0),
                None => Cell::Null,
            }
        };
        t.push(vec![
            Cell::Int(i64::from(r.label)),
            Cell::Int(o.voxels_a as i64),
            Cell::Int(o.voxels_b as i64),
            Cell::Float(va),
            Cell::Float(vb),
            Cell::Float((o.voxels_b as f64 - o.voxels_a as f64) * voxel_ml),
            Cell::Float(o.dice()),
            Cell::Float(o.jaccard()),
            dist(|d| d.hausdorff_mm),
            dist(|d| d.hd95_mm),
            dist(|d| d.mean_surface_distance_mm),
            dist(|d| d.hausdorff_voxel_mm),
        ]);
    }
    t
}

#[cfg(test)]
mod tests;
