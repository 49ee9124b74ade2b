//! The voxel work of the geometry nodes: taking voxels in another axis order, and
//! sampling a volume on another grid (nearest or trilinear).
//!
//! Sampling maps each target voxel centre into the source's (fractional) voxel indices
//! with `inverse(source affine) x target affine`, so any pair of grids works, rotated
//! ones included. Grids made by [`grid_with_spacing`] keep the source's outer voxel
//! edges, the convention of `scipy.ndimage.zoom(grid_mode=True)` and of ITK resampling
//! to a new spacing over the same field of view.

use rayon::prelude::*;
use voxflow_engine::axes::AxisMap;
use voxflow_engine::{Geometry, Image, Labels, Volume};

/// The most voxels a grid made by [`grid_with_spacing`] may have: 1024^3, the largest
/// grid `Phantom` makes (4 GiB as f32). A finer spacing would otherwise ask for a buffer
/// no machine has, and the failed allocation aborts the process (a whole batch).
pub const MAX_GRID_VOXELS: u64 = 1 << 30;

/// Why a grid cannot be made or sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// A target spacing that is not a finite number > 0.
    #[error("spacing along {axis} must be a finite number > 0 mm, got {spacing_mm}")]
    BadSpacing {
        /// `x`, `y` or `z`.
        axis: &'static str,
        /// The spacing given.
        spacing_mm: f64,
    },
    /// The target grid would hold more than [`MAX_GRID_VOXELS`] voxels.
    #[error(
        "{spacing_mm:?} mm over the input's {src_dims:?} voxels of {src_spacing:?} mm makes a \
         grid of {dims} voxels, more than {MAX_GRID_VOXELS} (1024^3); choose a coarser spacing"
    )]
    TooLarge {
        /// The spacing asked for.
        spacing_mm: [f64; 3],
        /// The source grid's dims.
        src_dims: [usize; 3],
        /// The source grid's spacing.
        src_spacing: [f64; 3],
        /// The target dims, `XxYxZ`.
        dims: String,
    },
    /// The source affine cannot be inverted, so no target voxel can be placed in it.
    #[error("the source grid's affine is singular")]
    SingularAffine,
}

/// The grid covering the same field of view as `src` with voxels of `spacing_mm`: along
/// each axis `round(n * s / s_new)` voxels (at least 1), same directions, the first
/// voxel's outer edge on the source's. Errors name a spacing that is not finite and > 0,
/// or one that makes more than [`MAX_GRID_VOXELS`] voxels.
pub fn grid_with_spacing(src: &Geometry, spacing_mm: [f64; 3]) -> Result<Geometry, GeometryError> {
    for (axis, s) in ["x", "y", "z"].into_iter().zip(spacing_mm) {
        if !(s.is_finite() && s > 0.0) {
            return Err(GeometryError::BadSpacing {
                axis,
                spacing_mm: s,
            });
        }
    }
    // Counted in f64 first: a tiny spacing would overflow usize.
    let counts: [f64; 3] = std::array::from_fn(|a| {
        (src.dims[a] as f64 * src.spacing[a] / spacing_mm[a])
            .round()
            .max(1.0)
    });
    if counts.iter().product::<f64>() > MAX_GRID_VOXELS as f64 {
        return Err(GeometryError::TooLarge {
            spacing_mm,
            src_dims: src.dims,
            src_spacing: src.spacing,
            dims: counts.map(|n| format!("{n:.0}")).join("x"),
        });
    }
    let dims: [usize; 3] = counts.map(|n| n as usize);
    // Source index of the new voxel (0, 0, 0): half a new voxel in from the outer edge.
    let start: [f64; 3] = std::array::from_fn(|a| 0.5 * spacing_mm[a] / src.spacing[a] - 0.5);
    let origin = src.to_world(start);
    let mut g = src.clone();
    for (row, (src_row, o)) in g.affine.iter_mut().zip(src.affine.iter().zip(origin)) {
        for (a, s) in spacing_mm.iter().enumerate() {
            row[a] = src_row[a] * s / src.spacing[a];
        }
        row[3] = o;
    }
    g.dims = dims;
    g.spacing = spacing_mm;
    Ok(g)
}

/// The voxels of `src` in the axis order of `map` (see
/// [`voxflow_engine::axes::permuted_affine`]), placed on `target`, whose dims must be
/// the permuted dims.
pub fn reorient<T: Copy + Send + Sync>(
    src: &Volume<T>,
    map: &AxisMap,
    target: Geometry,
) -> Volume<T> {
    let g = src.geometry();
    let [tx, ty, _] = target.dims;
    // Source stride (in the flat x-fastest buffer) per target axis, and the offset of
    // target voxel (0, 0, 0).
    let strides = [1, g.dims[0], g.dims[0] * g.dims[1]];
    let mut base = 0isize;
    let mut step = [0isize; 3];
    for (c, &(a, flip)) in map.iter().enumerate() {
        let s = strides[a] as isize;
        if flip {
            base += (g.dims[a] as isize - 1) * s;
            step[c] = -s;
        } else {
            step[c] = s;
        }
    }
    let data = src.as_slice();
    let mut out: Vec<T> = Vec::with_capacity(target.len());
    let slices: Vec<Vec<T>> = (0..target.dims[2])
        .into_par_iter()
        .map(|z| {
            let mut v = Vec::with_capacity(tx * ty);
            for y in 0..ty {
                let row = base + z as isize * step[2] + y as isize * step[1];
                v.extend((0..tx).map(|x| data[(row + x as isize * step[0]) as usize]));
            }
            v
        })
        .collect();
    for s in slices {
        out.extend(s);
    }
    Volume::from_vec(target, out).expect("dims permuted from the source")
}

