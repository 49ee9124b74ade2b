//! Saved models: a folder `NAME.vxmodel/` holding `model.json` (format, architecture,
//! normalisation, class names, provenance, weights hash) and `weights.bpk` (burn's
//! burnpack).
//!
//! A folder rather than one file because `model.json` is meant to be read by people and
//! other tools (`jq .architecture`), and burnpack is burn's own format; the BLAKE3 hash of
//! the weights in `model.json` binds the two, so a swapped or truncated weights file is
//! reported instead of silently producing other labels. Loading checks, in order: the
//! folder, `model.json` (format, known keys, possible architecture, normalisation, one
//! class name per class), the weights file (present, hash), and that every weight tensor
//! has the shape the architecture needs.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use crate::config::{ArchitectureError, Normalization, NormalizationError, UNetConfig};
use crate::model::UNet;

/// Value of `format` in `model.json`.
pub const FORMAT: &str = "voxflow-unet";
/// Version of the folder layout and `model.json` schema this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the description file inside the model folder.
pub const MODEL_JSON: &str = "model.json";
/// Name of the weights file inside the model folder.
pub const WEIGHTS_FILE: &str = "weights.bpk";

/// Where a model came from.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// voxflow version that wrote the model.
    pub voxflow_version: String,
    /// Id of the training run that produced the weights (`None` for random weights).
    pub training_run_id: Option<String>,
    /// When the model was written, UTC, ISO 8601 (`2025-01-31T12:00:00Z`).
    pub created_utc: String,
    /// Free text: data, purpose, caveats.
    pub note: String,
}

/// Contents of `model.json`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for what this crate writes.
    pub format_version: u32,
    /// The network.
    pub architecture: UNetConfig,
    /// How HU become inputs.
    pub normalization: Normalization,
    /// One name per class, class 0 first (background).
    pub class_names: Vec<String>,
    /// Where it came from.
    pub provenance: Provenance,
    /// Weights file name inside the folder.
    pub weights_file: String,
    /// BLAKE3 hash (hex) of the weights file.
    pub weights_blake3: String,
    /// Number of trainable parameters (for people; checked on load).
    pub parameters: usize,
}

