//! The geometric model of the phantom: an axial abdominal cross-section as a function of
//! the in-plane position and the slice height, plus the geometric part of the simulated
//! prediction errors (leaks, a missed sector, confusion between the muscle groups).
//!
//! Coordinates. Everything is computed at voxel centres in world millimetres, so a grid
//! with finer spacing over the same field of view shows the same anatomy. The body is
//! scaled to the field of view: its half-width `A` and half-depth `B` are 85% of the half
//! field of view along x and y. Positions are then written in two normalised frames:
//! `(u, v) = (x / A, y / B)` for the body outline (the skin is `f(u, v) = 1`), and
//! `(p, q) = (x / B, y / B)` for inner structures, which keeps circles circular. Lateral
//! positions of inner structures are given in `u` and converted with the aspect ratio
//! `A / B`, so a wider field of view widens the abdomen instead of crowding it.
//!
//! Orientation (RAS+, identity direction): +x is the patient's Right, +y Anterior, +z
//! Superior. The liver therefore lies at positive x (high x indices), the spine at
//! negative y (low y indices).

use std::f64::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What a voxel centre falls in. Each tissue has a nominal HU value and a truth label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tissue {
    Air,
    Skin,
    SubcutaneousFat,
    /// Rectus, obliques and transversus: label 1.
    AbdominalWall,
    /// Quadratus lumborum, counted with the abdominal wall group: label 1.
    QuadratusLumborum,
    /// Erector spinae and multifidus: label 2.
    Paravertebral,
    /// Psoas: muscle density but in neither group (unlabelled).
    Psoas,
    VisceralFat,
    /// Fat speckles inside a muscle; never labelled in the truth.
    IntramuscularFat,
    CorticalBone,
    CancellousBone,
    SpinalCanal,
    Liver,
    Kidney,
    Vessel,
    BowelWall,
    BowelFluid,
    BowelGas,
}

impl Tissue {
    /// Nominal attenuation in HU before noise.
    pub(crate) fn hu(self) -> f32 {
        match self {
            Tissue::Air => -1000.0,
            Tissue::Skin => 30.0,
            Tissue::SubcutaneousFat => -100.0,
            Tissue::AbdominalWall | Tissue::QuadratusLumborum => 45.0,
            Tissue::Paravertebral => 50.0,
            Tissue::Psoas => 48.0,
            Tissue::VisceralFat => -95.0,
            Tissue::IntramuscularFat => -85.0,
            Tissue::CorticalBone => 700.0,
            Tissue::CancellousBone => 250.0,
            Tissue::SpinalCanal => 10.0,
            Tissue::Liver => 60.0,
            Tissue::Kidney => 30.0,
            Tissue::Vessel => 40.0,
            Tissue::BowelWall => 40.0,
            Tissue::BowelFluid => 12.0,
            Tissue::BowelGas => -900.0,
        }
    }

    /// Label in the truth: 1 abdominal wall muscles, 2 paravertebral, 0 anything else.
    pub(crate) fn label(self) -> u16 {
        match self {
            Tissue::AbdominalWall | Tissue::QuadratusLumborum => 1,
            Tissue::Paravertebral => 2,
            _ => 0,
        }
    }

    /// Whether simulated false positives (leaks, speckles) may land in this tissue: soft,
    /// non-muscle tissue inside the body (fat and organs), never air, skin, bone or the
    /// canal.
    pub(crate) fn leakable(self) -> bool {
        matches!(
            self,
            Tissue::SubcutaneousFat
                | Tissue::VisceralFat
                | Tissue::IntramuscularFat
                | Tissue::Liver
                | Tissue::Kidney
                | Tissue::Vessel
                | Tissue::BowelWall
                | Tissue::BowelFluid
                | Tissue::BowelGas
        )
    }

    /// Inside the body (not air): where speckles may appear.
    pub(crate) fn in_body(self) -> bool {
        self != Tissue::Air
    }
}

