//! `RenderOverlay`: a PNG montage of CT slices with one or two segmentations on top.

use std::sync::Arc;

use super::png::write_png;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use voxflow_engine::fsutil::write_atomic;
use voxflow_engine::{
    node_params, params, Cell, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError,
    NodeSpec, NodeType, OutputSpec, ParamError, Params, PortType, Table, Value,
};

use super::kernels::{
    auto_slices, legend, legend_min_width, montage, render_tile, slice_z_mm, widen, DisplayAxes,
    LegendEntry, Style, TileSettings, BLUE, LEGEND_BACKGROUND, MAGENTA, RED, YELLOW,
};
use crate::metrics::compare_masks::LabelInput;

/// Pixels between tiles.
const GAP: usize = 2;
/// Largest image written (pixels), so a typo in `zoom` or `every` cannot fill the disk.
const MAX_PIXELS: usize = 1 << 27;

/// How the masks are drawn.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverlayMode {
    /// `a` blue, `b` red, overlap magenta.
    #[default]
    Overlay,
    /// Only where `a` and `b` disagree: `a` alone blue, `b` alone red, different
    /// non-zero labels yellow.
    Difference,
}

node_params! {
    /// Params of [`RenderOverlay`].
    pub struct RenderOverlayParams {
        /// PNG file to write (relative: in the run's output folder).
        #[param(required)]
        pub path: String = String::new(),
        /// Slices (voxel z indices) to show, in order; [] = `every` or automatic.
        #[param(unit = "slice")]
        pub slices: Vec<usize> = Vec::new(),
        /// Show every n-th slice from slice 0; None = up to 9 slices spread over the
        /// masks and centred on their centre of mass in z.
        #[param(unit = "slice")]
        pub every: Option<usize> = None,
        /// Width of the grey ramp.
        #[param(unit = "HU")]
        pub window: f64 = 400.0,
        /// Centre of the grey ramp.
        #[param(unit = "HU")]
        pub level: f64 = 40.0,
        /// Colour both masks, or only where they disagree.
        #[param(ty = "\"overlay\" | \"difference\"")]
        pub mode: OverlayMode = OverlayMode::Overlay,
        /// Tiles per montage row.
        pub columns: usize = 3,
        /// Integer upscaling of each tile (1 to 16); None = 2 when a slice is smaller
        /// than 256 pixels both ways, else 1.
        pub zoom: Option<usize> = None,
        /// Label names for the legend, e.g. `[(1, "abdominal wall"), (2,
        /// "paravertebral")]`; [] = `label N`.
        pub label_names: Vec<(u16, String)> = Vec::new(),
        /// What `a` is, in the legend.
        pub a_name: String = "a".into(),
        /// What `b` is, in the legend.
        pub b_name: String = "b".into(),
    }
}

