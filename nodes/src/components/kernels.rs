//! Connected-component labelling by runs (the `runs` implementation) and what the
//! component nodes do with the result.
//!
//! Why runs: a CT mask row holds few runs of foreground, so labelling runs instead of
//! voxels makes union-find work proportional to the number of runs, and finding runs
//! in a bit-packed row skips 64 voxels per step. Rows are split into runs per slice in
//! parallel; in-slice unions are per slice too, so `per_slice`
//! labelling is fully parallel; 3D labelling then joins neighbouring slices in one
//! sequential pass over the runs.
//!
//! Numbering: component ids are 1..=n in scan order of each component's first voxel,
//! x fastest, then y, then z (as `scipy.ndimage.label` on the array viewed `[z, y, x]`).
//! Per-slice components of slice z therefore come before those of slice z+1.

use std::ops::Range;

use rayon::prelude::*;
use voxflow_engine::mask::{pack_row_with, set_bit_range};
use voxflow_engine::{node_impls, Geometry, Labels, Mask};

use super::connectivity::Connectivity;
use super::flood;
use crate::shared::buffer::{zeroed, Zero};

/// More components than a label map (u16 ids) can number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} components found, but a label map holds at most 65535; remove small components \
     first (RemoveSmallComponents) or label per slice"
)]
pub struct TooManyComponents(pub usize);

/// A run of foreground voxels `x0..x1` in one row, and its component id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First voxel.
    pub x0: u32,
    /// One past the last voxel.
    pub x1: u32,
    /// Component id (1-based).
    pub label: u32,
}

/// How the components are stored.
#[derive(Clone, Debug)]
enum Repr {
    /// Runs of every row; row `(y, z)` holds `runs[row_start[r]..row_start[r + 1]]`
    /// with `r = y + ny * z`.
    Runs {
        row_start: Vec<usize>,
        runs: Vec<Run>,
    },
    /// One id per voxel (0 = background), x fastest.
    Voxels(Vec<u32>),
}

/// The connected components of a mask.
#[derive(Clone, Debug)]
pub struct Components {
    dims: [usize; 3],
    count: usize,
    sizes: Vec<u64>,
    slice_first: Option<Vec<u32>>,
    repr: Repr,
}

node_impls! {
    /// Which labelling algorithm to use: the implementations of the component node types.
    pub enum Method {
        /// Runs of foreground per row (found 64 voxels at a time in bit-packed rows) joined
        /// by union-find; slices in parallel, 3D joins in one pass over the runs.
        Runs = "runs",
        /// Reference: breadth-first flood fill voxel by voxel. Slow; for checking.
        Flood = "flood",
    }
}

impl Components {
    /// Components stored as one id per voxel (for the flood fill).
    pub(crate) fn from_voxels(
        dims: [usize; 3],
        ids: Vec<u32>,
        sizes: Vec<u64>,
        slice_first: Option<Vec<u32>>,
    ) -> Self {
        Components {
            dims,
            count: sizes.len() - 1,
            sizes,
            slice_first,
            repr: Repr::Voxels(ids),
        }
    }

    /// Number of components.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Voxel count of each component, indexed by id (`sizes()[0]` is 0).
    pub fn sizes(&self) -> &[u64] {
        &self.sizes
    }

    /// The ids of the components in slice `z`, when labelled per slice.
    pub fn slice_ids(&self, z: usize) -> Option<Range<u32>> {
        self.slice_first.as_ref().map(|f| f[z] + 1..f[z + 1] + 1)
    }

    /// Paint `value(id)` into every voxel of every component (zero elsewhere).
    fn paint<T: Zero + PartialEq>(&self, value: impl Fn(u32) -> T + Sync) -> Vec<T> {
        let [nx, ny, nz] = self.dims;
        let mut out = zeroed::<T>(nx * ny * nz);
        if out.is_empty() {
            return out;
        }
        match &self.repr {
            Repr::Runs { row_start, runs } => {
                out.par_chunks_mut(nx * ny)
                    .enumerate()
                    .for_each(|(z, slice)| {
                        for y in 0..ny {
                            let r = y + ny * z;
                            for run in &runs[row_start[r]..row_start[r + 1]] {
                                let v = value(run.label);
                                if v != T::ZERO {
                                    slice[y * nx + run.x0 as usize..y * nx + run.x1 as usize]
                                        .fill(v);
                                }
                            }
                        }
                    });
            }
            Repr::Voxels(ids) => {
                out.par_chunks_mut(1 << 16)
                    .zip(ids.par_chunks(1 << 16))
                    .for_each(|(o, ids)| {
                        for (o, &id) in o.iter_mut().zip(ids) {
                            if id != 0 {
                                *o = value(id);
                            }
                        }
                    });
            }
        }
        out
    }

