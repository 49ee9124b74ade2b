//! `voxflow train`: connect to a patch server and train (the trainer half of the patch
//! protocol; the server half is the PatchServer node).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use voxflow_train::config::{read_architecture, read_hyper};
use voxflow_train::{device, train, Client, TrainDevice, TrainError, TrainOptions};

/// Arguments of `voxflow train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Patch server address (HOST:PORT; a PatchServer prints it and writes it to its
    /// address_file).
    #[arg(long, value_name = "ADDR")]
    connect: String,
    /// File holding the server's token (its token_file).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    /// architecture.json replacing the streamed architecture.
    #[arg(short = 'a', long = "architecture", value_name = "FILE")]
    architecture: Option<PathBuf>,
    /// Hyperparameter RON file replacing the streamed hyperparameters.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run folder: metrics.jsonl, logs.jsonl, loss.png, best.vxmodel/, checkpoint/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// auto, cpu or wgpu.
    #[arg(long, default_value = "auto")]
    device: TrainDevice,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// When training ends, run graphs/presegment.ron with the best model on these cases
    /// (a case file as for `voxflow run --cases`, with a `ct` column); outputs under
    /// OUT/presegment/.
    #[arg(long, value_name = "CASES")]
    presegment: Option<PathBuf>,
    /// Seconds to keep retrying while the server is not up yet.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Exit status of a `voxflow train` that SIGTERM stopped after writing its checkpoint:
/// sysexits' EX_TEMPFAIL ("try again"), so a job script or scheduler tells a run to
/// continue with `--resume` from a failed one (1).
pub const STOPPED_EXIT: u8 = 75;

/// While `on`, SIGTERM asks the training loop to checkpoint and stop
/// ([`voxflow_train::trainer::request_stop`]) instead of killing the process: Slurm sends
/// it before a time limit (`--signal`), a preemption or `scontrol requeue`. Off again
/// (the default action) for what follows training, e.g. `--presegment`.
fn checkpoint_on_sigterm(on: bool) {
    extern "C" fn on_term(_: libc::c_int) {
        voxflow_train::trainer::request_stop();
    }
    let handler = if on {
        on_term as extern "C" fn(libc::c_int) as libc::sighandler_t
    } else {
        libc::SIG_DFL
    };
    // SAFETY: the handler makes one atomic store, which is async-signal-safe; SA_RESTART
    // resumes a read from the patch server that the signal interrupts, and the loop sees
    // the flag at the next step boundary.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Run `voxflow train`.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    voxflow_monitor::logs::global().open(&args.out.join("logs.jsonl"))?;
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading the token file {}", args.token_file.display()))?;
    let architecture = args
        .architecture
        .as_deref()
        .map(read_architecture)
        .transpose()?;
    let hyper = args.config.as_deref().map(read_hyper).transpose()?;
    let (dev, device_name) = device::pick(args.device)?;
    let mut client =
        Client::connect(&args.connect, token.trim(), Duration::from_secs(args.wait))
            .with_context(|| format!("connecting to the patch server at {}", args.connect))?;
    if !args.quiet {
        let w = client.welcome();
        eprintln!(
            "connected to {} (config {}, {} training / {} validation slices); training on {}",
            args.connect, w.config_hash, w.training_slices, w.validation_slices, device_name
        );
    }
    let progress = progress(args.quiet);
    checkpoint_on_sigterm(true);
    let result = train(
        &mut client,
        TrainOptions {
            out: args.out.clone(),
            device: dev,
            device_name,
            resume: args.resume,
            architecture,
            hyper,
            progress: Some(progress),
        },
    );
    checkpoint_on_sigterm(false);
    let summary = match result {
        // No Bye: a standalone server keeps serving for the resumed trainer.
        Err(e @ TrainError::Stopped { .. }) => {
            eprintln!("voxflow train: SIGTERM: {e}");
            return Ok(ExitCode::from(STOPPED_EXIT));
        }
        r => r.with_context(|| format!("training into {}", args.out.display()))?,
    };
    client.bye();
    if !args.quiet {
        eprintln!(
            "done: {} steps ({} here), median step {:.1} ms, waiting for batches {:.1}% of the \
             time",
            summary.iterations,
            summary.steps_run,
            summary.median_step_s * 1e3,
            summary.wait_share * 100.0
        );
        if let Some(b) = &summary.best {
            let per: Vec<String> = b
                .dice
                .iter()
                .map(|(n, d)| format!("{n} {}", d.map_or("-".into(), |d| format!("{d:.4}"))))
                .collect();
            eprintln!(
                "best model at step {}: {} -> {}",
                b.iteration,
                per.join(", "),
                summary.best_model.display()
            );
        }
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("summary serialises")
    );
    match &args.presegment {
        Some(cases) => crate::presegment(cases, &summary.best_model, &args.out, args.quiet),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Progress lines every few seconds into the log ([`voxflow_train::trainer::progress_lines`];
/// printed too when stderr is not a terminal), and a bar on a terminal.
fn progress(quiet: bool) -> voxflow_train::trainer::ProgressFn {
    let mut lines = voxflow_train::trainer::progress_lines();
    if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} steps {msg} (ETA {eta})",
            )
            .expect("template"),
        );
        Box::new(move |p| {
            bar.set_length(p.iterations);
            bar.set_position(p.iteration);
            bar.set_message(format!(
                "loss {:.4}{}",
                p.loss,
                p.best_dice
                    .map_or(String::new(), |d| format!(", best Dice {d:.4}"))
            ));
            if p.iteration == p.iterations {
                bar.finish();
            }
            lines(p);
        })
    } else {
        lines
    }
}
