//! `MuscleAreaAtLevel`: skeletal muscle area (SMA, cm²) on the axial slice through a
//! vertebra (L3 by default) and the skeletal muscle index SMI = SMA / height² (cm²/m²),
//! the body-composition measures of sarcopenia studies.

use std::sync::Arc;

use voxflow_engine::{
    node_params, Cell, Example, Geometry, ImplSpec, InputSpec, Labels, Node, NodeContext,
    NodeError, NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType, Table, Value,
};

node_params! {
    /// Params of `MuscleAreaAtLevel`.
    pub struct MuscleAreaAtLevelParams {
        /// Vertebra label in `vertebrae` that defines the level (TotalSegmentator v2
        /// numbering: 27 L5, 28 L4, 29 L3, 30 L2, 31 L1, 32 T12, 33 T11).
        pub label: u16 = 29,
        /// Name written in the table's `level` column; empty: the TotalSegmentator v2 name
        /// of `label` (29 -> L3), or `label_<n>` for labels outside the vertebrae.
        pub level_name: String = String::new(),
        /// Patient height for SMI = SMA / height²; 0 = unknown (no SMI, the `smi_cm2_m2`
        /// cell stays empty). Otherwise 0.5..=2.5 m. Usually a case column: `${height_m}`.
        #[param(unit = "m")]
        pub height_m: f64 = 0.0,
    }
}

/// Shortest plausible height in metres (a value below is a unit mistake or a typo).
pub const MIN_HEIGHT_M: f64 = 0.5;
/// Tallest plausible height in metres (a value above is most likely in cm).
pub const MAX_HEIGHT_M: f64 = 2.5;

/// Names of TotalSegmentator v2's vertebra classes: 26 S1, 27 L5 .. 31 L1, 32 T12 .. 43 T1,
/// 44 C7 .. 50 C1.
pub fn vertebra_name(label: u16) -> Option<String> {
    match label {
        26 => Some("S1".into()),
        27..=31 => Some(format!("L{}", 32 - label)),
        32..=43 => Some(format!("T{}", 44 - label)),
        44..=50 => Some(format!("C{}", 51 - label)),
        _ => None,
    }
}

/// Where a vertebra is: the level slice and the vertebra's extent, along the grid axis
/// closest to superior-inferior.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    /// The vertebra label.
    pub label: u16,
    /// Voxel axis (0, 1, 2) closest to superior-inferior: the slices are across it.
    pub axis: usize,
    /// Centroid of the vertebra's voxels in (fractional) voxel indices.
    pub centroid: [f64; 3],
    /// The level slice: the index along `axis` nearest to the centroid (a centroid exactly
    /// halfway between two slices takes the higher index).
    pub slice: usize,
    /// First and last slice holding the vertebra.
    pub first: usize,
    /// See `first`.
    pub last: usize,
    /// Vertebra voxels.
    pub voxels: u64,
    /// World z (superior, mm) of the centroid moved onto the level slice's centre plane.
    pub z_mm: f64,
}

impl Level {
    /// True when the vertebra touches the first or last slice of a grid with `n` slices:
    /// part of it may lie outside the scan, so its centroid (and the level slice) may be
    /// off its true mid-height.
    pub fn truncated(&self, n: usize) -> bool {
        self.first == 0 || self.last + 1 == n
    }
}

/// Why a level cannot be found.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LevelError {
    /// The label has no voxel in the map.
    #[error("label {label}{} is absent from the vertebra map; {}", name_suffix(*label), describe_present(present))]
    Absent {
        /// The requested label.
        label: u16,
        /// Non-zero labels present, ascending.
        present: Vec<u16>,
    },
}

fn name_suffix(label: u16) -> String {
    vertebra_name(label).map_or(String::new(), |n| format!(" ({n})"))
}