/// A rotated ellipse in the `(p, q)` frame.
#[derive(Clone, Copy, Debug)]
struct Ellipse {
    c: [f64; 2],
    a: [f64; 2],
    cos: f64,
    sin: f64,
}

impl Ellipse {
    fn new(c: [f64; 2], a: [f64; 2], angle: f64) -> Self {
        Ellipse {
            c,
            a,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    /// Squared normalised radius: <= 1 inside.
    #[inline]
    fn r2(&self, p: f64, q: f64) -> f64 {
        let (dx, dy) = (p - self.c[0], q - self.c[1]);
        let x = (dx * self.cos + dy * self.sin) / self.a[0];
        let y = (-dx * self.sin + dy * self.cos) / self.a[1];
        x * x + y * y
    }

    /// Inside test, with a cheap bounding-square rejection first (most voxels are far
    /// from most structures).
    #[inline]
    fn contains(&self, p: f64, q: f64) -> bool {
        let reach = self.a[0].max(self.a[1]);
        (p - self.c[0]).abs() <= reach && (q - self.c[1]).abs() <= reach && self.r2(p, q) <= 1.0
    }

    /// The same ellipse with both semi-axes longer by `g`.
    fn grown(&self, g: f64) -> Self {
        Ellipse {
            a: [self.a[0] + g, self.a[1] + g],
            ..*self
        }
    }

    fn shifted(&self, dp: f64, dq: f64) -> Self {
        Ellipse {
            c: [self.c[0] + dp, self.c[1] + dq],
            ..*self
        }
    }
}

/// Smooth periodic variation along z: `sin(2 pi z / period + phase)`.
#[inline]
fn wave(z_mm: f64, period_mm: f64, phase: f64) -> f64 {
    (TAU * z_mm / period_mm + phase).sin()
}

/// How a bowel loop is filled.
#[derive(Clone, Copy, Debug)]
enum Content {
    /// Fluid only.
    Fluid,
    /// Gas above (anterior to) fluid; the value is the level as a fraction of the radius
    /// (-1 all gas, +1 all fluid).
    GasLevel(f64),
    /// Collapsed: wall tissue throughout.
    Collapsed,
}

/// One bowel loop: its place (`u`, `v` of the body frame), radius and drift along z.
#[derive(Clone, Copy, Debug)]
struct LoopSpec {
    u: f64,
    v: f64,
    r: f64,
    phase: f64,
    period_mm: f64,
    content: Content,
}

/// Where a leak goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LeakTarget {
    /// Abdominal wall label spreading out into the subcutaneous fat.
    WallOut,
    /// Abdominal wall label spreading in towards the cavity.
    WallIn,
    /// Paravertebral label spreading from one blob (0 = patient right, 1 = left).
    Para(usize),
}

/// A leak event: a lens of extra label around a direction, over a range of slices.
#[derive(Clone, Copy, Debug)]
struct LeakSpec {
    target: LeakTarget,
    /// Direction in the body frame (wall leaks) or from the blob centre (para leaks).
    angle: f64,
    half_width: f64,
    /// Largest depth, normalised by `B`.
    depth: f64,
    z_mm: f64,
    z_half_mm: f64,
}

/// Anatomy and error events for a whole volume, drawn once from the seed.
#[derive(Clone, Debug)]
pub(crate) struct Anatomy {
    /// Half-width and half-depth of the body (mm) before the z variation.
    a_mm: f64,
    b_mm: f64,
    fat: f64,
    muscle: f64,
    squareness: f64,
    phase: [f64; 10],
    kidney_dq: [f64; 2],
    liver_scale: f64,
    loops: Vec<LoopSpec>,
    leaks: Vec<LeakSpec>,
    /// Missed sector: direction, half-width (rad) and z range (mm).
    missed: (f64, f64, f64, f64),
}

/// Field of view of the grid in mm (full extent, voxel edges) and the z range of slice
/// centres, which the anatomy needs to place its events.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extent {
    pub fov_mm: [f64; 2],
    pub z_range_mm: (f64, f64),
    pub slice_mm: f64,
}

