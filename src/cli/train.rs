//! `unet train`: train (or resume) a run on a folder of images and masks or on synthetic
//! cells; and what `demo` shares with it: the summary, validation predictions and overlays.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use unet_wgpu::data::{
    synthetic_dataset, synthetic_rgb_dataset, AugmentConfig, Dataset, Grid, RgbStain, SynthConfig,
    SynthStyle,
};
use unet_wgpu::infer::{predict, TileOptions};
use unet_wgpu::model::UNetConfig;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::checkpoint::{self, DataSource, RunData, TileDraw};
use unet_wgpu::train::run::{
    self as training, resume_checkpoint, run_folder, validation_tile, RunOptions, RunSummary,
    SgdChanges,
};
use unet_wgpu::train::{LrSchedule, Schedule};
use unet_wgpu::{AdapterChoice, Error, Gpu, Result};

use super::args::{
    adopt_data_spec, adopt_flag, resume_mismatch, text, ArchArgs, ImageArgs, LabelArgs, MaskArgs,
    MaskKind, WeightArgs,
};
use super::predict::write_sample_overlay;
use super::{open_gpu, stop_flag};

#[derive(Args)]
pub struct TrainArgs {
    /// A folder with images/ and labels/ (matched by file stem), or `synthetic` (cells in the
    /// EM-like style; `synthetic:dic`, `synthetic:phase`, `synthetic:fluorescence` for the
    /// light-microscopy looks) [with --resume: the run's, or the folder it has moved to]
    #[arg(long, required_unless_present = "resume")]
    data: Option<String>,
    /// A validation folder like --data (or `synthetic`) [with --resume: the run's, or the
    /// folder it has moved to]
    #[arg(long)]
    val: Option<String>,
    /// Hold out the last N images of --data (by file name) for validation [default: a
    /// tenth of them, at least one; with --data synthetic, 4 more synthetic images; 0: no
    /// validation; with --resume: the run's]
    #[arg(long, conflicts_with = "val")]
    holdout: Option<usize>,
    /// Network preset: small (depth 4, 16 channels) or paper (depth 5, 64 channels)
    /// [default: small; with --resume, the checkpoint's network]
    #[arg(long)]
    config: Option<String>,
    /// Input tile size [default: 188 for small, 572 for paper; with --resume, the
    /// checkpoint's, and a value given replaces it]
    #[arg(long)]
    tile: Option<usize>,
    /// Tiles per step [default: 1; with --resume, the checkpoint's, and a value given
    /// replaces it]
    #[arg(long)]
    batch: Option<usize>,
    /// Train until this many steps in all.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// SGD learning rate; with momentum 0.99 a step moves about 100 x lr x gradient
    /// [default: 0.001; with --resume, the checkpoint's, and a value given replaces it]
    #[arg(long)]
    lr: Option<f32>,
    /// How the learning rate changes over --steps: `constant`, `cosine` (to 0, or
    /// `cosine:END_LR`), or steps `0.001,0.0003@0.57,0.0001@0.85` (a rate, then
    /// rate@fraction of --steps, or rate@step number; the first rate replaces --lr). Saved
    /// in the checkpoint, so a resumed run continues it [default: cosine to a tenth of the
    /// rate; with --resume, the checkpoint's]
    #[arg(long, value_name = "SCHEDULE")]
    schedule: Option<String>,
    /// Ramp the learning rate up linearly over the first N steps: lets small tiles or a
    /// higher --lr train instead of collapsing to one class [default: 0; with --resume,
    /// the checkpoint's]
    #[arg(long, value_name = "N")]
    warmup: Option<u64>,
    /// SGD momentum (the paper: 0.99) [default: 0.99; with --resume, the checkpoint's, and
    /// a value given replaces it]
    #[arg(long)]
    momentum: Option<f32>,
    /// L2 weight decay [default: 0; with --resume, the checkpoint's, and a value given
    /// replaces it]
    #[arg(long)]
    weight_decay: Option<f32>,
    /// The run folder (checkpoint, loss curve, overlays)
    /// [default: runs/train; with --resume, the resumed run's folder]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this folder (or from this checkpoint file).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// The seed of the synthetic images, the augmentation and the order of the tiles
    /// [default: 1; with --resume: the checkpoint's]
    #[arg(long)]
    seed: Option<u64>,
    /// Turn data augmentation off [with --resume: off where the checkpoint's run had it off]
    #[arg(long)]
    no_augment: bool,
    /// Train on even when the network has collapsed (every ReLU of a layer off, or a loss
    /// no better than predicting the class frequencies); by default the run stops.
    #[arg(long)]
    no_collapse_check: bool,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    #[arg(long, default_value_t = 200)]
    validate_every: u64,
    #[command(flatten)]
    arch: ArchArgs,
    #[command(flatten)]
    masks: MaskArgs,
    /// How masks are stored: another name for --mask (`--labels instance --classes 3`:
    /// instances as background, interior and boundary); `unet eval` has --mask only, its
    /// --labels being the folder of masks.
    #[arg(
        long = "labels",
        value_enum,
        value_name = "KIND",
        conflicts_with = "mask"
    )]
    labels_kind: Option<MaskKind>,
    #[command(flatten)]
    weights: WeightArgs,
    #[command(flatten)]
    labels: LabelArgs,
    #[command(flatten)]
    images: ImageArgs,
}

