//! The `unet` command line: demo, train, predict, eval, weightmap, info.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use unet_wgpu::data::{
    read_image, read_mask, synthetic_dataset, AugmentConfig, Dataset, Grid, MaskFormat,
    SynthConfig, WeightMapConfig,
};
use unet_wgpu::gpu::{describe_short, list_adapters};
use unet_wgpu::infer::{predict, TileOptions};
use unet_wgpu::metrics::{evaluate, BinaryMap, EvalReport, ProbabilityMap};
use unet_wgpu::model::{Arch, Heads, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::report::{write_mask_png, write_overlay_png, write_probability_png};
use unet_wgpu::train::checkpoint::{self, write_atomically};
use unet_wgpu::train::run::{resume_checkpoint, run, run_folder, RunOptions, RunSummary};
use unet_wgpu::{AdapterChoice, Error, Gpu, Result};

#[derive(Parser)]
#[command(
    name = "unet",
    version,
    about = "The U-Net (Ronneberger et al. 2015) on a from-scratch wgpu engine"
)]
struct Cli {
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
        unet predict --checkpoint runs/isbi/checkpoint.safetensors --tta image.png --out pred"
    )]
    Predict(PredictArgs),
    /// The ISBI 2012 metrics (pixel, Rand and warping error) and IoU of probability maps.
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
}

#[derive(Clone, Copy, ValueEnum)]
enum MaskKind {
    /// Two values: --foreground marks cells, the other value everything else.
    Binary,
    /// Each cell its own integer, background 0.
    Instance,
}

#[derive(Args, Clone)]
struct MaskArgs {
    /// How masks are stored.
    #[arg(long, value_enum, default_value = "binary")]
    mask: MaskKind,
    /// In binary masks, the value that marks cells (ISBI 2012: 255 = cell interior).
    #[arg(long, default_value_t = 255)]
    foreground: u32,
    /// Binary masks of inverted polarity: cells are 0 and the rest is --foreground's value.
    #[arg(long)]
    invert: bool,
}

impl MaskArgs {
    fn format(&self) -> MaskFormat {
        match (self.mask, self.invert) {
            (MaskKind::Instance, _) => MaskFormat::Instance,
            (MaskKind::Binary, false) => MaskFormat::Binary {
                foreground: self.foreground,
                background: 0,
            },
            (MaskKind::Binary, true) => MaskFormat::Binary {
                foreground: 0,
                background: self.foreground,
            },
        }
    }
}

#[derive(Args, Clone)]
struct WeightArgs {
    /// Height of the weight map's border term (the paper: 10).
    #[arg(long, default_value_t = 10.0)]
    w0: f32,
    /// Width of the border term in pixels (the paper: 5).
    #[arg(long, default_value_t = 5.0)]
    sigma: f32,
}

impl WeightArgs {
    fn config(&self) -> WeightMapConfig {
        WeightMapConfig {
            w0: self.w0,
            sigma: self.sigma,
            ..WeightMapConfig::default()
        }
    }
}

