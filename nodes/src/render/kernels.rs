//! Rendering kernels behind `RenderOverlay`: display orientation from the affine,
//! windowed grey tiles with coloured masks, and the montage (PNG encoding is
//! [`super::png::write_png`]).

use rayon::prelude::*;
use voxflow_engine::{Geometry, Image};

use super::font::draw_text;
use crate::metrics::compare_masks::LabelInput;

/// Colour of voxels only in `a`.
pub const BLUE: [u8; 3] = [30, 110, 255];
/// Colour of voxels only in `b`.
pub const RED: [u8; 3] = [255, 40, 30];
/// Colour of voxels in both (overlay mode).
pub const MAGENTA: [u8; 3] = [255, 0, 255];
/// Colour of voxels where `a` and `b` carry different non-zero labels (difference mode).
pub const YELLOW: [u8; 3] = [255, 220, 0];
/// Weight of a mask colour over the grey CT.
pub const ALPHA: f64 = 0.5;

/// Colours of labels 1, 2, ... when one segmentation is shown (cycled beyond 8). Label 1
/// keeps `a`'s blue; red, magenta and yellow stay for comparisons.
pub const LABEL_COLOURS: [[u8; 3]; 8] = [
    BLUE,
    [40, 200, 60],
    [255, 150, 0],
    [0, 220, 220],
    [160, 80, 255],
    [255, 100, 180],
    [170, 110, 40],
    [150, 150, 0],
];

/// The colour of `label` (>= 1) in [`Style::Labels`].
pub fn label_colour(label: u16) -> [u8; 3] {
    LABEL_COLOURS[(usize::from(label.max(1)) - 1) % LABEL_COLOURS.len()]
}

/// A colour as it shows over grey `grey` (0-255) on a tile.
pub fn blend(c: [u8; 3], grey: f64) -> [u8; 3] {
    c.map(|c| (grey * (1.0 - ALPHA) + f64::from(c) * ALPHA).round() as u8)
}

/// How voxel axes 0 and 1 map to the screen for radiological display: anterior up,
/// the patient's left on the right of the image (the patient seen from the feet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplayAxes {
    /// Voxel axis (0 or 1) running along image columns.
    pub col_axis: usize,
    /// True when the column index runs against that voxel axis.
    pub col_flip: bool,
    /// Voxel axis running along image rows (top to bottom).
    pub row_axis: usize,
    /// True when the row index runs against that voxel axis.
    pub row_flip: bool,
}

impl DisplayAxes {
    /// Decide from the affine (RAS+: +x is the patient's Right, +y Anterior): the voxel
    /// axis closest to world x runs along columns, reversed when it points to the
    /// patient's right (which belongs on the image's left); the other axis runs along
    /// rows, reversed when it points anterior (which belongs at the top).
    pub fn from_geometry(g: &Geometry) -> Self {
        let d = g.direction();
        let col_axis = if d[0][0].abs() >= d[1][0].abs() { 0 } else { 1 };
        let row_axis = 1 - col_axis;
        DisplayAxes {
            col_axis,
            col_flip: d[col_axis][0] > 0.0,
            row_axis,
            row_flip: d[row_axis][1] > 0.0,
        }
    }

    /// Width and height of a slice on screen, in voxels.
    pub fn size(&self, dims: [usize; 3]) -> (usize, usize) {
        (dims[self.col_axis], dims[self.row_axis])
    }

    /// The voxel (x, y) shown at screen position (`col`, `row`).
    #[inline]
    pub fn voxel(&self, dims: [usize; 3], col: usize, row: usize) -> (usize, usize) {
        let (w, h) = self.size(dims);
        let c = if self.col_flip { w - 1 - col } else { col };
        let r = if self.row_flip { h - 1 - row } else { row };
        let mut v = [0usize; 2];
        v[self.col_axis] = c;
        v[self.row_axis] = r;
        (v[0], v[1])
    }
}

/// What the masks look like on a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One segmentation, each label in its colour ([`label_colour`]).
    Labels,
    /// `a` blue, `b` red, both magenta.
    Overlay,
    /// Only disagreement: `a` alone blue, `b` alone red, different labels yellow.
    Difference,
}

