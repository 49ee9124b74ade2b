//! `LabelStats`: voxel count, volume, HU mean and SD per label, and area per slice.

use std::sync::Arc;

use rayon::prelude::*;
use voxflow_engine::params::NoParams;
use voxflow_engine::{
    Cell, Example, Geometry, Image, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Table, Value,
};

/// Statistics of one label.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSummary {
    /// The label value (1 for a mask).
    pub label: u16,
    /// Number of voxels.
    pub voxels: u64,
    /// Mean image value over the label's voxels (HU), when an image was given.
    pub mean: Option<f64>,
    /// Population standard deviation (ddof = 0, as numpy's default), when an image was given.
    pub sd: Option<f64>,
    /// Voxels per slice (z index), for slices where the label is present, ascending.
    pub per_slice: Vec<(usize, u64)>,
}

/// Per-slice partial results: (label, voxels, sum of values) for labels present.
type SliceCounts = Vec<(u16, u64, f64)>;

/// Statistics of every non-zero label of `labels` (x-fastest voxels on a grid of
/// `dims`), with HU from `image` (same grid) when given. Labels are sorted ascending.
///
/// Slices are processed in parallel; partial sums are combined in slice order, so the
/// result does not depend on the thread count. i16 images (and none) take one exact
/// integer pass ([`integer_stats`]), f32 images two ([`float_stats`]).
pub fn label_stats<L>(labels: &[L], dims: [usize; 3], image: Option<&Image>) -> Vec<LabelSummary>
where
    L: Copy + Into<u16> + Send + Sync,
{
    let plane = dims[0] * dims[1];
    assert_eq!(labels.len(), plane * dims[2], "labels fill the grid");
    if let Some(img) = image {
        assert_eq!(
            img.geometry().len(),
            labels.len(),
            "image on the labels' grid"
        );
    }
    if plane == 0 || labels.is_empty() {
        return Vec::new();
    }
    let max = labels.par_iter().map(|&l| l.into()).max().unwrap_or(0) as usize;
    match image {
        None => integer_stats(labels, dims, max, None),
        Some(Image::I16(v)) => integer_stats(labels, dims, max, Some(v.as_slice())),
        Some(Image::F32(v)) => float_stats(labels, dims, max, v.as_slice()),
    }
}

/// [`label_stats`] for f32 images: two passes, the mean first, then squared deviations
/// from it, so the SD stays accurate whatever the mean.
fn float_stats<L>(labels: &[L], dims: [usize; 3], max: usize, image: &[f32]) -> Vec<LabelSummary>
where
    L: Copy + Into<u16> + Send + Sync,
{
    let plane = dims[0] * dims[1];

    // Pass 1: per slice, voxel count and value sum of each label.
    let slices: Vec<SliceCounts> = (0..dims[2])
        .into_par_iter()
        .map_init(
            || (vec![0u64; max + 1], vec![0f64; max + 1]),
            |(count, sum), z| {
                let base = z * plane;
                for (i, &l) in labels[base..base + plane].iter().enumerate() {
                    let l: u16 = l.into();
                    if l != 0 {
                        count[l as usize] += 1;
                        sum[l as usize] += f64::from(image[base + i]);
                    }
                }
                let mut out = Vec::new();
                for l in 1..=max {
                    if count[l] > 0 {
                        out.push((l as u16, count[l], sum[l]));
                        count[l] = 0;
                        sum[l] = 0.0;
                    }
                }
                out
            },
        )
        .collect();
    let mut count = vec![0u64; max + 1];
    let mut sum = vec![0f64; max + 1];
    for s in &slices {
        for &(l, c, v) in s {
            count[l as usize] += c;
            sum[l as usize] += v;
        }
    }
    let mean: Vec<f64> = (0..=max)
        .map(|l| {
            if count[l] > 0 {
                sum[l] / count[l] as f64
            } else {
                0.0
            }
        })
        .collect();

    // Pass 2: squared deviations from each label's mean.
    let per_slice: Vec<Vec<(u16, f64)>> = (0..dims[2])
        .into_par_iter()
        .map_init(
            || vec![0f64; max + 1],
            |acc, z| {
                let base = z * plane;
                for (i, &l) in labels[base..base + plane].iter().enumerate() {
                    let l: u16 = l.into();
                    if l != 0 {
                        let d = f64::from(image[base + i]) - mean[l as usize];
                        acc[l as usize] += d * d;
                    }
                }
                slices[z]
                    .iter()
                    .map(|&(l, _, _)| (l, std::mem::take(&mut acc[l as usize])))
                    .collect()
            },
        )
        .collect();
    let mut sq = vec![0f64; max + 1];
    for s in &per_slice {
        for &(l, v) in s {
            sq[l as usize] += v;
        }
    }

    let mut per_label: Vec<Vec<(usize, u64)>> = vec![Vec::new(); max + 1];
    for (z, s) in slices.iter().enumerate() {
        for &(l, c, _) in s {
            per_label[l as usize].push((z, c));
        }
    }
    (1..=max)
        .filter(|&l| count[l] > 0)
        .map(|l| LabelSummary {
            label: l as u16,
            voxels: count[l],
            mean: Some(mean[l]),
            sd: Some((sq[l] / count[l] as f64).sqrt()),
            per_slice: std::mem::take(&mut per_label[l]),
        })
        .collect()
}