impl Anatomy {
    /// Draw the anatomy and the error events from `rng` (seeded from the user's seed).
    pub(crate) fn draw(rng: &mut ChaCha8Rng, extent: Extent) -> Self {
        let a_mm = 0.85 * extent.fov_mm[0] / 2.0;
        let b_mm = 0.85 * extent.fov_mm[1] / 2.0;
        let fat = rng.random_range(0.12..0.17);
        let muscle = rng.random_range(0.085..0.105);
        let squareness = rng.random_range(0.35..0.6);
        let phase: [f64; 10] = std::array::from_fn(|_| rng.random_range(0.0..TAU));
        let kidney_dq = [rng.random_range(-0.03..0.03), rng.random_range(-0.03..0.03)];
        let liver_scale = rng.random_range(0.92..1.08);

        let mut loops = Vec::new();
        // Ascending colon under the liver (patient right, lateral) and descending colon on
        // the left, both gas-filled; then small bowel loops in the left and centre.
        loops.push(LoopSpec {
            u: 0.55,
            v: -0.05,
            r: 0.1,
            phase: rng.random_range(0.0..TAU),
            period_mm: 140.0,
            content: Content::GasLevel(rng.random_range(-0.3..0.3)),
        });
        loops.push(LoopSpec {
            u: -0.62,
            v: -0.12,
            r: 0.085,
            phase: rng.random_range(0.0..TAU),
            period_mm: 120.0,
            content: Content::GasLevel(rng.random_range(-0.2..0.4)),
        });
        let n_small = rng.random_range(9..13);
        for _ in 0..n_small {
            let content = match rng.random_range(0..10) {
                0..=3 => Content::Fluid,
                4..=6 => Content::GasLevel(rng.random_range(-0.2..0.6)),
                _ => Content::Collapsed,
            };
            let (r, u, v) = (
                rng.random_range(0.055..0.1),
                rng.random_range(-0.65..0.15),
                rng.random_range(-0.1..0.62),
            );
            loops.push(LoopSpec {
                u,
                v,
                r: if matches!(content, Content::Collapsed) {
                    r * 0.6
                } else {
                    r
                },
                phase: rng.random_range(0.0..TAU),
                period_mm: rng.random_range(50.0..110.0),
                content,
            });
        }

        // Leak events, about one wall leak per 6 mm and one para leak per 15 mm of height,
        // each a few mm deep and spanning a few slices.
        let (z0, z1) = extent.z_range_mm;
        let height = (z1 - z0).max(extent.slice_mm);
        let n_wall = ((height / 6.0).ceil() as usize).max(3);
        let n_para = ((height / 15.0).ceil() as usize).max(2);
        let mut leaks = Vec::new();
        for i in 0..n_wall + n_para {
            let wall = i < n_wall;
            let target = if wall {
                if rng.random_bool(0.55) {
                    LeakTarget::WallOut
                } else {
                    LeakTarget::WallIn
                }
            } else {
                LeakTarget::Para(rng.random_range(0..2))
            };
            let angle = if wall {
                rng.random_range(-0.9..PI + 0.9)
            } else {
                rng.random_range(0.0..TAU)
            };
            leaks.push(LeakSpec {
                target,
                angle,
                half_width: rng.random_range(0.15..0.4),
                depth: rng.random_range(0.02..0.055),
                z_mm: rng.random_range(z0 - 5.0..z1 + 5.0),
                z_half_mm: rng.random_range(6.0..18.0f64).max(0.75 * extent.slice_mm),
            });
        }

        // The missed sector: anterolateral, on a third of the height.
        let dir = if rng.random_bool(0.5) {
            rng.random_range(0.35..1.1)
        } else {
            rng.random_range(PI - 1.1..PI - 0.35)
        };
        let half = rng.random_range(0.3..0.45);
        let span = height / 3.0;
        let start = z0 + rng.random_range(0.0..1.0) * (height - span);
        let missed = (dir, half, start - 0.5 * extent.slice_mm, start + span);

        Anatomy {
            a_mm,
            b_mm,
            fat,
            muscle,
            squareness,
            phase,
            kidney_dq,
            liver_scale,
            loops,
            leaks,
            missed,
        }
    }
}