#[derive(Args, Clone)]
struct ArchArgs {
    /// unet (Ronneberger et al. 2015) or unetpp (U-Net++, Zhou et al. 2018: nested skips)
    /// [default: unet]
    #[arg(long)]
    arch: Option<Arch>,
    /// Convolution padding: valid (the U-Net paper) or same (the U-Net++ default).
    #[arg(long, value_enum)]
    padding: Option<PaddingArg>,
    /// U-Net++: one head on the last top node only, instead of a head on every one.
    #[arg(long)]
    no_deep_supervision: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PaddingArg {
    Valid,
    Same,
}

impl ArchArgs {
    /// `preset` in the chosen architecture, padding and supervision.
    fn apply(&self, preset: UNetConfig) -> Result<UNetConfig> {
        let mut config = preset.with_arch(self.arch.unwrap_or_default());
        match self.padding {
            Some(PaddingArg::Valid) => config.padding = Padding::Valid,
            Some(PaddingArg::Same) => config.padding = Padding::Same,
            None => {}
        }
        if self.no_deep_supervision {
            config.deep_supervision = false;
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether any of these flags was given (a resumed run must not be asked for another
    /// network than its checkpoint's).
    fn given(&self) -> bool {
        self.arch.is_some() || self.padding.is_some() || self.no_deep_supervision
    }
}

#[derive(Args)]
struct DemoArgs {
    /// Training steps.
    #[arg(long, default_value_t = 600)]
    steps: u64,
    /// The run folder.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// SGD learning rate (momentum is the paper's 0.99, so each step moves about
    /// 100 x lr x gradient; 0.01 makes the demo network collapse to one class).
    #[arg(long, default_value_t = 0.001)]
    lr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    arch: ArchArgs,
}

#[derive(Args)]
struct TrainArgs {
    /// A folder with images/ and labels/ (matched by file stem), or `synthetic`.
    #[arg(long, required_unless_present = "resume")]
    data: Option<String>,
    /// A validation folder like --data (or `synthetic`).
    #[arg(long)]
    val: Option<String>,
    /// Hold out the last N images of --data (by file name) for validation.
    #[arg(long, conflicts_with = "val")]
    holdout: Option<usize>,
    /// Network preset: small (depth 4, 16 channels) or paper (depth 5, 64 channels)
    /// [default: small; with --resume, the checkpoint's network]
    #[arg(long)]
    config: Option<String>,
    /// Input tile size (default: 188 for small, 572 for paper).
    #[arg(long)]
    tile: Option<usize>,
    /// Tiles per step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Train until this many steps in all.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// SGD learning rate; with momentum 0.99 a step moves about 100 x lr x gradient
    /// [default: 0.001; with --resume, the checkpoint's, and a value given replaces it]
    #[arg(long)]
    lr: Option<f32>,
    /// Ramp the learning rate up linearly over the first N steps: lets small tiles or a
    /// higher --lr train instead of collapsing to one class.
    #[arg(long, value_name = "N", default_value_t = 0)]
    warmup: u64,
    #[arg(long, default_value_t = 0.99)]
    momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// The run folder (checkpoint, loss curve, overlays)
    /// [default: runs/train; with --resume, the resumed run's folder]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder (or from this checkpoint file).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Turn data augmentation off.
    #[arg(long)]
    no_augment: bool,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = 200)]
    validate_every: u64,
    #[command(flatten)]
    arch: ArchArgs,
    #[command(flatten)]
    masks: MaskArgs,
    #[command(flatten)]
    weights: WeightArgs,
}

#[derive(Args)]
struct PredictArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images to predict (PNG or TIFF, any size).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, default_value = "predictions")]
    out: PathBuf,
    /// Input tile size (default: 572 for a depth-5 network, 188 otherwise).
    #[arg(long)]
    tile: Option<usize>,
    /// Tiles per forward pass (default: as many as the device's limits allow, up to 8).
    #[arg(long)]
    batch: Option<usize>,
    /// Foreground probability above which a pixel is a cell in the mask and overlay.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// The architecture the checkpoint must hold (it is read from the checkpoint anyway).
    #[arg(long)]
    arch: Option<Arch>,
    /// U-Net++ with deep supervision: predict with the sub-network of head X(0,M) only.
    #[arg(long, value_name = "M")]
    prune: Option<usize>,
    /// U-Net++ with deep supervision: last (the deepest head that runs) or average (the
    /// mean of the probabilities of every head that runs).
    #[arg(long, value_enum, default_value = "last")]
    heads: HeadsArg,
    /// Average the prediction over the image's 8 flips and quarter turns (test-time
    /// augmentation: 8x the time, smoother maps; the paper's ISBI entry averaged 7
    /// rotated versions).
    #[arg(long)]
    tta: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeadsArg {
    Last,
    Average,
}

#[derive(Args)]
struct EvalArgs {
    /// Probability maps (or masks): `<stem>_prob.png` or `<stem>.png`.
    #[arg(long)]
    pred: PathBuf,
    /// Ground-truth masks, `<stem>.png`.
    #[arg(long)]
    labels: PathBuf,
    /// Also write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    masks: MaskArgs,
}

