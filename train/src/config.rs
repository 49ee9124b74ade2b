//! What a training run needs besides data: the network ([`UNetConfig`], the inference
//! issue's `architecture.json`) and the hyperparameters ([`Hyper`], RON). Together they are
//! the [`TrainingConfig`] a patch server streams to its trainers; its hash names it in
//! `metrics.jsonl` and checkpoints, so a resumed run can refuse a changed config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use voxflow_unet::{ArchitectureError, Normalization, NormalizationError, TileError, UNetConfig};

/// Why hyperparameters or a training config cannot train. The message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The RON text does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A field is unknown or has the wrong type (`path` is `.` for the top level).
    #[error("at `{path}`: {message}")]
    Field {
        /// Where, as `augmentation.mirror`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A value outside what can train.
    #[error("{param} must be {expected}, got {got}")]
    OutOfRange {
        /// The field, as `augmentation.max_rotation_deg`.
        param: &'static str,
        /// The accepted range, as `in 1..=1024`.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A count that must be at least 1 is 0.
    #[error("{0} must be >= 1")]
    Zero(&'static str),
    /// Both loss weights are 0.
    #[error("dice_weight and ce_weight are both 0: nothing to learn")]
    NothingToLearn,
    /// The HU normalisation is refused.
    #[error("normalization: {0}")]
    Normalization(NormalizationError),
    /// The network is refused.
    #[error("architecture: {0}")]
    Architecture(ArchitectureError),
    /// The patch does not survive the network's poolings.
    #[error("patch_size: {0}")]
    PatchSize(TileError),
}

/// An `architecture.json` or hyperparameter file that cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `architecture.json` is not a usable network.
    #[error("{}: {error}", path.display())]
    Architecture {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ArchitectureError,
    },
    /// The hyperparameters do not parse or cannot train.
    #[error("{}: {error}", path.display())]
    Hyper {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ConfigError,
    },
}

/// Augmentation applied to each patch, drawn from the batch's seeded generator.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Mirror left-right (along x) with probability 1/2. Default `true`.
    pub mirror_lr: bool,
    /// Rotate in-plane by a uniform angle in `[-max, max]` degrees. Default 10.
    pub max_rotation_deg: f64,
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation {
            mirror_lr: true,
            max_rotation_deg: 10.0,
        }
    }
}

/// Training hyperparameters (RON file or inline in a graph). Every field has a default,
/// so `()` is a valid config.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Hyper {
    /// Adam learning rate. Default 1e-4.
    pub learning_rate: f64,
    /// Adam epsilon. Default 1e-7 (Keras' value; burn's own default is 1e-5).
    pub adam_epsilon: f64,
    /// Weight of the soft Dice loss (foreground classes). Default 1.
    pub dice_weight: f64,
    /// Weight of the cross-entropy loss. Default 1.
    pub ce_weight: f64,
    /// Patches per training step. Default 8.
    pub batch_size: usize,
    /// Patch side in pixels (square, a multiple of `2^(levels-1)`). Default 128.
    pub patch_size: usize,
    /// Training steps. Default 10000.
    pub iterations: u64,
    /// Validate (Dice per class), keep the best model and write a checkpoint every this
    /// many steps (and after the last). Default 250.
    pub validate_every: u64,
    /// Seeds the initial weights and every batch. Default 1.
    pub seed: u64,
    /// Fraction of patches centred on an annotated foreground pixel (the rest anywhere
    /// in an annotated slice): sparse annotations are mostly background. Default 0.5.
    pub foreground_fraction: f64,
    /// Patch augmentation.
    pub augmentation: Augmentation,
    /// How HU become network inputs; saved with the model.
    pub normalization: Normalization,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            learning_rate: 1e-4,
            adam_epsilon: 1e-7,
            dice_weight: 1.0,
            ce_weight: 1.0,
            batch_size: 8,
            patch_size: 128,
            iterations: 10_000,
            validate_every: 250,
            seed: 1,
            foreground_fraction: 0.5,
            augmentation: Augmentation::default(),
            normalization: Normalization::default(),
        }
    }
}

impl Hyper {
    /// Parse RON text (`(learning_rate: 1e-3, iterations: 500)`).
    pub fn from_ron(text: &str) -> Result<Self, ConfigError> {
        let syntax = |e: ron::error::SpannedError| ConfigError::Syntax(e.to_string());
        let mut de = ron::Deserializer::from_str(text).map_err(syntax)?;
        let hyper: Hyper = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                ConfigError::Syntax(e.inner().to_string())
            } else {
                ConfigError::Field {
                    path,
                    message: e.inner().to_string(),
                }
            }
        })?;
        de.end().map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Ok(hyper)
    }

    /// Refuse values that cannot train.
    pub fn check(&self) -> Result<(), ConfigError> {
        let out_of_range = |param, expected, got: &dyn std::fmt::Display| {
            Err(ConfigError::OutOfRange {
                param,
                expected,
                got: got.to_string(),
            })
        };
        let positive = [
            ("learning_rate", self.learning_rate),
            ("adam_epsilon", self.adam_epsilon),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return out_of_range(name, "> 0", &v);
            }
        }
        for (name, v) in [
            ("dice_weight", self.dice_weight),
            ("ce_weight", self.ce_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return out_of_range(name, ">= 0", &v);
            }
        }
        if self.dice_weight + self.ce_weight <= 0.0 {
            return Err(ConfigError::NothingToLearn);
        }
        if self.batch_size == 0 || self.batch_size > 1024 {
            return out_of_range("batch_size", "in 1..=1024", &self.batch_size);
        }
        if self.patch_size == 0 || self.patch_size > 2048 {
            return out_of_range("patch_size", "in 1..=2048 pixels", &self.patch_size);
        }
        if self.iterations == 0 {
            return Err(ConfigError::Zero("iterations"));
        }
        if self.validate_every == 0 {
            return Err(ConfigError::Zero("validate_every"));
        }
        if !(0.0..=1.0).contains(&self.foreground_fraction) {
            return out_of_range(
                "foreground_fraction",
                "in [0, 1]",
                &self.foreground_fraction,
            );
        }
        let rot = self.augmentation.max_rotation_deg;
        if !(rot.is_finite() && (0.0..=180.0).contains(&rot)) {
            return out_of_range("augmentation.max_rotation_deg", "in [0, 180]", &rot);
        }
        self.normalization
            .check()
            .map_err(ConfigError::Normalization)
    }
}

