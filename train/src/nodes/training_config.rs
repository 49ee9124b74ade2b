//! `TrainingConfig`: the network and hyperparameters of a training run, as a graph value.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use voxflow_engine::{
    node_params, Example, ImplSpec, Node, NodeContext, NodeError, NodeSpec, NodeType, OutputSpec,
    ParamError, Params, Value,
};
use voxflow_unet::UNetConfig;

use crate::config::{self, read_architecture, read_hyper, Hyper};

node_params! {
    /// Params of `TrainingConfig`: each part inline (a RON struct) or a file path (string).
    pub struct TrainingConfigParams {
        /// The U-Net, inline or an architecture.json path; None: the seed's network.
        #[param(ty = "Option<struct | path>")]
        pub architecture: Option<serde_json::Value> = None,
        /// Hyperparameters, inline or a RON file path; None: all defaults.
        #[param(ty = "Option<struct | path>")]
        pub hyper: Option<serde_json::Value> = None,
    }
}

/// One part of the config: from a file (read when the node runs) or given inline.
#[derive(Debug, Clone)]
enum Part<T> {
    File(PathBuf),
    Inline(T),
}

fn part<T: for<'de> Deserialize<'de>>(
    name: &str,
    v: &Option<serde_json::Value>,
) -> Result<Option<Part<T>>, ParamError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(path)) if path.is_empty() => Err(ParamError::field(
            name,
            "is an empty path; give a file or an inline struct",
        )),
        Some(serde_json::Value::String(path)) => Ok(Some(Part::File(PathBuf::from(path)))),
        Some(obj @ serde_json::Value::Object(_)) => serde_path_to_error::deserialize(obj.clone())
            .map(|t| Some(Part::Inline(t)))
            .map_err(|e| {
                let at = e.path().to_string();
                let at = if at == "." {
                    String::new()
                } else {
                    format!("at `{at}`: ")
                };
                ParamError::field(name, format!("{at}{}", e.inner()))
            }),
        Some(other) => Err(ParamError::field(
            name,
            format!("must be a file path or an inline struct, got {other}"),
        )),
    }
}

/// The `TrainingConfig` node type.
pub struct TrainingConfig;

impl NodeType for TrainingConfig {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "TrainingConfig",
            summary: "The network and hyperparameters of a training run.",
            doc: "Combines the U-Net architecture (the `architecture.json` of UNetInfer's \
                  models) and the training hyperparameters into the config a PatchServer \
                  streams to its trainers; each part is given inline in the graph or as a \
                  file. Hyperparameters and their defaults: learning_rate 1e-4, adam_epsilon \
                  1e-7, dice_weight 1, ce_weight 1, batch_size 8, patch_size 128 px, \
                  iterations 10000, validate_every 250, seed 1, foreground_fraction 0.5, \
                  augmentation (mirror_lr: true, max_rotation_deg: 10), normalization \
                  (clip_min_hu: -1024, clip_max_hu: 1024, center_hu: 0, scale_hu: 1024). \
                  Checks that the parts fit (the patch survives the poolings).",
            category: "training",
            inputs: vec![],
            outputs: vec![OutputSpec::new(
                "config",
                super::CONFIG,
                "The training config (architecture + hyperparameters) with its hash.",
            )],
            params: TrainingConfigParams::param_specs(),
            impls: vec![ImplSpec::new("default", "Reads and checks the parts.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "A small network and a short run, inline.",
            graph: r#"Graph(
    name: "training_config_example",
    nodes: {
        "config": (node: "TrainingConfig", params: (
            architecture: (kind: "unet2d", in_channels: 1, classes: 3, levels: 3, base_filters: 8,
                           kernel: 3, batch_norm: false, upsampling: "transposed"),
            hyper: (iterations: 200, patch_size: 64, batch_size: 4, learning_rate: 1e-3),
        )),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = TrainingConfigParams::from_json(params)?;
        let mut errors = Vec::new();
        let arch = part::<UNetConfig>("architecture", &p.architecture)
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        let hyper = part::<Hyper>("hyper", &p.hyper)
            .map_err(|e| errors.push(e))
            .ok()
            .flatten();
        if let Some(Part::Inline(a)) = &arch {
            if let Err(e) = a.check() {
                errors.push(ParamError::field("architecture", e.to_string()));
            }
        }
        if let Some(Part::Inline(h)) = &hyper {
            if let Err(e) = h.check() {
                errors.push(ParamError::field("hyper", e.to_string()));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(TrainingConfigNode { arch, hyper }))
    }
}

struct TrainingConfigNode {
    arch: Option<Part<UNetConfig>>,
    hyper: Option<Part<Hyper>>,
}

impl Node for TrainingConfigNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let architecture = match &self.arch {
            None => UNetConfig::seed(),
            Some(Part::Inline(a)) => a.clone(),
            Some(Part::File(p)) => read_architecture(p).map_err(|e| NodeError::file(p, e))?,
        };
        let hyper = match &self.hyper {
            None => Hyper::default(),
            Some(Part::Inline(h)) => h.clone(),
            Some(Part::File(p)) => read_hyper(p).map_err(|e| NodeError::file(p, e))?,
        };
        let cfg = config::TrainingConfig {
            architecture,
            hyper,
        };
        cfg.check().map_err(|e| NodeError::Other(e.to_string()))?;
        ctx.note(format!("config {}", cfg.hash()));
        ctx.set_output("config", Value::Opaque(super::CONFIG, Arc::new(cfg)));
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(Part::File(p)) = &self.arch {
            files.push(p.clone());
        }
        if let Some(Part::File(p)) = &self.hyper {
            files.push(p.clone());
        }
        files
    }
}