/// A leak active on one slice, in the form the voxel loop needs.
#[derive(Clone, Copy, Debug)]
struct ActiveLeak {
    target: LeakTarget,
    dir: [f64; 2],
    cos_half: f64,
    depth: f64,
    /// Para leaks: the lens as an ellipse.
    lens: Option<Ellipse>,
}

/// One bowel loop on one slice.
#[derive(Clone, Copy, Debug)]
struct Loop {
    c: [f64; 2],
    r: f64,
    wall: f64,
    content: Content,
}

/// The anatomy at one slice height, ready to classify voxel centres.
#[derive(Clone, Debug)]
pub(crate) struct Slice {
    /// Half-depth of the body in mm (the unit of `p`, `q`).
    pub b_mm: f64,
    /// Aspect ratio A / B.
    ar: f64,
    skin: f64,
    fat: f64,
    muscle: f64,
    squareness: f64,
    /// The wall band exists where the direction's sine exceeds this (not at the back).
    band_end: f64,
    linea_alba: f64,
    vb: Ellipse,
    vb_inner: Ellipse,
    canal: Ellipse,
    arch: Ellipse,
    para: [Ellipse; 2],
    para_guard: [Ellipse; 2],
    ql: [Ellipse; 2],
    ql_guard: [Ellipse; 2],
    psoas: [Ellipse; 2],
    kidney: [Ellipse; 2],
    kidney_guard: [Ellipse; 2],
    liver: Ellipse,
    aorta: Ellipse,
    ivc: Ellipse,
    loops: Vec<Loop>,
    leaks: Vec<ActiveLeak>,
    missed: Option<([f64; 2], f64)>,
    /// Confusion zones between the groups (centre, radius) and the shifted para blobs
    /// that decide 1 or 2 inside them.
    confusion: [(Ellipse, Ellipse); 2],
    /// Gap kept free of organs inside the wall, normalised.
    cavity_gap: f64,
}

/// Classification of one voxel centre.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub tissue: Tissue,
    /// Label of the simulated prediction before the per-voxel errors.
    pub pred: u16,
}