impl RenderOverlayParams {
    fn check(&self) -> Vec<ParamError> {
        let mut errs = Vec::new();
        if let Err(e) = params::require_set(
            "path",
            &self.path,
            "the PNG file to write, e.g. \"overlay.png\"",
        ) {
            errs.extend(e);
        } else if !self.path.to_ascii_lowercase().ends_with(".png") {
            errs.push(ParamError::field(
                "path",
                format!("must end in .png, got \"{}\"", self.path),
            ));
        }
        if !self.slices.is_empty() && self.every.is_some() {
            errs.push(ParamError::field(
                "every",
                "give either `slices` or `every`, not both",
            ));
        }
        if self.every == Some(0) {
            errs.push(ParamError::field("every", "must be at least 1, got 0"));
        }
        if !(self.window.is_finite() && self.window > 0.0) {
            errs.push(ParamError::field(
                "window",
                format!("must be a positive number of HU, got {}", self.window),
            ));
        }
        if !self.level.is_finite() {
            errs.push(ParamError::field(
                "level",
                format!("must be a finite number of HU, got {}", self.level),
            ));
        }
        if self.columns == 0 {
            errs.push(ParamError::field("columns", "must be at least 1, got 0"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (l, _) in &self.label_names {
            if *l == 0 || !seen.insert(*l) {
                errs.push(ParamError::field(
                    "label_names",
                    format!("label {l} is 0 (background) or named twice"),
                ));
            }
        }
        if let Some(z) = self.zoom {
            if !(1..=16).contains(&z) {
                errs.push(ParamError::field(
                    "zoom",
                    format!("must be 1 to 16, got {z}"),
                ));
            }
        }
        errs
    }
}

/// `RenderOverlay`: CT slices with segmentations, as a PNG montage.
pub struct RenderOverlay;

const DOC: &str = "\
Draws axial slices of `image` in a grey window (`level ± window/2` HU) with `a` in blue \
and `b` in red on top (half transparent; overlap magenta), one tile per slice, and \
writes them as one PNG montage, `columns` tiles per row. Without `b`, each label of `a` \
has its own colour (1 blue, 2 green, 3 orange, 4 cyan, ...). With `mode: \"difference\"` \
only disagreements are coloured: `a` alone blue, `b` alone red, different non-zero \
labels yellow. Each tile carries its slice number (voxel z index) and the world z of \
the slice's centre in mm (`12 z=-34.5 mm`) in the top-left corner. A legend under the \
montage names the colours: the labels shown (by `label_names`, else `label N`) without \
`b`; `a_name`, `b_name` and their overlap with `b`, then `labels: 1 ..., 2 ...` on a line of its own when named.

Orientation is radiological, decided from the affine (not assumed): anterior at the \
top and the patient's left on the image's right, whatever the storage order (an \
identity affine and a LAS-stored file both display correctly). One tile pixel is one \
voxel (times `zoom`); anisotropic in-plane spacing is not resampled.

Slices: `slices` lists them; `every: n` takes 0, n, 2n, ...; otherwise up to 9 slices \
spread over the slices where either mask has voxels, centred on their centre of mass. \
The file is written atomically (a failed run leaves no partial PNG).";

impl NodeType for RenderOverlay {
    fn spec(&self) -> NodeSpec {
        const VOLS: &[PortType] = &[PortType::Mask, PortType::Labels];
        NodeSpec {
            name: "RenderOverlay",
            summary: "Render CT slices with one or two segmentations on top as a PNG montage.",
            doc: DOC,
            category: "render",
            inputs: vec![
                InputSpec::required("image", &[PortType::Image], "CT in HU, shown in grey."),
                InputSpec::required(
                    "a",
                    VOLS,
                    "First segmentation (blue), same grid as the image.",
                ),
                InputSpec::optional(
                    "b",
                    VOLS,
                    "Second segmentation (red), same grid; needed by \"difference\".",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "slices",
                PortType::Table,
                "One row per tile: slice, tile_row, tile_column, voxels_a, voxels_b (voxels of the \
                 masks on that slice), z_mm (world z of the slice's centre, mm: the tile's caption).",
            )],
            params: RenderOverlayParams::param_specs(),
            impls: vec![ImplSpec::new(
                "cpu",
                "Tiles rendered in parallel, PNG written with the png crate.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![
            Example {
                description: "Truth (blue) and prediction (red) over the phantom CT.",
                graph: r#"Graph(
    name: "render_overlay_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (96, 96, 12))),
        "png":     (node: "RenderOverlay",
                    inputs: (image: "phantom.ct", a: "phantom.truth", b: "phantom.prediction"),
                    params: (path: "overlay.png", a_name: "truth", b_name: "prediction",
                             label_names: [(1, "abdominal wall"), (2, "paravertebral")])),
    },
)"#,
            },
            Example {
                description: "Only the disagreements, every third slice, soft-tissue window.",
                graph: r#"Graph(
    name: "render_difference_example",
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 3, dims: (96, 96, 12))),
        "png":     (node: "RenderOverlay",
                    inputs: (image: "phantom.ct", a: "phantom.truth", b: "phantom.prediction"),
                    params: (path: "difference.png", mode: "difference", every: 3, window: 350, level: 50, columns: 4)),
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
        let p = RenderOverlayParams::from_json(params)?;
        let errs = p.check();
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Box::new(RenderOverlayNode { p }))
    }
}

struct RenderOverlayNode {
    p: RenderOverlayParams,
}

impl Node for RenderOverlayNode {
    fn output_files(&self) -> Vec<std::path::PathBuf> {
        vec![self.p.path.clone().into()]
    }

    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let p = &self.p;
        let image = ctx.image("image")?;
        let a = LabelInput::required(ctx, "a")?;
        ctx.check_same_grid("image", "a")?;
        let b = LabelInput::from_ctx(ctx, "b")?;
        if b.is_some() {
            ctx.check_same_grid("image", "b")?;
        } else if p.mode == OverlayMode::Difference {
            return Err(NodeError::Input {
                port: "b".into(),
                message: "not connected, but mode \"difference\" compares `a` with `b`".into(),
            });
        }
        let g = image.geometry().clone();
        let dims = g.dims;
        if g.is_empty() {
            return Err(NodeError::Input {
                port: "image".into(),
                message: "has no voxel".into(),
            });
        }
        let slices: Vec<usize> = if !p.slices.is_empty() {
            if let Some(&z) = p.slices.iter().find(|&&z| z >= dims[2]) {
                return Err(NodeError::Other(format!(
                    "params `slices`: slice {z} does not exist (the grid has {} slices, 0 to {})",
                    dims[2],
                    dims[2] - 1
                )));
            }
            p.slices.clone()
        } else if let Some(n) = p.every {
            (0..dims[2]).step_by(n).collect()
        } else {
            auto_slices(&a, b.as_ref(), dims)
        };
        let axes = DisplayAxes::from_geometry(&g);
        let (w, h) = axes.size(dims);
        let zoom = p.zoom.unwrap_or(if w.max(h) < 256 { 2 } else { 1 });
        let cols = p.columns.min(slices.len()).max(1);
        let rows = slices.len().div_ceil(cols);
        let pixels = (cols * (w * zoom + GAP)) * (rows * (h * zoom + GAP));
        if pixels > MAX_PIXELS {
            return Err(NodeError::Other(format!(
                "the montage would have {pixels} pixels ({} tiles of {}x{}), more than {MAX_PIXELS}; \
                 show fewer slices or lower `zoom`",
                slices.len(),
                w * zoom,
                h * zoom
            )));
        }
        let style = match (p.mode, &b) {
            (OverlayMode::Overlay, None) => Style::Labels,
            (OverlayMode::Overlay, Some(_)) => Style::Overlay,
            (OverlayMode::Difference, _) => Style::Difference,
        };
        let settings = TileSettings {
            window: p.window,
            level: p.level,
            style,
            zoom,
            axes,
        };
        let tiles: Vec<_> = slices
            .par_iter()
            .map(|&z| render_tile(&image, &a, b.as_ref(), z, &settings))
            .collect();
        let (mw, mh, rgb) = montage(&tiles, cols, GAP);
        let entries = self.legend_entries(style, &a, dims, &slices);
        let scale = if zoom >= 2 { 2 } else { 1 };
        let width = mw.max(legend_min_width(&entries, scale));
        let mut rgb = widen(&rgb, mw, width, LEGEND_BACKGROUND);
        let mw = width;
        let (lh, band) = legend(&entries, mw, scale);
        rgb.extend_from_slice(&band);
        let mh = mh + lh;
        let path = ctx.output_path(&p.path);
        write_atomic(&path, |wr| write_png(wr, mw, mh, &rgb))?;
        ctx.file_written(&path);

        let plane = dims[0] * dims[1];
        let count = |m: &LabelInput, z: usize| {
            (z * plane..(z + 1) * plane)
                .filter(|&i| m.label_at(i) != 0)
                .count()
        };
        let mut table = Table::new([
            "slice",
            "tile_row",
            "tile_column",
            "voxels_a",
            "voxels_b",
            "z_mm",
        ]);
        for (k, &z) in slices.iter().enumerate() {
            table.push(vec![
                Cell::from(z),
                Cell::from(k / cols),
                Cell::from(k % cols),
                Cell::from(count(&a, z)),
                b.as_ref()
                    .map(|b| Cell::from(count(b, z)))
                    .unwrap_or(Cell::Null),
                Cell::Float(slice_z_mm(&g, z)),
            ]);
        }
        ctx.set_output("slices", Value::Table(Arc::new(table)));
        Ok(())
    }
}

impl RenderOverlayNode {
    /// Name of label `l`: from `label_names`, else `label N`.
    fn label_name(&self, l: u16) -> String {
        self.p
            .label_names
            .iter()
            .find(|(k, _)| *k == l)
            .map(|(_, n)| format!("{l} {n}"))
            .unwrap_or_else(|| format!("label {l}"))
    }