/// Network plus hyperparameters: what a patch server streams and a trainer trains with.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// The U-Net.
    pub architecture: UNetConfig,
    /// How to train it.
    pub hyper: Hyper,
}

impl TrainingConfig {
    /// Check both parts and that they fit together (the patch must survive the poolings).
    pub fn check(&self) -> Result<(), ConfigError> {
        self.architecture
            .check()
            .map_err(ConfigError::Architecture)?;
        self.hyper.check()?;
        self.architecture
            .check_tile(self.hyper.patch_size)
            .map_err(ConfigError::PatchSize)
    }

    /// Canonical JSON (field order fixed by the structs), what the protocol sends.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// BLAKE3 of [`to_json`](Self::to_json), 16 hex digits: names the config in metrics
    /// and checkpoints.
    pub fn hash(&self) -> String {
        blake3::hash(self.to_json().as_bytes()).to_hex()[..16].to_string()
    }
}

/// Read `architecture.json` (the inference issue's format).
pub fn read_architecture(path: &Path) -> Result<UNetConfig, ConfigFileError> {
    let text = read(path)?;
    let invalid = |error| ConfigFileError::Architecture {
        path: path.to_path_buf(),
        error,
    };
    let arch = UNetConfig::from_json(&text).map_err(invalid)?;
    arch.check().map_err(invalid)?;
    Ok(arch)
}

fn read(path: &Path) -> Result<String, ConfigFileError> {
    std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Read a hyperparameter RON file.
pub fn read_hyper(path: &Path) -> Result<Hyper, ConfigFileError> {
    let text = read(path)?;
    let invalid = |error| ConfigFileError::Hyper {
        path: path.to_path_buf(),
        error,
    };
    let hyper = Hyper::from_ron(&text).map_err(invalid)?;
    hyper.check().map_err(invalid)?;
    Ok(hyper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ron_gives_the_documented_defaults() {
        let h = Hyper::from_ron("()").unwrap();
        assert_eq!(h, Hyper::default());
        assert_eq!(h.learning_rate, 1e-4);
        assert_eq!(h.iterations, 10_000);
        h.check().unwrap();
    }

    #[test]
    fn ron_overrides_and_unknown_keys_say_where() {
        let h = Hyper::from_ron("(learning_rate: 1e-3, augmentation: (mirror_lr: false))").unwrap();
        assert_eq!(h.learning_rate, 1e-3);
        assert!(!h.augmentation.mirror_lr);
        assert_eq!(h.augmentation.max_rotation_deg, 10.0);
        let e = Hyper::from_ron("(augmentation: (mirror: true))").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Field { path, message }
                if path == "augmentation.mirror" && message.contains("mirror_lr")),
            "{e:?}"
        );
        let e = Hyper::from_ron("(batch_size: -1)").unwrap_err();
        assert!(e.to_string().contains("batch_size"), "{e}");
    }

    #[test]
    fn impossible_values_say_why() {
        let bad = |h: Hyper| h.check().unwrap_err();
        let e = bad(Hyper {
            learning_rate: 0.0,
            ..Hyper::default()
        });
        assert_eq!(e.to_string(), "learning_rate must be > 0, got 0", "{e:?}");
        let e = bad(Hyper {
            dice_weight: 0.0,
            ce_weight: 0.0,
            ..Hyper::default()
        });
        assert_eq!(e, ConfigError::NothingToLearn);
        let cfg = TrainingConfig {
            architecture: UNetConfig::seed(),
            hyper: Hyper {
                patch_size: 100,
                ..Hyper::default()
            },
        };
        let e = cfg.check().unwrap_err();
        assert!(matches!(e, ConfigError::PatchSize(_)), "{e:?}");
        assert!(e.to_string().starts_with("patch_size: tile 100 px"), "{e}");
    }

    #[test]
    fn hash_follows_the_content() {
        let a = TrainingConfig {
            architecture: UNetConfig::seed(),
            hyper: Hyper::default(),
        };
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.hyper.seed = 2;
        assert_ne!(a.hash(), b.hash());
        let back: TrainingConfig = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(back, a);
    }
}