/// One rendered tile, RGB, row by row.
pub struct Tile {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * width * height` bytes.
    pub rgb: Vec<u8>,
}

/// Settings shared by all tiles.
pub struct TileSettings {
    /// HU range shown as grey: `level ± window / 2`.
    pub window: f64,
    /// Centre of the grey ramp (HU).
    pub level: f64,
    /// Mask style.
    pub style: Style,
    /// Integer upscaling.
    pub zoom: usize,
    /// Screen mapping.
    pub axes: DisplayAxes,
}

/// The colour of the masks at a voxel, if any.
#[inline]
fn mask_colour(style: Style, la: u16, lb: Option<u16>) -> Option<[u8; 3]> {
    let lb = lb.unwrap_or(0);
    match style {
        Style::Labels => (la != 0).then(|| label_colour(la)),
        Style::Overlay => match (la != 0, lb != 0) {
            (true, false) => Some(BLUE),
            (false, true) => Some(RED),
            (true, true) => Some(MAGENTA),
            (false, false) => None,
        },
        Style::Difference => match (la != 0, lb != 0) {
            _ if la == lb => None,
            (true, false) => Some(BLUE),
            (false, true) => Some(RED),
            _ => Some(YELLOW),
        },
    }
}

/// World z (mm) of slice `z`: the affine applied to the slice's centre voxel (for an
/// oblique grid the slice is not at one z; its centre is what a viewer reports).
pub fn slice_z_mm(g: &Geometry, z: usize) -> f64 {
    let [nx, ny, _] = g.dims;
    g.to_world([
        nx.saturating_sub(1) as f64 / 2.0,
        ny.saturating_sub(1) as f64 / 2.0,
        z as f64,
    ])[2]
}

/// The caption of the tile of slice `z`: its index and world position,
/// `"12 z=-34.5 mm"`.
pub fn tile_caption(g: &Geometry, z: usize) -> String {
    let mm = slice_z_mm(g, z);
    // No "-0.0".
    let mm = if mm.abs() < 0.05 { 0.0 } else { mm };
    format!("{z} z={mm:.1} mm")
}

/// The caption a tile `tw` pixels wide shows, and its font scale: the full caption,
/// double size on zoomed tiles when it fits; on tiles too narrow for it only the slice
/// number (a caption clipped mid-word reads wrong, and the slices table has `z_mm`).
fn caption_for(full: String, z: usize, zoom: usize, tw: usize) -> (String, usize) {
    let fits = |t: &str, scale: usize| super::font::text_size(t, scale).0 + 4 <= tw;
    let number = z.to_string();
    for (text, scale) in [(&full, 2), (&full, 1), (&number, 2)] {
        if (scale == 1 || zoom >= 2) && fits(text, scale) {
            return (text.clone(), scale);
        }
    }
    (number, 1)
}

/// Render slice `z`: windowed grey, masks blended over it, upscaled by `zoom`, caption
/// ([`tile_caption`]: slice number and world z in mm) in the top-left corner.
pub fn render_tile(
    image: &Image,
    a: &LabelInput,
    b: Option<&LabelInput>,
    z: usize,
    s: &TileSettings,
) -> Tile {
    let g = image.geometry();
    let dims = g.dims;
    let (w, h) = s.axes.size(dims);
    let lo = s.level - s.window / 2.0;
    let grey = |hu: f64| -> f64 { ((hu - lo) / s.window * 255.0).clamp(0.0, 255.0) };
    let zoom = s.zoom.max(1);
    let (tw, th) = (w * zoom, h * zoom);
    let mut rgb = vec![0u8; tw * th * 3];
    rgb.par_chunks_mut(tw * 3 * zoom)
        .enumerate()
        .for_each(|(row, band)| {
            let mut line = vec![0u8; tw * 3];
            for col in 0..w {
                let (x, y) = s.axes.voxel(dims, col, row);
                let i = g.index(x, y, z);
                let v = grey(image.get_f64(i));
                let px = match mask_colour(s.style, a.label_at(i), b.map(|b| b.label_at(i))) {
                    Some(c) => blend(c, v),
                    None => [v.round() as u8; 3],
                };
                for k in 0..zoom {
                    let o = 3 * (col * zoom + k);
                    line[o..o + 3].copy_from_slice(&px);
                }
            }
            for r in band.chunks_mut(tw * 3) {
                r.copy_from_slice(&line);
            }
        });
    let (caption, scale) = caption_for(tile_caption(g, z), z, zoom, tw);
    draw_text(
        &mut rgb,
        tw,
        2,
        2,
        &caption,
        scale,
        [255, 255, 255],
        [0, 0, 0],
    );
    Tile {
        width: tw,
        height: th,
        rgb,
    }
}

/// Tiles laid out row by row, `columns` per row, `gap` pixels of dark grey between
/// them. All tiles must have the same size. Returns width, height and RGB bytes.
pub fn montage(tiles: &[Tile], columns: usize, gap: usize) -> (usize, usize, Vec<u8>) {
    let Some(first) = tiles.first() else {
        return (0, 0, Vec::new());
    };
    let (tw, th) = (first.width, first.height);
    let cols = columns.clamp(1, tiles.len());
    let rows = tiles.len().div_ceil(cols);
    let (w, h) = (cols * tw + (cols - 1) * gap, rows * th + (rows - 1) * gap);
    let mut rgb = vec![40u8; w * h * 3];
    for (k, t) in tiles.iter().enumerate() {
        let (x0, y0) = ((k % cols) * (tw + gap), (k / cols) * (th + gap));
        for y in 0..th {
            let dst = 3 * (x0 + w * (y0 + y));
            rgb[dst..dst + 3 * tw].copy_from_slice(&t.rgb[3 * tw * y..3 * tw * (y + 1)]);
        }
    }
    (w, h, rgb)
}

/// One legend entry: a colour swatch (blended over mid-grey, as on the tiles) and its
/// text, or text alone.
pub struct LegendEntry {
    /// Swatch colour, before blending.
    pub colour: Option<[u8; 3]>,
    /// What it means (`1 abdominal wall`, `network only`).
    pub text: String,
    /// Start a new line of the legend (a key that is not one of the swatches).
    pub own_line: bool,
}

/// Grey a legend swatch is blended over (mid-grey, the middle of the window).
pub const LEGEND_GREY: f64 = 127.5;
/// Background of the legend band (the montage's gap colour).
pub const LEGEND_BACKGROUND: [u8; 3] = [40, 40, 40];

/// Width of one legend entry at `scale`: swatch (if any) and text.
fn entry_width(e: &LegendEntry, scale: usize) -> usize {
    let swatch = (super::font::GLYPH_H + 2) * scale;
    e.colour.map_or(0, |_| swatch + scale) + super::font::text_size(&e.text, scale).0
}

/// The narrowest legend band that shows every entry whole (a narrow montage is widened
/// to this rather than cutting a label name off).
pub fn legend_min_width(entries: &[LegendEntry], scale: usize) -> usize {
    entries
        .iter()
        .map(|e| entry_width(e, scale) + 4 * scale)
        .max()
        .unwrap_or(0)
}

/// `rgb` (`width` x `height`) widened to `new_width` with `fill` on the right.
pub fn widen(rgb: &[u8], width: usize, new_width: usize, fill: [u8; 3]) -> Vec<u8> {
    if new_width <= width || width == 0 {
        return rgb.to_vec();
    }
    let pad = fill.repeat(new_width - width);
    rgb.chunks(3 * width)
        .flat_map(|row| row.iter().chain(&pad).copied())
        .collect()
}

/// The legend band under a montage `width` pixels wide: entries left to right, wrapped
/// onto further lines when the next does not fit, each a swatch of the text's height
/// followed by the text in white. Returns its height and RGB bytes.
pub fn legend(entries: &[LegendEntry], width: usize, scale: usize) -> (usize, Vec<u8>) {
    use super::font::GLYPH_H;
    let line_h = (GLYPH_H + 2) * scale + 2 * scale;
    let swatch = (GLYPH_H + 2) * scale;
    // Lay out first: (x, line) per entry.
    let mut at = Vec::with_capacity(entries.len());
    let (mut x, mut line) = (2 * scale, 0usize);
    for e in entries {
        let w = entry_width(e, scale);
        if x > 2 * scale && (e.own_line || x + w > width) {
            x = 2 * scale;
            line += 1;
        }
        at.push((x, line));
        x += w + 4 * scale;
    }
    let lines = if entries.is_empty() { 0 } else { line + 1 };
    let height = lines * line_h + if lines > 0 { 2 * scale } else { 0 };
    let mut rgb: Vec<u8> = LEGEND_BACKGROUND.repeat(width * height);
    for (e, &(x0, line)) in entries.iter().zip(&at) {
        let y0 = 2 * scale + line * line_h;
        let mut tx = x0;
        if let Some(c) = e.colour {
            let c = blend(c, LEGEND_GREY);
            for y in y0..(y0 + swatch).min(height) {
                for x in x0..(x0 + swatch).min(width) {
                    rgb[3 * (x + width * y)..3 * (x + width * y) + 3].copy_from_slice(&c);
                }
            }
            tx += swatch + scale;
        }
        draw_text(
            &mut rgb,
            width,
            tx,
            y0,
            &e.text,
            scale,
            [255, 255, 255],
            LEGEND_BACKGROUND,
        );
    }
    (height, rgb)
}

/// Slices to show when none are given: up to 9, spread over the slices where `a` or
/// `b` has voxels and centred on their centre of mass in z (the middle of the volume
/// when both are empty).
pub fn auto_slices(a: &LabelInput, b: Option<&LabelInput>, dims: [usize; 3]) -> Vec<usize> {
    let plane = dims[0] * dims[1];
    let counts: Vec<usize> = (0..dims[2])
        .into_par_iter()
        .map(|z| {
            (z * plane..(z + 1) * plane)
                .filter(|&i| a.label_at(i) != 0 || b.is_some_and(|b| b.label_at(i) != 0))
                .count()
        })
        .collect();
    let present: Vec<usize> = (0..dims[2]).filter(|&z| counts[z] > 0).collect();
    let (zmin, zmax, com) = match (present.first(), present.last()) {
        (Some(&lo), Some(&hi)) => {
            let total: usize = counts.iter().sum();
            let com = counts
                .iter()
                .enumerate()
                .map(|(z, &c)| z as f64 * c as f64)
                .sum::<f64>()
                / total as f64;
            (lo, hi, com.round() as usize)
        }
        _ => (0, dims[2].saturating_sub(1), dims[2] / 2),
    };
    let extent = zmax - zmin + 1;
    if extent <= 9 {
        return (zmin..=zmax).collect();
    }
    let step = extent / 9;
    let start = com.saturating_sub(4 * step).clamp(zmin, zmax - 8 * step);
    (0..9).map(|k| start + k * step).collect()
}
