//! Building the phantom volumes: per-slice rasterisation of the anatomy model, the
//! voxel-level prediction errors, and CT noise.
//!
//! Determinism: the anatomy and its error events come from a ChaCha8 stream keyed by the
//! seed alone; everything drawn per slice (intramuscular fat, holes, speckles, rim leaks,
//! noise) comes from streams keyed by `(seed, z, purpose)`. Slices are generated in
//! parallel but each writes only its own rows, so the output never depends on the thread
//! count or on rayon's scheduling.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use voxflow_engine::{Geometry, Labels, Volume};

use super::anatomy::{Anatomy, Extent, Slice, Tissue};
use super::PhantomParams;

/// The three volumes of a phantom, on one grid.
#[derive(Clone, Debug, PartialEq)]
pub struct PhantomVolumes {
    /// CT in HU (i16), with noise.
    pub ct: Volume<i16>,
    /// Ground truth: 1 abdominal wall muscles, 2 paravertebral muscles, 0 elsewhere.
    pub truth: Labels,
    /// A simulated weak segmentation of the same structures, with typical errors.
    pub prediction: Labels,
}

/// Standard deviation of the CT noise (HU).
pub const NOISE_SD_HU: f32 = 15.0;

/// Purposes of the per-slice random streams (part of the ChaCha key).
const STREAM_ANATOMY: u64 = 0;
const STREAM_EVENTS: u64 = 1;
const STREAM_NOISE: u64 = 2;

/// A ChaCha8 generator keyed by the seed, the slice index and a purpose.
fn stream(seed: u64, z: u64, purpose: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&z.to_le_bytes());
    key[16..24].copy_from_slice(&purpose.to_le_bytes());
    key[24..].copy_from_slice(b"voxflowP");
    ChaCha8Rng::from_seed(key)
}

/// The grid of a phantom: identity direction, the given spacing, centred on the world
/// origin (the centre of the middle voxel, or between the two middle ones, is at 0).
pub fn phantom_geometry(params: &PhantomParams) -> Geometry {
    let dims = [params.dims.0, params.dims.1, params.dims.2];
    let spacing = [
        params.spacing_mm.0,
        params.spacing_mm.1,
        params.spacing_mm.2,
    ];
    let mut g = Geometry::new(dims, spacing);
    for a in 0..3 {
        g.affine[a][3] = -((dims[a] as f64) - 1.0) / 2.0 * spacing[a];
    }
    g
}

/// The phantom's grid and its anatomy, drawn from the seed: the same for [`generate`]
/// and [`vertebrae`], so the vertebrae lie where the CT's bone is.
fn phantom_anatomy(params: &PhantomParams) -> (Geometry, Anatomy) {
    let geometry = phantom_geometry(params);
    let [nx, ny, nz] = geometry.dims;
    let [sx, sy, sz] = geometry.spacing;
    let origin = geometry.origin();
    let extent = Extent {
        fov_mm: [nx as f64 * sx, ny as f64 * sy],
        z_range_mm: (origin[2], origin[2] + (nz as f64 - 1.0) * sz),
        slice_mm: sz,
    };
    let anatomy = Anatomy::draw(&mut stream(params.seed, u64::MAX, STREAM_ANATOMY), extent);
    (geometry, anatomy)
}

/// Generate a phantom. Params must be valid (see [`PhantomParams::validate`]); the node
/// checks them at build time. Same params, same bits, on any number of threads.
pub fn generate(params: &PhantomParams) -> PhantomVolumes {
    let (geometry, anatomy) = phantom_anatomy(params);
    let [nx, ny, nz] = geometry.dims;
    let [sx, sy, sz] = geometry.spacing;
    let origin = geometry.origin();

    let n = nx * ny * nz;
    let plane = nx * ny;
    let mut ct = vec![0i16; n];
    let mut truth = vec![0u16; n];
    let mut pred = vec![0u16; n];
    if plane > 0 {
        let job = Job {
            seed: params.seed,
            anatomy: &anatomy,
            grid: SliceGrid {
                nx,
                ny,
                sx,
                sy,
                x0: origin[0],
                y0: origin[1],
            },
            z0_mm: origin[2],
            sz,
        };
        ct.par_chunks_mut(plane)
            .zip(truth.par_chunks_mut(plane))
            .zip(pred.par_chunks_mut(plane))
            .enumerate()
            .for_each(|(z, ((ct, truth), pred))| make_slice(&job, z, ct, truth, pred));
    }
    let sized = "buffers are sized from the grid";
    PhantomVolumes {
        ct: Volume::from_vec(geometry.clone(), ct).expect(sized),
        truth: Volume::from_vec(geometry.clone(), truth).expect(sized),
        prediction: Volume::from_vec(geometry, pred).expect(sized),
    }
}

/// In-plane grid of one slice.
struct SliceGrid {
    nx: usize,
    ny: usize,
    sx: f64,
    sy: f64,
    x0: f64,
    y0: f64,
}

