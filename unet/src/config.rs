//! Architecture and input normalisation of a U-Net, as written in a saved model's
//! `model.json` (the `architecture` and `normalization` objects).
//!
//! Both are plain serde structs with `deny_unknown_fields`: a misspelt key in a model
//! file is an error, never a silently ignored setting that makes training and inference
//! disagree.

use serde::{Deserialize, Serialize};

/// Largest number of levels accepted: 8 levels already need tiles of at least 128 px and
/// give `base_filters << 7` channels at the bottom; more is a typo, not a design.
pub const MAX_LEVELS: usize = 8;

/// Kind of network. Only one today; the tag is there so a later 3D U-Net cannot be
/// loaded by mistake as a 2D one.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// 2D U-Net applied to axial slices.
    Unet2d,
}

/// How the decoder doubles the resolution.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Upsampling {
    /// 2x2 transposed convolution with stride 2 (Keras `Conv2DTranspose(c, 2, strides=2)`),
    /// as the seed's network.
    Transposed,
}

/// The architecture of a 2D U-Net (the seed's network, `unet_keras.py`).
///
/// Level `l` (0-based) has `base_filters << l` filters and a block of two `kernel` x
/// `kernel` convolutions ("same" padding), each followed by batch norm (when
/// `batch_norm`) and ReLU. Between encoder levels a 2x2 max pool halves the resolution;
/// the decoder upsamples, concatenates the encoder's skip (skip first, as Keras
/// `Concatenate([skip, up])`) and applies a block. A 1x1 convolution gives `classes`
/// logits.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Network kind; `"unet2d"`.
    pub kind: ModelKind,
    /// Input channels (1 for a CT).
    pub in_channels: usize,
    /// Output classes including background (class 0); the label value of class `i` is `i`.
    pub classes: usize,
    /// Resolution levels including the bottleneck; `levels - 1` poolings.
    pub levels: usize,
    /// Filters at the first level; doubled at each level below.
    pub base_filters: usize,
    /// Convolution kernel size (odd, so "same" padding is symmetric).
    pub kernel: usize,
    /// Batch norm after each convolution.
    pub batch_norm: bool,
    /// Decoder upsampling.
    pub upsampling: Upsampling,
}

/// One reason no network can be built from a [`UNetConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchitectureProblem {
    /// `in_channels` is 0.
    #[error("in_channels must be >= 1, got 0")]
    NoInputChannel,
    /// Fewer than 2 classes.
    #[error("classes must be >= 2 (background and at least one structure), got {0}")]
    TooFewClasses(usize),
    /// More classes than a u16 label map holds.
    #[error("classes must fit a label map (<= 65535), got {0}")]
    TooManyClasses(usize),
    /// `levels` outside 1..=MAX_LEVELS.
    #[error("levels must be 1..={max} (levels - 1 poolings), got {0}", max = MAX_LEVELS)]
    Levels(usize),
    /// `base_filters` is 0.
    #[error("base_filters must be >= 1, got 0")]
    NoFilters,
    /// An even (or zero) kernel size.
    #[error(
        "kernel must be odd (\"same\" padding of an even kernel shifts the output by half a \
         pixel at every layer), got {0}"
    )]
    EvenKernel(usize),
}

/// Why an `architecture.json` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchitectureError {
    /// Not JSON, an unknown field or variant, a wrong type (serde_json's message).
    #[error("{0}")]
    Json(String),
    /// Parsed, but no network can be built from it: every reason, in field order.
    #[error("{}", join(.0))]
    Invalid(Vec<ArchitectureProblem>),
}

fn join(problems: &[ArchitectureProblem]) -> String {
    let all: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    all.join("; ")
}

/// A tile (or training patch) size the network's poolings do not divide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tile {size} px does not fit a U-Net with {levels} levels: tiles must be a positive \
     multiple of 2^(levels-1) = {multiple} px"
)]
pub struct TileError {
    /// The tile side in pixels.
    pub size: usize,
    /// The network's levels.
    pub levels: usize,
    /// What the size must be a multiple of.
    pub multiple: usize,
}

