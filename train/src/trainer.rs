//! The training loop: batches from a patch server, weighted soft Dice + cross-entropy,
//! Adam, periodic validation, best model and checkpoints, `metrics.jsonl` and a loss plot.
//!
//! # Loss
//!
//! With softmax probabilities `p`, one-hot targets `y` and voxel weights `w` (0 where the
//! sparse annotation says nothing, so those voxels count nowhere):
//! `ce = -Σ w·Σ_c y_c·log p_c / Σ w` and, over the foreground classes `c >= 1` pooled over
//! the batch, `dice_c = (2·Σ w·p_c·y_c + 1) / (Σ w·p_c + Σ w·y_c + 1)`,
//! `dice_loss = 1 - mean_c dice_c`; `loss = ce_weight·ce + dice_weight·dice_loss`.
//!
//! # Files in the run folder
//!
//! - `metrics.jsonl`: one JSON object per step (`iteration`, `loss`, `ce`, `dice_loss`,
//!   `step_s`, `wait_s`) and per validation (`validation` with Dice per class, `best`);
//!   the first line names the config hashes and the device.
//! - `best.vxmodel/`: the best model so far (mean validation Dice over the foreground
//!   classes), the inference issue's saved-model folder.
//! - `checkpoint/`: `model.bpk`, `optimizer.bpk` (Adam moments), `state.json` (next
//!   iteration, best so far, config hashes, timings). Batches are numbered and seeded by
//!   number, so the iteration *is* the data generator's state.
//! - `loss.png`: training loss per step and smoothed (left axis) and validation Dice per
//!   class (right axis, 0..1), with title, ticks and legend; redrawn at each validation.
//! - `logs.jsonl`: written by the command (`voxflow train`, `voxflow run`), see
//!   `voxflow_monitor::logs`.
//!
//! Folders are replaced whole: written as `NAME.tmp/`, then the old one is renamed to
//! `NAME.old/`, the new one into place, and the old one removed. A kill at any point
//! leaves either the new or the old folder (resume looks at both), never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use voxflow_engine::clock::utc_now;
use voxflow_unet::artifact::{default_class_names, Provenance};
use voxflow_unet::infer::device_failure;
use voxflow_unet::{InvalidModel, SavedModel, UNet, UNetConfig};

use crate::client::Client;
use crate::config::{ConfigError, Hyper, TrainingConfig};
use crate::patches::{Batch, ValidationSet};
use crate::plot;
use crate::protocol::ProtocolError;

/// What can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The patch server connection failed.
    #[error("patch server: {0}")]
    Protocol(ProtocolError),
    /// A file in the run folder.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The config (streamed or overridden) cannot train.
    #[error("training config: {0}")]
    Config(ConfigError),
    /// The loss became NaN or infinite.
    #[error(
        "training config: loss became {loss} at iteration {iteration}; lower the learning_rate \
         ({learning_rate})"
    )]
    Diverged {
        /// The loss value.
        loss: f64,
        /// The step it was computed in.
        iteration: u64,
        /// The learning rate that diverged.
        learning_rate: f64,
    },
    /// The trained network does not make a model (architecture or normalisation refused).
    #[error("training config: {0}")]
    Model(InvalidModel),
    /// The device failed (typically a GPU out of memory), where burn would otherwise panic
    /// when a value is read back.
    #[error(
        "the device failed at iteration {iteration}: {reason}; a smaller batch_size or \
         patch_size needs less device memory"
    )]
    Device {
        /// The step (or, for a validation, the steps done before it).
        iteration: u64,
        /// The device's words ([`voxflow_unet::infer::device_failure`]).
        reason: String,
    },
    /// `--resume` cannot continue this run.
    #[error("cannot resume: {0}")]
    Resume(String),
    /// [`request_stop`] was called (SIGTERM in `voxflow train`): the run stopped between
    /// two steps after writing its checkpoint, so `--resume` continues the same curve.
    #[error(
        "stopped on request after step {iteration}; checkpoint written to {}; continue with \
         --resume",
        checkpoint.display()
    )]
    Stopped {
        /// Steps done (the checkpoint's iteration).
        iteration: u64,
        /// The checkpoint folder.
        checkpoint: PathBuf,
    },
}