fn describe_present(present: &[u16]) -> String {
    let vertebrae: Vec<String> = present
        .iter()
        .filter_map(|&l| vertebra_name(l).map(|n| format!("{l} {n}")))
        .collect();
    let others = present.len() - vertebrae.len();
    let mut s = if vertebrae.is_empty() {
        "it holds no vertebra label (TotalSegmentator v2: 26 S1, 27 L5 .. 31 L1, 32 T12 .. 43 T1, 44 C7 .. 50 C1)".to_string()
    } else {
        format!(
            "vertebra labels present (TotalSegmentator v2 numbering): {}",
            vertebrae.join(", ")
        )
    };
    if others > 0 {
        let shown: Vec<String> = present
            .iter()
            .filter(|&&l| vertebra_name(l).is_none())
            .take(20)
            .map(|l| l.to_string())
            .collect();
        s += &format!(
            "; {others} other label(s): {}{}",
            shown.join(", "),
            if others > shown.len() { ", ..." } else { "" }
        );
    }
    s
}

/// The voxel axis whose direction is closest to world superior-inferior (largest |z|
/// component of its unit direction): the axis the axial slices are across, also for
/// permuted or oblique grids.
pub fn si_axis(g: &Geometry) -> usize {
    let d = g.direction();
    (0..3)
        .max_by(|&a, &b| d[a][2].abs().total_cmp(&d[b][2].abs()).then(b.cmp(&a)))
        .expect("three axes")
}

/// Area (mm²) of one voxel's face in a slice across `axis`: the norm of the cross product of
/// the two other affine columns, which is their spacings' product on an orthogonal grid and
/// stays right on sheared ones.
pub fn pixel_area_mm2(g: &Geometry, axis: usize) -> f64 {
    let (b, c) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let u: [f64; 3] = std::array::from_fn(|r| g.affine[r][b]);
    let v: [f64; 3] = std::array::from_fn(|r| g.affine[r][c]);
    let w = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt()
}

/// Find the vertebra `label` in `vertebrae`: its voxels' centroid and the slice across the
/// superior-inferior axis nearest to it.
///
/// Why the centroid and not the middle of the vertebra's extent: the extent moves with a
/// single stray voxel far away (segmentation speckles are common in model outputs; on
/// ct_sm TotalSegmentator's L1 spans 18 slices = 54 mm, twice a vertebral body), while the
/// centroid of some thousand voxels hardly moves. Body-composition tools that start from
/// TotalSegmentator (Comp2Comp among them) take the centroid's slice for the same reason.
pub fn find_level(vertebrae: &Labels, label: u16) -> Result<Level, LevelError> {
    let g = vertebrae.geometry();
    let [nx, ny, nz] = g.dims;
    let axis = si_axis(g);
    let v = vertebrae.as_slice();
    let (mut n, mut sum) = (0u64, [0f64; 3]);
    let (mut first, mut last) = (usize::MAX, 0usize);
    for z in 0..nz {
        for y in 0..ny {
            let row = &v[(z * ny + y) * nx..(z * ny + y + 1) * nx];
            for (x, &l) in row.iter().enumerate() {
                if l == label {
                    let ijk = [x, y, z];
                    n += 1;
                    for a in 0..3 {
                        sum[a] += ijk[a] as f64;
                    }
                    first = first.min(ijk[axis]);
                    last = last.max(ijk[axis]);
                }
            }
        }
    }
    if n == 0 {
        let mut present: Vec<u16> = voxflow_engine::volume::value_counts(v)
            .into_iter()
            .map(|(l, _)| l)
            .filter(|&l| l != 0)
            .collect();
        present.sort_unstable();
        return Err(LevelError::Absent { label, present });
    }
    let centroid = sum.map(|s| s / n as f64);
    // Half-way rounds up (f64::round rounds half away from zero; indices are >= 0).
    let slice = (centroid[axis].round() as usize).min(g.dims[axis] - 1);
    let mut on_slice = centroid;
    on_slice[axis] = slice as f64;
    let z_mm = g.to_world(on_slice)[2];
    Ok(Level {
        label,
        axis,
        centroid,
        slice,
        first,
        last,
        voxels: n,
        z_mm,
    })
}

