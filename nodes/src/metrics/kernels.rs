//! Overlap and surface-distance kernels behind `CompareMasks`, public so benchmarks
//! and other nodes can call them on plain slices.
//!
//! Conventions (the same as `../shared/data/metrics_reference.json` and
//! `../shared/peers/peers.py`):
//! - The surface of a mask is the mask minus its 6-connected erosion; voxels outside
//!   the volume (or outside the restricted region) count as background.
//! - Distances are Euclidean between voxel centres, in millimetres (voxel spacing).
//! - Directed surface distances: from each surface voxel of one mask to the nearest
//!   surface voxel of the other. Hausdorff is the largest of both sets, HD95 the 95th
//!   percentile of both sets pooled (numpy's default linear interpolation), the mean
//!   surface distance (ASSD) the mean of both sets pooled.
//! - The voxel Hausdorff distance (SimpleITK's `HausdorffDistanceImageFilter`) uses all
//!   foreground voxels: the largest distance from a voxel of one mask to the nearest
//!   voxel of the other, both ways. It needs no extra transform: the nearest voxel of
//!   a mask seen from outside it is always one of its surface voxels, so the surface
//!   distance map of B sampled at the voxels of A outside B gives it.

use rayon::prelude::*;
use voxflow_engine::mask::set_bit_range;
use voxflow_engine::Mask;

use crate::shared::edt::{sample_sq_edt_with, EdtMethod};

/// Code bit: the voxel is in mask A.
pub const IN_A: u8 = 1;
/// Code bit: the voxel is in mask B.
pub const IN_B: u8 = 2;
/// Code bit: the voxel is on the surface of A.
pub const SURF_A: u8 = 4;
/// Code bit: the voxel is on the surface of B.
pub const SURF_B: u8 = 8;

/// A box of voxel indices, `lo` inclusive and `hi` exclusive on each axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoxelBox {
    /// First index on x, y, z.
    pub lo: [usize; 3],
    /// One past the last index on x, y, z.
    pub hi: [usize; 3],
}

impl VoxelBox {
    /// The whole grid.
    pub fn all(dims: [usize; 3]) -> Self {
        VoxelBox {
            lo: [0; 3],
            hi: dims,
        }
    }

    /// The box holding one voxel.
    pub fn voxel(p: [usize; 3]) -> Self {
        VoxelBox {
            lo: p,
            hi: p.map(|v| v + 1),
        }
    }

    /// Size along x, y, z.
    pub fn dims(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.hi[a].saturating_sub(self.lo[a]))
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.dims().iter().product()
    }

    /// True when the box holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &VoxelBox) -> VoxelBox {
        VoxelBox {
            lo: std::array::from_fn(|a| self.lo[a].min(other.lo[a])),
            hi: std::array::from_fn(|a| self.hi[a].max(other.hi[a])),
        }
    }

    /// Union of two optional boxes.
    pub fn union_opt(a: Option<VoxelBox>, b: Option<VoxelBox>) -> Option<VoxelBox> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.union(&b)),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

/// A voxel type that can be read as a label: masks read as label 1 wherever non-zero.
pub trait LabelVoxel: Copy + Send + Sync {
    /// The label of this voxel (0 = background).
    fn label(self) -> u16;
}

impl LabelVoxel for u8 {
    #[inline]
    fn label(self) -> u16 {
        u16::from(self != 0)
    }
}

impl LabelVoxel for u16 {
    #[inline]
    fn label(self) -> u16 {
        self
    }
}

/// Voxel counts and extents of one compared pair (one table row).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overlap {
    /// Voxels in A.
    pub voxels_a: u64,
    /// Voxels in B.
    pub voxels_b: u64,
    /// Voxels in both.
    pub intersection: u64,
    /// Bounding box of A, when not empty.
    pub bbox_a: Option<VoxelBox>,
    /// Bounding box of B, when not empty.
    pub bbox_b: Option<VoxelBox>,
}

impl Overlap {
    fn merge(mut self, o: &Overlap) -> Overlap {
        self.voxels_a += o.voxels_a;
        self.voxels_b += o.voxels_b;
        self.intersection += o.intersection;
        self.bbox_a = VoxelBox::union_opt(self.bbox_a, o.bbox_a);
        self.bbox_b = VoxelBox::union_opt(self.bbox_b, o.bbox_b);
        self
    }