/// Set by [`request_stop`]; the training loop reads it between steps.
static STOP: AtomicBool = AtomicBool::new(false);

/// Ask a running [`train`] to stop at the next step boundary: it finishes the step it is
/// in, writes a checkpoint exactly as the periodic one and returns
/// [`TrainError::Stopped`]. A scheduler sends SIGTERM before it kills, preempts or
/// requeues a job (Slurm: `--signal`, `scontrol requeue`, the time limit), and a run that
/// checkpoints then loses no steps. One atomic store, so a signal handler may call it.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

// By hand rather than `#[from]`, for the reason given at `ProtocolError`'s `From`.
impl From<ProtocolError> for TrainError {
    fn from(e: ProtocolError) -> Self {
        TrainError::Protocol(e)
    }
}

/// [`TrainError::Device`] at `iteration`, from the reason [`read_back`] or [`validate`]
/// gave.
fn device_failed_at(iteration: u64) -> impl FnOnce(String) -> TrainError {
    move |reason| TrainError::Device { iteration, reason }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// How to train.
pub struct TrainOptions {
    /// Run folder (created).
    pub out: PathBuf,
    /// Device to train on.
    pub device: Device,
    /// Its description (for metrics and reports).
    pub device_name: String,
    /// Continue from `out/checkpoint/`.
    pub resume: bool,
    /// Replaces the streamed architecture (`-a`).
    pub architecture: Option<UNetConfig>,
    /// Replaces the streamed hyperparameters (`-c`).
    pub hyper: Option<Hyper>,
    /// Called after every step.
    pub progress: Option<ProgressFn>,
}

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Where training stands, for progress bars.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps done.
    pub iteration: u64,
    /// Steps in all.
    pub iterations: u64,
    /// Loss of the last step.
    pub loss: f64,
    /// Best mean validation Dice so far.
    pub best_dice: Option<f64>,
    /// Mean Dice of the last validation.
    pub last_dice: Option<f64>,
}

/// Seconds between plain progress lines ([`progress_lines`]) unless
/// `VOXFLOW_PROGRESS_SECS` says otherwise.
pub const PROGRESS_EVERY_S: f64 = 10.0;

/// A progress callback for logs: every `VOXFLOW_PROGRESS_SECS` seconds (default
/// [`PROGRESS_EVERY_S`]) and at the last step, one `info` event with target
/// `voxflow::progress`: step, loss, Dice, steps per second and ETA. A batch job's log
/// (Slurm) has no terminal for a bar, and a line per step would drown it; a line every
/// few seconds shows that training moves and when it ends.
pub fn progress_lines() -> ProgressFn {
    let every = std::env::var("VOXFLOW_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(PROGRESS_EVERY_S);
    let start = Instant::now();
    let mut first: Option<u64> = None;
    let mut last_line = Instant::now();
    Box::new(move |p: &Progress| {
        let first_step = *first.get_or_insert(p.iteration.saturating_sub(1));
        let done = p.iteration == p.iterations;
        if last_line.elapsed().as_secs_f64() < every && !done {
            return;
        }
        last_line = Instant::now();
        let secs = start.elapsed().as_secs_f64();
        let rate = (p.iteration - first_step) as f64 / secs.max(1e-9);
        let eta = (p.iterations - p.iteration) as f64 / rate.max(1e-9);
        let dice = |d: Option<f64>| d.map_or("-".to_string(), |d| format!("{d:.4}"));
        tracing::info!(
            target: "voxflow::progress",
            "step {}/{}: loss {:.4}, Dice {} (best {}), {:.2} steps/s, ETA {:.0} s",
            p.iteration,
            p.iterations,
            p.loss,
            dice(p.last_dice),
            dice(p.best_dice),
            rate,
            eta
        );
    })
}

/// Validation result: Dice per foreground class (`None` when neither the reference nor
/// the prediction has the class on any weighted pixel).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Validation {
    /// Step count at validation.
    pub iteration: u64,
    /// Class name -> Dice.
    pub dice: Vec<(String, Option<f64>)>,
    /// Mean of the defined Dice values.
    pub mean_dice: f64,
}