impl Slice {
    /// The anatomy at height `z_mm`.
    pub(crate) fn new(anat: &Anatomy, z_mm: f64) -> Self {
        let ph = &anat.phase;
        let a_mm = anat.a_mm * (1.0 + 0.025 * wave(z_mm, 170.0, ph[0]));
        let b_mm = anat.b_mm * (1.0 + 0.02 * wave(z_mm, 130.0, ph[1]));
        let ar = a_mm / b_mm;
        let fat = anat.fat * (1.0 + 0.12 * wave(z_mm, 90.0, ph[2]));
        let muscle = anat.muscle * (1.0 + 0.1 * wave(z_mm, 70.0, ph[3]));

        // Spine (fixed shape, slight drift), inner structures in (p, q).
        let vb = Ellipse::new([0.0, -0.33], [0.165, 0.135], 0.0);
        let vb_inner = Ellipse::new(vb.c, [vb.a[0] - 0.025, vb.a[1] - 0.025], 0.0);
        let canal = Ellipse::new([0.0, -0.565], [0.06, 0.05], 0.0);
        let arch = Ellipse::new([0.0, -0.57], [0.1, 0.095], 0.0);
        let para_scale = 1.0 + 0.06 * wave(z_mm, 80.0, ph[4]);
        let mk_para = |s: f64| {
            Ellipse::new(
                [s * 0.19 * ar, -0.72],
                [0.2 * para_scale, 0.16 * para_scale],
                s * -0.12,
            )
        };
        let para = [mk_para(1.0), mk_para(-1.0)];
        let mk_ql = |s: f64| Ellipse::new([s * 0.35 * ar, -0.56], [0.1, 0.075], s * -0.55);
        let ql = [mk_ql(1.0), mk_ql(-1.0)];
        let psoas_scale = 1.0 + 0.15 * wave(z_mm, 150.0, ph[5]);
        let mk_psoas = |s: f64| {
            Ellipse::new(
                [s * 0.205 * ar, -0.31],
                [0.08 * psoas_scale, 0.09 * psoas_scale],
                s * 0.3,
            )
        };
        let psoas = [mk_psoas(1.0), mk_psoas(-1.0)];
        let kidney_scale = 1.0 + 0.12 * wave(z_mm, 110.0, ph[6]);
        let mk_kidney = |s: f64, dq: f64| {
            Ellipse::new(
                [s * 0.43 * ar, -0.22 + dq],
                [0.12 * kidney_scale, 0.18 * kidney_scale],
                s * -0.45,
            )
        };
        let kidney = [
            mk_kidney(1.0, anat.kidney_dq[0]),
            mk_kidney(-1.0, anat.kidney_dq[1]),
        ];
        let guard = 0.045;
        let liver_scale = anat.liver_scale * (0.92 + 0.12 * wave(z_mm, 120.0, ph[7]));
        let liver = Ellipse::new(
            [0.38 * ar, 0.08],
            [0.36 * ar * liver_scale, 0.48 * liver_scale],
            -0.35,
        );
        let aorta = Ellipse::new([-0.06, -0.12], [0.075, 0.075], 0.0);
        let ivc = Ellipse::new([0.13, -0.11], [0.07, 0.05], 0.2);

        let loops = anat
            .loops
            .iter()
            .map(|l| {
                let du = 0.05 * wave(z_mm, l.period_mm, l.phase);
                let dv = 0.04 * wave(z_mm, l.period_mm * 1.3, l.phase + 1.0);
                let r = l.r * (1.0 + 0.15 * wave(z_mm, l.period_mm * 0.8, l.phase + 2.0));
                Loop {
                    c: [(l.u + du) * ar, l.v + dv],
                    r,
                    wall: 0.022,
                    content: l.content,
                }
            })
            .collect();

        let leaks = anat
            .leaks
            .iter()
            .filter_map(|l| {
                let t = (z_mm - l.z_mm) / l.z_half_mm;
                if t.abs() >= 1.0 {
                    return None;
                }
                let depth = l.depth * (1.0 - t * t).sqrt();
                let dir = [l.angle.cos(), l.angle.sin()];
                let lens = match l.target {
                    LeakTarget::Para(side) => {
                        // A flat ellipse straddling the blob's edge in direction `dir`.
                        let e = para[side];
                        let reach = e.a[0].max(e.a[1]);
                        let c = [e.c[0] + dir[0] * reach, e.c[1] + dir[1] * reach];
                        let along = reach * l.half_width * 2.0;
                        Some(Ellipse::new(c, [depth, along], l.angle))
                    }
                    _ => None,
                };
                Some(ActiveLeak {
                    target: l.target,
                    dir,
                    cos_half: l.half_width.cos(),
                    depth,
                    lens,
                })
            })
            .collect();

        let (md, mh, mz0, mz1) = anat.missed;
        let missed = (z_mm >= mz0 && z_mm < mz1).then(|| ([md.cos(), md.sin()], mh.cos()));

        let shift = |k: usize| 0.055 * wave(z_mm, 45.0, ph[8 + k]);
        let confusion = std::array::from_fn(|k| {
            let s = if k == 0 { 1.0 } else { -1.0 };
            let e = para[k];
            let zone = Ellipse::new(
                [e.c[0] + s * 0.85 * e.a[0], e.c[1] + 0.03],
                [0.12, 0.12],
                0.0,
            );
            (zone, e.shifted(s * shift(k), 0.0))
        });

        Slice {
            b_mm,
            ar,
            skin: 0.022,
            fat,
            muscle,
            squareness: anat.squareness,
            band_end: -0.97,
            linea_alba: 0.012,
            vb,
            vb_inner,
            canal,
            arch,
            para,
            para_guard: [para[0].grown(guard), para[1].grown(guard)],
            ql,
            ql_guard: [ql[0].grown(guard), ql[1].grown(guard)],
            psoas,
            kidney,
            kidney_guard: [kidney[0].grown(0.03), kidney[1].grown(0.03)],
            liver,
            aorta,
            ivc,
            loops,
            leaks,
            missed,
            confusion,
            cavity_gap: 0.05,
        }
    }