/// Per-slice partial results of [`integer_stats`]: (label, voxels, sum, sum of squares).
type IntSliceCounts = Vec<(u16, u64, i64, i64)>;

/// [`label_stats`] for i16 images (and no image) in one pass: sums of i16 values and of
/// their squares are exact in i64 (|v|² < 2^30, so 2^33 voxels fit), so the SD comes from
/// `n·Σv² − (Σv)²` in i128 without the second pass over the voxels that floating-point
/// sums need. Why it matters: the sarcopenia graph measures the prediction beside the
/// chain, and the prediction stays in memory until this node is done with it.
fn integer_stats<L>(
    labels: &[L],
    dims: [usize; 3],
    max: usize,
    ct: Option<&[i16]>,
) -> Vec<LabelSummary>
where
    L: Copy + Into<u16> + Send + Sync,
{
    let plane = dims[0] * dims[1];
    let slices: Vec<IntSliceCounts> = (0..dims[2])
        .into_par_iter()
        .map_init(
            || {
                (
                    vec![0u64; max + 1],
                    vec![0i64; max + 1],
                    vec![0i64; max + 1],
                )
            },
            |(count, sum, sq), z| {
                let r = z * plane..(z + 1) * plane;
                match ct {
                    Some(ct) => {
                        for (&l, &v) in labels[r.clone()].iter().zip(&ct[r]) {
                            let l: u16 = l.into();
                            if l != 0 {
                                let (l, v) = (l as usize, i64::from(v));
                                count[l] += 1;
                                sum[l] += v;
                                sq[l] += v * v;
                            }
                        }
                    }
                    None => {
                        for &l in &labels[r] {
                            count[l.into() as usize] += 1;
                        }
                    }
                }
                let mut out = Vec::new();
                for l in 1..=max {
                    if count[l] > 0 {
                        out.push((l as u16, count[l], sum[l], sq[l]));
                        (count[l], sum[l], sq[l]) = (0, 0, 0);
                    }
                }
                out
            },
        )
        .collect();
    let mut total = vec![(0u64, 0i64, 0i64); max + 1];
    let mut per_label: Vec<Vec<(usize, u64)>> = vec![Vec::new(); max + 1];
    for (z, s) in slices.iter().enumerate() {
        for &(l, c, v, q) in s {
            let t = &mut total[l as usize];
            (t.0, t.1, t.2) = (t.0 + c, t.1 + v, t.2 + q);
            per_label[l as usize].push((z, c));
        }
    }
    (1..=max)
        .filter(|&l| total[l].0 > 0)
        .map(|l| {
            let (n, s, q) = total[l];
            let var_n2 = i128::from(n) * i128::from(q) - i128::from(s) * i128::from(s);
            LabelSummary {
                label: l as u16,
                voxels: n,
                mean: ct.map(|_| s as f64 / n as f64),
                sd: ct.map(|_| (var_n2 as f64).sqrt() / n as f64),
                per_slice: std::mem::take(&mut per_label[l]),
            }
        })
        .collect()
}