/// What a finished run reports.
#[derive(Serialize, Debug, Clone)]
pub struct TrainSummary {
    /// Run folder.
    pub out: PathBuf,
    /// Steps done in all (including before a resume).
    pub iterations: u64,
    /// Steps this process ran.
    pub steps_run: u64,
    /// The effective config's hash.
    pub config_hash: String,
    /// The streamed config's hash.
    pub streamed_config_hash: String,
    /// Device description.
    pub device: String,
    /// Best validation.
    pub best: Option<Validation>,
    /// Last validation.
    pub last: Option<Validation>,
    /// Where the best model is.
    pub best_model: PathBuf,
    /// Median seconds per step (network and optimizer, without waiting for data).
    pub median_step_s: f64,
    /// Share of this process's training time spent waiting for batches.
    pub wait_share: f64,
    /// Loss of the first and last step this process ran.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
}

/// Contents of `checkpoint/state.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct CheckpointState {
    iteration: u64,
    config_hash: String,
    /// The server's [`crate::protocol::Welcome::data_hash`] when the run started (empty
    /// in checkpoints that predate it, or from servers that do not send it).
    #[serde(default)]
    data_hash: String,
    run_id: String,
    best: Option<Validation>,
    last: Option<Validation>,
}

/// The effective config: the streamed one with `-a` / `-c` replacing their parts.
pub fn effective_config(
    streamed: &TrainingConfig,
    architecture: Option<&UNetConfig>,
    hyper: Option<&Hyper>,
) -> Result<TrainingConfig, ConfigError> {
    let cfg = TrainingConfig {
        architecture: architecture.unwrap_or(&streamed.architecture).clone(),
        hyper: hyper.unwrap_or(&streamed.hyper).clone(),
    };
    cfg.check()?;
    Ok(cfg)
}