    /// Classify the voxel centre at world `(x_mm, y_mm)` (relative to the body centre).
    #[inline]
    pub(crate) fn sample(&self, x_mm: f64, y_mm: f64) -> Sample {
        let q = y_mm / self.b_mm;
        let p = x_mm / self.b_mm;
        let u = p / self.ar;
        let v = q;
        // Body outline: an ellipse, squarer at the back.
        let uv = if v < 0.0 {
            (u * u * v * v).min(0.25)
        } else {
            0.0
        };
        let f = (u * u + v * v - self.squareness * uv).max(0.0).sqrt();
        if f > 1.0 {
            return Sample {
                tissue: Tissue::Air,
                pred: 0,
            };
        }
        let d = 1.0 - f;
        let rho = (u * u + v * v).sqrt().max(1e-9);
        let (c, s) = (u / rho, v / rho);
        let tissue = self.tissue(p, q, d, c, s);
        let mut pred = tissue.label();
        if pred != 0 {
            for k in 0..2 {
                let (zone, shifted) = &self.confusion[k];
                if zone.contains(p, q) {
                    pred = if shifted.contains(p, q) { 2 } else { 1 };
                }
            }
        } else if tissue.leakable() {
            pred = self.leak(p, q, d, c, s);
        }
        if pred == 1 {
            if let Some((dir, cos_half)) = self.missed {
                if c * dir[0] + s * dir[1] > cos_half {
                    pred = 0;
                }
            }
        }
        Sample { tissue, pred }
    }

    /// Subcutaneous fat thickness in direction (c, s): thicker in front, thin at the back.
    #[inline]
    fn fat_at(&self, c: f64, s: f64) -> f64 {
        self.fat * (0.72 + 0.38 * s + 0.2 * c * c)
    }

    /// Wall muscle thickness in direction (c, s), tapering to nothing at the back.
    #[inline]
    fn muscle_at(&self, s: f64) -> f64 {
        let t = ((s - self.band_end) / 0.25).clamp(0.0, 1.0);
        let taper = t * t * (3.0 - 2.0 * t);
        self.muscle * (1.0 + 0.3 * s.max(0.0).powi(4)) * taper
    }

    fn tissue(&self, p: f64, q: f64, d: f64, c: f64, s: f64) -> Tissue {
        if d < self.skin {
            return Tissue::Skin;
        }
        let d1 = self.skin + self.fat_at(c, s);
        if d < d1 {
            return Tissue::SubcutaneousFat;
        }
        if q < -0.1 {
            if let Some(t) = self.posterior(p, q) {
                return t;
            }
        }
        let d2 = d1 + self.muscle_at(s);
        if s > self.band_end && d < d2 {
            if q > 0.0 && p.abs() < self.linea_alba {
                return Tissue::SubcutaneousFat;
            }
            return Tissue::AbdominalWall;
        }
        // Inside the wall: organs keep a fat gap from the wall and the posterior muscles.
        let cavity = d >= d1 + self.muscle + self.cavity_gap
            && !(q < -0.3
                && (self.para_guard.iter().any(|e| e.contains(p, q))
                    || self.ql_guard.iter().any(|e| e.contains(p, q))));
        if cavity {
            if let Some(t) = self.organ(p, q) {
                return t;
            }
        }
        Tissue::VisceralFat
    }