    /// Dice coefficient `2|A∩B| / (|A| + |B|)`; 1 when both are empty.
    pub fn dice(&self) -> f64 {
        let s = self.voxels_a + self.voxels_b;
        if s == 0 {
            1.0
        } else {
            2.0 * self.intersection as f64 / s as f64
        }
    }

    /// Jaccard index `|A∩B| / |A∪B|`; 1 when both are empty.
    pub fn jaccard(&self) -> f64 {
        let u = self.voxels_a + self.voxels_b - self.intersection;
        if u == 0 {
            1.0
        } else {
            self.intersection as f64 / u as f64
        }
    }
}

fn include(b: &mut Option<VoxelBox>, lo: [usize; 3], hi: [usize; 3]) {
    let nb = VoxelBox { lo, hi };
    *b = Some(match b {
        Some(o) => o.union(&nb),
        None => nb,
    });
}

/// Counts and bounding boxes of two masks inside `region`, slices in parallel. The
/// masks are bit-packed, so each row is three popcounts per word (region edges cut by a
/// per-word x mask); extents come from ORs of the rows (y) and of the words of each
/// column of the slice (x), without per-voxel work.
pub fn binary_overlap(a: &Mask, b: &Mask, region: &VoxelBox) -> Overlap {
    assert_eq!(a.dims(), b.dims(), "binary_overlap: grids differ");
    if region.is_empty() {
        return Overlap::default();
    }
    // Which bits of each word of a row lie in x0..x1.
    let mut xmask = vec![0u64; a.words_per_row()];
    set_bit_range(&mut xmask, region.lo[0], region.hi[0]);
    let popcnt = popcnt_available();
    (region.lo[2]..region.hi[2])
        .into_par_iter()
        .map(|z| {
            #[cfg(target_arch = "x86_64")]
            if popcnt {
                // SAFETY: the CPU has POPCNT (checked at run time just above).
                return unsafe { overlap_slice_popcnt(a, b, z, region, &xmask) };
            }
            overlap_slice(a, b, z, region, &xmask)
        })
        .reduce(Overlap::default, |x, y| x.merge(&y))
}

/// Whether the CPU counts bits in one instruction. Why ask at run time: the default
/// x86-64 target predates POPCNT, and without it `count_ones` is a dozen instructions,
/// which is most of the cost of a Dice on packed masks.
fn popcnt_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`overlap_slice`] compiled with POPCNT.
///
/// # Safety
/// The CPU must support POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn overlap_slice_popcnt(
    a: &Mask,
    b: &Mask,
    z: usize,
    region: &VoxelBox,
    xmask: &[u64],
) -> Overlap {
    overlap_slice(a, b, z, region, xmask)
}

/// Counts and extents of slice `z` of `region` (see [`binary_overlap`]).
#[inline(always)]
fn overlap_slice(a: &Mask, b: &Mask, z: usize, region: &VoxelBox, xmask: &[u64]) -> Overlap {
    let (w0, w1) = (region.lo[0] / 64, region.hi[0].div_ceil(64));
    let mut o = Overlap::default();
    // Per mask: OR of each word column over the rows, and the first and last row set.
    let mut cols = [vec![0u64; w1 - w0], vec![0u64; w1 - w0]];
    let mut rows = [(usize::MAX, 0usize); 2];
    let (mut na, mut nb, mut nab) = (0u64, 0u64, 0u64);
    for y in region.lo[1]..region.hi[1] {
        let (ra, rb) = (&a.row(y, z)[w0..w1], &b.row(y, z)[w0..w1]);
        let (mut any_a, mut any_b) = (0u64, 0u64);
        for (k, ((&wa, &wb), &m)) in ra.iter().zip(rb).zip(&xmask[w0..w1]).enumerate() {
            let (va, vb) = (wa & m, wb & m);
            na += u64::from(va.count_ones());
            nb += u64::from(vb.count_ones());
            nab += u64::from((va & vb).count_ones());
            cols[0][k] |= va;
            cols[1][k] |= vb;
            any_a |= va;
            any_b |= vb;
        }
        for (r, any) in rows.iter_mut().zip([any_a, any_b]) {
            if any != 0 {
                r.0 = r.0.min(y);
                r.1 = y;
            }
        }
    }
    (o.voxels_a, o.voxels_b, o.intersection) = (na, nb, nab);
    for ((c, r), bbox) in cols.iter().zip(rows).zip([&mut o.bbox_a, &mut o.bbox_b]) {
        let first = c.iter().position(|&w| w != 0);
        let last = c.iter().rposition(|&w| w != 0);
        if let (Some(f), Some(l)) = (first, last) {
            let xmin = (w0 + f) * 64 + c[f].trailing_zeros() as usize;
            let xmax = (w0 + l) * 64 + 63 - c[l].leading_zeros() as usize;
            include(bbox, [xmin, r.0, z], [xmax + 1, r.1 + 1, z + 1]);
        }
    }
    o
}