/// The learning rate of a new training run: with momentum 0.99 a step moves about 0.1 x the
/// gradient.
const DEFAULT_LR: f32 = 0.001;
const DEFAULT_SEED: u64 = 1;

fn load_dataset(spec: &str, args: &TrainArgs, seed: u64, count: usize) -> Result<Dataset> {
    let weights = args.weights.config();
    if let Some(style) = synthetic_style(spec)? {
        let data = synthetic_cells(&args.labels, &args.images, style, count, 256, seed)?;
        return Ok(data.with_weight_config(weights)?);
    }
    let options = args.images.load_options(&args.labels, &args.masks)?;
    Ok(Dataset::open_with(Path::new(spec), &options)?.with_weight_config(weights)?)
}

/// Synthetic cells as the data flags ask: gray and two classes, or with `--classes 3
/// --channels 3` colour cells (H&E) with background, interior and boundary; normalised
/// by `--normalize`.
pub fn synthetic_cells(
    labels: &LabelArgs,
    images: &ImageArgs,
    style: SynthStyle,
    count: usize,
    size: usize,
    seed: u64,
) -> Result<Dataset> {
    let synth = SynthConfig::for_style(style);
    let data = if labels.wants_colour_cells(images) {
        synthetic_rgb_dataset(count, size, size, seed, RgbStain::HAndE, &synth)?
    } else {
        synthetic_dataset(count, size, size, seed, &synth)?
    };
    Ok(data.normalized(images.normalize())?)
}

/// The style of a `synthetic` or `synthetic:STYLE` data spec; None for a folder.
pub fn synthetic_style(spec: &str) -> Result<Option<SynthStyle>> {
    match spec.strip_prefix("synthetic") {
        Some("") => Ok(Some(SynthStyle::default())),
        Some(style) if style.starts_with(':') => {
            style[1..].parse().map(Some).map_err(Error::Config)
        }
        _ => Ok(None),
    }
}

/// The schedule of a new run without `--schedule`: half a cosine from the rate down to a
/// tenth of it at `--steps` (a run resumed past them goes on at that tenth). At a constant
/// rate (momentum 0.99) the held-out IoU of the synthetic styles swung by up to 0.7 from
/// one validation to the next (README, "Training on new kinds of data"); decaying, the
/// network settles.
fn default_schedule(lr: f32) -> Schedule {
    Schedule::Cosine { end: lr / 10.0 }
}

