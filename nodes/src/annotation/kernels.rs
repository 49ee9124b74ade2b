//! Kernels of the annotation nodes: combining SPLAT annotations into training targets
//! ([`splat_weights`]) and simulating sparse annotations from a dense label map
//! ([`simulate_sparse`]). Pure functions on volumes and slices, public so tests and
//! benchmarks can call them without a graph.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use voxflow_engine::{Labels, Mask, Volume};

use crate::shared::edt;

/// SPLAT value: the annotator said nothing about this voxel.
pub const UNANNOTATED: u16 = 0;
/// SPLAT value: painted as "not this structure".
pub const BACKGROUND: u16 = 1;
/// SPLAT value: painted as "this structure".
pub const FOREGROUND: u16 = 2;

/// Training label of the combined map: background.
pub const LABEL_BACKGROUND: u16 = 0;
/// Training label of the combined map: abdominal wall muscles.
pub const LABEL_ABDOMINAL: u16 = 1;
/// Training label of the combined map: paravertebral muscles.
pub const LABEL_PARAVERTEBRAL: u16 = 2;

/// The first voxel (linear index, value) that is not a SPLAT value (0, 1 or 2), if
/// any. Lowest index first, so the error a node reports does not depend on threads.
pub fn first_invalid(voxels: &[u16]) -> Option<(usize, u16)> {
    const CHUNK: usize = 1 << 16;
    voxels
        .par_chunks(CHUNK)
        .enumerate()
        .find_map_first(|(c, chunk)| {
            chunk
                .iter()
                .position(|&v| v > FOREGROUND)
                .map(|i| (c * CHUNK + i, chunk[i]))
        })
}

/// The training label and weight of one voxel from its abdominal (`a`) and
/// paravertebral (`p`) SPLAT values (both 0, 1 or 2).
///
/// | a \ p | 0 unannotated | 1 background | 2 foreground |
/// |---|---|---|---|
/// | 0 | 0, w 0 | 0, w 0 | 2, w 1 |
/// | 1 | 0, w 0 | 0, w 1 | 2, w 1 |
/// | 2 | 1, w 1 | 1, w 1 | 0, w 0 (conflict) |
///
/// Foreground of exactly one structure names it: the structures do not overlap, so
/// that says the voxel is background of the other even where the other annotation is
/// silent. Background needs both annotations to say so, since an unannotated voxel
/// might belong to the other structure. Foreground in both is a contradiction: the
/// voxel is left out of the loss rather than guessed.
#[inline]
pub fn combine(a: u16, p: u16) -> (u16, u8) {
    match (a == FOREGROUND, p == FOREGROUND) {
        (true, true) => (LABEL_BACKGROUND, 0),
        (true, false) => (LABEL_ABDOMINAL, 1),
        (false, true) => (LABEL_PARAVERTEBRAL, 1),
        (false, false) if a == BACKGROUND && p == BACKGROUND => (LABEL_BACKGROUND, 1),
        (false, false) => (LABEL_BACKGROUND, 0),
    }
}

/// Training labels and weights of two SPLAT annotations on one grid (see
/// [`combine`]). Values above 2 must have been rejected before (they count as
/// unannotated here). Panics when the grids differ in size.
pub fn splat_weights(abdominal: &Labels, paravertebral: &Labels) -> (Labels, Mask) {
    let (a, p) = (abdominal.as_slice(), paravertebral.as_slice());
    assert_eq!(a.len(), p.len(), "annotations must share a grid");
    let (labels, weights): (Vec<u16>, Vec<u8>) = a
        .par_iter()
        .zip(p.par_iter())
        .map(|(&a, &p)| combine(a, p))
        .unzip();
    let g = abdominal.geometry().clone();
    (
        Volume::from_vec(g.clone(), labels).expect("same grid"),
        Mask::from_bytes(g, &weights).expect("same grid"),
    )
}

/// What [`simulate_sparse`] needs, already checked (see `SimulateSparseAnnotation`).
#[derive(Clone, Debug, PartialEq)]
pub struct SparseOptions {
    /// Label values that make up the structure.
    pub labels: Vec<u16>,
    /// Annotate every Nth slice holding the structure (>= 1).
    pub slices_every: usize,
    /// Inclusive z range that may be annotated, within the grid.
    pub slice_range: (usize, usize),
    /// Width of the background band around the structure, mm (> 0).
    pub background_band_mm: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// No erosion of the foreground, no gap before the background.
    pub paint_to_edges: bool,
}