/// `inverse(src affine) x target affine`: target voxel indices to source voxel indices.
/// `None` when the source affine is singular.
fn index_map(src: &Geometry, target: &Geometry) -> Option<[[f64; 4]; 3]> {
    let a = src.affine;
    let m = [
        [a[0][0], a[0][1], a[0][2]],
        [a[1][0], a[1][1], a[1][2]],
        [a[2][0], a[2][1], a[2][2]],
    ];
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let inv = [
        [
            (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det,
            (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det,
            (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det,
        ],
        [
            (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det,
            (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det,
            (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det,
        ],
        [
            (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det,
            (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det,
            (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det,
        ],
    ];
    let t = target.affine;
    let mut out = [[0.0; 4]; 3];
    for r in 0..3 {
        for c in 0..4 {
            // Target column c in world space, minus the source origin for the translation.
            let w: [f64; 3] =
                std::array::from_fn(|k| if c == 3 { t[k][3] - a[k][3] } else { t[k][c] });
            out[r][c] = (0..3).map(|k| inv[r][k] * w[k]).sum();
        }
    }
    Some(out)
}

/// Source indices of every target voxel, slice by slice, handed to `sample`; collects the
/// values in x-fastest order.
fn sample_grid<U: Send>(
    src: &Geometry,
    target: &Geometry,
    sample: impl Fn([f64; 3]) -> U + Sync,
) -> Result<Vec<U>, GeometryError> {
    let m = index_map(src, target).ok_or(GeometryError::SingularAffine)?;
    let [tx, ty, tz] = target.dims;
    let slices: Vec<Vec<U>> = (0..tz)
        .into_par_iter()
        .map(|z| {
            let mut v = Vec::with_capacity(tx * ty);
            for y in 0..ty {
                for x in 0..tx {
                    let p = [x as f64, y as f64, z as f64];
                    let s: [f64; 3] = std::array::from_fn(|r| {
                        m[r][3] + m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2]
                    });
                    v.push(sample(s));
                }
            }
            v
        })
        .collect();
    Ok(slices.into_iter().flatten().collect())
}

/// Whether a source index lies within the source volume's voxels (their outer edges are
/// half a voxel beyond the first and last centres), up to rounding in the affines: a
/// target grid sharing the source's outer edge has centres exactly half a voxel in.
fn inside(s: [f64; 3], dims: [usize; 3]) -> bool {
    const EPS: f64 = 1e-6;
    (0..3).all(|a| s[a] >= -0.5 - EPS && s[a] <= dims[a] as f64 - 0.5 + EPS)
}

/// Labels on `target` by nearest neighbour: each target voxel takes the label of the
/// source voxel containing its centre (ties, exactly on a voxel face, go to the higher
/// index); 0 outside the source.
pub fn resample_nearest(src: &Labels, target: &Geometry) -> Result<Labels, GeometryError> {
    let g = src.geometry();
    let dims = g.dims;
    let data = src.as_slice();
    let out = sample_grid(g, target, |s| {
        if !inside(s, dims) {
            return 0;
        }
        let i: [usize; 3] =
            std::array::from_fn(|a| ((s[a] + 0.5).floor().max(0.0) as usize).min(dims[a] - 1));
        data[g.index(i[0], i[1], i[2])]
    })?;
    Ok(Volume::from_vec(target.clone(), out).expect("one value per target voxel"))
}

/// An image on `target` by trilinear interpolation, as f32. Inside the source volume
/// (within half a voxel of its outer centres) indices are clamped to the outer centres
/// (scipy's `mode="nearest"`); target voxels beyond take `fill`.
pub fn resample_linear(
    src: &Image,
    target: &Geometry,
    fill: f32,
) -> Result<Volume<f32>, GeometryError> {
    match src {
        Image::I16(v) => linear(v, target, fill),
        Image::F32(v) => linear(v, target, fill),
    }
}

fn linear<T: Copy + Into<f64> + Sync>(
    src: &Volume<T>,
    target: &Geometry,
    fill: f32,
) -> Result<Volume<f32>, GeometryError> {
    let g = src.geometry();
    let dims = g.dims;
    let data = src.as_slice();
    let out = sample_grid(g, target, |s| {
        if !inside(s, dims) {
            return fill;
        }
        // Lower corner and weight along each axis; a 1-voxel axis has weight 0.
        let mut lo = [0usize; 3];
        let mut w = [0.0f64; 3];
        for a in 0..3 {
            let c = s[a].clamp(0.0, dims[a] as f64 - 1.0);
            let i = (c.floor() as usize).min(dims[a].saturating_sub(2));
            lo[a] = i;
            w[a] = if dims[a] > 1 { c - i as f64 } else { 0.0 };
        }
        let mut acc = 0.0f64;
        for corner in 0..8 {
            let mut weight = 1.0;
            let mut idx = [0usize; 3];
            for a in 0..3 {
                let up = corner >> a & 1 == 1;
                weight *= if up { w[a] } else { 1.0 - w[a] };
                idx[a] = if up && dims[a] > 1 { lo[a] + 1 } else { lo[a] };
            }
            if weight != 0.0 {
                acc += weight * data[g.index(idx[0], idx[1], idx[2])].into();
            }
        }
        acc as f32
    })?;
    Ok(Volume::from_vec(target.clone(), out).expect("one value per target voxel"))
}