    /// The label map (ids 1..=n); an error when there are more than 65535 components.
    pub fn to_labels(&self, geometry: &Geometry) -> Result<Labels, TooManyComponents> {
        if self.count > u16::MAX as usize {
            return Err(TooManyComponents(self.count));
        }
        Ok(Labels::from_vec(geometry.clone(), self.paint(|id| id as u16)).expect("same grid"))
    }

    /// The mask of the components with `keep[id]` true.
    pub fn select(&self, keep: &[bool], geometry: &Geometry) -> Mask {
        let [nx, ny, _] = self.dims;
        match &self.repr {
            Repr::Runs { row_start, runs } => Mask::from_rows(geometry.clone(), |y, z, row| {
                let r = y + ny * z;
                for run in &runs[row_start[r]..row_start[r + 1]] {
                    if keep[run.label as usize] {
                        set_bit_range(row, run.x0 as usize, run.x1 as usize);
                    }
                }
            }),
            Repr::Voxels(ids) => Mask::from_rows(geometry.clone(), |y, z, row| {
                let base = nx * (y + ny * z);
                pack_row_with(nx, row, |x| keep[ids[base + x] as usize]);
            }),
        }
    }
}

/// Label with the chosen method.
pub fn label(mask: &Mask, conn: Connectivity, method: Method) -> Components {
    match method {
        Method::Runs => label_runs(mask, conn),
        Method::Flood => flood::label_flood(mask, conn),
    }
}

/// Voxel volume in ml exactly as `sarcopenia_ref` computes it:
/// `float(np.prod(spacing)) / 1000.0` with nibabel's spacing, which is float32.
///
/// Why: removal compares `count * voxel_ml >= min_ml`, and for common grids a threshold
/// can fall exactly on a voxel count (0.2 ml is 125 voxels of 0.8 x 0.8 x 2.5 mm), where
/// the last bit of `voxel_ml` decides. When every spacing is exactly an f32 value (as
/// when it comes from a NIfTI header), the product is taken in f32 left to right like
/// numpy's float32 `prod`; otherwise in f64 (`sx * sy * sz`, numpy on python floats).
pub fn voxel_volume_ml(spacing: [f64; 3]) -> f64 {
    let from_f32 = spacing.iter().all(|&s| (s as f32) as f64 == s);
    if from_f32 {
        (spacing[0] as f32 * spacing[1] as f32 * spacing[2] as f32) as f64 / 1000.0
    } else {
        spacing[0] * spacing[1] * spacing[2] / 1000.0
    }
}

/// Keep the components whose volume, `voxel count * voxel volume in ml`, is at least
/// `min_ml` (removing those strictly below), with the formula of
/// `sarcopenia_ref.remove_small_per_slice`: `sizes * voxel_ml >= min_ml` in f64, with
/// `voxel_ml` from [`voxel_volume_ml`].
pub fn remove_small(mask: &Mask, conn: Connectivity, min_ml: f64, method: Method) -> Mask {
    let c = label(mask, conn, method);
    let voxel_ml = voxel_volume_ml(mask.geometry().spacing);
    let keep: Vec<bool> = c
        .sizes()
        .iter()
        .enumerate()
        .map(|(id, &n)| id > 0 && n as f64 * voxel_ml >= min_ml)
        .collect();
    c.select(&keep, mask.geometry())
}

/// Keep the `n` largest components (per slice when `conn` is in-plane); on equal sizes
/// the component first in scan order wins.
pub fn keep_largest(mask: &Mask, conn: Connectivity, n: usize, method: Method) -> Mask {
    let c = label(mask, conn, method);
    let mut keep = vec![false; c.count() + 1];
    let mut pick = |ids: Range<u32>| {
        let mut ids: Vec<u32> = ids.collect();
        ids.sort_by(|&a, &b| {
            c.sizes()[b as usize]
                .cmp(&c.sizes()[a as usize])
                .then(a.cmp(&b))
        });
        for &id in ids.iter().take(n) {
            keep[id as usize] = true;
        }
    };
    if conn.per_slice() {
        for z in 0..mask.dims()[2] {
            pick(c.slice_ids(z).expect("labelled per slice"));
        }
    } else {
        pick(1..c.count() as u32 + 1);
    }
    c.select(&keep, mask.geometry())
}