/// Lookup table value meaning "this label is not compared".
pub const NO_ROW: u32 = u32::MAX;

/// Counts and bounding boxes for many label pairs at once inside `region`: voxel `i`
/// belongs to row `row_of_a[a[i].label()]` on the A side and to row
/// `row_of_b[b[i].label()]` on the B side ([`NO_ROW`] when not compared). Both tables
/// have 65536 entries. Returns one [`Overlap`] per row.
pub fn label_overlap<TA: LabelVoxel, TB: LabelVoxel>(
    a: &[TA],
    b: &[TB],
    dims: [usize; 3],
    region: &VoxelBox,
    row_of_a: &[u32],
    row_of_b: &[u32],
    rows: usize,
) -> Vec<Overlap> {
    let [nx, ny, _] = dims;
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), dims.iter().product::<usize>());
    assert!(row_of_a.len() > u16::MAX as usize && row_of_b.len() > u16::MAX as usize);
    let [x0, y0, z0] = region.lo;
    let [x1, y1, z1] = region.hi;
    if region.is_empty() {
        return vec![Overlap::default(); rows];
    }
    (z0..z1)
        .into_par_iter()
        .map(|z| {
            let mut out = vec![Overlap::default(); rows];
            // Per-slice extents as (xmin, xmax, ymin, ymax), cheaper than boxes.
            let mut ext_a = vec![(usize::MAX, 0usize, usize::MAX, 0usize); rows];
            let mut ext_b = ext_a.clone();
            for y in y0..y1 {
                let start = nx * (y + ny * z);
                for x in x0..x1 {
                    let ra = row_of_a[a[start + x].label() as usize];
                    let rb = row_of_b[b[start + x].label() as usize];
                    if ra != NO_ROW {
                        let r = ra as usize;
                        out[r].voxels_a += 1;
                        let e = &mut ext_a[r];
                        *e = (e.0.min(x), e.1.max(x), e.2.min(y), e.3.max(y));
                        if ra == rb {
                            out[r].intersection += 1;
                        }
                    }
                    if rb != NO_ROW {
                        let r = rb as usize;
                        out[r].voxels_b += 1;
                        let e = &mut ext_b[r];
                        *e = (e.0.min(x), e.1.max(x), e.2.min(y), e.3.max(y));
                    }
                }
            }
            for (r, o) in out.iter_mut().enumerate() {
                for (e, bbox) in [(ext_a[r], &mut o.bbox_a), (ext_b[r], &mut o.bbox_b)] {
                    if e.0 != usize::MAX {
                        include(bbox, [e.0, e.2, z], [e.1 + 1, e.3 + 1, z + 1]);
                    }
                }
            }
            out
        })
        .reduce(
            || vec![Overlap::default(); rows],
            |x, y| x.iter().zip(&y).map(|(p, q)| p.merge(q)).collect(),
        )
}

/// Bounding box of the voxels inside `region` whose label satisfies `keep`; `None`
/// when there is none.
pub fn label_extent<T: LabelVoxel, K: Fn(u16) -> bool + Sync>(
    v: &[T],
    dims: [usize; 3],
    region: &VoxelBox,
    keep: K,
) -> Option<VoxelBox> {
    let [nx, ny, _] = dims;
    let [x0, y0, z0] = region.lo;
    let [x1, y1, z1] = region.hi;
    if region.is_empty() {
        return None;
    }
    (z0..z1)
        .into_par_iter()
        .map(|z| {
            let mut bbox = None;
            for y in y0..y1 {
                let start = nx * (y + ny * z);
                let row = &v[start + x0..start + x1];
                if let Some(first) = row.iter().position(|&l| keep(l.label())) {
                    let last = row.iter().rposition(|&l| keep(l.label())).unwrap_or(first);
                    include(&mut bbox, [x0 + first, y, z], [x0 + last + 1, y + 1, z + 1]);
                }
            }
            bbox
        })
        .reduce(|| None, VoxelBox::union_opt)
}