/// The schedule `--schedule` and `--warmup` ask for (None: neither was given on a resumed
/// run, which keeps its checkpoint's), and the rate a step schedule starts at.
fn asked_schedule(args: &TrainArgs) -> Result<(Option<LrSchedule>, Option<f32>)> {
    let resumed = args.resume.is_some();
    if args.schedule.is_none() && args.warmup.is_none() && resumed {
        return Ok((None, None));
    }
    let (schedule, first_lr) = match &args.schedule {
        Some(text) => Schedule::parse(text)?,
        None if resumed => (Schedule::Constant, None),
        None => (default_schedule(args.lr.unwrap_or(DEFAULT_LR)), None),
    };
    if let (Some(first), Some(lr)) = (first_lr, args.lr) {
        return Err(Error::Config(format!(
            "--lr {lr} and --schedule starting at {first} disagree: give the first rate in \
             --schedule only"
        )));
    }
    let schedule = LrSchedule {
        schedule,
        planned_steps: args.steps,
        warmup: args.warmup.unwrap_or(0),
    };
    Ok((Some(schedule), first_lr))
}

pub fn run(choice: AdapterChoice, mut args: TrainArgs) -> Result<()> {
    args.masks = args.masks.clone().with_kind(args.labels_kind.take());
    // The checkpoint a resumed run continues, read once, and where it is.
    let resumed = match &args.resume {
        Some(folder) => {
            let path = resume_checkpoint(folder);
            Some((checkpoint::read_run_data(&path)?, path))
        }
        None => None,
    };
    if let Some((held, path)) = &resumed {
        // The run goes on with the images it was trained on, read and weighted as they
        // were (a flag left out takes the checkpoint's value).
        adopt_run_data(&mut args, held, path)?;
        adopt_data_spec(
            &mut args.images,
            &mut args.labels,
            &mut args.masks,
            &mut args.weights,
            &held.data,
            path,
        )?;
    }
    let seed = args.seed.unwrap_or(DEFAULT_SEED);
    let (schedule, first_lr) = asked_schedule(&args)?;
    // The optimiser settings given: a new run's over the defaults, a resumed run's over
    // its checkpoint's.
    let sgd_given = SgdChanges {
        lr: first_lr.or(args.lr),
        momentum: args.momentum,
        weight_decay: args.weight_decay,
    };
    let sgd = sgd_given.over(Sgd {
        lr: DEFAULT_LR,
        ..Sgd::default()
    });
    sgd.validate()?;
    let asked = args.arch.apply(UNetConfig::preset(
        args.config.as_deref().unwrap_or("small"),
    )?)?;
    let config = match &resumed {
        Some((held, path)) => resumed_network(
            held.config,
            path,
            &asked,
            args.config.is_some() || args.arch.given(),
        )?,
        None => asked,
    };
    let data_spec = args.data.clone().unwrap_or_else(|| "synthetic".to_string());
    let mut train_set = load_dataset(&data_spec, &args, seed, 20)?;
    let config = match args.resume {
        Some(_) => config,
        None => UNetConfig {
            in_channels: train_set.channels(),
            classes: train_set.classes(),
            ..config
        },
    };
    // The validation set, and how many images of --data it took (None: it took none of
    // them by construction, being --val or more synthetic images).
    let (val_set, held_out) = match (&args.val, args.holdout) {
        (Some(spec), _) => (Some(load_dataset(spec, &args, seed + 1_000_000, 4)?), None),
        (None, Some(0)) => (None, Some(0)),
        (None, Some(n)) => {
            let (train_part, held_out) = split_last(train_set, n)?;
            train_set = train_part;
            (Some(held_out), Some(n))
        }
        (None, None) if synthetic_style(&data_spec)?.is_some() => {
            eprintln!("validating on 4 more synthetic images (--holdout 0: no validation)");
            (
                Some(load_dataset(&data_spec, &args, seed + 1_000_000, 4)?),
                None,
            )
        }
        (None, None) => match default_holdout(train_set.len()) {
            0 => {
                eprintln!(
                    "training on all {} images without validation: give --val or more images",
                    train_set.len()
                );
                (None, Some(0))
            }
            n => {
                eprintln!(
                    "holding out the last {n} of {} images for validation (--val DIR or \
                     --holdout N to choose, --holdout 0 for none)",
                    train_set.len()
                );
                let (train_part, held_out) = split_last(train_set, n)?;
                train_set = train_part;
                (Some(held_out), Some(n))
            }
        },
    };
    let out = match (&args.out, &args.resume) {
        (Some(out), _) => out.clone(),
        (None, Some(resumed)) => run_folder(resumed),
        (None, None) => PathBuf::from("runs/train"),
    };
    let gpu = open_gpu(choice)?;
    let (tile, batch) = (
        args.tile.unwrap_or_else(|| config.default_tile()),
        args.batch.unwrap_or(1),
    );
    let options = RunOptions {
        config,
        tile,
        batch,
        steps: args.steps,
        sgd,
        seed,
        augment: if args.no_augment {
            AugmentConfig::none()
        } else {
            AugmentConfig::default()
        },
        out: out.clone(),
        checkpoint_every: args.checkpoint_every,
        validate_every: args.validate_every,
        resume: args.resume.clone(),
        resume_sgd: sgd_given,
        schedule,
        progress: true,
        detect_collapse: !args.no_collapse_check,
        source: Some(DataSource {
            data: absolute_folder(&data_spec)?,
            val: args.val.as_deref().map(absolute_folder).transpose()?,
            holdout: held_out,
            tiles: Some(TileDraw {
                tile,
                batch,
                augment: !args.no_augment,
            }),
        }),
    };
    let summary = training::run(
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

/// Takes `--data`, `--val`, `--holdout` and `--seed` from the resumed checkpoint where
/// they are left out, so that the run goes on with the images it was trained on, made and
/// split the same way, and computes the steps an unbroken run would have. A value that
/// would train on other images (another seed, synthetic style or share held out) is
/// refused; another folder is taken, since the data may have moved (the library then
/// checks that it reads as before).
fn adopt_run_data(args: &mut TrainArgs, held: &RunData, path: &Path) -> Result<()> {
    adopt_flag(path, "--seed", &mut args.seed, held.seed, text)?;
    let Some(source) = &held.source else {
        // A checkpoint from before the source was stored. Without --data a run trains on
        // synthetic cells, which a run trained on a folder of masks must not quietly
        // switch to.
        if args.data.is_none() && held.data.masks.is_some() {
            return Err(Error::Config(format!(
                "{} was trained on a folder of images and masks: pass --data with that \
                 folder to resume it",
                path.display()
            )));
        }
        return Ok(());
    };
    if let Some(tiles) = source.tiles {
        // Left out, the run's own tiles; given, another tile or batch trains on from here.
        args.tile.get_or_insert(tiles.tile);
        args.batch.get_or_insert(tiles.batch);
        args.no_augment |= !tiles.augment;
    }
    let style = synthetic_style(&source.data)?;
    match &args.data {
        None => args.data = Some(still_there(path, "--data", "trained", &source.data)?),
        Some(given) if synthetic_style(given)?.is_some_and(|s| Some(s) != style) => {
            let held = Some(source.data.clone());
            return Err(resume_mismatch(path, "--data", held, given.clone()));
        }
        Some(_) => {}
    }
    if args.val.is_none() && args.holdout.is_none() {
        args.val = source
            .val
            .as_deref()
            .map(|val| still_there(path, "--val", "validated", val))
            .transpose()?;
        args.holdout = source.holdout;
        return Ok(());
    }
    // Images held out are not trained on: the share must stay what it was.
    let (held_out, asked_out) = (source.holdout.unwrap_or(0), args.holdout.unwrap_or(0));
    if held_out != asked_out {
        let trained = match held_out {
            0 => "on all of its images".to_string(),
            n => format!("with its last {n} images held out"),
        };
        let asked = match (&args.val, args.holdout) {
            (Some(val), _) => format!("--val {val}"),
            (None, n) => format!("--holdout {}", n.unwrap_or(0)),
        };
        return Err(Error::Config(format!(
            "{} was trained {trained}, not with {asked}: leave --holdout and --val out to \
             resume it, or start a new run in another --out folder",
            path.display()
        )));
    }
    Ok(())
}

/// The folder (or synthetic style) a resumed run `used` as its `flag`, or an error naming
/// the flag that points the run to where the folder has gone.
fn still_there(path: &Path, flag: &str, used: &str, folder: &str) -> Result<String> {
    if synthetic_style(folder)?.is_none() && !Path::new(folder).is_dir() {
        return Err(Error::Config(format!(
            "{} was {used} on {folder}, which is not there any more: pass {flag} with the \
             folder it has moved to",
            path.display()
        )));
    }
    Ok(folder.to_string())
}

/// `--data` or `--val` as a run stores it: a folder as its absolute path, so that the
/// run resumes from any working directory; `synthetic[:STYLE]` as it is.
fn absolute_folder(spec: &str) -> Result<String> {
    if synthetic_style(spec)?.is_some() {
        return Ok(spec.to_string());
    }
    let folder = std::fs::canonicalize(spec).map_err(|source| Error::Io {
        path: spec.to_string(),
        source,
    })?;
    Ok(folder
        .to_str()
        .map_or_else(|| spec.to_string(), str::to_string))
}

/// The network a resumed run trains: its checkpoint's `held` (which also sets the default
/// tile). Flags that ask for another one (`explicit`) are an error rather than silently
/// ignored.
fn resumed_network(
    held: UNetConfig,
    path: &Path,
    asked: &UNetConfig,
    explicit: bool,
) -> Result<UNetConfig> {
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

/// Images held out for validation when neither --val nor --holdout is given: a tenth
/// (at least 1, at most 10), none from a set of fewer than 4.
fn default_holdout(images: usize) -> usize {
    if images < 4 {
        0
    } else {
        images.div_ceil(10).min(10)
    }
}

/// Splits off the last `n` samples (in file-name order) as a validation set.
fn split_last(data: Dataset, n: usize) -> Result<(Dataset, Dataset)> {
    let mut samples = data.samples().to_vec();
    if n == 0 || n >= samples.len() {
        return Err(Error::Config(format!(
            "--holdout {n} must leave at least one of the {} images for training",
            samples.len()
        )));
    }
    let held_out = samples.split_off(samples.len() - n);
    Ok((data.with_samples(samples)?, data.with_samples(held_out)?))
}

pub fn report_run(summary: &RunSummary) {
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
            "validation at threshold 0.5: pixel error {:.4}, IoU {:.4} (one class everywhere: \
             pixel error {:.4}, IoU {:.4})",
            v.pixel_error, v.iou, v.one_class_pixel_error, v.all_foreground_iou
        );
        if v.learned() {
            eprintln!("the network learned: it beats predicting one class everywhere");
        } else {
            eprintln!(
                "the network did NOT learn: it does no better than predicting one class \
                 everywhere. Train longer, with a warm-up (--warmup 1000) or a lower --lr, and \
                 check that the masks mark what you want segmented"
            );
        }
    } else {
        eprintln!("no validation: give --val or --holdout to see whether the network learned");
    }
    eprintln!("checkpoint: {}", summary.checkpoint.display());
}

/// Validation images drawn as overlays in the run folder.
pub const OVERLAYS: usize = 4;

/// The class probability maps of the first `limit` images of `data`.
pub fn predict_dataset(
    gpu: &Gpu,
    summary: &RunSummary,
    data: &Dataset,
    tile: usize,
    limit: usize,
) -> Result<Vec<Vec<Grid<f32>>>> {
    let model = &summary.trainer.model;
    let options = TileOptions::fitting(gpu, model, validation_tile(model.config(), tile))?;
    data.samples()
        .iter()
        .take(limit)
        .map(|sample| predict(gpu, &summary.trainer.model, &sample.image, options))
        .collect()
}

/// Overlays of the first validation images (two classes: predicted background red, true
/// boundaries green; K classes: each predicted class in its colour, with a legend).
pub fn write_val_outputs(val: &Dataset, maps: &[Vec<Grid<f32>>], out: &Path) -> Result<()> {
    for (sample, maps) in val.samples().iter().zip(maps).take(OVERLAYS) {
        let path = out.join(format!("overlay_{}.png", sample.name));
        write_sample_overlay(sample, maps, &path)?;
    }
    Ok(())
}