#[derive(Args)]
struct WeightmapArgs {
    /// The mask to compute the weight map of.
    #[arg(value_name = "MASK")]
    mask_file: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    npy: Option<PathBuf>,
    #[command(flatten)]
    weights: WeightArgs,
    #[command(flatten)]
    masks: MaskArgs,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Every pass of every 3x3 conv layer of the U-Net, each variant checked against
    /// variant 1 (direct) before it is timed, then the other ops (up-convolution,
    /// max-pool, crop+concat, dropout, loss, SGD) on their U-Net shapes; median ms,
    /// GFLOP/s or GB/s, and speedup over variant 1.
    #[command(after_help = "Examples:\n  unet bench kernels --shapes small\n  \
        unet bench kernels --shapes paper --ops-only --json ops.json\n  \
        unet bench kernels --conv 1,64,284,284,64 --json conv.json")]
    Kernels {
        /// Layer shapes: paper (from the 572 tile) or small (1/4 channels, 1/2 size).
        #[arg(long, default_value = "small")]
        shapes: String,
        /// Only the other ops, not the 3x3 convolutions.
        #[arg(long)]
        ops_only: bool,
        /// One 3x3 valid conv instead: N,C_in,H,W,C_out.
        #[arg(long)]
        conv: Option<String>,
        /// Timed repetitions per kernel (after a warm-up).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Skip timing variant 1 above this many GFLOP per pass (it is still the check).
        #[arg(long, default_value_t = 5.0)]
        direct_limit: f64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A whole training step: forward, loss, backward, SGD.
    #[command(
        after_help = "Examples:\n  unet bench step --config small\n  unet bench step --config paper --reps 1\n  \
        unet bench step --config small --profile\n  \
        unet bench step --config small --arch unetpp --tile 96"
    )]
    Step {
        /// small (depth 4, base 16, tile 188) or paper (depth 5, base 64, tile 572).
        #[arg(long, default_value = "small")]
        config: String,
        /// Input tile size (default: 188 for small, 572 for paper; 192 and 576 with same padding).
        #[arg(long)]
        tile: Option<usize>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Then time each kernel over --reps more steps (GPU timestamps at every pass).
        #[arg(long)]
        profile: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        arch: ArchArgs,
    },
    /// Many training steps of the small config on synthetic cells, with the GPU memory the
    /// engine holds and the host memory (VmRSS) sampled; says whether both stay flat.
    #[command(
        after_help = "Examples:\n  unet bench soak --steps 1000 --json soak.json\n  \
        unet bench soak --steps 100 --every 10"
    )]
    Soak {
        #[arg(long, default_value_t = 1000)]
        steps: u64,
        /// Sample the memory figures every this many steps.
        #[arg(long, default_value_t = 50)]
        every: u64,
        /// Steps of warm-up not judged (default: a tenth of --steps, at least up to the
        /// first checkpoint at step 200).
        #[arg(long)]
        warmup: Option<u64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Args)]
struct InfoArgs {
    /// Network preset: paper or small.
    #[arg(long, default_value = "paper")]
    config: String,
    /// Input tile size for the layer table (default: 572 for paper, 188 for small).
    #[arg(long)]
    tile: Option<usize>,
    #[command(flatten)]
    arch: ArchArgs,
}