/// The non-zero labels present inside `region`, ascending.
pub fn labels_present<T: LabelVoxel>(v: &[T], dims: [usize; 3], region: &VoxelBox) -> Vec<u16> {
    let [nx, ny, _] = dims;
    let [x0, y0, z0] = region.lo;
    let [x1, y1, z1] = region.hi;
    if region.is_empty() {
        return Vec::new();
    }
    let seen = (z0..z1)
        .into_par_iter()
        .fold(
            || vec![false; 1 << 16],
            |mut seen, z| {
                for y in y0..y1 {
                    let start = nx * (y + ny * z);
                    for &l in &v[start + x0..start + x1] {
                        seen[l.label() as usize] = true;
                    }
                }
                seen
            },
        )
        .reduce(
            || vec![false; 1 << 16],
            |mut x, y| {
                x.iter_mut().zip(&y).for_each(|(p, &q)| *p |= q);
                x
            },
        );
    (1..=u16::MAX).filter(|&l| seen[l as usize]).collect()
}

/// Codes ([`IN_A`] | [`IN_B`]) of the voxels of `bbox`, x fastest: `IN_A` where
/// `a` has label `label_a`, `IN_B` where `b` has label `label_b`.
pub fn pair_codes<TA: LabelVoxel, TB: LabelVoxel>(
    a: &[TA],
    b: &[TB],
    dims: [usize; 3],
    bbox: &VoxelBox,
    label_a: u16,
    label_b: u16,
) -> Vec<u8> {
    let [nx, ny, _] = dims;
    box_codes(bbox, |y, z, row| {
        let start = nx * (y + ny * z) + bbox.lo[0];
        let ra = &a[start..start + row.len()];
        let rb = &b[start..start + row.len()];
        for ((c, &va), &vb) in row.iter_mut().zip(ra).zip(rb) {
            *c = u8::from(va.label() == label_a) | (u8::from(vb.label() == label_b) << 1);
        }
    })
}

/// One code byte per voxel of `bbox` (x fastest), each row `(y, z)` of the box filled
/// by `fill_row`; slices in parallel.
fn box_codes(bbox: &VoxelBox, fill_row: impl Fn(usize, usize, &mut [u8]) + Sync) -> Vec<u8> {
    let [bx, by, _] = bbox.dims();
    let mut codes = vec![0u8; bbox.len()];
    if codes.is_empty() {
        return codes;
    }
    codes
        .par_chunks_mut(bx * by)
        .enumerate()
        .for_each(|(k, slice)| {
            for (j, row) in slice.chunks_mut(bx).enumerate() {
                fill_row(bbox.lo[1] + j, bbox.lo[2] + k, row);
            }
        });
    codes
}

/// Add the surface bits ([`SURF_A`], [`SURF_B`]) to codes holding `IN_A`/`IN_B`: a
/// voxel of a mask is on its surface when one of its 6 face neighbours is not in the
/// mask or lies outside the box.
pub fn with_surfaces(codes: &[u8], dims: [usize; 3]) -> Vec<u8> {
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    let mut out = vec![0u8; codes.len()];
    if codes.is_empty() {
        return out;
    }
    let zero = vec![0u8; nx];
    out.par_chunks_mut(plane).enumerate().for_each(|(z, o)| {
        let cur = &codes[z * plane..(z + 1) * plane];
        let below = if z > 0 {
            Some(&codes[(z - 1) * plane..z * plane])
        } else {
            None
        };
        let above = if z + 1 < nz {
            Some(&codes[(z + 1) * plane..(z + 2) * plane])
        } else {
            None
        };
        for y in 0..ny {
            let r = &cur[y * nx..(y + 1) * nx];
            let up = if y > 0 {
                &cur[(y - 1) * nx..y * nx]
            } else {
                &zero[..]
            };
            let dn = if y + 1 < ny {
                &cur[(y + 1) * nx..(y + 2) * nx]
            } else {
                &zero[..]
            };
            let zb = match below {
                Some(s) => &s[y * nx..(y + 1) * nx],
                None => &zero[..],
            };
            let za = match above {
                Some(s) => &s[y * nx..(y + 1) * nx],
                None => &zero[..],
            };
            let orow = &mut o[y * nx..(y + 1) * nx];
            for x in 0..nx {
                let c = r[x];
                if c == 0 {
                    continue;
                }
                let left = if x > 0 { r[x - 1] } else { 0 };
                let right = if x + 1 < nx { r[x + 1] } else { 0 };
                let nb = left & right & up[x] & dn[x] & zb[x] & za[x];
                orow[x] = c | ((c & !nb & (IN_A | IN_B)) << 2);
            }
        }
    });
    out
}

