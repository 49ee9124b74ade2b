//! Training data as the trainer sees it: [`TrainCase`]s (normalised CT, labels, voxel
//! weights) cut into augmented 2D patches ([`Sampler::batch`]) and whole validation slices
//! ([`ValidationSet`]).
//!
//! # Determinism
//!
//! Batch `k` is a pure function of the cases, the config and `k`: its generator is ChaCha8
//! seeded with the config's `seed` on stream `k`. So any number of sampler threads, a
//! restarted server or a resumed trainer produce the same batches in the same order.
//!
//! # One patch
//!
//! Pick an annotated slice (uniformly over all slices with any weighted pixel, across
//! cases); pick a centre: with probability `foreground_fraction` a weighted pixel with a
//! foreground label, else any pixel of the slice; then draw the augmentation (left-right
//! mirror, rotation angle). Each patch pixel maps back to a source position (rotation and
//! mirror about the centre); the CT is sampled bilinearly, labels and weights by nearest
//! neighbour. Positions outside the slice are padding: CT at the normalisation's pad value
//! (air), label 0, weight 0 — padding never trains the network. Patches are in pixels:
//! cases with different in-plane spacing are not resampled.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use voxflow_engine::{Image, Labels, Mask};
use voxflow_unet::Normalization;

use crate::config::TrainingConfig;

/// Why a case or a set of cases cannot be trained on. Each names the case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Labels or weights are on another grid than the image.
    #[error("{case}: {what} grid {got} differs from the image grid {image}")]
    GridMismatch {
        /// The case.
        case: String,
        /// `labels` or `weights`.
        what: &'static str,
        /// Their grid, described.
        got: String,
        /// The image's grid, described.
        image: String,
    },
    /// A weighted voxel holds a label the network has no class for.
    #[error(
        "{case}: label {label} at voxel {voxel} is not a class of a {classes}-class network \
         (expected 0..{})",
        classes - 1
    )]
    LabelBeyondClasses {
        /// The case.
        case: String,
        /// The label.
        label: u16,
        /// Its linear voxel index.
        voxel: usize,
        /// The network's classes.
        classes: usize,
    },
    /// Every weight of every case is 0.
    #[error("no annotated slice in {0} training case(s): every weight is 0")]
    NothingAnnotated(usize),
}

/// One volume prepared for sampling: CT normalised, labels as classes, weights 0/1.
#[derive(Debug, Clone)]
pub struct TrainCase {
    /// Name for messages (the producing node or file).
    pub name: String,
    /// `(nx, ny, nz)`.
    pub dims: [usize; 3],
    /// Normalised CT, x fastest.
    pub image: Vec<f32>,
    /// Class per voxel (< classes).
    pub labels: Vec<u8>,
    /// 1 where the label counts, 0 where it is ignored.
    pub weights: Vec<u8>,
}

impl TrainCase {
    /// Prepare a case; `weights` `None` means every voxel counts (dense labels). Checks
    /// the grids match and every weighted label is a class of the network.
    pub fn new(
        name: &str,
        image: &Image,
        labels: &Labels,
        weights: Option<&Mask>,
        classes: usize,
        norm: &Normalization,
    ) -> Result<Self, DataError> {
        let g = image.geometry();
        let mismatch = |what, got: &voxflow_engine::Geometry| DataError::GridMismatch {
            case: name.to_string(),
            what,
            got: got.describe(),
            image: g.describe(),
        };
        if !g.same_grid(labels.geometry()) {
            return Err(mismatch("labels", labels.geometry()));
        }
        if let Some(w) = weights {
            if !g.same_grid(w.geometry()) {
                return Err(mismatch("weights", w.geometry()));
            }
        }
        let n = g.len();
        let image: Vec<f32> = (0..n)
            .map(|i| norm.apply(image.get_f64(i) as f32))
            .collect();
        let weights: Vec<u8> = match weights {
            Some(w) => w.to_bytes(),
            None => vec![1; n],
        };
        let mut out_labels = Vec::with_capacity(n);
        for (i, &l) in labels.as_slice().iter().enumerate() {
            if weights[i] != 0 && usize::from(l) >= classes {
                return Err(DataError::LabelBeyondClasses {
                    case: name.to_string(),
                    label: l,
                    voxel: i,
                    classes,
                });
            }
            out_labels.push(if weights[i] != 0 { l as u8 } else { 0 });
        }
        Ok(TrainCase {
            name: name.to_string(),
            dims: g.dims,
            image,
            labels: out_labels,
            weights,
        })
    }