fn main() -> ExitCode {
    let cli = parse_args();
    match run_command(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// The command line, or exit: help and version as clap prints them, a usage error as one
/// line (clap's message and tip, then where to look) with clap's exit status 2.
fn parse_args() -> Cli {
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

/// A message on one line: driver and library errors sometimes span several.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run_command(cli: Cli) -> Result<()> {
    let choice = AdapterChoice {
        name: cli.adapter,
        backend: cli.backend,
    };
    match cli.command {
        Command::Demo(args) => demo(choice, args),
        Command::Train(args) => train(choice, args),
        Command::Predict(args) => predict_files(choice, args),
        Command::Eval(args) => eval(args),
        Command::Weightmap(args) => weightmap(args),
        Command::Info(args) => info(choice, args),
        Command::Bench(command) => bench(choice, command),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("reports serialise");
    write_atomically(path, json.as_bytes())
}

fn bench(choice: AdapterChoice, command: BenchCommand) -> Result<()> {
    use unet_wgpu::bench::{kernels, ops, soak, step};
    let gpu = open_gpu(choice)?;
    println!("{}", gpu.describe());
    match command {
        BenchCommand::Kernels {
            shapes,
            ops_only,
            conv,
            reps,
            direct_limit,
            json,
        } => {
            let opts = kernels::BenchOptions {
                reps,
                direct_limit_gflop: direct_limit,
                ..Default::default()
            };
            let reports = match conv {
                Some(spec) => {
                    let reports = kernels::bench_conv_spec(&gpu, &spec, &opts)?;
                    kernels::print_reports(&reports);
                    reports
                }
                None => {
                    let (layers, op_shapes) = match shapes.as_str() {
                        "paper" => (kernels::paper_layers(), ops::OpShapes::paper()),
                        "small" => (kernels::small_layers(), ops::OpShapes::small()),
                        other => {
                            return Err(Error::Config(format!(
                                "unknown --shapes {other:?}: use paper or small"
                            )))
                        }
                    };
                    let layers = if ops_only { Vec::new() } else { layers };
                    let mut reports = kernels::bench_conv_layers(&gpu, &layers, &opts, true)?;
                    reports.extend(ops::bench_ops(&gpu, &op_shapes, &opts, true)?);
                    reports
                }
            };
            if let Some(path) = json {
                write_json(&path, &reports)?;
            }
        }
        BenchCommand::Step {
            config,
            tile,
            reps,
            profile,
            json,
            arch,
        } => {
            let net = arch.apply(UNetConfig::preset(&config)?)?;
            let tile = tile.unwrap_or_else(|| default_tile(&net));
            let report = step::bench_step(&gpu, &config, net, tile, 1, reps, profile)?;
            step::print_step_report(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
        }
        BenchCommand::Soak {
            steps,
            every,
            warmup,
            json,
        } => {
            let config = UNetConfig::small();
            let checkpoint_every = 200;
            let options = soak::SoakOptions {
                config,
                tile: default_tile(&config),
                steps,
                sample_every: every,
                // The first checkpoint allocates its read-back buffers: part of warm-up.
                warmup_steps: warmup.unwrap_or((steps / 10).max(checkpoint_every.min(steps))),
                checkpoint_every,
            };
            let scratch = std::env::temp_dir().join(format!("unet-soak-{}", std::process::id()));
            let report = soak::soak(&gpu, "small", &options, &scratch);
            let _ = std::fs::remove_file(&scratch);
            let report = report?;
            soak::print_soak_report(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
        }
    }
    Ok(())
}

/// The paper's tile (572) for a depth-5 network, 188 otherwise, or with same padding the
/// next size the network takes (576, 192).
fn default_tile(config: &UNetConfig) -> usize {
    let tile = if config.depth >= 5 { 572 } else { 188 };
    (tile..)
        .find(|&t| config.output_size(t).is_some())
        .expect("some tile size fits")
}

/// A flag set by Ctrl-C or SIGTERM; the training loop stops at the next step boundary.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // If a handler is already installed (a second run in one process) the flag stays unset.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nstopping after this step; a checkpoint will be written");
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

fn open_gpu(choice: AdapterChoice) -> Result<Gpu> {
    let gpu = Gpu::new(choice)?;
    eprintln!("GPU: {} ({:?})", gpu.info().name, gpu.info().backend);
    Ok(gpu)
}

/// The learning rate of a new training run: with momentum 0.99 a step moves about 0.1 x the
/// gradient.
const DEFAULT_LR: f32 = 0.001;

/// The demo's data: seeded synthetic cells, 16 images to train on and 4 held out.
const DEMO_SIZE: usize = 160;

fn demo(choice: AdapterChoice, args: DemoArgs) -> Result<()> {
    let gpu = open_gpu(choice)?;
    eprintln!("generating synthetic cells ({DEMO_SIZE}x{DEMO_SIZE}: 16 to train on, 4 held out)");
    let synth = SynthConfig::default();
    let train_set = synthetic_dataset(16, DEMO_SIZE, DEMO_SIZE, args.seed, &synth)?;
    let val_set = synthetic_dataset(4, DEMO_SIZE, DEMO_SIZE, args.seed + 1_000_000, &synth)?;
    let config = args.arch.apply(UNetConfig {
        depth: 3,
        base_channels: 16,
        ..UNetConfig::small()
    })?;
    let options = RunOptions {
        config,
        tile: config.input_size_for(64),
        batch: 1,
        steps: args.steps,
        sgd: Sgd {
            lr: args.lr,
            momentum: 0.99,
            weight_decay: 0.0,
        },
        seed: args.seed,
        augment: AugmentConfig::default(),
        out: args.out.clone(),
        checkpoint_every: 200,
        validate_every: args.steps.max(1),
        resume: None,
        resume_lr: None,
        warmup: 0,
        progress: true,
    };
    let summary = run(
        &gpu,
        Arc::new(train_set),
        Some(&val_set),
        &options,
        &stop_flag(),
    )?;
    report_run(&summary);
    let foreground = predict_dataset(&gpu, &summary, &val_set, options.tile, val_set.len())?;
    write_val_outputs(&val_set, &foreground, &args.out)?;
    let eval_report = evaluate_dataset(&val_set, &foreground)?;
    print_eval(&eval_report);
    eprintln!("run folder: {}", args.out.display());
    Ok(())
}

fn load_dataset(
    spec: &str,
    masks: &MaskArgs,
    weights: &WeightArgs,
    seed: u64,
    count: usize,
) -> Result<Dataset> {
    if spec == "synthetic" {
        let data = synthetic_dataset(count, 256, 256, seed, &SynthConfig::default())?;
        return Ok(data.with_weight_config(weights.config())?);
    }
    Ok(Dataset::open(Path::new(spec), masks.format())?.with_weight_config(weights.config())?)
}

fn train(choice: AdapterChoice, args: TrainArgs) -> Result<()> {
    let sgd = Sgd {
        lr: args.lr.unwrap_or(DEFAULT_LR),
        momentum: args.momentum,
        weight_decay: args.weight_decay,
    };
    sgd.validate()?;
    let asked = args.arch.apply(UNetConfig::preset(
        args.config.as_deref().unwrap_or("small"),
    )?)?;
    let config = match args.resume.as_deref() {
        Some(folder) => {
            resumed_network(folder, &asked, args.config.is_some() || args.arch.given())?
        }
        None => asked,
    };
    let data_spec = args.data.clone().unwrap_or_else(|| "synthetic".to_string());
    let mut train_set = load_dataset(&data_spec, &args.masks, &args.weights, args.seed, 20)?;
    let val_set = match (&args.val, args.holdout) {
        (Some(spec), _) => Some(load_dataset(
            spec,
            &args.masks,
            &args.weights,
            args.seed + 1_000_000,
            4,
        )?),
        (None, Some(n)) => {
            let (train_part, held_out) = split_last(train_set, n, &args.weights)?;
            train_set = train_part;
            Some(held_out)
        }
        (None, None) => None,
    };
    let out = match (&args.out, &args.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(resumed)) => run_folder(resumed),
        (None, None) => PathBuf::from("runs/train"),
    };
    let gpu = open_gpu(choice)?;
    let options = RunOptions {
        config,
        tile: args.tile.unwrap_or_else(|| default_tile(&config)),
        batch: args.batch,
        steps: args.steps,
        sgd,
        seed: args.seed,
        augment: if args.no_augment {
            AugmentConfig::none()
        } else {
            AugmentConfig::default()
        },
        out: out.clone(),
        checkpoint_every: args.checkpoint_every,
        validate_every: args.validate_every,
        resume: args.resume.clone(),
        resume_lr: args.lr,
        warmup: args.warmup,
        progress: true,
    };
    let summary = run(
        &gpu,
        Arc::new(train_set),
        val_set.as_ref(),
        &options,
        &stop_flag(),
    )?;
    report_run(&summary);
    if let Some(val) = &val_set {
        let foreground = predict_dataset(&gpu, &summary, val, options.tile, OVERLAYS)?;
        write_val_outputs(val, &foreground, &out)?;
    }
    eprintln!("run folder: {}", out.display());
    Ok(())
}

/// The network a resumed run trains: its checkpoint's (which also sets the default tile).
/// Flags that ask for another one (`explicit`) are an error rather than silently ignored.
fn resumed_network(folder: &Path, asked: &UNetConfig, explicit: bool) -> Result<UNetConfig> {
    let path = resume_checkpoint(folder);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let held = checkpoint::parse(&bytes, &path)?.config;
    if !explicit || held == *asked {
        return Ok(held);
    }
    let describe = |c: &UNetConfig| {
        format!(
            "{} of depth {} with {} channels and {} padding",
            c.arch,
            c.depth,
            c.base_channels,
            format!("{:?}", c.padding).to_lowercase()
        )
    };
    Err(Error::Config(format!(
        "{} holds a {}, but --config/--arch/--padding ask for a {}: leave them out to resume \
         that network, or start a new run in another --out folder",
        path.display(),
        describe(&held),
        describe(asked)
    )))
}

/// Splits off the last `n` samples (in file-name order) as a validation set.
fn split_last(data: Dataset, n: usize, weights: &WeightArgs) -> Result<(Dataset, Dataset)> {
    let mut samples = data.samples().to_vec();
    if n == 0 || n >= samples.len() {
        return Err(Error::Config(format!(
            "--holdout {n} must leave at least one of the {} images for training",
            samples.len()
        )));
    }
    let held_out = samples.split_off(samples.len() - n);
    Ok((
        Dataset::new(samples, weights.config())?,
        Dataset::new(held_out, weights.config())?,
    ))
}

fn report_run(summary: &RunSummary) {
    let last = summary.losses.last().map_or(f32::NAN, |l| l.1);
    let verb = if summary.interrupted {
        "stopped"
    } else {
        "finished"
    };
    eprintln!(
        "{verb} at step {}; last loss {last:.4}",
        summary.trainer.step
    );
    if let Some(v) = summary.validation {
        eprintln!(
            "validation at threshold 0.5: pixel error {:.4}, IoU {:.4}",
            v.pixel_error, v.iou
        );
    }
    eprintln!("checkpoint: {}", summary.checkpoint.display());
}

/// Validation images drawn as overlays in the run folder.
const OVERLAYS: usize = 4;

/// The foreground probability maps of the first `limit` images of `data`.
fn predict_dataset(
    gpu: &Gpu,
    summary: &RunSummary,
    data: &Dataset,
    tile: usize,
    limit: usize,
) -> Result<Vec<Grid<f32>>> {
    let options = TileOptions::fitting(gpu, &summary.trainer.model, tile)?;
    data.samples()
        .iter()
        .take(limit)
        .map(|sample| {
            Ok(predict(gpu, &summary.trainer.model, &sample.image, options)?.swap_remove(1))
        })
        .collect()
}

/// Overlays of the first validation images (predicted background red, true boundaries green).
fn write_val_outputs(val: &Dataset, foreground: &[Grid<f32>], out: &Path) -> Result<()> {
    for (sample, prob) in val.samples().iter().zip(foreground).take(OVERLAYS) {
        let truth = sample.labels.map(|l| u8::from(l != 0));
        let path = out.join(format!("overlay_{}.png", sample.name));
        write_overlay_png(&path, &sample.image, prob, 0.5, Some(&truth))?;
    }
    Ok(())
}

/// The challenge metrics of foreground probability maps against a dataset's labels.
fn evaluate_dataset(data: &Dataset, foreground: &[Grid<f32>]) -> Result<EvalReport> {
    let mut pairs = Vec::new();
    for (sample, prob) in data.samples().iter().zip(foreground) {
        let truth = sample.labels.data.iter().map(|&l| l != 0).collect();
        pairs.push((
            ProbabilityMap::new(prob.width, prob.height, prob.data.clone())?,
            BinaryMap::new(prob.width, prob.height, truth)?,
        ));
    }
    Ok(evaluate(&pairs, &unet_wgpu::metrics::default_thresholds())?)
}

fn print_eval(report: &EvalReport) {
    let b = &report.best_mean;
    println!(
        "metric          best   at threshold   (mean over {} images)",
        report.images.len()
    );
    for (name, best) in [
        ("pixel error", &b.pixel_error),
        ("Rand (CREMI)", &b.rand_error_cremi),
        ("Rand (skimage)", &b.rand_error),
        ("warping error", &b.warping_error),
        ("foreground IoU", &b.iou),
    ] {
        println!("{name:<15} {:>7.4}   {:.2}", best.value, best.threshold);
    }
}

fn predict_files(choice: AdapterChoice, args: PredictArgs) -> Result<()> {
    let gpu = open_gpu(choice)?;
    let trainer = checkpoint::load(&gpu, &args.checkpoint)?;
    let model = &trainer.model;
    let config = model.config();
    if let Some(arch) = args.arch.filter(|&arch| arch != config.arch) {
        return Err(Error::Config(format!(
            "{} holds a {} network, not {arch}: leave out --arch or pass --arch {}",
            args.checkpoint.display(),
            config.arch,
            config.arch
        )));
    }
    let tile = args.tile.unwrap_or_else(|| default_tile(config));
    let mut options = TileOptions::fitting(&gpu, model, tile)?;
    if let Some(batch) = args.batch {
        options.batch = batch;
    }
    options.heads = Heads {
        prune: args.prune,
        average: args.heads == HeadsArg::Average,
    };
    options.average_symmetries = args.tta;
    model.check_heads(options.heads)?;
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        path: args.out.display().to_string(),
        source,
    })?;
    for input in &args.inputs {
        let image = read_image(input)?;
        let probs = predict(&gpu, model, &image, options)?;
        let stem = input
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy());
        write_probability_png(&args.out.join(format!("{stem}_prob.png")), &probs[1])?;
        write_mask_png(
            &args.out.join(format!("{stem}_mask.png")),
            &probs[1],
            args.threshold,
        )?;
        write_overlay_png(
            &args.out.join(format!("{stem}_overlay.png")),
            &image,
            &probs[1],
            args.threshold,
            None,
        )?;
        println!(
            "{} -> {}/{stem}_{{prob,mask,overlay}}.png",
            input.display(),
            args.out.display()
        );
    }
    // Set by the tile size and batch, not the image size (a test checks it).
    let peak = gpu.pool_stats().peak_bytes_held;
    eprintln!(
        "GPU memory: peak {:.1} MiB held by the engine ({peak} bytes)",
        peak as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// The ground truth of a mask file: true where a cell is.
fn read_truth(path: &Path, masks: &MaskArgs) -> Result<BinaryMap> {
    let labels = read_mask(path, masks.format())?;
    Ok(BinaryMap::new(
        labels.width,
        labels.height,
        labels.data.iter().map(|&l| l != 0).collect(),
    )?)
}

fn eval(args: EvalArgs) -> Result<()> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        Ok(files)
    };
    let mut pairs = Vec::new();
    for label_path in list(&args.labels)? {
        let stem = label_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let candidates = [
            format!("{stem}_prob.png"),
            format!("{stem}.png"),
            format!("{stem}_prob.tif"),
        ];
        let Some(pred_path) = candidates
            .iter()
            .map(|c| args.pred.join(c))
            .find(|p| p.is_file())
        else {
            continue;
        };
        let prob = read_image(&pred_path)?;
        let truth = read_truth(&label_path, &args.masks)?;
        pairs.push((
            ProbabilityMap::new(prob.width, prob.height, prob.data)?,
            truth,
        ));
    }
    if pairs.is_empty() {
        return Err(Error::Config(format!(
            "no prediction in {} matches a label in {} (expected <stem>_prob.png or <stem>.png)",
            args.pred.display(),
            args.labels.display()
        )));
    }
    let report = evaluate(&pairs, &unet_wgpu::metrics::default_thresholds())?;
    print_eval(&report);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        write_atomically(path, json.as_bytes())?;
    }
    Ok(())
}