/// Surface and voxel distances between two non-empty masks.
#[derive(Clone, Debug, PartialEq)]
pub struct SurfaceDistances {
    /// Symmetric Hausdorff distance over surface voxels (mm).
    pub hausdorff_mm: f64,
    /// 95th percentile of both directed surface distance sets pooled (mm).
    pub hd95_mm: f64,
    /// Mean of both directed surface distance sets pooled (ASSD, mm).
    pub mean_surface_distance_mm: f64,
    /// Symmetric Hausdorff distance over all foreground voxels (SimpleITK's, mm).
    pub hausdorff_voxel_mm: f64,
    /// Largest distance from the surface of A to the surface of B (mm).
    pub hausdorff_a_to_b_mm: f64,
    /// Largest distance from the surface of B to the surface of A (mm).
    pub hausdorff_b_to_a_mm: f64,
    /// Surface voxels of A.
    pub surface_voxels_a: usize,
    /// Surface voxels of B.
    pub surface_voxels_b: usize,
}

#[derive(Default)]
struct Directed {
    surface_mm: Vec<f64>,
    max_voxel_sq: f64,
}

fn directed(
    codes: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    from_a: bool,
    method: EdtMethod,
) -> Directed {
    let (own, own_surf, other, other_surf) = if from_a {
        (IN_A, SURF_A, IN_B, SURF_B)
    } else {
        (IN_B, SURF_B, IN_A, SURF_A)
    };
    // Only surface voxels and voxels outside the other mask contribute: interior
    // voxels inside the other mask are skipped, so whole rows and slices are too.
    let is_query = move |c: u8| c & own_surf != 0 || (c & own != 0 && c & other == 0);
    let parts = sample_sq_edt_with(
        method,
        codes,
        dims,
        spacing,
        other_surf,
        is_query,
        Directed::default,
        |acc: &mut Directed, _, c: u8, d2: f64| {
            if c & own_surf != 0 {
                acc.surface_mm.push(d2.sqrt());
            }
            if c & other == 0 && d2 > acc.max_voxel_sq {
                acc.max_voxel_sq = d2;
            }
        },
    );
    let n = parts.iter().map(|p| p.surface_mm.len()).sum();
    let mut out = Directed {
        surface_mm: Vec::with_capacity(n),
        max_voxel_sq: 0.0,
    };
    for p in parts {
        out.surface_mm.extend_from_slice(&p.surface_mm);
        out.max_voxel_sq = out.max_voxel_sq.max(p.max_voxel_sq);
    }
    out
}