    fn slice_len(&self) -> usize {
        self.dims[0] * self.dims[1]
    }

    /// Slices with at least one weighted pixel.
    pub fn annotated_slices(&self) -> Vec<usize> {
        let s = self.slice_len();
        (0..self.dims[2])
            .filter(|&z| self.weights[z * s..(z + 1) * s].iter().any(|&w| w != 0))
            .collect()
    }
}

/// `n` patches of `size` x `size`: CT (normalised), class and weight per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Batch number (its generator's stream).
    pub index: u64,
    /// Patches in the batch.
    pub n: usize,
    /// Patch side in pixels.
    pub size: usize,
    /// `n * size * size` values, patch-major, row-major (x fastest).
    pub image: Vec<f32>,
    /// Class per pixel, same layout.
    pub labels: Vec<u8>,
    /// Weight per pixel (0 or 1), same layout.
    pub weights: Vec<u8>,
}

/// One annotated slice of one case, and its foreground pixels.
struct SliceRef {
    case: usize,
    z: usize,
    foreground: Vec<u32>,
}

/// Draws batches from training cases (see the module docs).
pub struct Sampler {
    cases: Vec<TrainCase>,
    slices: Vec<SliceRef>,
    config: TrainingConfig,
    pad: f32,
}

impl Sampler {
    /// Index the annotated slices; an error when there is nothing to train on.
    pub fn new(cases: Vec<TrainCase>, config: TrainingConfig) -> Result<Self, DataError> {
        let mut slices = Vec::new();
        for (ci, c) in cases.iter().enumerate() {
            let s = c.slice_len();
            for z in c.annotated_slices() {
                let foreground = (0..s)
                    .filter(|&p| c.weights[z * s + p] != 0 && c.labels[z * s + p] != 0)
                    .map(|p| p as u32)
                    .collect();
                slices.push(SliceRef {
                    case: ci,
                    z,
                    foreground,
                });
            }
        }
        if slices.is_empty() {
            return Err(DataError::NothingAnnotated(cases.len()));
        }
        let pad = config.hyper.normalization.pad_value();
        Ok(Sampler {
            cases,
            slices,
            config,
            pad,
        })
    }

    /// The config batches are drawn with.
    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// Number of annotated slices available.
    pub fn slices(&self) -> usize {
        self.slices.len()
    }

    /// Feed the training data (each case's dims, normalised CT, labels and weights, in
    /// order; not the names) into `h`.
    pub fn hash_data(&self, h: &mut blake3::Hasher) {
        let mut buf = Vec::with_capacity(4 << 16);
        for c in &self.cases {
            for d in c.dims {
                h.update(&(d as u64).to_le_bytes());
            }
            for chunk in c.image.chunks(1 << 16) {
                buf.clear();
                buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                h.update(&buf);
            }
            h.update(&c.labels);
            h.update(&c.weights);
        }
    }

    /// Batch number `index` (deterministic, see the module docs).
    pub fn batch(&self, index: u64) -> Batch {
        let h = &self.config.hyper;
        let (n, size) = (h.batch_size, h.patch_size);
        let mut rng = ChaCha8Rng::seed_from_u64(h.seed);
        rng.set_stream(index);
        let area = size * size;
        let mut batch = Batch {
            index,
            n,
            size,
            image: vec![self.pad; n * area],
            labels: vec![0; n * area],
            weights: vec![0; n * area],
        };
        for p in 0..n {
            let r = p * area..(p + 1) * area;
            self.patch(
                &mut rng,
                &mut batch.image[r.clone()],
                &mut batch.labels[r.clone()],
                &mut batch.weights[r],
            );
        }
        batch
    }