impl SliceGrid {
    /// Indices of the slice within the ellipse of radii `rx`, `ry` (voxels) around `i`;
    /// always includes `i`.
    fn disc(&self, i: usize, rx: f64, ry: f64) -> impl Iterator<Item = usize> + '_ {
        let (x, y) = ((i % self.nx) as isize, (i / self.nx) as isize);
        let (kx, ky) = (rx.floor() as isize, ry.floor() as isize);
        (-ky..=ky)
            .flat_map(move |dy| (-kx..=kx).map(move |dx| (dx, dy)))
            .filter(move |&(dx, dy)| {
                let (fx, fy) = (dx as f64 / rx.max(1e-9), dy as f64 / ry.max(1e-9));
                fx * fx + fy * fy <= 1.0
            })
            .map(move |(dx, dy)| (x + dx, y + dy))
            .filter(move |&(a, b)| {
                a >= 0 && b >= 0 && (a as usize) < self.nx && (b as usize) < self.ny
            })
            .map(move |(a, b)| a as usize + self.nx * b as usize)
    }
}

/// Fraction of muscle area turned into intramuscular fat speckles.
const IMAT_FRACTION: f64 = 0.04;
/// Probability that a voxel on the outer rim of a predicted muscle is labelled too.
const RIM_LEAK: [f64; 2] = [0.22, 0.2];
/// Holes per predicted muscle voxel.
const HOLE_DENSITY: f64 = 0.006;
/// Speckles per body voxel (each 1 to 4 voxels).
const SPECKLE_DENSITY: f64 = 0.0012;

/// What every slice shares.
struct Job<'a> {
    seed: u64,
    anatomy: &'a Anatomy,
    grid: SliceGrid,
    /// World z of slice 0 and the slice spacing (mm).
    z0_mm: f64,
    sz: f64,
}

/// Fill one axial slice of the three volumes.
fn make_slice(job: &Job, z: usize, ct: &mut [i16], truth: &mut [u16], pred: &mut [u16]) {
    let g = &job.grid;
    let (seed, z_mm, z) = (job.seed, job.z0_mm + z as f64 * job.sz, z as u64);
    let model = Slice::new(job.anatomy, z_mm);
    let mut tissue = vec![Tissue::Air; g.nx * g.ny];
    for y in 0..g.ny {
        let y_mm = g.y0 + y as f64 * g.sy;
        for x in 0..g.nx {
            let i = x + g.nx * y;
            let s = model.sample(g.x0 + x as f64 * g.sx, y_mm);
            tissue[i] = s.tissue;
            truth[i] = s.tissue.label();
            pred[i] = s.pred;
        }
    }
    let mut rng = stream(seed, z, STREAM_EVENTS);

    // Intramuscular fat: small fat discs (0.7 to 1.8 mm) inside the muscles. The truth
    // excludes them; the prediction keeps them, as a network trained on coarse masks does.
    let muscle: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] != 0).collect();
    if !muscle.is_empty() {
        let area = muscle.len() as f64 * g.sx * g.sy;
        let mean_disc_mm2 = std::f64::consts::PI * 1.3 * 1.3;
        let n = (IMAT_FRACTION * area / mean_disc_mm2).round() as usize;
        for _ in 0..n {
            let c = muscle[rng.random_range(0..muscle.len())];
            let r = rng.random_range(0.7..1.8);
            for i in g.disc(c, r / g.sx, r / g.sy) {
                if truth[i] != 0 {
                    truth[i] = 0;
                    tissue[i] = Tissue::IntramuscularFat;
                }
            }
        }
    }

    // Rim leaks: part of the one-voxel rim around predicted muscle, in fat or organs.
    // First mark the rim (label 1 wins where both touch), then draw in raster order.
    let mut rim = vec![0u8; pred.len()];
    for y in 0..g.ny {
        for x in 0..g.nx {
            let l = pred[x + g.nx * y];
            if l == 0 {
                continue;
            }
            for yy in y.saturating_sub(1)..(y + 2).min(g.ny) {
                for xx in x.saturating_sub(1)..(x + 2).min(g.nx) {
                    let j = xx + g.nx * yy;
                    if pred[j] == 0 && (rim[j] == 0 || l == 1) {
                        rim[j] = l as u8;
                    }
                }
            }
        }
    }
    for (i, &near) in rim.iter().enumerate() {
        if near != 0 && tissue[i].leakable() && rng.random_bool(RIM_LEAK[near as usize - 1]) {
            pred[i] = near as u16;
        }
    }

    // Holes: small drop-outs (discs of radius 0.5 to 1.6 voxels) inside predicted muscle.
    let labelled: Vec<usize> = (0..pred.len())
        .filter(|&i| pred[i] != 0 && truth[i] != 0)
        .collect();
    if !labelled.is_empty() {
        let n = (HOLE_DENSITY * labelled.len() as f64).round() as usize;
        for _ in 0..n {
            let c = labelled[rng.random_range(0..labelled.len())];
            let r = rng.random_range(0.5..1.6);
            for i in g.disc(c, r, r) {
                pred[i] = 0;
            }
        }
    }

    // Speckles: isolated false positives of 1 to 4 voxels in fat and organs. Seeds are
    // drawn by rejection (a bounded number of tries), so no candidate list is needed.
    let body = tissue.iter().filter(|t| t.in_body()).count();
    let n = (SPECKLE_DENSITY * body as f64).round() as usize;
    for _ in 0..n {
        let Some(mut i) = (0..64)
            .map(|_| rng.random_range(0..pred.len()))
            .find(|&i| pred[i] == 0 && truth[i] == 0 && tissue[i].leakable())
        else {
            continue;
        };
        let label = rng.random_range(1..=2u16);
        let size = rng.random_range(1..=4);
        pred[i] = label;
        for _ in 1..size {
            let (x, y) = (i % g.nx, i / g.nx);
            let next = match rng.random_range(0..4) {
                0 if x + 1 < g.nx => i + 1,
                1 if x > 0 => i - 1,
                2 if y + 1 < g.ny => i + g.nx,
                3 if y > 0 => i - g.nx,
                _ => i,
            };
            if tissue[next].leakable() {
                i = next;
                pred[i] = label;
            }
        }
    }

    // CT: nominal HU plus noise, an Irwin-Hall sum of four uniforms (near-Gaussian,
    // bounded at +-3.46 sd = 52 HU, so no fat voxel reaches the -29 HU muscle window).
    let mut noise = stream(seed, z, STREAM_NOISE);
    let scale = NOISE_SD_HU * 3f32.sqrt() / 65536.0;
    for (v, t) in ct.iter_mut().zip(&tissue) {
        let r = noise.next_u64();
        let sum = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48) + 2;
        let z = (sum as f32 - 2.0 * 65536.0) * scale;
        *v = (t.hu() + z).round().clamp(-1024.0, 3071.0) as i16;
    }
}