/// Surface and voxel distances between masks A and B given as codes ([`IN_A`] |
/// [`IN_B`]) on a box that holds both; `None` when either mask is empty.
///
/// Two exact distance transforms are computed, of each mask's surface, each sampled
/// only at the other mask's surface voxels and at its voxels outside the first mask.
pub fn surface_distances(
    codes: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> Option<SurfaceDistances> {
    surface_distances_with(codes, dims, spacing, EdtMethod::Hybrid)
}

/// [`surface_distances`] with a chosen distance transform method.
pub fn surface_distances_with(
    codes: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    method: EdtMethod,
) -> Option<SurfaceDistances> {
    let codes = with_surfaces(codes, dims);
    let (ab, ba) = rayon::join(
        || directed(&codes, dims, spacing, true, method),
        || directed(&codes, dims, spacing, false, method),
    );
    if ab.surface_mm.is_empty() || ba.surface_mm.is_empty() {
        return None;
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0f64, f64::max);
    let hausdorff_a_to_b_mm = max(&ab.surface_mm);
    let hausdorff_b_to_a_mm = max(&ba.surface_mm);
    let (surface_voxels_a, surface_voxels_b) = (ab.surface_mm.len(), ba.surface_mm.len());
    let mut pooled = ab.surface_mm;
    pooled.extend_from_slice(&ba.surface_mm);
    let mean_surface_distance_mm = pooled.iter().sum::<f64>() / pooled.len() as f64;
    let hd95_mm = percentile_linear(&mut pooled, 95.0);
    Some(SurfaceDistances {
        hausdorff_mm: hausdorff_a_to_b_mm.max(hausdorff_b_to_a_mm),
        hd95_mm,
        mean_surface_distance_mm,
        hausdorff_voxel_mm: ab.max_voxel_sq.max(ba.max_voxel_sq).sqrt(),
        hausdorff_a_to_b_mm,
        hausdorff_b_to_a_mm,
        surface_voxels_a,
        surface_voxels_b,
    })
}

/// Codes ([`IN_A`] | [`IN_B`]) of the voxels of `bbox`, x fastest, from two masks.
pub fn mask_pair_codes(a: &Mask, b: &Mask, bbox: &VoxelBox) -> Vec<u8> {
    box_codes(bbox, |y, z, row| {
        let (ra, rb) = (a.row(y, z), b.row(y, z));
        for (i, c) in row.iter_mut().enumerate() {
            let x = bbox.lo[0] + i;
            let (w, s) = (x / 64, x % 64);
            *c = (((ra[w] >> s) & 1) | (((rb[w] >> s) & 1) << 1)) as u8;
        }
    })
}

/// Surface and voxel distances between two masks, computed on their union bounding
/// box; `None` when either is empty.
pub fn binary_surface_distances(a: &Mask, b: &Mask) -> Option<SurfaceDistances> {
    let dims = a.dims();
    let o = binary_overlap(a, b, &VoxelBox::all(dims));
    let bbox = o.bbox_a?.union(&o.bbox_b?);
    let codes = mask_pair_codes(a, b, &bbox);
    surface_distances(&codes, bbox.dims(), a.geometry().spacing)
}

/// The `q`-th percentile (0..=100) of `values` with linear interpolation between
/// order statistics, computed as numpy's `percentile(values, q)` does (same virtual
/// index and the same two-sided interpolation formula). Reorders `values`; NaN for
/// an empty slice.
pub fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let q = q / 100.0;
    // numpy: virtual index = n*q + (alpha + q*(1 - alpha - beta)) - 1 with alpha = beta
    // = 1, i.e. n*q + (1 - q) - 1 (1 + q*(-1) is exactly 1 - q in floating point).
    let vi = n as f64 * q + (1.0 - q) - 1.0;
    let below = vi.floor();
    let gamma = vi - below;
    let lo = (below.max(0.0) as usize).min(n - 1);
    let hi = ((below + 1.0).max(0.0) as usize).min(n - 1);
    let cmp = |x: &f64, y: &f64| x.total_cmp(y);
    let (_, &mut a, upper) = values.select_nth_unstable_by(lo, cmp);
    let b = if hi == lo {
        a
    } else {
        upper.iter().copied().fold(f64::INFINITY, f64::min)
    };
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxflow_engine::Geometry;

    fn masks(a: &[u8], b: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> (Mask, Mask) {
        let g = Geometry::new(dims, spacing);
        (
            Mask::from_bytes(g.clone(), a).unwrap(),
            Mask::from_bytes(g, b).unwrap(),
        )
    }

    /// [`binary_overlap`] on byte masks.
    fn bo(a: &[u8], b: &[u8], dims: [usize; 3], region: &VoxelBox) -> Overlap {
        let (a, b) = masks(a, b, dims, [1.0; 3]);
        binary_overlap(&a, &b, region)
    }

    /// [`binary_surface_distances`] on byte masks.
    fn bsd(a: &[u8], b: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> Option<SurfaceDistances> {
        let (a, b) = masks(a, b, dims, spacing);
        binary_surface_distances(&a, &b)
    }

    #[test]
    fn percentile_matches_numpy_examples() {
        // numpy.percentile([1, 2, 3, 4], 95) = 3.85; ([0, 10], 95) = 9.5.
        assert!((percentile_linear(&mut [4.0, 1.0, 3.0, 2.0], 95.0) - 3.85).abs() < 1e-12);
        assert!((percentile_linear(&mut [10.0, 0.0], 95.0) - 9.5).abs() < 1e-12);
        assert_eq!(percentile_linear(&mut [7.0], 95.0), 7.0);
        assert!(percentile_linear(&mut [], 95.0).is_nan());
    }

    #[test]
    fn surface_of_a_cube_is_its_shell() {
        let dims = [5, 5, 5];
        let mut codes = vec![0u8; 125];
        for z in 1..4 {
            for y in 1..4 {
                for x in 1..4 {
                    codes[x + 5 * (y + 5 * z)] = IN_A;
                }
            }
        }
        let s = with_surfaces(&codes, dims);
        let n = s.iter().filter(|&&c| c & SURF_A != 0).count();
        assert_eq!(n, 26);
        assert_eq!(s[2 + 5 * (2 + 5 * 2)], IN_A);
        // Touching the border: the border layer is surface.
        let full = with_surfaces(&[IN_B; 27], [3, 3, 3]);
        assert_eq!(full.iter().filter(|&&c| c & SURF_B != 0).count(), 26);
    }

    #[test]
    fn shifted_block_distances() {
        // A: x in 0..4, B: x in 2..6 on a 1-voxel-thick line; spacing 2 mm along x.
        let dims = [6, 1, 1];
        let a: Vec<u8> = (0..6).map(|x| u8::from(x < 4)).collect();
        let b: Vec<u8> = (0..6).map(|x| u8::from(x >= 2)).collect();
        let d = bsd(&a, &b, dims, [2.0, 1.0, 1.0]).unwrap();
        // Every voxel of a 1-voxel-thick line is surface. A→B: 4, 2, 0, 0; B→A: 0, 0, 2, 4.
        assert_eq!(d.hausdorff_mm, 4.0);
        assert_eq!(d.hausdorff_voxel_mm, 4.0);
        assert!((d.mean_surface_distance_mm - 12.0 / 8.0).abs() < 1e-12);
        let o = bo(&a, &b, dims, &VoxelBox::all(dims));
        assert_eq!((o.voxels_a, o.voxels_b, o.intersection), (4, 4, 2));
        assert_eq!(
            o.bbox_a,
            Some(VoxelBox {
                lo: [0, 0, 0],
                hi: [4, 1, 1]
            })
        );
    }

    #[test]
    fn voxel_hausdorff_sees_interior_voxels() {
        // B is a hollow shell, A fills it: the farthest A voxel from B's surface is the
        // centre, which is not on A's surface.
        let dims = [7, 7, 7];
        let mut a = vec![0u8; 343];
        let mut b = vec![0u8; 343];
        for z in 0..7 {
            for y in 0..7 {
                for x in 0..7 {
                    let i = x + 7 * (y + 7 * z);
                    a[i] = 1;
                    b[i] = u8::from(x == 0 || y == 0 || z == 0 || x == 6 || y == 6 || z == 6);
                }
            }
        }
        let d = bsd(&a, &b, dims, [1.0, 1.0, 1.0]).unwrap();
        assert_eq!(d.hausdorff_voxel_mm, 3.0);
        assert_eq!(d.hausdorff_mm, 0.0);
    }

    /// Surface metrics by brute force over all pairs of surface voxels.
    fn brute_force(a: &[u8], b: &[u8], dims: [usize; 3], sp: [f64; 3]) -> (f64, f64, f64) {
        let codes: Vec<u8> = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| u8::from(x != 0) | (u8::from(y != 0) << 1))
            .collect();
        let s = with_surfaces(&codes, dims);
        let pts = |bit: u8| -> Vec<[f64; 3]> {
            (0..s.len())
                .filter(|&i| s[i] & bit != 0)
                .map(|i| {
                    let (x, y, z) = (
                        i % dims[0],
                        (i / dims[0]) % dims[1],
                        i / (dims[0] * dims[1]),
                    );
                    [x as f64 * sp[0], y as f64 * sp[1], z as f64 * sp[2]]
                })
                .collect()
        };
        let (pa, pb) = (pts(SURF_A), pts(SURF_B));
        let nearest = |p: &[f64; 3], set: &[[f64; 3]]| {
            set.iter()
                .map(|q| (0..3).map(|k| (p[k] - q[k]).powi(2)).sum::<f64>().sqrt())
                .fold(f64::INFINITY, f64::min)
        };
        let mut all: Vec<f64> = pa.iter().map(|p| nearest(p, &pb)).collect();
        all.extend(pb.iter().map(|p| nearest(p, &pa)));
        let hd = all.iter().copied().fold(0.0, f64::max);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        (hd, percentile_linear(&mut all, 95.0), mean)
    }

    #[test]
    fn far_apart_masks_fall_back_to_the_separable_transform_exactly() {
        // Two blobs 120 voxels apart: every local search gives up (far beyond
        // SEARCH_LIMIT lookups), so the separable transform answers; the results must
        // still be exact.
        let dims = [160, 80, 60];
        let sp = [0.7, 0.9, 1.0];
        let n = dims.iter().product();
        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
        for z in 0..60 {
            for y in 0..80 {
                for x in 0..160 {
                    let i = x + 160 * (y + 80 * z);
                    // A: a plate filling the y-z extent (so searches have many rows
                    // to visit), with holes; B: a block far along x.
                    a[i] = u8::from((5..15).contains(&x) && (x + y + z) % 11 != 0);
                    b[i] = u8::from(
                        (130..145).contains(&x) && (35..60).contains(&y) && (25..45).contains(&z),
                    );
                }
            }
        }
        let before =
            crate::shared::edt::FALLBACK_QUERIES.load(std::sync::atomic::Ordering::Relaxed);
        let d = bsd(&a, &b, dims, sp).unwrap();
        let after = crate::shared::edt::FALLBACK_QUERIES.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "the fallback was not used");
        let (hd, hd95, mean) = brute_force(&a, &b, dims, sp);
        assert!(
            (d.hausdorff_mm - hd).abs() < 1e-9,
            "{} vs {hd}",
            d.hausdorff_mm
        );
        assert!((d.hd95_mm - hd95).abs() < 1e-9, "{} vs {hd95}", d.hd95_mm);
        assert!(
            (d.mean_surface_distance_mm - mean).abs() < 1e-9,
            "{} vs {mean}",
            d.mean_surface_distance_mm
        );
        assert!(d.hausdorff_mm > 80.0);
    }

    #[test]
    fn overlap_matches_a_plain_count_and_box() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..30 {
            let dims = [
                rng.random_range(1..70),
                rng.random_range(1..9),
                rng.random_range(1..5),
            ];
            let n: usize = dims.iter().product();
            let p = rng.random_range(0.0..0.3);
            let a: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.random_bool(p) {
                        rng.random_range(1..4)
                    } else {
                        0
                    }
                })
                .collect();
            let b: Vec<u8> = (0..n).map(|_| u8::from(rng.random_bool(p))).collect();
            let lo = [
                rng.random_range(0..dims[0]),
                rng.random_range(0..dims[1]),
                0,
            ];
            let region = if rng.random_bool(0.5) {
                VoxelBox::all(dims)
            } else {
                VoxelBox { lo, hi: dims }
            };
            let got = bo(&a, &b, dims, &region);
            let mut want = Overlap::default();
            for z in region.lo[2]..region.hi[2] {
                for y in region.lo[1]..region.hi[1] {
                    for x in region.lo[0]..region.hi[0] {
                        let i = x + dims[0] * (y + dims[1] * z);
                        let (ia, ib) = (a[i] != 0, b[i] != 0);
                        want.voxels_a += u64::from(ia);
                        want.voxels_b += u64::from(ib);
                        want.intersection += u64::from(ia && ib);
                        if ia {
                            include(&mut want.bbox_a, [x, y, z], [x + 1, y + 1, z + 1]);
                        }
                        if ib {
                            include(&mut want.bbox_b, [x, y, z], [x + 1, y + 1, z + 1]);
                        }
                    }
                }
            }
            assert_eq!(got, want, "dims {dims:?}, region {region:?}");
        }
        // Long rows: the vector blocks and the 8-byte scans.
        let dims = [9000, 3, 2];
        let mut a = vec![0u8; 54000];
        a[9000 + 17] = 1;
        a[2 * 9000 + 8990] = 5;
        let o = bo(&a, &a, dims, &VoxelBox::all(dims));
        assert_eq!((o.voxels_a, o.intersection), (2, 2));
        assert_eq!(
            o.bbox_a,
            Some(VoxelBox {
                lo: [17, 1, 0],
                hi: [8991, 3, 1]
            })
        );
    }

    #[test]
    fn label_overlap_counts_rows() {
        let dims = [4, 1, 1];
        let a: Vec<u16> = vec![1, 1, 2, 0];
        let b: Vec<u16> = vec![1, 5, 5, 5];
        let mut ra = vec![NO_ROW; 65536];
        let mut rb = vec![NO_ROW; 65536];
        ra[1] = 0;
        rb[1] = 0;
        ra[2] = 1;
        rb[5] = 1;
        let o = label_overlap(&a, &b, dims, &VoxelBox::all(dims), &ra, &rb, 2);
        assert_eq!((o[0].voxels_a, o[0].voxels_b, o[0].intersection), (2, 1, 1));
        assert_eq!((o[1].voxels_a, o[1].voxels_b, o[1].intersection), (1, 3, 1));
        assert_eq!(
            o[1].bbox_b,
            Some(VoxelBox {
                lo: [1, 0, 0],
                hi: [4, 1, 1]
            })
        );
    }
}