/// Train with batches from `client` until the config's iterations are done.
pub fn train(client: &mut Client, mut opts: TrainOptions) -> Result<TrainSummary, TrainError> {
    let streamed = client.config()?;
    let cfg = effective_config(&streamed, opts.architecture.as_ref(), opts.hyper.as_ref())
        .map_err(TrainError::Config)?;
    if cfg.hyper.batch_size != streamed.hyper.batch_size
        || cfg.hyper.patch_size != streamed.hyper.patch_size
    {
        tracing::warn!(
            "batch and patch size come from the server ({} x {}²); the -c values ({} x {}²) \
             apply to validation and the saved config only",
            streamed.hyper.batch_size,
            streamed.hyper.patch_size,
            cfg.hyper.batch_size,
            cfg.hyper.patch_size
        );
    }
    voxflow_unet::alloc::keep_network_buffers();
    let out = opts.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| file_err(&out, e))?;
    let h = cfg.hyper.clone();
    let arch = cfg.architecture.clone();
    let ad = opts.device.clone().autodiff();
    let adam = AdamConfig::new().with_epsilon(h.adam_epsilon as f32);

    let metrics_path = out.join("metrics.jsonl");
    let data_hash = client.welcome().data_hash.clone();
    let (mut net, mut optim, mut state) = if opts.resume {
        resume(&out, &cfg, &data_hash, &ad, &adam, &metrics_path)?
    } else {
        if out.join("checkpoint").exists() || metrics_path.exists() {
            return Err(file_err(
                &out,
                "holds an earlier training run (checkpoint/ or metrics.jsonl); use --resume to \
                 continue it or choose another --out",
            ));
        }
        let state = CheckpointState {
            iteration: 0,
            config_hash: cfg.hash(),
            data_hash: data_hash.clone(),
            run_id: format!("{}-{}", cfg.hash(), utc_now()),
            best: None,
            last: None,
        };
        (UNet::seeded(&arch, &ad, h.seed), adam.init(), state)
    };
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| file_err(&metrics_path, e))?;
    let mut log = |v: serde_json::Value| -> Result<(), TrainError> {
        writeln!(metrics, "{v}").map_err(|e| file_err(&metrics_path, e))
    };
    log(serde_json::json!({
        "iteration": state.iteration,
        "event": if opts.resume { "resume" } else { "start" },
        "config_hash": cfg.hash(),
        "streamed_config_hash": streamed.hash(),
        "data_hash": data_hash,
        "device": opts.device_name,
        "run_id": state.run_id,
        "utc": utc_now(),
        // The settings themselves, so `voxflow monitor` shows what differs between
        // sessions and between runs, not only that a hash did.
        "hyper": cfg.hyper,
        "architecture": cfg.architecture,
    }))?;

    let validation = client.validation()?;
    let class_names = default_class_names(arch.classes);
    let mut history = plot::History::read(&metrics_path);
    let (mut steps, mut wait_total, mut step_times) = (0u64, 0.0f64, Vec::new());
    let (mut first_loss, mut last_loss) = (f64::NAN, f64::NAN);
    let pad = h.normalization.pad_value();
    // A resumed run at step 0 (stopped before its first step) has this line already.
    if state.iteration == 0 && !opts.resume {
        // Where the curve starts: the untrained network.
        let v = validate(
            &net.valid(),
            &validation,
            &arch,
            &class_names,
            pad,
            &opts.device,
        )
        .map_err(device_failed_at(0))?;
        log(validation_line(&v, false))?;
        history.validations.push(v);
    }
    let t_run = Instant::now();
    while state.iteration < h.iterations {
        if STOP.load(Ordering::SeqCst) {
            save_checkpoint(&out, &net, &optim, &state)?;
            log(serde_json::json!({
                "iteration": state.iteration, "event": "stopped", "utc": utc_now(),
            }))?;
            tracing::warn!(
                "stopped on request after step {}: checkpoint written",
                state.iteration
            );
            return Err(TrainError::Stopped {
                iteration: state.iteration,
                checkpoint: out.join("checkpoint"),
            });
        }
        let i = state.iteration;
        let t_wait = Instant::now();
        let batch = client.batch(i)?;
        let wait_s = t_wait.elapsed().as_secs_f64();
        let t_step = Instant::now();
        let [l, ce, dl] = {
            let (loss, ce, dl) = loss(&net, &batch, arch.classes, &h, &ad);
            let values = read_back([&loss, &ce, &dl]).map_err(device_failed_at(i))?;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(h.learning_rate, net, grads);
            values
        };
        let step_s = t_step.elapsed().as_secs_f64();
        if !l.is_finite() {
            return Err(TrainError::Diverged {
                loss: l,
                iteration: i,
                learning_rate: h.learning_rate,
            });
        }
        wait_total += wait_s;
        step_times.push(step_s);
        if steps == 0 {
            first_loss = l;
        }
        last_loss = l;
        steps += 1;
        state.iteration += 1;
        log(serde_json::json!({
            "iteration": state.iteration, "loss": l, "ce": ce, "dice_loss": dl,
            "step_s": step_s, "wait_s": wait_s,
        }))?;
        history.losses.push((state.iteration, l));
        if state.iteration % h.validate_every == 0 || state.iteration == h.iterations {
            let v = validate(
                &net.valid(),
                &validation,
                &arch,
                &class_names,
                pad,
                &opts.device,
            )
            .map_err(device_failed_at(state.iteration))?;
            let v = Validation {
                iteration: state.iteration,
                ..v
            };
            let best = state
                .best
                .as_ref()
                .is_none_or(|b| v.mean_dice > b.mean_dice);
            if best {
                save_best(&out, &cfg, &class_names, &state.run_id, &net, &v)?;
                state.best = Some(v.clone());
            }
            state.last = Some(v.clone());
            tracing::info!(
                "validation at step {}: mean Dice {:.4}{}",
                v.iteration,
                v.mean_dice,
                if best { " (best so far)" } else { "" }
            );
            log(validation_line(&v, best))?;
            save_checkpoint(&out, &net, &optim, &state)?;
            history.validations.push(v);
            let png = out.join("loss.png");
            plot::write(&png, &history).map_err(|e| file_err(&png, e))?;
        }
        if let Some(p) = opts.progress.as_mut() {
            p(&Progress {
                iteration: state.iteration,
                iterations: h.iterations,
                loss: l,
                best_dice: state.best.as_ref().map(|b| b.mean_dice),
                last_dice: state.last.as_ref().map(|v| v.mean_dice),
            });
        }
    }
    let total = t_run.elapsed().as_secs_f64();
    step_times.sort_by(f64::total_cmp);
    Ok(TrainSummary {
        out: out.clone(),
        iterations: state.iteration,
        steps_run: steps,
        config_hash: cfg.hash(),
        streamed_config_hash: streamed.hash(),
        device: opts.device_name,
        best: state.best,
        last: state.last,
        best_model: out.join(BEST),
        median_step_s: step_times.get(step_times.len() / 2).copied().unwrap_or(0.0),
        wait_share: if total > 0.0 { wait_total / total } else { 0.0 },
        first_loss,
        last_loss,
    })
}