/// Voxels of each label (index = label; a mask counts as label 1) on slice `slice` across
/// `axis` of a volume of `dims`, read through `get(x, y, z)`.
fn slice_counts(
    dims: [usize; 3],
    axis: usize,
    slice: usize,
    get: impl Fn(usize, usize, usize) -> u16,
) -> Vec<u64> {
    let mut counts: Vec<u64> = Vec::new();
    let (b, c) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    for j in 0..dims[c] {
        for i in 0..dims[b] {
            let mut ijk = [0usize; 3];
            (ijk[axis], ijk[b], ijk[c]) = (slice, i, j);
            let l = get(ijk[0], ijk[1], ijk[2]) as usize;
            if l != 0 {
                if counts.len() <= l {
                    counts.resize(l + 1, 0);
                }
                counts[l] += 1;
            }
        }
    }
    counts
}

/// The result row's columns, before the per-label ones.
pub const COLUMNS: [&str; 10] = [
    "level",
    "vertebra_label",
    "slice",
    "z_mm",
    "vertebra_first_slice",
    "vertebra_last_slice",
    "truncated",
    "sma_cm2",
    "height_m",
    "smi_cm2_m2",
];

/// The muscle at a level, ready for the table.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelArea {
    /// Where the level is.
    pub level: Level,
    /// Whether the vertebra touches the grid's first or last slice.
    pub truncated: bool,
    /// Skeletal muscle area: every non-zero muscle voxel on the slice (cm²).
    pub sma_cm2: f64,
    /// Per label present anywhere in a muscle label map: its area on the slice (cm²).
    /// Empty for a mask.
    pub per_label_cm2: Vec<(u16, f64)>,
    /// SMA / height² (cm²/m²) when a height was given.
    pub smi_cm2_m2: Option<f64>,
}

/// Measure the muscle (`Labels` or `Mask`, on the vertebra map's grid) at the vertebra
/// `label`: SMA = voxels on the level slice x pixel area; SMI when `height_m` > 0.
pub fn muscle_area_at_level(
    muscle: &Value,
    vertebrae: &Labels,
    label: u16,
    height_m: f64,
) -> Result<LevelArea, LevelError> {
    let level = find_level(vertebrae, label)?;
    let g = vertebrae.geometry();
    let cm2 = pixel_area_mm2(g, level.axis) / 100.0;
    let (counts, labels): (Vec<u64>, Option<Vec<u16>>) = match muscle {
        Value::Labels(l) => {
            let [nx, ny, _] = l.dims();
            let v = l.as_slice();
            let counts = slice_counts(l.dims(), level.axis, level.slice, |x, y, z| {
                v[x + nx * (y + ny * z)]
            });
            let present = voxflow_engine::volume::value_counts(v)
                .into_iter()
                .map(|(l, _)| l)
                .filter(|&l| l != 0)
                .collect();
            (counts, Some(present))
        }
        Value::Mask(m) => (
            slice_counts(m.dims(), level.axis, level.slice, |x, y, z| {
                u16::from(m.get(x, y, z))
            }),
            None,
        ),
        other => unreachable!(
            "the node checks the muscle's type, got {}",
            other.port_type()
        ),
    };
    let sma_cm2 = counts.iter().sum::<u64>() as f64 * cm2;
    let per_label_cm2 = labels
        .unwrap_or_default()
        .into_iter()
        .map(|l| {
            let c = counts.get(l as usize).copied().unwrap_or(0);
            (l, c as f64 * cm2)
        })
        .collect();
    Ok(LevelArea {
        truncated: level.truncated(g.dims[level.axis]),
        level,
        sma_cm2,
        per_label_cm2,
        smi_cm2_m2: (height_m > 0.0).then(|| sma_cm2 / (height_m * height_m)),
    })
}