    fn patch(
        &self,
        rng: &mut ChaCha8Rng,
        image: &mut [f32],
        labels: &mut [u8],
        weights: &mut [u8],
    ) {
        let h = &self.config.hyper;
        let slice = &self.slices[rng.random_range(0..self.slices.len())];
        let case = &self.cases[slice.case];
        let [nx, ny, _] = case.dims;
        let centre_px =
            if !slice.foreground.is_empty() && rng.random::<f64>() < h.foreground_fraction {
                slice.foreground[rng.random_range(0..slice.foreground.len())] as usize
            } else {
                rng.random_range(0..nx * ny)
            };
        let (cx, cy) = ((centre_px % nx) as f64, (centre_px / nx) as f64);
        let mirror = h.augmentation.mirror_lr && rng.random::<bool>();
        let max = h.augmentation.max_rotation_deg;
        let angle = if max > 0.0 {
            rng.random_range(-max..=max).to_radians()
        } else {
            0.0
        };
        let (sin, cos) = angle.sin_cos();
        let off = case.slice_len() * slice.z;
        let size = h.patch_size;
        // Integer centre, so an unrotated patch samples whole pixels (no blur).
        let half = (size / 2) as f64;
        for v in 0..size {
            for u in 0..size {
                let mut du = u as f64 - half;
                let dv = v as f64 - half;
                if mirror {
                    du = -du;
                }
                let sx = cx + cos * du - sin * dv;
                let sy = cy + sin * du + cos * dv;
                let o = v * size + u;
                image[o] = bilinear(&case.image[off..off + nx * ny], nx, ny, sx, sy, self.pad);
                let (rx, ry) = (sx.round(), sy.round());
                if rx >= 0.0 && ry >= 0.0 && (rx as usize) < nx && (ry as usize) < ny {
                    let i = off + ry as usize * nx + rx as usize;
                    labels[o] = case.labels[i];
                    weights[o] = case.weights[i];
                }
            }
        }
    }
}

/// Bilinear sample of an `nx` x `ny` slice at `(x, y)`; outside pixels count as `pad`.
fn bilinear(s: &[f32], nx: usize, ny: usize, x: f64, y: f64, pad: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
    let at = |xi: f64, yi: f64| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi as usize >= nx || yi as usize >= ny {
            pad
        } else {
            s[yi as usize * nx + xi as usize]
        }
    };
    let a = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let b = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    a * (1.0 - fy) + b * fy
}

/// Whole annotated slices for validation, each padded by the trainer as inference does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationSet {
    /// The slices.
    pub slices: Vec<ValidationSlice>,
}

/// One validation slice.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationSlice {
    /// Case name.
    pub case: String,
    /// Slice index in the case.
    pub z: usize,
    /// Width (x) in pixels.
    pub width: usize,
    /// Height (y) in pixels.
    pub height: usize,
    /// Normalised CT, x fastest.
    pub image: Vec<f32>,
    /// Class per pixel.
    pub labels: Vec<u8>,
    /// Weight per pixel (0 or 1).
    pub weights: Vec<u8>,
}

impl ValidationSet {
    /// Every annotated slice of `cases`.
    pub fn from_cases(cases: &[TrainCase]) -> Self {
        let mut slices = Vec::new();
        for c in cases {
            let s = c.slice_len();
            for z in c.annotated_slices() {
                let r = z * s..(z + 1) * s;
                slices.push(ValidationSlice {
                    case: c.name.clone(),
                    z,
                    width: c.dims[0],
                    height: c.dims[1],
                    image: c.image[r.clone()].to_vec(),
                    labels: c.labels[r.clone()].to_vec(),
                    weights: c.weights[r].to_vec(),
                });
            }
        }
        ValidationSet { slices }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Augmentation, Hyper};
    use voxflow_engine::{Geometry, Volume};
    use voxflow_unet::UNetConfig;

    fn config(aug: Augmentation) -> TrainingConfig {
        let mut arch = UNetConfig::seed();
        arch.levels = 2;
        arch.base_filters = 4;
        TrainingConfig {
            architecture: arch,
            hyper: Hyper {
                batch_size: 3,
                patch_size: 8,
                augmentation: aug,
                normalization: norm(),
                ..Hyper::default()
            },
        }
    }

    /// A 12x10x3 case: HU = 100*x + y, label 1 where x >= 6 on slice 1 only (weights too).
    fn case() -> TrainCase {
        let g = Geometry::new([12, 10, 3], [1.0, 1.0, 1.0]);
        let mut hu = vec![0i16; g.len()];
        let mut lab = vec![0u16; g.len()];
        let mut w = vec![0u8; g.len()];
        for z in 0..3 {
            for y in 0..10 {
                for x in 0..12 {
                    let i = g.index(x, y, z);
                    hu[i] = (100 * x + y) as i16;
                    if z == 1 {
                        w[i] = 1;
                        lab[i] = u16::from(x >= 6);
                    }
                }
            }
        }
        let image = Image::I16(Volume::from_vec(g.clone(), hu).unwrap());
        let labels = Volume::from_vec(g.clone(), lab).unwrap();
        let weights = voxflow_engine::Mask::from_bytes(g, &w).unwrap();
        TrainCase::new("c", &image, &labels, Some(&weights), 3, &norm()).unwrap()
    }