/// The `metrics.jsonl` line of a validation.
fn validation_line(v: &Validation, best: bool) -> serde_json::Value {
    let per_class: serde_json::Map<String, serde_json::Value> = v
        .dice
        .iter()
        .map(|(name, d)| (name.clone(), serde_json::json!(d)))
        .collect();
    serde_json::json!({
        "iteration": v.iteration, "validation": per_class, "mean_dice": v.mean_dice, "best": best,
    })
}

/// Name of the best model folder in the run folder.
pub const BEST: &str = "best.vxmodel";

/// The values of one-element tensors, in one transfer: on a GPU each read waits for the
/// queue, so the step's three losses are read together. This is where a device failure
/// of the step (forward, backward or optimizer) surfaces: `Err` carries its reason.
fn read_back<const N: usize>(ts: [&Tensor<1>; N]) -> Result<[f64; N], String> {
    let all = Tensor::cat(ts.iter().map(|t| (*t).clone()).collect(), 0);
    let v = all
        .try_into_data()
        .map_err(|e| device_failure(&e))?
        .try_into_vec::<f32>()
        .unwrap_or_default();
    Ok(std::array::from_fn(|i| {
        v.get(i).map_or(f64::NAN, |&x| f64::from(x))
    }))
}

/// Weighted cross-entropy and soft Dice (see the module docs): `(loss, ce, dice_loss)`.
fn loss(
    net: &UNet,
    b: &Batch,
    classes: usize,
    h: &Hyper,
    device: &Device,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let (n, s) = (b.n, b.size);
    let area = s * s;
    let x = Tensor::<4>::from_data(TensorData::new(b.image.clone(), [n, 1, s, s]), device);
    let mut onehot = vec![0f32; n * classes * area];
    for p in 0..n {
        for i in 0..area {
            let c = usize::from(b.labels[p * area + i]).min(classes - 1);
            onehot[(p * classes + c) * area + i] = 1.0;
        }
    }
    let y = Tensor::<4>::from_data(TensorData::new(onehot, [n, classes, s, s]), device);
    let wv: Vec<f32> = b.weights.iter().map(|&w| f32::from(w)).collect();
    let wsum = wv.iter().sum::<f32>().max(1.0);
    let w = Tensor::<4>::from_data(TensorData::new(wv, [n, 1, s, s]), device);

    let logp = log_softmax(net.forward(x), 1);
    let p = logp.clone().exp();
    let ce = (y.clone() * logp)
        .sum_dim(1)
        .mul(w.clone())
        .sum()
        .neg()
        .div_scalar(wsum);
    let fg = |t: Tensor<4>| t.slice([0..n, 1..classes, 0..s, 0..s]);
    let (pf, yf) = (fg(p), fg(y));
    let inter = (pf.clone() * yf.clone() * w.clone()).sum_dims(&[0, 2, 3]);
    let denom = (pf * w.clone()).sum_dims(&[0, 2, 3]) + (yf * w).sum_dims(&[0, 2, 3]);
    let dice = inter.mul_scalar(2.0).add_scalar(1.0) / denom.add_scalar(1.0);
    let dice_loss = dice.mean().neg().add_scalar(1.0);
    let total = ce.clone().mul_scalar(h.ce_weight) + dice_loss.clone().mul_scalar(h.dice_weight);
    (total, ce, dice_loss)
}