/// Least and greatest fraction of a slice's background band left unannotated.
pub const DROPOUT_FRACTION: (f64, f64) = (0.10, 0.30);

/// The annotated slices: every `every`-th of the slices in `range` (inclusive) where
/// `present` is true, starting at a random offset in `0..every` drawn from `rng`. When
/// the offset is past the last such slice it wraps around, so a structure on fewer
/// than `every` slices still gets one annotated slice.
pub fn annotated_slices(
    present: &[bool],
    every: usize,
    range: (usize, usize),
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let every = every.max(1);
    let candidates: Vec<usize> = (range.0..=range.1.min(present.len().saturating_sub(1)))
        .filter(|&z| present.get(z).copied().unwrap_or(false))
        .collect();
    let mut offset = rng.random_range(0..every);
    if candidates.is_empty() {
        return Vec::new();
    }
    if offset >= candidates.len() {
        offset %= candidates.len();
    }
    candidates.into_iter().skip(offset).step_by(every).collect()
}

/// The random generator of slice `z` (stream `z + 1` of the seed; stream 0 picks the
/// slices), so a slice's strokes do not depend on which other slices are annotated or
/// on the order threads run in.
fn slice_rng(seed: u64, z: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(z as u64 + 1);
    rng
}

/// A simulated sparse SPLAT annotation (0 unannotated, 1 background, 2 foreground) of
/// the voxels of `labels` carrying one of `opts.labels`. See `SimulateSparseAnnotation`
/// for the model; slices are annotated in parallel.
pub fn simulate_sparse(labels: &Labels, opts: &SparseOptions) -> Labels {
    let [nx, ny, nz] = labels.dims();
    let plane = nx * ny;
    let mut selected = vec![false; u16::MAX as usize + 1];
    for &l in &opts.labels {
        selected[l as usize] = true;
    }
    let src = labels.as_slice();
    let mut out = vec![UNANNOTATED; src.len()];
    if plane == 0 || nz == 0 {
        return Volume::from_vec(labels.geometry().clone(), out).expect("same grid");
    }
    let present: Vec<bool> = src
        .par_chunks(plane)
        .map(|s| s.iter().any(|&v| selected[v as usize]))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let slices = annotated_slices(&present, opts.slices_every, opts.slice_range, &mut rng);
    let spacing = labels.geometry().spacing;
    out.par_chunks_mut(plane)
        .zip(src.par_chunks(plane))
        .enumerate()
        .filter(|(z, _)| slices.binary_search(z).is_ok())
        .for_each(|(z, (o, s))| {
            let structure: Vec<bool> = s.iter().map(|&v| selected[v as usize]).collect();
            let mut rng = slice_rng(opts.seed, z);
            annotate_slice(
                &structure,
                [nx, ny],
                [spacing[0], spacing[1]],
                opts.background_band_mm,
                opts.paint_to_edges,
                &mut rng,
                o,
            );
        });
    Volume::from_vec(labels.geometry().clone(), out).expect("same grid")
}