/// The one-row table of a [`LevelArea`].
pub fn level_table(a: &LevelArea, level_name: &str, height_m: f64) -> Table {
    let mut columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    columns.extend(
        a.per_label_cm2
            .iter()
            .map(|(l, _)| format!("area_cm2_label_{l}")),
    );
    let mut t = Table::new(columns);
    let mut row = vec![
        Cell::Text(level_name.to_string()),
        Cell::Int(i64::from(a.level.label)),
        Cell::Int(a.level.slice as i64),
        Cell::Float(a.level.z_mm),
        Cell::Int(a.level.first as i64),
        Cell::Int(a.level.last as i64),
        Cell::Text(if a.truncated { "yes" } else { "no" }.into()),
        Cell::Float(a.sma_cm2),
        if height_m > 0.0 {
            Cell::Float(height_m)
        } else {
            Cell::Null
        },
        a.smi_cm2_m2.into(),
    ];
    row.extend(a.per_label_cm2.iter().map(|&(_, v)| Cell::Float(v)));
    t.push(row);
    t
}

/// The `MuscleAreaAtLevel` node type.
pub struct MuscleAreaAtLevel;

const DOC: &str = "\
Finds the vertebra `label` in `vertebrae` (a TotalSegmentator-style label map; L3 = 29 by \
default) and measures `muscle` on the axial slice through it. The slices are across the \
voxel axis closest to superior-inferior (from the affine, so permuted and oblique grids \
work); the level slice is the one nearest to the centroid of the vertebra's voxels (its \
mid-height; the centroid rather than the middle of the vertebra's extent, because a few \
stray voxels of a model's segmentation move the extent but hardly the centroid). \
SMA (cm²) = muscle voxels on that slice x in-plane pixel area (the cross product of the two \
in-plane affine columns: spacing x spacing on orthogonal grids). SMI (cm²/m²) = SMA / \
height_m² when `height_m` > 0. Give `muscle` already limited to muscle HU (-29..150, \
`HuWindow`) when the standard definition is wanted.

The table has one row: level, vertebra_label, slice (index along that axis), z_mm (world \
superior position of the level), vertebra_first_slice, vertebra_last_slice, truncated \
(`yes` when the vertebra touches the first or last slice: part of it may be outside the \
scan, so the level may be off its true mid-height; a note says so too), sma_cm2, height_m, \
smi_cm2_m2 (empty without a height), and for a label map one area_cm2_label_<n> column per \
label present anywhere in `muscle`. A label absent from `vertebrae` is an error that lists \
the vertebra labels present. `muscle` must be on the vertebra map's grid.";

