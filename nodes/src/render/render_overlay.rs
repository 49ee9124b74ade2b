//! `RenderOverlay`: a PNG montage of CT slices with one or two segmentations on top.

use std::sync::Arc;

use super::png::write_png;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use voxflow_engine::fsutil::{write_atomic, WriteError};
use voxflow_engine::{
    parse_params, Cell, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, ParamSpec, PortType, Table, Value,
};

use super::kernels::{auto_slices, montage, render_tile, DisplayAxes, Style, TileSettings};
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

/// Params of [`RenderOverlay`].
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RenderOverlayParams {
    /// PNG file to write; relative paths resolve against the run's output folder.
    /// Required (default empty, rejected).
    pub path: String,
    /// Slices (voxel z indices) to show, in this order. Default `[]`: use `every`, or
    /// choose automatically.
    pub slices: Vec<usize>,
    /// Show every n-th slice from slice 0. Default `None`: up to 9 slices spread over the
    /// masks and centred on their centre of mass in z.
    pub every: Option<usize>,
    /// Width of the grey ramp in HU. Default 400.
    pub window: f64,
    /// Centre of the grey ramp in HU. Default 40.
    pub level: f64,
    /// `"overlay"` or `"difference"`. Default `"overlay"`.
    pub mode: OverlayMode,
    /// Tiles per montage row. Default 3.
    pub columns: usize,
    /// Integer upscaling of each tile. Default `None`: 2 when a slice is smaller than 256
    /// pixels both ways, else 1.
    pub zoom: Option<usize>,
}

impl Default for RenderOverlayParams {
    fn default() -> Self {
        RenderOverlayParams {
            path: String::new(),
            slices: Vec::new(),
            every: None,
            window: 400.0,
            level: 40.0,
            mode: OverlayMode::Overlay,
            columns: 3,
            zoom: None,
        }
    }
}

impl RenderOverlayParams {
    fn check(&self) -> Vec<ParamError> {
        let mut errs = Vec::new();
        if self.path.is_empty() {
            errs.push(ParamError::field(
                "path",
                "required: the PNG file to write, e.g. \"overlay.png\"",
            ));
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
writes them as one PNG montage, `columns` tiles per row. With `mode: \"difference\"` only \
disagreements are coloured: `a` alone blue, `b` alone red, different non-zero labels \
yellow. Each tile carries its slice number (voxel z index) in the top-left corner.

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
                 masks on that slice).",
            )],
            params: vec![
                ParamSpec::required(
                    "path",
                    "String",
                    "",
                    "PNG file to write (relative: in the run's output folder).",
                ),
                ParamSpec::new(
                    "slices",
                    "Vec<usize>",
                    "[]",
                    "slice",
                    "Slices to show, in order; [] = `every` or automatic.",
                ),
                ParamSpec::new(
                    "every",
                    "Option<usize>",
                    "None",
                    "slice",
                    "Show every n-th slice; None = up to 9 around the masks' centre of mass.",
                ),
                ParamSpec::new("window", "f64", "400.0", "HU", "Width of the grey ramp."),
                ParamSpec::new("level", "f64", "40.0", "HU", "Centre of the grey ramp."),
                ParamSpec::new(
                    "mode",
                    "\"overlay\" | \"difference\"",
                    "\"overlay\"",
                    "",
                    "Colour both masks, or only where they disagree.",
                ),
                ParamSpec::new("columns", "usize", "3", "", "Tiles per montage row."),
                ParamSpec::new(
                    "zoom",
                    "Option<usize>",
                    "None",
                    "",
                    "Integer upscaling; None = 2 for slices under 256 pixels both ways, else 1.",
                ),
            ],
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
                    params: (path: "overlay.png")),
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
        let p: RenderOverlayParams = parse_params(params).map_err(|e| vec![e])?;
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
        let a = LabelInput::from_ctx(ctx, "a")?.ok_or_else(|| NodeError::Input {
            port: "a".into(),
            message: "not connected".into(),
        })?;
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
        let style = match p.mode {
            OverlayMode::Overlay => Style::Overlay,
            OverlayMode::Difference => Style::Difference,
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
        let path = ctx.output_path(&p.path);
        write_atomic(&path, |wr| write_png(wr, mw, mh, &rgb)).map_err(|e| match e {
            WriteError::Io { source, .. } => {
                NodeError::file(&path, format!("cannot write: {source}"))
            }
            other => NodeError::file(&path, other),
        })?;
        ctx.file_written(&path);

        let plane = dims[0] * dims[1];
        let count = |m: &LabelInput, z: usize| {
            (z * plane..(z + 1) * plane)
                .filter(|&i| m.label_at(i) != 0)
                .count()
        };
        let mut table = Table::new(["slice", "tile_row", "tile_column", "voxels_a", "voxels_b"]);
        for (k, &z) in slices.iter().enumerate() {
            table.push(vec![
                Cell::from(z),
                Cell::from(k / cols),
                Cell::from(k % cols),
                Cell::from(count(&a, z)),
                b.as_ref()
                    .map(|b| Cell::from(count(b, z)))
                    .unwrap_or(Cell::Null),
            ]);
        }
        ctx.set_output("slices", Value::Table(Arc::new(table)));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