/// Dice per foreground class over all weighted pixels of the validation slices, each
/// slice padded as inference pads it. `Err`: the device failed ([`device_failure`]).
pub fn validate(
    net: &UNet,
    set: &ValidationSet,
    arch: &UNetConfig,
    class_names: &[String],
    pad: f32,
    device: &Device,
) -> Result<Validation, String> {
    let classes = arch.classes;
    let m = arch.size_multiple();
    // (intersection, predicted, reference) per class
    let mut counts = vec![[0u64; 3]; classes];
    for s in &set.slices {
        let (pw, ph) = (s.width.div_ceil(m) * m, s.height.div_ceil(m) * m);
        let mut img = vec![pad; pw * ph];
        for y in 0..s.height {
            img[y * pw..y * pw + s.width].copy_from_slice(&s.image[y * s.width..(y + 1) * s.width]);
        }
        let x = Tensor::<4>::from_data(TensorData::new(img, [1, 1, ph, pw]), device);
        let am = net.forward(x).argmax(1);
        let pred: Vec<i64> = am
            .try_into_data()
            .map_err(|e| device_failure(&e))?
            .try_into_vec_as::<i64>()
            .expect("argmax is integral");
        for y in 0..s.height {
            for xx in 0..s.width {
                let i = y * s.width + xx;
                if s.weights[i] == 0 {
                    continue;
                }
                let (p, r) = (pred[y * pw + xx] as usize, usize::from(s.labels[i]));
                for (c, n) in counts.iter_mut().enumerate().skip(1) {
                    let (pc, rc) = (p == c, r == c);
                    n[0] += u64::from(pc && rc);
                    n[1] += u64::from(pc);
                    n[2] += u64::from(rc);
                }
            }
        }
    }
    let dice: Vec<(String, Option<f64>)> = (1..classes)
        .map(|c| {
            let [i, p, r] = counts[c];
            let d = (p + r > 0).then(|| 2.0 * i as f64 / (p + r) as f64);
            (class_names[c].clone(), d)
        })
        .collect();
    let defined: Vec<f64> = dice.iter().filter_map(|(_, d)| *d).collect();
    let mean_dice = if defined.is_empty() {
        0.0
    } else {
        defined.iter().sum::<f64>() / defined.len() as f64
    };
    Ok(Validation {
        iteration: 0,
        dice,
        mean_dice,
    })
}

/// Replace folder `dir` with what `fill` writes into `dir.tmp/` (see the module docs).
fn replace_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let name = dir.file_name().expect("folder name").to_string_lossy();
    let tmp = dir.with_file_name(format!("{name}.tmp"));
    let old = dir.with_file_name(format!("{name}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    fill(&tmp)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| file_err(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| file_err(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
    }
    Ok(())
}