/// TotalSegmentator (v2) label of L3; the phantom's spine is numbered around it.
pub const PHANTOM_L3_LABEL: u16 = 29;
/// Distance between the mid-heights of neighbouring phantom vertebrae (mm): a typical
/// adult lumbar vertebral body (about 28 mm) plus an intervertebral disc (about 8 mm).
pub const VERTEBRA_PITCH_MM: f64 = 36.0;
/// Height of the intervertebral disc between two phantom vertebrae (mm); its slices carry
/// no vertebra label, so each vertebra is a separate block along z.
pub const DISC_MM: f64 = 8.0;
/// Labels the phantom assigns: L5 (27) up to T11 (33), TotalSegmentator v2 numbering.
pub const PHANTOM_VERTEBRA_LABELS: std::ops::RangeInclusive<u16> = 27..=33;

/// The vertebra label (TotalSegmentator v2 numbering) of the phantom at world height
/// `z_mm`, or 0 in a disc or beyond T11..L5. L3's mid-height is at z = 0, the centre of the
/// phantom's grid (so a default phantom, 72 mm high, holds L4's top, L3 and L2's bottom);
/// +z is superior, so L2 (30) lies above and L4 (28) below.
pub fn vertebra_label_at(z_mm: f64) -> u16 {
    let k = (z_mm / VERTEBRA_PITCH_MM).round();
    if (z_mm - k * VERTEBRA_PITCH_MM).abs() > (VERTEBRA_PITCH_MM - DISC_MM) / 2.0 {
        return 0;
    }
    let label = f64::from(PHANTOM_L3_LABEL) + k;
    if label >= f64::from(*PHANTOM_VERTEBRA_LABELS.start())
        && label <= f64::from(*PHANTOM_VERTEBRA_LABELS.end())
    {
        label as u16
    } else {
        0
    }
}

/// The vertebra label map of the phantom that [`generate`] makes with the same params: the
/// bone voxels of its spine (vertebral body, arch, spinous and transverse processes; not
/// the canal) labelled by level with [`vertebra_label_at`], like TotalSegmentator's
/// vertebra classes. The phantom's CT has bone in every slice; the discs exist only in
/// this map, so [`generate`]'s volumes stay exactly what they were. It is computed on its
/// own (the same anatomy, drawn from the same seed, sampled again) so that asking for it
/// costs nothing to runs that do not.
pub fn vertebrae(params: &PhantomParams) -> Labels {
    let (geometry, anatomy) = phantom_anatomy(params);
    let [nx, ny, nz] = geometry.dims;
    let [sx, sy, sz] = geometry.spacing;
    let origin = geometry.origin();
    let plane = nx * ny;
    let mut out = vec![0u16; plane * nz];
    if plane > 0 {
        out.par_chunks_mut(plane).enumerate().for_each(|(z, out)| {
            let z_mm = origin[2] + z as f64 * sz;
            let label = vertebra_label_at(z_mm);
            if label == 0 {
                return;
            }
            let model = Slice::new(&anatomy, z_mm);
            for y in 0..ny {
                let y_mm = origin[1] + y as f64 * sy;
                for x in 0..nx {
                    let t = model.sample(origin[0] + x as f64 * sx, y_mm).tissue;
                    if matches!(t, Tissue::CorticalBone | Tissue::CancellousBone) {
                        out[x + nx * y] = label;
                    }
                }
            }
        });
    }
    Volume::from_vec(geometry, out).expect("buffer sized from the grid")
}