/// The two output tables: one row per label, and one row per (label, slice) present.
pub fn stats_tables(stats: &[LabelSummary], geometry: &Geometry) -> (Table, Table) {
    let voxel_ml = geometry.voxel_volume_ml();
    let pixel_cm2 = geometry.spacing[0] * geometry.spacing[1] / 100.0;
    let mut table = Table::new(["label", "voxels", "volume_ml", "mean_hu", "sd_hu"]);
    let mut slices = Table::new(["label", "slice", "area_cm2"]);
    for s in stats {
        table.push(vec![
            Cell::Int(s.label as i64),
            Cell::Int(s.voxels as i64),
            Cell::Float(s.voxels as f64 * voxel_ml),
            s.mean.into(),
            s.sd.into(),
        ]);
        for &(z, c) in &s.per_slice {
            slices.push(vec![
                Cell::Int(s.label as i64),
                Cell::Int(z as i64),
                Cell::Float(c as f64 * pixel_cm2),
            ]);
        }
    }
    (table, slices)
}

struct LabelStatsNode;

impl Node for LabelStatsNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let image = match ctx.input("image") {
            Some(_) => Some(ctx.image("image")?),
            None => None,
        };
        if image.is_some() {
            ctx.check_same_grid("labels", "image")?;
        }
        let labels = ctx.input_of("labels", &[PortType::Labels, PortType::Mask])?;
        let (stats, geometry) = match labels {
            Value::Labels(l) => (
                label_stats(l.as_slice(), l.dims(), image.as_deref()),
                l.geometry().clone(),
            ),
            Value::Mask(m) => (
                label_stats(&m.to_bytes(), m.dims(), image.as_deref()),
                m.geometry().clone(),
            ),
            _ => unreachable!("input_of admits Labels and Mask only"),
        };
        let (table, slices) = stats_tables(&stats, &geometry);
        ctx.set_output("table", Value::Table(Arc::new(table)));
        ctx.set_output("slices", Value::Table(Arc::new(slices)));
        Ok(())
    }
}

/// Per-label voxel count, volume, HU mean and SD, and per-slice areas.
pub struct LabelStats;

impl NodeType for LabelStats {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "LabelStats",
            summary: "Voxel count, volume (ml), HU mean and SD per label, and area per slice.",
            doc: concat!(
                "Every non-zero label present gets one row of `table`: label, voxels, volume_ml ",
                "(voxels x voxel volume), mean_hu and sd_hu (population SD, ddof = 0 as numpy; ",
                "Null without an image). A Mask counts as label 1. `slices` has one row per label ",
                "and slice (z index) where the label is present: label, slice, area_cm2 (voxels x ",
                "in-plane pixel area), e.g. the muscle area at L3 for sarcopenia. The image must ",
                "be on the labels' grid. Slices are processed in parallel and combined in order, so ",
                "results do not depend on the thread count."
            ),
            category: "stats",
            inputs: vec![
                InputSpec::required("labels", &[PortType::Labels, PortType::Mask], "Label map or mask to measure."),
                InputSpec::optional("image", &[PortType::Image], "Image (HU) for the mean and SD; same grid."),
            ],
            outputs: vec![
                OutputSpec::new("table", PortType::Table, "One row per label: label, voxels, volume_ml, mean_hu, sd_hu."),
                OutputSpec::new("slices", PortType::Table, "One row per label and slice present: label, slice, area_cm2."),
            ],
            params: NoParams::param_specs(),
            impls: vec![ImplSpec::new("native", "Two passes over slices in parallel (rayon), f64 sums.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description:
                "Volume and HU of the phantom's predicted muscle labels, and their area per slice.",
            graph: r#"Graph(
    name: "label_stats_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 64, 8))),
        "stats":   (node: "LabelStats", inputs: (labels: "phantom.prediction", image: "phantom.ct")),
        "volumes": (node: "WriteTable", inputs: (table: "stats.table"), params: (path: "volumes.csv")),
        "areas":   (node: "WriteTable", inputs: (table: "stats.slices"), params: (path: "areas.csv")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        NoParams::from_json(params)?;
        Ok(Box::new(LabelStatsNode))
    }
}