/// Why a [`Normalization`] is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizationError {
    /// A NaN or infinite value.
    #[error("normalization values must be finite, got {0:?}")]
    NotFinite(Normalization),
    /// The clip window is empty.
    #[error("clip_min_hu must be < clip_max_hu, got {min} >= {max}")]
    EmptyWindow {
        /// `clip_min_hu`.
        min: f32,
        /// `clip_max_hu`.
        max: f32,
    },
    /// `scale_hu` is not positive.
    #[error("scale_hu must be > 0, got {0}")]
    Scale(f32),
}

impl UNetConfig {
    /// The seed's network: 5 levels, 16 base filters, 3x3 kernels, 3 classes.
    pub fn seed() -> Self {
        UNetConfig {
            kind: ModelKind::Unet2d,
            in_channels: 1,
            classes: 3,
            levels: 5,
            base_filters: 16,
            kernel: 3,
            batch_norm: true,
            upsampling: Upsampling::Transposed,
        }
    }

    /// Parse from JSON, then [`check`](Self::check) it.
    pub fn from_json(text: &str) -> Result<Self, ArchitectureError> {
        let c: UNetConfig =
            serde_json::from_str(text).map_err(|e| ArchitectureError::Json(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// Refuse values no network can be built from; the message says why.
    pub fn check(&self) -> Result<(), ArchitectureError> {
        use ArchitectureProblem as P;
        let mut why = Vec::new();
        if self.in_channels == 0 {
            why.push(P::NoInputChannel);
        }
        if self.classes < 2 {
            why.push(P::TooFewClasses(self.classes));
        }
        if self.classes > u16::MAX as usize {
            why.push(P::TooManyClasses(self.classes));
        }
        if self.levels == 0 || self.levels > MAX_LEVELS {
            why.push(P::Levels(self.levels));
        }
        if self.base_filters == 0 {
            why.push(P::NoFilters);
        }
        if self.kernel == 0 || self.kernel % 2 == 0 {
            why.push(P::EvenKernel(self.kernel));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(ArchitectureError::Invalid(why))
        }
    }

    /// Input sizes must be a multiple of this: `2^(levels - 1)`, so every pooling halves an
    /// even size and the decoder restores the exact size.
    pub fn size_multiple(&self) -> usize {
        1 << self.levels.saturating_sub(1)
    }

    /// Filters at level `l`.
    pub fn filters(&self, level: usize) -> usize {
        self.base_filters << level
    }

    /// Check that a tile (or training patch) of `size` pixels fits the network: a multiple
    /// of [`size_multiple`](Self::size_multiple), at least one pixel at the bottleneck.
    pub fn check_tile(&self, size: usize) -> Result<(), TileError> {
        let m = self.size_multiple();
        if size == 0 || size % m != 0 {
            return Err(TileError {
                size,
                levels: self.levels,
                multiple: m,
            });
        }
        Ok(())
    }

    /// Receptive field radius in pixels (how far an output pixel looks): two convolutions
    /// per block at each level on the way down and up, the poolings, and the bottleneck.
    /// Tiles blend away their edges within this distance.
    pub fn receptive_radius(&self) -> usize {
        let r = self.kernel / 2;
        let mut radius = 0;
        for l in 0..self.levels {
            let stride = 1 << l;
            // Encoder block (and decoder block, except at the bottleneck).
            let blocks = if l + 1 == self.levels { 1 } else { 2 };
            radius += blocks * 2 * r * stride;
            if l + 1 < self.levels {
                radius += stride; // 2x2 pool at this resolution
            }
        }
        radius
    }
}

/// How CT values become network inputs: clip to a HU window, then
/// `(value - center) / scale`. Stored with the weights, so training and inference cannot
/// disagree.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Lowest HU kept; lower values (and padding outside the image) become this.
    pub clip_min_hu: f32,
    /// Highest HU kept.
    pub clip_max_hu: f32,
    /// Subtracted after clipping, in HU.
    pub center_hu: f32,
    /// Divided by after centering, in HU.
    pub scale_hu: f32,
}

impl Default for Normalization {
    /// Soft-tissue friendly default: -1024..1024 HU mapped to -1..1.
    fn default() -> Self {
        Normalization {
            clip_min_hu: -1024.0,
            clip_max_hu: 1024.0,
            center_hu: 0.0,
            scale_hu: 1024.0,
        }
    }
}

impl Normalization {
    /// Refuse windows that would make every input equal or produce NaN.
    pub fn check(&self) -> Result<(), NormalizationError> {
        let all = [
            self.clip_min_hu,
            self.clip_max_hu,
            self.center_hu,
            self.scale_hu,
        ];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(NormalizationError::NotFinite(self.clone()));
        }
        if self.clip_min_hu >= self.clip_max_hu {
            return Err(NormalizationError::EmptyWindow {
                min: self.clip_min_hu,
                max: self.clip_max_hu,
            });
        }
        if self.scale_hu <= 0.0 {
            return Err(NormalizationError::Scale(self.scale_hu));
        }
        Ok(())
    }

    /// One value, normalised.
    #[inline]
    pub fn apply(&self, hu: f32) -> f32 {
        // NaN voxels (rare, float images) count as the clip minimum (air) rather than
        // poisoning every output pixel whose receptive field sees them.
        let v = if hu.is_nan() {
            self.clip_min_hu
        } else {
            hu.clamp(self.clip_min_hu, self.clip_max_hu)
        };
        (v - self.center_hu) / self.scale_hu
    }

    /// The normalised value used for padding outside the image (air).
    pub fn pad_value(&self) -> f32 {
        self.apply(self.clip_min_hu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_config_parses_from_the_issue_json() {
        let c = UNetConfig::from_json(
            r#"{"kind": "unet2d", "in_channels": 1, "classes": 3, "levels": 5,
                "base_filters": 16, "kernel": 3, "batch_norm": true, "upsampling": "transposed"}"#,
        )
        .unwrap();
        assert_eq!(c, UNetConfig::seed());
        assert_eq!(c.size_multiple(), 16);
        assert_eq!(c.filters(4), 256);
    }

    #[test]
    fn impossible_values_say_why() {
        let base = serde_json::to_value(UNetConfig::seed()).unwrap();
        let with = |k: &str, v: serde_json::Value| {
            let mut j = base.clone();
            j[k] = v;
            UNetConfig::from_json(&j.to_string())
                .unwrap_err()
                .to_string()
        };
        assert!(with("kernel", 4.into()).contains("kernel must be odd"));
        assert!(with("levels", 0.into()).contains("levels must be 1..=8"));
        assert!(with("levels", 9.into()).contains("got 9"));
        assert!(with("classes", 1.into()).contains("classes must be >= 2"));
        assert!(with("in_channels", 0.into()).contains("in_channels"));
        assert!(with("kind", "unet3d".into()).contains("unknown variant `unet3d`"));
        let mut j = base.clone();
        j["dropout"] = 0.5.into();
        let e = UNetConfig::from_json(&j.to_string()).unwrap_err();
        assert!(
            matches!(&e, ArchitectureError::Json(m) if m.contains("unknown field `dropout`")),
            "{e}"
        );
        let two = UNetConfig {
            in_channels: 0,
            kernel: 4,
            ..UNetConfig::seed()
        };
        assert_eq!(
            two.check(),
            Err(ArchitectureError::Invalid(vec![
                ArchitectureProblem::NoInputChannel,
                ArchitectureProblem::EvenKernel(4)
            ]))
        );
        assert!(
            two.check()
                .unwrap_err()
                .to_string()
                .contains("got 0; kernel must be odd"),
            "one message, every reason"
        );
    }

    #[test]
    fn tiles_must_fit_the_poolings() {
        let c = UNetConfig::seed();
        assert!(c.check_tile(256).is_ok());
        let e = c.check_tile(200).unwrap_err();
        assert_eq!(
            e,
            TileError {
                size: 200,
                levels: 5,
                multiple: 16
            }
        );
        assert!(
            e.to_string().contains("multiple of 2^(levels-1) = 16"),
            "{e}"
        );
        assert!(c.check_tile(8).is_err());
    }

    #[test]
    fn normalization_clips_then_scales() {
        let n = Normalization::default();
        assert_eq!(n.apply(-3000.0), -1.0);
        assert_eq!(n.apply(512.0), 0.5);
        assert_eq!(n.apply(f32::NAN), -1.0);
        assert_eq!(
            Normalization {
                scale_hu: 0.0,
                ..n.clone()
            }
            .check(),
            Err(NormalizationError::Scale(0.0))
        );
    }
}
