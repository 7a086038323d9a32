//! The commands of `unet`: the top-level parser and its table of commands here (with each
//! command's one-line help and examples), one module per command beside it, the argument
//! groups several commands share in [`args`], and what every command that needs a GPU opens
//! it with ([`open_gpu`]).

mod args;
mod bench;
mod demo;
mod eval;
mod export;
mod info;
mod predict;
mod predict_batch;
mod train;
mod weightmap;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use unet_wgpu::train::checkpoint::write_atomically;
use unet_wgpu::{AdapterChoice, Gpu, Result};

use bench::BenchCommand;
use demo::DemoArgs;
use eval::EvalArgs;
use export::ExportArgs;
use info::InfoArgs;
use predict::PredictArgs;
use train::TrainArgs;
use weightmap::WeightmapArgs;

#[derive(Parser)]
#[command(
    name = "unet",
    version,
    about = "The U-Net (Ronneberger et al. 2015) on a from-scratch wgpu engine"
)]
pub struct Cli {
    /// Use the GPU adapter whose name contains this text (see `unet info`).
    #[arg(long, global = true, env = "UNET_ADAPTER")]
    adapter: Option<String>,
    /// Restrict to one backend: vulkan, metal, dx12 or gl.
    #[arg(long, global = true, env = "UNET_BACKEND")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a small U-Net on built-in synthetic cells, predict held-out images, print metrics.
    #[command(after_help = "Examples:\n  unet demo\n  unet demo --steps 1000 --out runs/longer")]
    Demo(DemoArgs),
    /// Train a U-Net on a folder of images and masks (or on synthetic cells).
    #[command(
        after_help = "Examples:\n  unet train --data synthetic --steps 500\n  \
        unet train --data ../shared/data/isbi2012/train --holdout 5 --config small --out runs/isbi\n  \
        unet train --resume runs/isbi --steps 4000\n  \
        unet train --resume runs/isbi --steps 6000 --lr 0.0003   # a lower rate for the last steps"
    )]
    Train(TrainArgs),
    /// Predict images of any size with the overlap-tile strategy.
    #[command(
        after_help = "Examples:\n  unet predict --checkpoint runs/isbi/checkpoint.safetensors \
        ../shared/data/isbi2012/test/images/*.png --out predictions\n  \
        unet predict --checkpoint runs/isbi/checkpoint.safetensors --tta image.png --out pred\n  \
        unet predict --checkpoint model.safetensors \"/shared/images/*.tif\" --out /shared/preds --shard-from-env\n  \
        unet predict --merge-report /shared/preds"
    )]
    Predict(PredictArgs),
    /// The ISBI 2012 metrics (pixel, Rand and warping error) and IoU of probability maps;
    /// per-class IoU, Dice and the confusion matrix of K-class maps.
    #[command(
        after_help = "Example:\n  unet eval --pred predictions --labels data/val/labels --json eval.json"
    )]
    Eval(EvalArgs),
    /// Write the paper's weight map of a mask as a PNG (and as .npy floats).
    #[command(
        after_help = "Example:\n  unet weightmap labels/00.png --out w.png --npy w.npy --w0 10 --sigma 5"
    )]
    Weightmap(WeightmapArgs),
    /// Benchmark the kernels or a whole training step.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List GPU adapters, show the chosen one and its limits, and a network's layer table.
    #[command(
        after_help = "Examples:\n  unet info\n  unet info --config small --tile 188\n  unet info --adapter llvmpipe"
    )]
    Info(InfoArgs),
    /// Export a checkpoint for other tools: an ONNX graph (probabilities out) or a
    /// BioImage Model Zoo package (Fiji/deepImageJ, ilastik, QuPath, napari).
    #[command(
        after_help = "Examples:\n  unet export --checkpoint runs/isbi/checkpoint.safetensors \
        --format onnx --out isbi.onnx\n  \
        unet export --checkpoint runs/isbi/checkpoint.safetensors --format bioimageio \
        --out isbi-unet.zip --author \"Ada Lovelace\"\n  \
        unet export --checkpoint runs/pp/checkpoint.safetensors --format onnx --heads average \
        --out pp.onnx"
    )]
    Export(ExportArgs),
}

/// The command line, or exit: help and version as clap prints them, a usage error as one
/// line (clap's message and tip, then where to look) with clap's exit status 2.
pub fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    Cli::try_parse().unwrap_or_else(|e| {
        if matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            e.exit();
        }
        let rendered = e.render().to_string();
        // Clap's text: "error: ...", an optional "tip: ...", then a usage block.
        let message = rendered
            .lines()
            .take_while(|l| !l.starts_with("Usage:"))
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        eprintln!("error: {message}; see `unet --help` or `unet <command> --help`");
        std::process::exit(2);
    })
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
    let choice = AdapterChoice {
        name: cli.adapter,
        backend: cli.backend,
    };
    match cli.command {
        Command::Demo(args) => demo::run(choice, args),
        Command::Train(args) => train::run(choice, args),
        Command::Predict(args) => predict::run(choice, args),
        Command::Eval(args) => eval::run(args),
        Command::Weightmap(args) => weightmap::run(args),
        Command::Info(args) => info::run(choice, args),
        Command::Bench(command) => bench::run(choice, command),
        Command::Export(args) => export::run(choice, args),
    }
}

/// The GPU a command runs on, said on stderr. Every command that needs a GPU opens it here.
pub fn open_gpu(choice: AdapterChoice) -> Result<Gpu> {
    let gpu = Gpu::new(choice)?;
    enable_autotune(&gpu)?;
    eprintln!("GPU: {} ({:?})", gpu.info().name, gpu.info().backend);
    // Said once, at start: a device without subgroups runs the slow convolutions.
    if let Some(note) = gpu.slow_path_note() {
        eprintln!("{note}");
    }
    Ok(gpu)
}

/// Autotuning as `UNET_AUTOTUNE` says (where it is not set: on for GPUs, off on CPU
/// devices), with the user's cache (`UNET_AUTOTUNE_CACHE`); see `unet_wgpu::gpu::autotune`.
pub fn enable_autotune(gpu: &Gpu) -> Result<()> {
    use unet_wgpu::gpu::autotune::{default_cache_path, TuneMode};
    let mode = TuneMode::from_env(TuneMode::default_for(gpu.info()))?;
    gpu.set_autotune(mode, default_cache_path());
    Ok(())
}

/// A flag set by Ctrl-C or SIGTERM; the training loop stops at the next step boundary.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // If a handler is already installed (a second run in one process) the flag stays unset.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nstopping after this step; a checkpoint will be written");
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("reports serialise");
    write_atomically(path, json.as_bytes())
}
