//! `PatchServer`: serve training patches over TCP (docs/patch-protocol.md).

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use voxflow_engine::{
    node_params, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec, NodeType,
    OutputSpec, ParamError, Params, PortType, Value,
};

use crate::config::TrainingConfig;
use crate::patches::{Sampler, TrainCase, ValidationSet};
use crate::server::{self, ServerOptions};

node_params! {
    /// Params of `PatchServer`.
    pub struct PatchServerParams {
        /// Address to listen on; port 0 picks a free one.
        pub bind: String = "127.0.0.1:0".into(),
        /// Shared secret file; created with a random token (0600) when missing. Relative to
        /// the output folder.
        #[param(ty = "path")]
        pub token_file: String = "patch_server.token".into(),
        /// Where the listening address is written; relative to the output folder.
        #[param(ty = "path")]
        pub address_file: String = "patch_server.addr".into(),
        /// Batches prepared ahead per trainer.
        #[param(unit = "batches")]
        pub prefetch: usize = 8,
        /// Sampler threads per trainer.
        #[param(unit = "threads")]
        pub workers: usize = 2,
    }
}

/// A running server on a `Service` edge, with what a trainer needs to reach it.
pub struct PatchService {
    /// The server (stops accepting when the last holder drops it).
    pub server: server::PatchServer,
    /// Its token.
    pub token: String,
}

/// The `PatchServer` node type.
pub struct PatchServer;

const LIST: [PortType; 1] = [PortType::Image];
const LABELS: [PortType; 1] = [PortType::Labels];
const MASK: [PortType; 1] = [PortType::Mask];

fn optional_list(name: &'static str, types: &'static [PortType], doc: &'static str) -> InputSpec {
    InputSpec {
        required: false,
        ..InputSpec::list(name, types, doc)
    }
}

impl NodeType for PatchServer {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "PatchServer",
            summary: "Serve augmented training patches to trainers over TCP.",
            doc: "Prepares the training cases (CT normalised as the config says, labels, \
                  voxel weights) and listens on `bind`. A trainer (`voxflow train --connect` \
                  or a UNetTrain node) presents the token, receives the config and its hash, \
                  then asks for batches by number and for the validation set \
                  (docs/patch-protocol.md). Batch k is a pure function of the config's seed \
                  and k, so every server and any number of `workers` give the same batches. \
                  Per trainer, `workers` threads prepare `prefetch` batches ahead in bounded \
                  queues. Several trainers may connect. When another node reads `server` \
                  (a UNetTrain in the same graph), the node hands the running server on and \
                  it stops when that node is done; otherwise the node serves until a trainer \
                  has finished (said Bye) and none is connected; a trainer that is killed \
                  does not end the service, so it can come back with --resume. The address is \
                  printed, written to `address_file` and to the run report. Without \
                  `weights`, every voxel of a training case counts; list inputs pair up by \
                  position and must be on matching grids.",
            category: "training",
            inputs: vec![
                InputSpec::required("config", &[super::CONFIG], "From TrainingConfig."),
                InputSpec::list("images", &LIST, "Training CTs in HU."),
                InputSpec::list(
                    "labels",
                    &LABELS,
                    "Training labels, one per image (classes of the network).",
                ),
                optional_list(
                    "weights",
                    &MASK,
                    "Voxel weights, one per image (1 annotated, 0 ignored), e.g. from \
                     SplatWeights.",
                ),
                optional_list("val_images", &LIST, "Validation CTs in HU."),
                optional_list("val_labels", &LABELS, "Validation labels, one per CT."),
                optional_list(
                    "val_weights",
                    &MASK,
                    "Validation weights (default: every voxel; restricts Dice to them).",
                ),
            ],
            outputs: vec![OutputSpec::new(
                "server",
                super::SERVICE,
                "The running server, for a UNetTrain node.",
            )],
            params: PatchServerParams::param_specs(),
            impls: vec![ImplSpec::new("tcp", "std TCP, one thread per trainer.")],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "Serve sparse phantom annotations to a short CPU training run in the \
                          same graph, over loopback.",
            graph: TRAIN_EXAMPLE,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = PatchServerParams::from_json(params)?;
        let mut errors = Vec::new();
        if p.bind.to_socket_addrs().is_err() {
            errors.push(ParamError::field(
                "bind",
                format!(
                    "{:?} is not an address (e.g. \"127.0.0.1:0\", \"0.0.0.0:7700\")",
                    p.bind
                ),
            ));
        }
        for (name, v) in [("prefetch", p.prefetch), ("workers", p.workers)] {
            if v == 0 || v > 256 {
                errors.push(ParamError::field(
                    name,
                    format!("must be in 1..=256, got {v}"),
                ));
            }
        }
        for (name, v) in [
            ("token_file", &p.token_file),
            ("address_file", &p.address_file),
        ] {
            if v.is_empty() {
                errors.push(ParamError::field(name, "must name a file"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Box::new(PatchServerNode { p }))
    }
}

/// The example graph of PatchServer and UNetTrain (also `graphs/train.ron`'s pattern).
pub const TRAIN_EXAMPLE: &str = r#"Graph(
    name: "patch_server_example",
    nodes: {
        "train_case": (node: "Phantom", params: (seed: 1, dims: (64, 48, 8))),
        "val_case":   (node: "Phantom", params: (seed: 2, dims: (64, 48, 4))),
        "abd":  (node: "SimulateSparseAnnotation", inputs: (labels: "train_case.truth"), params: (labels: [1], slices_every: 2)),
        "para": (node: "SimulateSparseAnnotation", inputs: (labels: "train_case.truth"), params: (labels: [2], slices_every: 2)),
        "splat": (node: "SplatWeights", inputs: (abdominal: "abd", paravertebral: "para")),
        "config": (node: "TrainingConfig", params: (
            architecture: (kind: "unet2d", in_channels: 1, classes: 3, levels: 2, base_filters: 4,
                           kernel: 3, batch_norm: false, upsampling: "transposed"),
            hyper: (iterations: 20, validate_every: 10, patch_size: 32, batch_size: 4, learning_rate: 1e-2),
        )),
        "server": (node: "PatchServer", inputs: (
            config: "config", images: ["train_case.ct"], labels: ["splat.labels"], weights: ["splat.weights"],
            val_images: ["val_case.ct"], val_labels: ["val_case.truth"])),
        "train": (node: "UNetTrain", inputs: (server: "server"), params: (out: "training", device: "cpu")),
    },
)"#;

struct PatchServerNode {
    p: PatchServerParams,
}

/// Read the token file, or create it with a random token (readable by its owner only).
pub fn read_or_create_token(path: &Path) -> Result<String, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Err(NodeError::file(path, "token file is empty")),
        Ok(t) => Ok(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use rand::Rng;
            let bytes: [u8; 16] = rand::rng().random();
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| NodeError::file(dir, e))?;
            }
            voxflow_engine::fsutil::write_atomic(path, |w| writeln!(w, "{token}"))
                .map_err(|e| NodeError::file(path, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| NodeError::file(path, e))?;
            }
            Ok(token)
        }
        Err(e) => Err(NodeError::file(path, format!("cannot read: {e}"))),
    }
}