fn weightmap(args: WeightmapArgs) -> Result<()> {
    let labels = read_mask(&args.mask_file, args.masks.format())?;
    let map = unet_wgpu::data::weight_map(&labels, &args.weights.config())?;
    unet_wgpu::data::write_weight_map_png(&args.out, &map)?;
    if let Some(npy) = &args.npy {
        unet_wgpu::data::write_weight_map_npy(npy, &map)?;
    }
    let max = map.data.iter().copied().fold(f32::MIN, f32::max);
    println!(
        "{}: {}x{}, weights up to {max:.2}",
        args.out.display(),
        map.width,
        map.height
    );
    Ok(())
}

fn info(choice: AdapterChoice, args: InfoArgs) -> Result<()> {
    println!("adapters:");
    let all = AdapterChoice {
        name: None,
        backend: choice.backend.clone(),
    };
    for adapter in list_adapters(&all)? {
        println!("  {}", describe_short(&adapter));
    }
    let gpu = Gpu::new(choice)?;
    println!("chosen:\n  {}\n", gpu.describe().replace('\n', "\n  "));

    let config = args.arch.apply(UNetConfig::preset(&args.config)?)?;
    let tile = args.tile.unwrap_or_else(|| default_tile(&config));
    let layers = config.layers(tile)?;
    println!(
        "{} {} on a {tile}x{tile} tile (output {}):",
        args.config,
        config.arch,
        config.check_tile(tile)?
    );
    println!(
        "  {:<12} {:<13} {:>6} {:>6} {:>6} {:>11} {:>9}",
        "layer", "kind", "c_in", "c_out", "size", "params", "GFLOP"
    );
    for l in &layers {
        // FLOPs = 2 * multiply-adds.
        let gflop = 2.0 * l.macs as f64 / 1e9;
        println!(
            "  {:<12} {:<13} {:>6} {:>6} {:>6} {:>11} {:>9.2}",
            l.name, l.kind, l.c_in, l.c_out, l.out_size, l.params, gflop
        );
    }
    let params: usize = layers.iter().map(|l| l.params).sum();
    let gflop: f64 = layers.iter().map(|l| 2.0 * l.macs as f64 / 1e9).sum();
    println!("  total: {params} parameters, {gflop:.1} GFLOP forward");
    Ok(())
}
