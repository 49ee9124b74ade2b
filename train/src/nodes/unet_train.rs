//! `UNetTrain`: train a U-Net with batches from a PatchServer in the same graph.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use voxflow_engine::{
    node_params, Cell, Example, ImplSpec, InputSpec, Node, NodeContext, NodeError, NodeSpec,
    NodeType, OutputSpec, ParamError, Params, PortType, Table, Value,
};

use crate::client::Client;
use crate::config::{read_architecture, read_hyper};
use crate::device::{self, TrainDevice};
use crate::nodes::patch_server::{PatchService, TRAIN_EXAMPLE};
use crate::trainer::{train, TrainOptions};

node_params! {
    /// Params of `UNetTrain`.
    pub struct UNetTrainParams {
        /// Run folder, relative to the output folder.
        #[param(ty = "path")]
        pub out: String = "training".into(),
        /// auto: a GPU through wgpu when built in and present, else the CPU; wgpu is an
        /// error when there is none (or the build lacks the `wgpu` feature).
        #[param(ty = "\"auto\" | \"cpu\" | \"wgpu\" (alias \"gpu\")")]
        pub device: TrainDevice = TrainDevice::Auto,
        /// Continue the run in `out` from its last checkpoint.
        pub resume: bool = false,
        /// architecture.json replacing the streamed architecture.
        #[param(ty = "Option<path>")]
        pub architecture: Option<String> = None,
        /// Hyperparameter RON file replacing the streamed ones.
        #[param(ty = "Option<path>")]
        pub hyper: Option<String> = None,
    }
}

/// The `UNetTrain` node type.
pub struct UNetTrain;

impl NodeType for UNetTrain {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "UNetTrain",
            summary: "Train a U-Net with batches from a PatchServer.",
            doc: "Connects to the PatchServer on its `server` input over TCP (the real \
                  protocol, loopback), like `voxflow train --connect`, and trains: weighted \
                  soft Dice (foreground classes) + cross-entropy, Adam, validation Dice per \
                  class every `validate_every` steps, best model and checkpoint kept \
                  (atomically), metrics.jsonl and loss.png in `out`. `architecture` and \
                  `hyper` files replace the streamed parts. Output: one row per foreground \
                  class with its best and last validation Dice.",
            category: "training",
            inputs: vec![InputSpec::required(
                "server",
                &[super::SERVICE],
                "A running PatchServer.",
            )],
            outputs: vec![OutputSpec::new(
                "summary",
                PortType::Table,
                "Per foreground class: class, best_dice, best_iteration, last_dice, iterations.",
            )],
            params: UNetTrainParams::param_specs(),
            impls: vec![ImplSpec::new(
                "burn",
                "burn 0.22 autodiff on the chosen device.",
            )],
        }
    }

    fn examples(&self) -> Vec<Example> {
        vec![Example {
            description: "A 20-step CPU training run on sparse phantom annotations.",
            graph: TRAIN_EXAMPLE,
        }]
    }

    fn build(
        &self,
        params: &serde_json::Value,
        _implementation: &str,
    ) -> Result<Box<dyn Node>, Vec<ParamError>> {
        let p = UNetTrainParams::from_json(params)?;
        if p.out.is_empty() {
            return Err(vec![ParamError::field("out", "must name a folder")]);
        }
        Ok(Box::new(UNetTrainNode { p }))
    }
}

struct UNetTrainNode {
    p: UNetTrainParams,
}

impl Node for UNetTrainNode {
    fn output_files(&self) -> Vec<PathBuf> {
        vec![PathBuf::from(&self.p.out)]
    }

    fn run(&self, ctx: &mut NodeContext) -> Result<(), NodeError> {
        let service = ctx.opaque::<PatchService>("server", super::SERVICE)?;
        let architecture = match &self.p.architecture {
            Some(f) => {
                Some(read_architecture(f.as_ref()).map_err(|e| NodeError::file(f.as_ref(), e))?)
            }
            None => None,
        };
        let hyper = match &self.p.hyper {
            Some(f) => Some(read_hyper(f.as_ref()).map_err(|e| NodeError::file(f.as_ref(), e))?),
            None => None,
        };
        let (device, device_name) =
            device::pick(self.p.device).map_err(|e| NodeError::Other(e.to_string()))?;
        let addr = service.server.addr().to_string();
        let mut client = Client::connect(&addr, &service.token, Duration::from_secs(5))
            .map_err(|e| NodeError::Other(format!("connecting to the patch server {addr}: {e}")))?;
        let out = ctx.output_path(&self.p.out);
        let summary = train(
            &mut client,
            TrainOptions {
                out: out.clone(),
                device,
                device_name: device_name.clone(),
                resume: self.p.resume,
                architecture,
                hyper,
                progress: Some(crate::trainer::progress_lines()),
            },
        )
        .map_err(|e| NodeError::Other(e.to_string()))?;
        client.bye();
        for f in ["metrics.jsonl", "loss.png"] {
            ctx.file_written(&out.join(f));
        }
        ctx.note(format!(
            "device: {device_name}; {} steps ({} run here), median step {:.1} ms, waiting for \
             batches {:.1}% of the time; best model {}",
            summary.iterations,
            summary.steps_run,
            summary.median_step_s * 1e3,
            summary.wait_share * 100.0,
            summary.best_model.display()
        ));
        let mut table = Table::new([
            "class",
            "best_dice",
            "best_iteration",
            "last_dice",
            "iterations",
        ]);
        if let (Some(best), Some(last)) = (&summary.best, &summary.last) {
            for ((name, b), (_, l)) in best.dice.iter().zip(&last.dice) {
                let num = |d: &Option<f64>| d.map_or(Cell::Null, Cell::Float);
                table.rows.push(vec![
                    Cell::Text(name.clone()),
                    num(b),
                    Cell::Int(best.iteration as i64),
                    num(l),
                    Cell::Int(summary.iterations as i64),
                ]);
            }
        }
        ctx.set_output("summary", Value::Table(Arc::new(table)));
        Ok(())
    }

    fn input_files(&self) -> Vec<PathBuf> {
        [&self.p.architecture, &self.p.hyper]
            .into_iter()
            .flatten()
            .map(PathBuf::from)
            .collect()
    }
}