    /// HU unchanged (so the tests read positions back from values), air as padding.
    fn norm() -> Normalization {
        Normalization {
            clip_min_hu: -1024.0,
            clip_max_hu: 2048.0,
            center_hu: 0.0,
            scale_hu: 1.0,
        }
    }

    #[test]
    fn same_index_same_batch_other_index_other_batch() {
        let s = Sampler::new(vec![case()], config(Augmentation::default())).unwrap();
        assert_eq!(s.batch(5), s.batch(5));
        assert_ne!(s.batch(5).image, s.batch(6).image);
        assert_eq!(s.slices(), 1);
    }

    #[test]
    fn unaugmented_patches_copy_the_slice_and_pad_outside() {
        let aug = Augmentation {
            mirror_lr: false,
            max_rotation_deg: 0.0,
        };
        let s = Sampler::new(vec![case()], config(aug)).unwrap();
        let b = s.batch(0);
        let area = 64;
        for p in 0..b.n {
            let img = &b.image[p * area..(p + 1) * area];
            // Find the patch's offset from any inside pixel: HU = 100x + y.
            let (o, v) = img.iter().enumerate().find(|(_, &v)| v != -1024.0).unwrap();
            let (x0, y0) = (
                (v / 100.0).round() as i64 - (o % 8) as i64,
                (v % 100.0) as i64 - (o / 8) as i64,
            );
            for (o, &v) in img.iter().enumerate() {
                let (x, y) = (x0 + (o % 8) as i64, y0 + (o / 8) as i64);
                let inside = (0..12).contains(&x) && (0..10).contains(&y);
                let w = b.weights[p * area + o];
                let l = b.labels[p * area + o];
                if inside {
                    assert_eq!(v, (100 * x + y) as f32);
                    assert_eq!((w, l), (1, u8::from(x >= 6)));
                } else {
                    assert_eq!((v, w, l), (-1024.0, 0, 0), "padding at ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn mirrored_patches_keep_labels_with_their_pixels() {
        let aug = Augmentation {
            mirror_lr: true,
            max_rotation_deg: 30.0,
        };
        let s = Sampler::new(vec![case()], config(aug)).unwrap();
        let mut checked = 0;
        for k in 0..20 {
            let b = s.batch(k);
            for i in 0..b.image.len() {
                // HU = 100x + y is linear, so the bilinear CT gives the source x (plus
                // y/100) exactly, or less where padding mixes in; the label comes from the
                // nearest pixel. A source x above 6.6 must therefore carry label 1.
                if b.weights[i] == 1 && b.image[i] / 100.0 > 6.6 {
                    assert_eq!(b.labels[i], 1);
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn nothing_annotated_is_an_error() {
        let mut c = case();
        c.weights.iter_mut().for_each(|w| *w = 0);
        let e = Sampler::new(vec![c], config(Augmentation::default()))
            .err()
            .unwrap();
        assert_eq!(e, DataError::NothingAnnotated(1));
        assert!(e.to_string().starts_with("no annotated slice"), "{e}");
    }

    #[test]
    fn labels_beyond_the_classes_are_refused() {
        let g = Geometry::new([2, 2, 1], [1.0; 3]);
        let image = Image::I16(Volume::filled(g.clone(), 0));
        let labels = Volume::from_vec(g, vec![0, 1, 2, 3]).unwrap();
        let e =
            TrainCase::new("x", &image, &labels, None, 3, &Normalization::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: label 3 at voxel 3 is not a class of a 3-class network (expected 0..2)"
        );
    }

    #[test]
    fn validation_takes_every_annotated_slice() {
        let v = ValidationSet::from_cases(&[case()]);
        assert_eq!(v.slices.len(), 1);
        assert_eq!(
            (v.slices[0].z, v.slices[0].width, v.slices[0].height),
            (1, 12, 10)
        );
    }
}