    /// Spine and posterior muscles.
    fn posterior(&self, p: f64, q: f64) -> Option<Tissue> {
        if self.vb.contains(p, q) {
            return Some(if self.vb_inner.contains(p, q) {
                Tissue::CancellousBone
            } else {
                Tissue::CorticalBone
            });
        }
        if self.canal.contains(p, q) {
            return Some(Tissue::SpinalCanal);
        }
        if self.arch.contains(p, q) {
            return Some(Tissue::CorticalBone);
        }
        // Spinous process and transverse processes.
        if p.abs() < 0.022 && q > -0.86 && q < -0.6 {
            return Some(Tissue::CorticalBone);
        }
        let ap = p.abs();
        if ap > 0.06
            && ap < 0.29 * self.ar
            && (q + 0.51).abs() < 0.022 * (1.2 - ap / (0.29 * self.ar))
        {
            return Some(Tissue::CorticalBone);
        }
        if self.para.iter().any(|e| e.contains(p, q)) {
            return Some(Tissue::Paravertebral);
        }
        if self.ql.iter().any(|e| e.contains(p, q)) {
            return Some(Tissue::QuadratusLumborum);
        }
        if self.psoas.iter().any(|e| e.contains(p, q)) {
            return Some(Tissue::Psoas);
        }
        None
    }

    fn organ(&self, p: f64, q: f64) -> Option<Tissue> {
        if self.aorta.contains(p, q) || self.ivc.contains(p, q) {
            return Some(Tissue::Vessel);
        }
        if self.kidney.iter().any(|e| e.contains(p, q)) {
            return Some(Tissue::Kidney);
        }
        if self.liver.contains(p, q) && !self.kidney_guard.iter().any(|e| e.contains(p, q)) {
            return Some(Tissue::Liver);
        }
        for l in &self.loops {
            let (dx, dy) = (p - l.c[0], q - l.c[1]);
            let r2 = dx * dx + dy * dy;
            if r2 > l.r * l.r {
                continue;
            }
            let inner = l.r - l.wall;
            if r2 > inner * inner {
                return Some(Tissue::BowelWall);
            }
            return Some(match l.content {
                Content::Fluid => Tissue::BowelFluid,
                Content::Collapsed => Tissue::BowelWall,
                // Supine patient: gas rises anteriorly (+y).
                Content::GasLevel(level) => {
                    if dy > level * inner {
                        Tissue::BowelGas
                    } else {
                        Tissue::BowelFluid
                    }
                }
            });
        }
        None
    }

    /// Prediction label of a leakable voxel: a wall or para leak covering it, else 0.
    fn leak(&self, p: f64, q: f64, d: f64, c: f64, s: f64) -> u16 {
        let d1 = self.skin + self.fat_at(c, s);
        // Leaks are at most 0.055 deep: deeper voxels can only be reached by para lenses.
        let near_wall = d < d1 + 1.3 * self.muscle + 0.06;
        for l in &self.leaks {
            match l.target {
                LeakTarget::WallOut | LeakTarget::WallIn => {
                    let dot = c * l.dir[0] + s * l.dir[1];
                    if !near_wall || dot <= l.cos_half || s <= self.band_end + 0.1 {
                        continue;
                    }
                    let w = ((dot - l.cos_half) / (1.0 - l.cos_half)).sqrt();
                    let depth = l.depth * w;
                    let hit = if l.target == LeakTarget::WallOut {
                        d < d1 && d >= d1 - depth
                    } else {
                        let d2 = d1 + self.muscle_at(s);
                        d >= d2 && d < d2 + depth
                    };
                    if hit {
                        return 1;
                    }
                }
                LeakTarget::Para(_) => {
                    if l.lens.is_some_and(|e| e.contains(p, q)) {
                        return 2;
                    }
                }
            }
        }
        0
    }
}
