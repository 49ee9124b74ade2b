//! `UNetInfer`: segment a CT slice by slice with a saved U-Net.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use voxflow_engine::{
    node_impls, node_params, Example, Impls, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Value,
};

use crate::artifact::SavedModel;
use crate::infer::{predict, InferOptions};

/// Where the network runs.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The GPU when the implementation has one and a GPU is present, else the CPU.
    #[default]
    Auto,
    /// The CPU (burn Flex), always.
    Cpu,
    /// The GPU; an error when there is none.
    Gpu,
}

node_params! {
    /// Params of `UNetInfer`.
    pub struct UNetInferParams {
        /// Saved model folder (NAME.vxmodel/), relative to the current folder.
        #[param(ty = "path", required)]
        pub model: String = String::new(),
        /// Where the network runs; auto: the GPU when the implementation has one and it is
        /// present, else the CPU.
        #[param(ty = "\"auto\" | \"cpu\" | \"gpu\"")]
        pub device: DeviceChoice = DeviceChoice::Auto,
        /// Network inputs (slices or tiles) per forward pass. Device memory grows with it:
        /// a GPU that runs out fails the node with an error saying so, and a smaller
        /// batch_size runs (results do not depend on it).
        pub batch_size: usize = 8,
        /// Tile size (a multiple of 2^(levels-1)); None: whole slices.
        #[param(unit = "px")]
        pub tile: Option<usize> = None,
        /// Fraction of a tile shared with its neighbour, in [0, 1).
        pub overlap: f64 = 0.25,
        /// Classes the graph expects; a model with another count is an error.
        pub classes: Option<usize> = None,
    }
}

node_impls! {
    /// The implementations of `UNetInfer`: burn backends. A build with a GPU backend makes
    /// it the default, so `device: auto` really picks the GPU when one is present.
    pub enum UNetImpl {
        /// burn's wgpu backend (Vulkan on Linux, so NVIDIA GPUs work with the Vulkan
        /// loader installed); falls back to Flex on the CPU with `device: auto` when no GPU
        /// adapter is found.
        #[cfg(feature = "wgpu")]
        BurnWgpu = "burn-wgpu",
        /// burn's Flex CPU backend (pure Rust, rayon threads, SIMD). `device: gpu` is an
        /// error with it.
        BurnFlex = "burn-flex",
    }
}

/// The `UNetInfer` node type.
pub struct UNetInfer;

impl NodeType for UNetInfer {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "UNetInfer",
            summary: "Segment a CT slice by slice with a saved 2D U-Net.",
            doc: "Loads `model` (a `NAME.vxmodel/` folder: model.json with architecture, \
                  HU normalisation, class names and provenance, plus burnpack weights; every \
                  part is checked), normalises the CT as the model says, and runs the network \
                  on each axial slice. Slices are padded with air to a multiple of \
                  2^(levels-1); with `tile`, large slices are covered by overlapping tiles \
                  placed on the pooling grid and blended with Gaussian weights (nnU-Net). \
                  `batch_size` inputs go through the network at once. The labels are the \
                  argmax class (class i is label i; ties go to the lower class) on the exact \
                  input grid and geometry. The run report notes which device ran and where \
                  the time went. Results do not depend on `batch_size`.",
            category: "unet",
            inputs: vec![InputSpec::required(
                "image",
                &[PortType::Image],
                "The CT in HU (one channel).",
            )],
            outputs: vec![
                OutputSpec::new(
                    "labels",
                    PortType::Labels,
                    "Argmax class per voxel (0 = background), on the image's grid.",
                ),
                OutputSpec::new(
                    "probabilities",
                    PortType::Image,
                    "Softmax probability of the chosen class per voxel (f32, 0..1).",
                ),
            ],
            params: UNetInferParams::param_specs(),
            impls: UNetImpl::specs(),
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Segment the phantom CT with a small U-Net (the test suite writes \
                          random weights to `model` when the folder does not exist), 32 px \
                          tiles.",
            graph: r#"Graph(
    name: "unet_infer_example",
    params: { "model": "unet_example.vxmodel" },
    nodes: {
        "phantom": (node: "Phantom", params: (seed: 1, dims: (64, 48, 4))),
        "seg": (node: "UNetInfer", inputs: (image: "phantom.ct"),
                params: (model: "${model}", device: "cpu", batch_size: 4, tile: Some(32), overlap: 0.5, classes: Some(3))),
        "stats": (node: "LabelStats", inputs: (labels: "seg.labels")),
    },
)"#,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = UNetInferParams::from_json(params)?;
        let mut errors = Vec::new();
        if p.model.is_empty() {
            errors.push(ParamError::field(
                "model",
                "is required: the saved model folder (NAME.vxmodel/)",
            ));
        }
        if p.batch_size == 0 {
            errors.push(ParamError::field("batch_size", "must be >= 1, got 0"));
        }
        if !(0.0..1.0).contains(&p.overlap) {
            errors.push(ParamError::field(
                "overlap",
                format!("must be in [0, 1), got {}", p.overlap),
            ));
        }
        if p.tile == Some(0) {
            errors.push(ParamError::field("tile", "must be >= 1 px, got 0"));
        }
        if let Some(c) = p.classes {
            if c < 2 {
                errors.push(ParamError::field(
                    "classes",
                    format!("must be >= 2 (background and a structure), got {c}"),
                ));
            }
        }
        let imp = UNetImpl::from_name(implementation)?;
        if imp == UNetImpl::BurnFlex && p.device == DeviceChoice::Gpu {
            errors.push(ParamError::field(
                "device",
                if cfg!(feature = "wgpu") {
                    "\"gpu\" needs the burn-wgpu implementation, not burn-flex (CPU only)"
                } else {
                    "\"gpu\" needs the burn-wgpu implementation, which this build lacks \
                     (build voxflow with the cargo feature `wgpu`)"
                },
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(UNetInferNode {
            model: PathBuf::from(&p.model),
            imp,
            device: p.device,
            options: InferOptions {
                batch_size: p.batch_size,
                tile: p.tile,
                overlap: p.overlap,
            },
            classes: p.classes,
        }))
    }
}