fn find(p: &mut [u32], mut i: u32) -> u32 {
    while p[i as usize] != i {
        let g = p[p[i as usize] as usize];
        p[i as usize] = g;
        i = g;
    }
    i
}

fn union(p: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(p, a), find(p, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        p[hi as usize] = lo;
    }
}

/// Union the runs of two rows that touch, the rows being the runs `a` and `b` of
/// `runs` (their indices are the union-find's): `[a0, a1)` and `[b0, b1)` are connected
/// when `a0 < b1 + e && b0 < a1 + e` (`e = 1` lets diagonal neighbours along x connect).
fn merge_rows(runs: &[Run], a: Range<usize>, b: Range<usize>, e: u32, p: &mut [u32]) {
    let (a_base, b_base) = (a.start, b.start);
    let (a, b) = (&runs[a], &runs[b]);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ra, rb) = (a[i], b[j]);
        if ra.x1 + e <= rb.x0 {
            i += 1;
        } else if rb.x1 + e <= ra.x0 {
            j += 1;
        } else {
            union(p, (a_base + i) as u32, (b_base + j) as u32);
            if ra.x1 < rb.x1 {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
}

/// Give each union-find set of `runs` an id, in scan order of its first run, as the
/// label of its runs, and append the sets' voxel counts to `sizes` (index = id).
fn label_by_root(runs: &mut [Run], parent: &mut [u32], sizes: &mut Vec<u64>) {
    let mut id_of_root = vec![0u32; runs.len()];
    for (i, run) in runs.iter_mut().enumerate() {
        let r = find(parent, i as u32) as usize;
        if id_of_root[r] == 0 {
            sizes.push(0);
            id_of_root[r] = (sizes.len() - 1) as u32;
        }
        let id = id_of_root[r];
        run.label = id;
        sizes[id as usize] += (run.x1 - run.x0) as u64;
    }
}

/// Append the runs of one packed row of `nx` voxels.
fn row_runs(words: &[u64], nx: usize, out: &mut Vec<Run>) {
    let mut start: Option<usize> = None;
    for (wi, &w) in words.iter().enumerate() {
        let base = wi * 64;
        let mut bit = 0u32;
        while bit < 64 {
            match start {
                None => {
                    let rest = w >> bit;
                    if rest == 0 {
                        break;
                    }
                    bit += rest.trailing_zeros();
                    start = Some(base + bit as usize);
                }
                Some(s) => {
                    let rest = !w >> bit;
                    if rest == 0 {
                        break;
                    }
                    bit += rest.trailing_zeros();
                    out.push(Run {
                        x0: s as u32,
                        x1: (base + bit as usize) as u32,
                        label: 0,
                    });
                    start = None;
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(Run {
            x0: s as u32,
            x1: nx as u32,
            label: 0,
        });
    }
}

/// The runs of one slice with in-slice unions done, and per-slice ids when asked.
struct SliceRuns {
    row_start: Vec<usize>,
    runs: Vec<Run>,
    parent: Vec<u32>,
    sizes: Vec<u64>,
}

fn slice_runs(mask: &Mask, z: usize, e: u32, label_now: bool) -> SliceRuns {
    let [nx, ny, _] = mask.dims();
    let mut runs = Vec::new();
    let mut row_start = Vec::with_capacity(ny + 1);
    row_start.push(0);
    for y in 0..ny {
        row_runs(mask.row(y, z), nx, &mut runs);
        row_start.push(runs.len());
    }
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    for y in 1..ny {
        let (a, b) = (
            row_start[y - 1]..row_start[y],
            row_start[y]..row_start[y + 1],
        );
        merge_rows(&runs, a, b, e, &mut parent);
    }
    let mut sizes = vec![0u64];
    if label_now {
        label_by_root(&mut runs, &mut parent, &mut sizes);
    }
    SliceRuns {
        row_start,
        runs,
        parent,
        sizes,
    }
}

/// Label the components of `mask` by runs and union-find (see the module docs).
pub fn label_runs(mask: &Mask, conn: Connectivity) -> Components {
    let [nx, ny, nz] = mask.dims();
    let per_slice = conn.per_slice();
    if nx * ny * nz == 0 {
        let slice_first = per_slice.then(|| vec![0; nz + 1]);
        return Components {
            dims: [nx, ny, nz],
            count: 0,
            sizes: vec![0],
            slice_first,
            repr: Repr::Voxels(vec![]),
        };
    }
    let e_plane = (conn != Connectivity::Plane4 && conn != Connectivity::Face6) as u32;
    let slices: Vec<SliceRuns> = (0..nz)
        .into_par_iter()
        .map(|z| slice_runs(mask, z, e_plane, per_slice))
        .collect();

    // Concatenate: global run index = slice base + local index.
    let total: usize = slices.iter().map(|s| s.runs.len()).sum();
    let mut runs = Vec::with_capacity(total);
    let mut row_start = Vec::with_capacity(ny * nz + 1);
    let mut parent: Vec<u32> = Vec::with_capacity(if per_slice { 0 } else { total });
    let mut sizes = vec![0u64];
    let mut slice_first = Vec::with_capacity(nz + 1);
    for s in &slices {
        let base = runs.len();
        let id_base = (sizes.len() - 1) as u32;
        slice_first.push(id_base);
        row_start.extend(s.row_start[..ny].iter().map(|r| r + base));
        if per_slice {
            runs.extend(s.runs.iter().map(|r| Run {
                label: r.label + id_base,
                ..*r
            }));
            sizes.extend_from_slice(&s.sizes[1..]);
        } else {
            runs.extend_from_slice(&s.runs);
            parent.extend(s.parent.iter().map(|&p| p + base as u32));
        }
    }
    row_start.push(runs.len());
    slice_first.push((sizes.len() - 1) as u32);
    drop(slices);

    if !per_slice {
        // Join each row with its neighbours in the previous slice.
        let (e_same, e_diag) = match conn {
            Connectivity::Face6 => (0, None),
            Connectivity::Edge18 => (1, Some(0)),
            _ => (1, Some(1)),
        };
        let row = |y: usize, z: usize| row_start[y + ny * z]..row_start[y + ny * z + 1];
        for z in 1..nz {
            for y in 0..ny {
                let cur = row(y, z);
                if cur.is_empty() {
                    continue;
                }
                let mut join = |prev: Range<usize>, e: u32| {
                    merge_rows(&runs, prev, cur.clone(), e, &mut parent)
                };
                join(row(y, z - 1), e_same);
                if let Some(e) = e_diag {
                    if y > 0 {
                        join(row(y - 1, z - 1), e);
                    }
                    if y + 1 < ny {
                        join(row(y + 1, z - 1), e);
                    }
                }
            }
        }
        label_by_root(&mut runs, &mut parent, &mut sizes);
    }
    Components {
        dims: [nx, ny, nz],
        count: sizes.len() - 1,
        sizes,
        slice_first: per_slice.then_some(slice_first),
        repr: Repr::Runs { row_start, runs },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxel_volume_like_nibabel_and_numpy() {
        // printed by python: float(np.prod(nib.load(ct.nii).header.get_zooms()[:3])) / 1000
        // for the peers.py volume (zooms 0.8, 0.8, 2.5 as float32)
        let f32_spacing = [0.8f32 as f64, 0.8f32 as f64, 2.5];
        assert_eq!(voxel_volume_ml(f32_spacing), 0.0016000001430511474);
        // python floats: np.prod([0.8, 0.8, 2.5]) / 1000 in f64
        assert_eq!(voxel_volume_ml([0.8, 0.8, 2.5]), 0.8 * 0.8 * 2.5 / 1000.0);
        assert_eq!(voxel_volume_ml([3.0, 3.0, 3.0]), 0.027);
    }

    #[test]
    fn runs_of_a_packed_row() {
        use voxflow_engine::mask::pack_row;
        let bytes: Vec<u8> = (0..150)
            .map(|x| (x < 3 || (60..130).contains(&x) || x == 149) as u8)
            .collect();
        let mut words = vec![0u64; 3];
        pack_row(&bytes, &mut words);
        let mut runs = Vec::new();
        row_runs(&words, 150, &mut runs);
        let spans: Vec<(u32, u32)> = runs.iter().map(|r| (r.x0, r.x1)).collect();
        assert_eq!(spans, [(0, 3), (60, 130), (149, 150)]);
        let full = vec![1u8; 128];
        let mut w2 = vec![0u64; 2];
        pack_row(&full, &mut w2);
        runs.clear();
        row_runs(&w2, 128, &mut runs);
        assert_eq!((runs[0].x0, runs[0].x1, runs.len()), (0, 128, 1));
    }
}