impl PatchServerNode {
    fn cases(
        ctx: &NodeContext,
        (images, labels, weights): (&str, &str, &str),
        cfg: &TrainingConfig,
    ) -> Result<Vec<TrainCase>, NodeError> {
        let (im, lb, wt) = (
            ctx.input_list(images),
            ctx.input_list(labels),
            ctx.input_list(weights),
        );
        let count_err = |port: &str, n: usize| NodeError::Input {
            port: port.into(),
            message: format!(
                "has {n} values for {} {images}; they pair up by position",
                im.len()
            ),
        };
        if lb.len() != im.len() {
            return Err(count_err(labels, lb.len()));
        }
        if !wt.is_empty() && wt.len() != im.len() {
            return Err(count_err(weights, wt.len()));
        }
        let mut cases = Vec::with_capacity(im.len());
        for (i, (img, lab)) in im.iter().zip(&lb).enumerate() {
            let (Value::Image(img), Value::Labels(lab)) = (img, lab) else {
                return Err(NodeError::Input {
                    port: images.into(),
                    message: "expected Image and Labels values".into(),
                });
            };
            let w = match wt.get(i) {
                Some(Value::Mask(m)) => Some(m.as_ref()),
                _ => None,
            };
            let case = TrainCase::new(
                &format!("{images}[{i}]"),
                img,
                lab,
                w,
                cfg.architecture.classes,
                &cfg.hyper.normalization,
            )
            .map_err(|e| NodeError::Input {
                port: images.into(),
                message: e.to_string(),
            })?;
            cases.push(case);
        }
        Ok(cases)
    }
}

impl Node for PatchServerNode {
    fn output_files(&self) -> Vec<PathBuf> {
        vec![
            PathBuf::from(&self.p.token_file),
            PathBuf::from(&self.p.address_file),
        ]
    }

    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let cfg = ctx.opaque::<TrainingConfig>("config", super::CONFIG)?;
        let train = Self::cases(ctx, ("images", "labels", "weights"), &cfg)?;
        let val = Self::cases(ctx, ("val_images", "val_labels", "val_weights"), &cfg)?;
        let validation = ValidationSet::from_cases(&val);
        let sampler = Sampler::new(train, (*cfg).clone()).map_err(|e| NodeError::Input {
            port: "weights".into(),
            message: e.to_string(),
        })?;
        let token_path = ctx.output_path(&self.p.token_file);
        let token = read_or_create_token(&token_path)?;
        let server = server::PatchServer::start(
            sampler,
            validation,
            ServerOptions {
                bind: self.p.bind.clone(),
                token: token.clone(),
                prefetch: self.p.prefetch,
                workers: self.p.workers,
                limits: Default::default(),
            },
        )
        .map_err(|e| NodeError::Other(format!("cannot listen on {}: {e}", self.p.bind)))?;
        let addr = server.addr();
        let addr_path: PathBuf = ctx.output_path(&self.p.address_file);
        voxflow_engine::fsutil::write_atomic(&addr_path, |w| writeln!(w, "{addr}"))
            .map_err(|e| NodeError::file(&addr_path, e))?;
        ctx.file_written(&addr_path);
        let line = format!(
            "patch server listening on {addr} (token in {}, config {})",
            token_path.display(),
            server.config_hash()
        );
        eprintln!("{line}");
        ctx.note(line);
        if !ctx.output_used("server") {
            let st = server.wait_until_trainers_done();
            ctx.note(format!(
                "served {} batches to {} trainer connection(s) ({} finished, {} disconnected, \
                 {} refused)",
                st.batches,
                st.finished + st.vanished,
                st.finished,
                st.vanished,
                st.refused
            ));
        }
        ctx.set_output(
            "server",
            Value::Opaque(super::SERVICE, Arc::new(PatchService { server, token })),
        );
        Ok(())
    }
}