fn save_best(
    out: &Path,
    cfg: &TrainingConfig,
    class_names: &[String],
    run_id: &str,
    net: &UNet,
    v: &Validation,
) -> Result<(), TrainError> {
    let dir = out.join(BEST);
    replace_dir(&dir, |tmp| {
        let mut model = SavedModel::new(
            cfg.architecture.clone(),
            cfg.hyper.normalization.clone(),
            class_names.to_vec(),
            Provenance {
                voxflow_version: env!("CARGO_PKG_VERSION").into(),
                training_run_id: Some(run_id.to_string()),
                created_utc: utc_now(),
                note: format!(
                    "best of training run {run_id} at iteration {} (mean validation Dice \
                     {:.4}); config {}",
                    v.iteration,
                    v.mean_dice,
                    cfg.hash()
                ),
            },
            net.valid(),
        )
        .map_err(TrainError::Model)?;
        model.save(tmp).map_err(|e| file_err(tmp, e))
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    voxflow_engine::fsutil::write_atomic(path, |w| w.write_all(bytes))
        .map_err(|e| file_err(path, e))
}

fn save_checkpoint(
    out: &Path,
    net: &UNet,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<(), TrainError> {
    let dir = out.join("checkpoint");
    replace_dir(&dir, |tmp| {
        let model = net
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| file_err(tmp, format!("cannot serialise weights: {e}")))?;
        write_file(&tmp.join("model.bpk"), &model)?;
        let opt = optim
            .into_bytes()
            .map_err(|e| file_err(tmp, format!("cannot serialise the optimizer: {e}")))?;
        write_file(&tmp.join("optimizer.bpk"), &opt)?;
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        write_file(&tmp.join("state.json"), json.as_bytes())
    })
}

type Resumed = (UNet, ModuleOptimizer, CheckpointState);

fn resume(
    out: &Path,
    cfg: &TrainingConfig,
    data_hash: &str,
    device: &Device,
    adam: &AdamConfig,
    metrics: &Path,
) -> Result<Resumed, TrainError> {
    let mut dir = out.join("checkpoint");
    if !dir.join("state.json").exists() {
        // Killed between the two renames of `replace_dir`.
        dir = out.join("checkpoint.old");
    }
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| {
        TrainError::Resume(format!(
            "no checkpoint in {} ({e}); start without --resume",
            out.display()
        ))
    })?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| file_err(&state_path, e))?;
    if state.config_hash != cfg.hash() {
        return Err(TrainError::Resume(format!(
            "the checkpoint was trained with config {}, the effective config is now {}; a \
             changed config cannot continue the same curve",
            state.config_hash,
            cfg.hash()
        )));
    }
    if !state.data_hash.is_empty() && !data_hash.is_empty() && state.data_hash != data_hash {
        return Err(TrainError::Resume(format!(
            "the checkpoint was trained on other data (training and validation slices {}), \
             the server now serves {data_hash}; a resumed run on other data would mix two \
             curves: serve the original data, or start a new run in another --out",
            state.data_hash
        )));
    }
    let read = |name: &str| -> Result<Bytes, TrainError> {
        let p = dir.join(name);
        std::fs::read(&p)
            .map(Bytes::from_bytes_vec)
            .map_err(|e| file_err(&p, e))
    };
    let record = ModuleRecord::from_bytes(read("model.bpk")?)
        .map_err(|e| file_err(&dir.join("model.bpk"), e))?;
    let net = UNet::new(&cfg.architecture, device)
        .try_load_record(record)
        .map_err(|e| file_err(&dir.join("model.bpk"), e))?;
    let optim = adam
        .init()
        .from_bytes(read("optimizer.bpk")?)
        .map_err(|e| file_err(&dir.join("optimizer.bpk"), e))?;
    // Drop metrics written after the checkpoint: they will be recomputed identically.
    if let Ok(text) = std::fs::read_to_string(metrics) {
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("iteration").and_then(|i| i.as_u64()))
                    .is_some_and(|i| i <= state.iteration)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_file(metrics, kept.as_bytes())?;
    }
    Ok((net, optim, state))
}