impl NodeType for MuscleAreaAtLevel {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "MuscleAreaAtLevel",
            summary: "Muscle area (cm²) on a vertebra's mid slice (L3) and SMI (cm²/m²).",
            doc: DOC,
            category: "stats",
            inputs: vec![
                InputSpec::required(
                    "muscle",
                    &[PortType::Mask, PortType::Labels],
                    "Muscle mask or label map (all non-zero labels count towards SMA).",
                ),
                InputSpec::required(
                    "vertebrae",
                    &[PortType::Labels],
                    "Vertebra label map on the muscle's grid (e.g. TotalSegmentator's).",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "table",
                PortType::Table,
                "One row: level, slice, z_mm, extent, sma_cm2, height_m, smi_cm2_m2, per-label areas.",
            )],
            params: MuscleAreaAtLevelParams::param_specs(),
            impls: vec![ImplSpec::new(
                "native",
                "One pass over the vertebra map for the centroid, one over the level slice.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "SMA and SMI (height 1.72 m) at L3 of the default-size phantom: its true muscle labels within -29..150 HU.",
                graph: r#"Graph(
    name: "muscle_area_at_l3_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1)),
        "spine":   (node: "PhantomVertebrae", params: (seed: 1)),
        "muscle":  (node: "SelectLabel", inputs: (labels: "phantom.truth"), params: (labels: [1, 2])),
        "window":  (node: "HuWindow", inputs: (image: "phantom.ct", mask: "muscle"), params: (min: -29, max: 150)),
        "l3":      (node: "MuscleAreaAtLevel", inputs: (muscle: "window", vertebrae: "spine"), params: (label: 29, height_m: 1.72)),
    },
)"#,
            },
            Example {
                description: "Per-label areas of the phantom's predicted muscles at L2 (no height: no SMI).",
                graph: r#"Graph(
    name: "muscle_area_at_l2_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 2, dims: (64, 64, 24))),
        "spine":   (node: "PhantomVertebrae", params: (seed: 2, dims: (64, 64, 24))),
        "l2":      (node: "MuscleAreaAtLevel", inputs: (muscle: "phantom.prediction", vertebrae: "spine"), params: (label: 30)),
    },
)"#,
            },
            Example {
                description: "The real CT (ct_sm, 3 mm): TotalSegmentator's skeletal muscle at L1 (its crop holds L1/L2, no L3), muscle HU only.",
                graph: r#"Graph(
    name: "muscle_area_at_l1_ct_sm_example",
    params: {
        "ct": "../shared/data/ct_sm.nii.gz",
        "muscle": "../shared/data/ct_sm_tissue_skeletal_muscle.nii.gz",
        "total": "../shared/data/ct_sm_total.nii.gz",
    },
    nodes: {
        "ct":     (node: "LoadNifti", params: (path: "${ct}")),
        "muscle": (node: "LoadMask", params: (path: "${muscle}")),
        "total":  (node: "LoadLabels", params: (path: "${total}")),
        "window": (node: "HuWindow", inputs: (image: "ct", mask: "muscle"), params: (min: -29, max: 150)),
        "l1":     (node: "MuscleAreaAtLevel", inputs: (muscle: "window", vertebrae: "total"), params: (label: 31, height_m: 1.75)),
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
        let p = MuscleAreaAtLevelParams::from_json(params)?;
        let h = p.height_m;
        // `!(..)` also rejects NaN.
        if h != 0.0 && !((MIN_HEIGHT_M..=MAX_HEIGHT_M).contains(&h)) {
            let hint = if (50.0..=250.0).contains(&h) {
                format!(" (in centimetres? {h} cm is {} m)", h / 100.0)
            } else {
                String::new()
            };
            return Err(vec![ParamError::field(
                "height_m",
                format!(
                    "must be a height in metres between {MIN_HEIGHT_M} and {MAX_HEIGHT_M}, or 0 for no SMI; got {h}{hint}"
                ),
            )]);
        }
        if p.label == 0 {
            return Err(vec![ParamError::field(
                "label",
                "must be a vertebra label > 0 (0 is the background)",
            )]);
        }
        let level_name = if p.level_name.is_empty() {
            vertebra_name(p.label).unwrap_or_else(|| format!("label_{}", p.label))
        } else {
            p.level_name
        };
        Ok(Box::new(MuscleAreaAtLevelNode {
            label: p.label,
            level_name,
            height_m: h,
        }))
    }
}

struct MuscleAreaAtLevelNode {
    label: u16,
    level_name: String,
    height_m: f64,
}

impl Node for MuscleAreaAtLevelNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let vertebrae = ctx.labels("vertebrae")?;
        ctx.check_same_grid("muscle", "vertebrae")?;
        let muscle = ctx
            .input_of("muscle", &[PortType::Mask, PortType::Labels])?
            .clone();
        let a =
            muscle_area_at_level(&muscle, &vertebrae, self.label, self.height_m).map_err(|e| {
                // The error names the label and its vertebra; a level_name of the user's
                // own is said too. (The port is named by NodeError::Input.)
                let named =
                    vertebra_name(self.label).unwrap_or_else(|| format!("label_{}", self.label));
                let message = if self.level_name == named {
                    e.to_string()
                } else {
                    format!("level `{}`: {e}", self.level_name)
                };
                NodeError::Input {
                    port: "vertebrae".into(),
                    message,
                }
            })?;
        if a.truncated {
            ctx.note(format!(
                "{} (label {}) touches the {} slice of the grid (slices {}..={} of {}): part of it may be outside the scan, so slice {} may be off its mid-height",
                self.level_name,
                self.label,
                if a.level.first == 0 { "first" } else { "last" },
                a.level.first,
                a.level.last,
                vertebrae.geometry().dims[a.level.axis],
                a.level.slice
            ));
        }
        let table = level_table(&a, &self.level_name, self.height_m);
        ctx.set_output("table", Value::Table(Arc::new(table)));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