    /// What the colours of this picture mean.
    fn legend_entries(
        &self,
        style: Style,
        a: &LabelInput,
        dims: [usize; 3],
        slices: &[usize],
    ) -> Vec<LegendEntry> {
        let entry = |colour: [u8; 3], text: String| LegendEntry {
            colour: Some(colour),
            text,
            own_line: false,
        };
        let (an, bn) = (&self.p.a_name, &self.p.b_name);
        let mut out = match style {
            Style::Labels => {
                // The labels on the tiles shown, in order.
                let plane = dims[0] * dims[1];
                let mut present = std::collections::BTreeSet::new();
                for &z in slices {
                    for i in z * plane..(z + 1) * plane {
                        let l = a.label_at(i);
                        if l != 0 {
                            present.insert(l);
                        }
                    }
                }
                return present
                    .into_iter()
                    .map(|l| entry(super::kernels::label_colour(l), self.label_name(l)))
                    .collect();
            }
            Style::Overlay => vec![
                entry(BLUE, an.clone()),
                entry(RED, bn.clone()),
                entry(MAGENTA, "both".into()),
            ],
            Style::Difference => vec![
                entry(BLUE, format!("{an} only")),
                entry(RED, format!("{bn} only")),
                entry(YELLOW, "different labels".into()),
            ],
        };
        // The colours say a or b, not which label: the names follow as one key on a line
        // of its own, so they do not read as captions of the swatch before them.
        if !self.p.label_names.is_empty() {
            let names: Vec<String> = self
                .p
                .label_names
                .iter()
                .map(|(l, _)| self.label_name(*l))
                .collect();
            out.push(LegendEntry {
                colour: None,
                text: format!("labels: {}", names.join(", ")),
                own_line: true,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