struct UNetInferNode {
    model: PathBuf,
    imp: UNetImpl,
    device: DeviceChoice,
    options: InferOptions,
    classes: Option<usize>,
}

/// Why the asked-for device cannot run the chosen implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// `device: gpu` with the CPU-only implementation.
    #[error("device \"gpu\" needs the burn-wgpu implementation")]
    GpuNeedsWgpu,
    /// `device: gpu`, but wgpu found no adapter.
    #[error(
        "device \"gpu\": wgpu found no GPU adapter (is the Vulkan loader, libvulkan1, \
         installed?)"
    )]
    NoAdapter,
}

/// The device a node runs on and a description for the run report.
pub fn choose_device(imp: UNetImpl, choice: DeviceChoice) -> Result<(Device, String), DeviceError> {
    let cpu = || (Device::flex(), "cpu (burn Flex)".to_string());
    match (imp, choice) {
        (UNetImpl::BurnFlex, DeviceChoice::Gpu) => Err(DeviceError::GpuNeedsWgpu),
        (UNetImpl::BurnFlex, _) => Ok(cpu()),
        #[cfg(feature = "wgpu")]
        (UNetImpl::BurnWgpu, DeviceChoice::Cpu) => Ok(cpu()),
        #[cfg(feature = "wgpu")]
        (UNetImpl::BurnWgpu, choice) => match crate::gpu::wgpu_device() {
            Some((d, name)) => Ok((d, name)),
            None if choice == DeviceChoice::Auto => {
                let (d, s) = cpu();
                Ok((d, format!("{s}: no GPU adapter found by wgpu")))
            }
            None => Err(DeviceError::NoAdapter),
        },
    }
}

impl Node for UNetInferNode {
    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let image = ctx.image("image")?;
        let (device, device_name) =
            choose_device(self.imp, self.device).map_err(|e| NodeError::Other(e.to_string()))?;
        let model = SavedModel::load(&self.model, &device).map_err(|e| match e {
            crate::artifact::ModelError::File { path, message } => NodeError::file(&path, message),
            e => NodeError::file(&self.model, e.to_string()),
        })?;
        let arch = &model.meta.architecture;
        if let Some(expected) = self.classes {
            if arch.classes != expected {
                return Err(NodeError::file(
                    &self.model,
                    format!(
                        "the model has {} classes {:?}, but this graph expects {expected} \
                         (param `classes`)",
                        arch.classes, model.meta.class_names
                    ),
                ));
            }
        }
        if arch.in_channels != 1 {
            return Err(NodeError::Input {
                port: "image".into(),
                message: format!(
                    "the model {} expects {} input channels, but a CT image has 1",
                    self.model.display(),
                    arch.in_channels
                ),
            });
        }
        let pred = predict(&model, &device, &image, &self.options)
            .map_err(|e| NodeError::Other(e.to_string()))?;
        let s = &pred.stats;
        let slices = image.geometry().dims[2];
        ctx.note(format!(
            "device: {device_name}, forward pass: {}; {} inputs of {}x{} px in {} batches of \
             <= {}; network {:.2} s of {:.2} s; {slices} slices, {:.2} slices/s",
            s.forward,
            s.inputs,
            s.input_size.0,
            s.input_size.1,
            s.batches,
            self.options.batch_size,
            s.network_s,
            s.total_s,
            slices as f64 / s.total_s.max(1e-9)
        ));
        ctx.set_output("labels", Value::Labels(Arc::new(pred.labels)));
        ctx.set_output(
            "probabilities",
            Value::Image(Arc::new(voxflow_engine::Image::F32(pred.max_probability))),
        );
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        vec![self.model.clone()]
    }
}