/// Annotate one axial slice of `dims` voxels (x fastest) with in-plane `spacing` (mm):
/// writes 2 (foreground), 1 (background) or leaves 0 in `out`.
///
/// - Foreground: structure voxels whose four in-plane neighbours are all structure (an
///   erosion by a 3x3 cross; voxels beyond the slice edge count as not structure).
/// - Background: voxels outside the structure, not touching it (none of their eight
///   in-plane neighbours is structure: a one-voxel gap along the boundary), whose
///   centre lies within `band_mm` of the nearest structure voxel centre (Euclidean,
///   in-plane, exact), less 10-30% of that band removed in random disks.
/// - With `to_edges`: foreground is every structure voxel and background includes the
///   voxels touching the structure.
pub fn annotate_slice(
    structure: &[bool],
    dims: [usize; 2],
    spacing: [f64; 2],
    band_mm: f64,
    to_edges: bool,
    rng: &mut ChaCha8Rng,
    out: &mut [u16],
) {
    let [nx, ny] = dims;
    assert_eq!(structure.len(), nx * ny);
    assert_eq!(out.len(), nx * ny);
    let at = |x: isize, y: isize| -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < nx
            && (y as usize) < ny
            && structure[x as usize + nx * y as usize]
    };
    // Bounding box of the structure, grown by the band, limits the distance queries.
    let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
    for y in 0..ny {
        for x in 0..nx {
            if structure[x + nx * y] {
                lo = [lo[0].min(x), lo[1].min(y)];
                hi = [hi[0].max(x), hi[1].max(y)];
            }
        }
    }
    if lo[0] == usize::MAX {
        return;
    }
    let reach = [0, 1].map(|a| (band_mm / spacing[a]).floor() as usize + 1);
    let qlo = [0, 1].map(|a| lo[a].saturating_sub(reach[a]));
    let qhi = [
        hi[0].saturating_add(reach[0]).min(nx - 1),
        hi[1].saturating_add(reach[1]).min(ny - 1),
    ];

    // Codes: 1 structure, 2 candidate background (outside, not touching, near the box).
    let mut codes = vec![0u8; nx * ny];
    for y in 0..ny {
        for x in 0..nx {
            let i = x + nx * y;
            let (xi, yi) = (x as isize, y as isize);
            if structure[i] {
                codes[i] = 1;
                if to_edges
                    || (at(xi - 1, yi) && at(xi + 1, yi) && at(xi, yi - 1) && at(xi, yi + 1))
                {
                    out[i] = FOREGROUND;
                }
                continue;
            }
            if x < qlo[0] || x > qhi[0] || y < qlo[1] || y > qhi[1] {
                continue;
            }
            let touches = !to_edges && (-1..=1).any(|dy| (-1..=1).any(|dx| at(xi + dx, yi + dy)));
            if !touches {
                codes[i] = 2;
            }
        }
    }
    let band2 = band_mm * band_mm;
    // Most queries of a large structure's box lie far from it (inside the abdomen), where
    // the local search gives up: the separable transform is cheaper for whole slices.
    let parts = edt::sample_sq_edt_with(
        edt::EdtMethod::Separable,
        &codes,
        [nx, ny, 1],
        [spacing[0], spacing[1], 1.0],
        1,
        |c| c == 2,
        Vec::new,
        |acc: &mut Vec<usize>, i, _, d2| {
            if d2 <= band2 {
                acc.push(i);
            }
        },
    );
    let mut band: Vec<usize> = parts.into_iter().flatten().collect();
    band.sort_unstable();
    if band.is_empty() {
        return;
    }
    let mut in_band = vec![false; nx * ny];
    for &i in &band {
        in_band[i] = true;
    }
    drop_blobs(&band, &mut in_band, dims, spacing, band_mm, rng);
    for &i in &band {
        if in_band[i] {
            out[i] = BACKGROUND;
        }
    }
}

/// Clear random disks of the band (`in_band`, listed in `band`) until a random fraction
/// in [`DROPOUT_FRACTION`] of it is cleared, never more than the upper bound: gaps
/// between strokes, as an annotator painting around a structure leaves.
fn drop_blobs(
    band: &[usize],
    in_band: &mut [bool],
    dims: [usize; 2],
    spacing: [f64; 2],
    band_mm: f64,
    rng: &mut ChaCha8Rng,
) {
    let [nx, ny] = dims;
    let total = band.len();
    let target =
        (rng.random_range(DROPOUT_FRACTION.0..DROPOUT_FRACTION.1) * total as f64).round() as usize;
    let cap = (DROPOUT_FRACTION.1 * total as f64).floor() as usize;
    let mut dropped = 0usize;
    let mut hit: Vec<usize> = Vec::new();
    for _ in 0..200 {
        if dropped >= target {
            break;
        }
        let c = band[rng.random_range(0..total)];
        let (cx, cy) = (c % nx, c / nx);
        let mut r = band_mm * rng.random_range(0.5..1.5);
        // Shrink a disk that would clear too much (small structures, thin bands).
        for _ in 0..6 {
            hit.clear();
            let rx = (r / spacing[0]).floor() as usize;
            let ry = (r / spacing[1]).floor() as usize;
            for y in cy.saturating_sub(ry)..=(cy + ry).min(ny - 1) {
                for x in cx.saturating_sub(rx)..=(cx + rx).min(nx - 1) {
                    let i = x + nx * y;
                    if !in_band[i] {
                        continue;
                    }
                    let dx = (x as f64 - cx as f64) * spacing[0];
                    let dy = (y as f64 - cy as f64) * spacing[1];
                    if dx * dx + dy * dy <= r * r {
                        hit.push(i);
                    }
                }
            }
            if dropped + hit.len() <= cap {
                break;
            }
            hit.clear();
            r *= 0.5;
        }
        for &i in &hit {
            in_band[i] = false;
        }
        dropped += hit.len();
    }
}