/// Why a model could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or folder problem, with the path.
    #[error("{}: {message}", path.display())]
    File {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model is readable but unusable (bad architecture, mismatch).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The model folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ModelError {
    fn file(path: &Path, message: impl Into<String>) -> Self {
        ModelError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    fn invalid(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            ModelError::File { path, .. } | ModelError::Invalid { path, .. } => path,
        }
    }
}

/// Why [`SavedModel::new`] refuses a network's description.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidModel {
    /// The architecture cannot be built.
    #[error(transparent)]
    Architecture(#[from] ArchitectureError),
    /// The normalisation is refused.
    #[error(transparent)]
    Normalization(#[from] NormalizationError),
    /// Not one class name per class.
    #[error("{names} class names for {classes} classes")]
    ClassNames {
        /// Names given.
        names: usize,
        /// The network's classes.
        classes: usize,
    },
}

/// A model in memory: its description and the network on a device.
#[derive(Debug)]
pub struct SavedModel {
    /// The description (as in `model.json`).
    pub meta: ModelMeta,
    /// The network, in inference mode.
    pub net: UNet,
}

impl SavedModel {
    /// Wrap a network with its description; `parameters` and the weights fields are
    /// filled in by [`save`](Self::save).
    pub fn new(
        architecture: UNetConfig,
        normalization: Normalization,
        class_names: Vec<String>,
        provenance: Provenance,
        net: UNet,
    ) -> Result<Self, InvalidModel> {
        architecture.check()?;
        normalization.check()?;
        if class_names.len() != architecture.classes {
            return Err(InvalidModel::ClassNames {
                names: class_names.len(),
                classes: architecture.classes,
            });
        }
        let parameters = net.num_params();
        Ok(SavedModel {
            meta: ModelMeta {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                architecture,
                normalization,
                class_names,
                provenance,
                weights_file: WEIGHTS_FILE.into(),
                weights_blake3: String::new(),
                parameters,
            },
            net,
        })
    }

    /// Write the model folder: weights first, `model.json` last (each atomically), so a
    /// folder with a `model.json` always has the weights it describes.
    pub fn save(&mut self, dir: &Path) -> Result<(), ModelError> {
        let bytes = self
            .net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| ModelError::file(dir, format!("cannot serialise weights: {e}")))?;
        let weights = dir.join(WEIGHTS_FILE);
        voxflow_engine::fsutil::write_atomic(&weights, |w| w.write_all(&bytes))
            .map_err(|e| ModelError::file(&weights, e.to_string()))?;
        self.meta.weights_file = WEIGHTS_FILE.into();
        self.meta.weights_blake3 = blake3::hash(&bytes).to_hex().to_string();
        self.meta.parameters = self.net.num_params();
        let json = serde_json::to_string_pretty(&self.meta).expect("meta serialises");
        let path = dir.join(MODEL_JSON);
        voxflow_engine::fsutil::write_atomic(&path, |w| {
            w.write_all(json.as_bytes())?;
            w.write_all(b"\n")
        })
        .map_err(|e| ModelError::file(&path, e.to_string()))
    }

    /// Read and check `dir/model.json` only (no weights): for validation and messages.
    pub fn read_meta(dir: &Path) -> Result<ModelMeta, ModelError> {
        if !dir.is_dir() {
            let msg = if dir.exists() {
                "is not a model folder (expected a folder NAME.vxmodel/ with model.json and \
                 weights.bpk)"
            } else {
                "model folder not found"
            };
            return Err(ModelError::file(dir, msg));
        }
        let path = dir.join(MODEL_JSON);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ModelError::file(&path, format!("cannot read: {e}")))?;
        // Look at `format` first, so a foreign JSON gets a message about what it is
        // rather than a list of unknown fields.
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::file(&path, format!("not valid JSON: {e}")))?;
        match raw.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => {
                return Err(ModelError::file(
                    &path,
                    format!(
                        "not a voxflow U-Net description (format {other:?}, expected {FORMAT:?})"
                    ),
                ))
            }
        }
        match raw.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            other => {
                return Err(ModelError::file(
                    &path,
                    format!(
                        "format_version {other:?} is not supported by this voxflow (reads \
                         {FORMAT_VERSION})"
                    ),
                ))
            }
        }
        let meta: ModelMeta = serde_path_to_error::deserialize(raw)
            .map_err(|e| ModelError::file(&path, format!("at `{}`: {}", e.path(), e.inner())))?;
        let bad = |m: String| ModelError::invalid(&path, m);
        meta.architecture
            .check()
            .map_err(|e| bad(format!("architecture: {e}")))?;
        meta.normalization
            .check()
            .map_err(|e| bad(format!("normalization: {e}")))?;
        if meta.class_names.len() != meta.architecture.classes {
            return Err(bad(format!(
                "{} class names {:?} for {} classes",
                meta.class_names.len(),
                meta.class_names,
                meta.architecture.classes
            )));
        }
        if meta.weights_file.contains(['/', '\\']) || meta.weights_file.starts_with('.') {
            return Err(bad(format!(
                "weights_file must be a plain file name inside the model folder, got {:?}",
                meta.weights_file
            )));
        }
        Ok(meta)
    }

    /// Load a model folder onto `device`, checking everything (see the module docs).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let meta = Self::read_meta(dir)?;
        let weights = dir.join(&meta.weights_file);
        let bytes = match std::fs::read(&weights) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::file(
                    &weights,
                    format!("weights file missing (named by {MODEL_JSON})"),
                ))
            }
            Err(e) => return Err(ModelError::file(&weights, format!("cannot read: {e}"))),
        };
        let hash = blake3::hash(&bytes).to_hex().to_string();
        if hash != meta.weights_blake3 {
            return Err(ModelError::file(
                &weights,
                format!(
                    "weights file does not match {MODEL_JSON} (BLAKE3 {hash}, expected {}): \
                     replaced or corrupted",
                    meta.weights_blake3
                ),
            ));
        }
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| ModelError::file(&weights, format!("not a burnpack file: {e}")))?;
        let fresh = UNet::new(&meta.architecture, device);
        let net = fresh.try_load_record(record).map_err(|e| {
            ModelError::invalid(
                dir,
                format!(
                    "weights do not fit the architecture in {MODEL_JSON} ({:?}): {e}",
                    meta.architecture
                ),
            )
        })?;
        if net.num_params() != meta.parameters {
            return Err(ModelError::invalid(
                dir,
                format!(
                    "{MODEL_JSON} says {} parameters, the architecture has {}",
                    meta.parameters,
                    net.num_params()
                ),
            ));
        }
        Ok(SavedModel { meta, net })
    }
}

/// Default class names for `classes` classes: the sarcopenia convention for 3
/// (background, abdominal wall muscles, paravertebral muscles), `class_i` otherwise.
pub fn default_class_names(classes: usize) -> Vec<String> {
    if classes == 3 {
        return [
            "background",
            "abdominal_wall_muscles",
            "paravertebral_muscles",
        ]
        .map(String::from)
        .to_vec();
    }
    (0..classes)
        .map(|i| {
            if i == 0 {
                "background".to_string()
            } else {
                format!("class_{i}")
            }
        })
        .collect()
}

/// Write a model with random weights (burn's initialisers, seeded) to `dir`: for demos,
/// example graphs and tests only. Its `training_run_id` is `None` and its note says the
/// weights are random, so nobody mistakes its labels for a segmentation.
pub fn write_random_model(dir: &Path, config: &UNetConfig, seed: u64) -> Result<(), ModelError> {
    config
        .check()
        .map_err(|e| ModelError::invalid(dir, format!("architecture: {e}")))?;
    let net = UNet::seeded(config, &Device::flex(), seed);
    let mut model = SavedModel::new(
        config.clone(),
        Normalization::default(),
        default_class_names(config.classes),
        Provenance {
            voxflow_version: env!("CARGO_PKG_VERSION").into(),
            training_run_id: None,
            created_utc: voxflow_engine::clock::utc_now(),
            note: format!("random weights (seed {seed}) for demos and tests; not trained"),
        },
        net,
    )
    .map_err(|e| ModelError::invalid(dir, e.to_string()))?;
    model.save(dir)
}
