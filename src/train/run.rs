//! A training run: tiles stream in from a background thread, the GPU trains on them, and
//! the run folder collects checkpoints, the loss curve and validation figures. A run can
//! stop at any step (Ctrl-C, SIGTERM) and resume exactly where it stopped: tile `k` of the
//! stream and the dropout mask of step `s` are functions of the seed alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{self, DataSource};
use super::health::{dead_layers, prior_entropy, HealthMonitor, Verdict, PRIOR_PATIENCE, REMEDIES};
use super::schedule::LrSchedule;
use super::trainer::{Batch, Trainer};
use crate::data::{AugmentConfig, DataSpec, Dataset, TileSampler, TileSpec, TileStream};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{predict, TileOptions};
use crate::metrics::{binary_truth, iou_ignoring, pixel_error_ignoring, BinaryMap, ProbabilityMap};
use crate::model::{Network, UNetConfig};
use crate::ops::sgd::Sgd;
use crate::report::{
    read_metrics_csv, write_loss_csv, write_metrics_csv, write_training_plots, StepLog,
};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const LOSS_PLOT_FILE: &str = "loss.png";
/// Every logged value of a run, one line per step (see [`crate::report::write_metrics_csv`]).
pub const METRICS_FILE: &str = "metrics.csv";

/// Everything a run needs besides its data.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: UNetConfig,
    /// Input tile side; the output side follows from the network.
    pub tile: usize,
    /// Tiles per step (the paper: 1).
    pub batch: usize,
    /// Train until this many steps in all (a resumed run continues towards it).
    pub steps: u64,
    pub sgd: Sgd,
    pub seed: u64,
    pub augment: AugmentConfig,
    /// The run folder.
    pub out: PathBuf,
    pub checkpoint_every: u64,
    pub validate_every: u64,
    /// Continue from the checkpoint in this run folder. The run keeps the checkpoint's
    /// network and optimiser (`config`, `seed` and `sgd` above are not used) ...
    pub resume: Option<PathBuf>,
    /// ... except that the optimiser settings given here replace the checkpoint's ...
    pub resume_sgd: SgdChanges,
    /// ... and a schedule given here replaces its schedule. A new run's schedule (None:
    /// a constant rate, no warm-up); see [`LrSchedule`].
    pub schedule: Option<LrSchedule>,
    pub progress: bool,
    /// Stop with [`Error::Collapsed`] when the network stops learning (see
    /// [`super::health`]).
    pub detect_collapse: bool,
    /// Where the training images came from, written into every checkpoint (what `unet
    /// train` was told; None for data made in memory).
    pub source: Option<DataSource>,
}

/// The optimiser settings given to a resumed run: each one given replaces the checkpoint's
/// (the base rate, momentum and weight decay), each None keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SgdChanges {
    pub lr: Option<f32>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
}

impl SgdChanges {
    /// `base` with each setting given here in place of its own.
    pub fn over(self, base: Sgd) -> Sgd {
        Sgd {
            lr: self.lr.unwrap_or(base.lr),
            momentum: self.momentum.unwrap_or(base.momentum),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
        }
    }
}

/// Validation figures at threshold 0.5, and those of the baseline that predicts one class
/// everywhere (what a collapsed network does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    pub pixel_error: f64,
    pub iou: f64,
    /// The pixel error of the best class everywhere ("all background" or "all
    /// foreground" for two classes).
    pub one_class_pixel_error: f64,
    /// The IoU of "all foreground" (for K classes: the mean foreground IoU of the most
    /// frequent foreground class everywhere).
    pub all_foreground_iou: f64,
}

impl Validation {
    /// Whether the network beats the one-class baseline clearly: at most 80% of its pixel
    /// error.
    pub fn learned(&self) -> bool {
        self.pixel_error <= 0.8 * self.one_class_pixel_error
    }
}

pub struct RunSummary {
    pub trainer: Trainer,
    pub losses: Vec<(u64, f32)>,
    /// Every step's loss, learning rate and validation (of a resumed run, its earlier
    /// steps too).
    pub log: Vec<StepLog>,
    pub validation: Option<Validation>,
    /// True when a stop signal ended the run before `steps`.
    pub interrupted: bool,
    pub checkpoint: PathBuf,
}

/// A run whose last step would train at rate 0 (a cosine to 0 resumed past its planned
/// steps) would change nothing from there on: an error that says what to give instead.
fn check_rate_after_schedule(trainer: &Trainer, steps: u64) -> Result<()> {
    let last = steps.saturating_sub(1);
    if steps <= trainer.step || trainer.schedule.lr_at(trainer.sgd.lr, last) > 0.0 {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the run's schedule ({} over {} steps) is at rate 0 by step {last}, so those steps \
         would not train: give --schedule (for example --schedule constant --lr 0.0001)",
        trainer.schedule.describe(trainer.sgd.lr),
        trainer.schedule.planned_steps
    )))
}

/// Trains on `train`, validating on `val`, until `options.steps` or until `stop` is set.
pub fn run(
    gpu: &Gpu,
    train: Arc<Dataset>,
    val: Option<&Dataset>,
    options: &RunOptions,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    std::fs::create_dir_all(&options.out).map_err(|source| Error::Io {
        path: options.out.display().to_string(),
        source,
    })?;
    let checkpoint_path = options.out.join(CHECKPOINT_FILE);
    // Autotuning: this run's kernel choices live in its folder, so that a resumed run
    // computes the same sums (see crate::gpu::autotune).
    let resumed_from = options.resume.as_deref().map(run_folder);
    gpu.autotune()
        .use_run_folder(&options.out, resumed_from.as_deref())?;
    let mut trainer = match &options.resume {
        Some(folder) => checkpoint::load(gpu, &resume_checkpoint(folder))?,
        None => Trainer::new(
            Network::new(gpu, options.config, options.seed)?,
            options.sgd,
            options.seed,
        ),
    };
    if options.resume.is_some() {
        trainer.sgd = options.resume_sgd.over(trainer.sgd);
    }
    if let Some(schedule) = &options.schedule {
        trainer.schedule = schedule.clone();
    }
    trainer.sgd.validate()?;
    check_rate_after_schedule(&trainer, options.steps)?;
    if options.resume.is_some() && options.progress {
        eprintln!(
            "resuming at step {} with learning rate {} (schedule {})",
            trainer.step,
            trainer.lr(),
            trainer.schedule.describe(trainer.sgd.lr)
        );
    }
    let config = *trainer.model.config();
    let out_size = config.check_tile(options.tile)?;
    let spec = TileSpec::new(options.tile, out_size)?;
    let sampler = TileSampler::new(spec, options.augment, trainer.seed)?;
    let data_spec = checkpoint::checked_data_spec(&train, &config)?;
    if let Some(folder) = &options.resume {
        let path = resume_checkpoint(folder);
        checkpoint::check_resumed_data(&checkpoint::read_data_spec(&path)?, &data_spec, &path)?;
    }
    let batch = options.batch.max(1);
    let mut stream =
        TileStream::starting_at(train, sampler, 2 * batch, trainer.step * batch as u64);
    let mut losses = match &options.resume {
        Some(folder) => read_losses(&folder.join(LOSS_PLOT_FILE).with_extension("csv")),
        None => Vec::new(),
    };
    losses.retain(|&(s, _)| s < trainer.step);
    let mut log = match &options.resume {
        Some(folder) => earlier_log(folder, &losses),
        None => Vec::new(),
    };
    log.retain(|r| r.step < trainer.step);

    let bar = progress_bar(options, trainer.step);
    let started = Instant::now();
    let first_step = trainer.step;
    let val_tile = validation_tile(&config, options.tile);
    // The latest validation and the step it was made at.
    let mut validation: Option<(u64, Validation)> = None;
    let mut interrupted = false;
    let (mut input, mut labels, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let mut health = HealthMonitor::default();
    // The step of the last checkpoint this run wrote or resumed from.
    let mut saved_step = options.resume.as_ref().map(|_| trainer.step);
    while trainer.step < options.steps {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        input.clear();
        labels.clear();
        weights.clear();
        for _ in 0..batch {
            let tile = stream.next_tile()?;
            input.extend_from_slice(&tile.image.data);
            labels.extend(tile.classes.data.iter().map(|&c| f32::from(c)));
            weights.extend_from_slice(&tile.weights.data);
        }
        let step_batch = Batch {
            input: &input,
            labels: &labels,
            weights: &weights,
            n: batch,
            tile: options.tile,
        };
        let lr = trainer.lr();
        let loss = trainer.step(gpu, &step_batch)?;
        losses.push((trainer.step - 1, loss));
        if options.detect_collapse {
            let dead = match HealthMonitor::wants_dead_check(trainer.step) {
                true => Some(dead_layers(gpu, &trainer.model)?),
                false => None,
            };
            let prior = prior_entropy(&labels, &weights, config.classes);
            match health.record(trainer.step, loss, prior, dead) {
                None => {}
                Some(Verdict::Warning(collapse)) => bar.suspend(|| {
                    eprintln!(
                        "warning at step {}: the network may have collapsed: {collapse}. \
                         Training goes on for up to {PRIOR_PATIENCE} steps in case it \
                         starts to learn (faint cues can take that long); if it does not, \
                         it stops. Else start again with {REMEDIES}",
                        trainer.step
                    )
                }),
                Some(Verdict::Collapsed(collapse)) => {
                    bar.finish_and_clear();
                    save_log(&losses, &log, &options.out)?;
                    return Err(Error::Collapsed {
                        step: trainer.step,
                        reason: collapse.to_string(),
                        saved: match saved_step {
                            Some(step) => format!("step {step}"),
                            None => "none written yet".into(),
                        },
                    });
                }
            }
        }
        log.push(StepLog {
            lr,
            ..StepLog::loss_only(trainer.step - 1, loss)
        });

        let done = trainer.step - first_step;
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(trainer.step);
        bar.set_message(format!("loss {loss:.4}  {rate:.2} steps/s"));
        if trainer.step % options.checkpoint_every.max(1) == 0 {
            save_run(
                gpu,
                &trainer,
                (&data_spec, options.source.as_ref()),
                &checkpoint_path,
                &losses,
                &log,
                &options.out,
            )?;
            saved_step = Some(trainer.step);
            if bar.is_hidden() {
                // No terminal to draw the bar on (output to a file): log a line instead.
                eprintln!("step {}: loss {loss:.4}, {rate:.2} steps/s", trainer.step);
            }
        }
        if let Some(val) = val.filter(|_| trainer.step % options.validate_every.max(1) == 0) {
            let v = validate(gpu, &trainer.model, val, val_tile)?;
            // Printed above the bar, and also when there is no bar (output to a file).
            bar.suspend(|| {
                eprintln!(
                    "step {}: validation pixel error {:.4}, IoU {:.4}",
                    trainer.step, v.pixel_error, v.iou
                )
            });
            validation = Some((trainer.step, v));
            if let Some(row) = log.last_mut() {
                row.val_pixel_error = Some(v.pixel_error);
                row.val_iou = Some(v.iou);
            }
        }
    }
    bar.finish_and_clear();
    save_run(
        gpu,
        &trainer,
        (&data_spec, options.source.as_ref()),
        &checkpoint_path,
        &losses,
        &log,
        &options.out,
    )?;
    let validation = match (val, validation) {
        (Some(val), last) if last.is_none_or(|(step, _)| step != trainer.step) => {
            Some(validate(gpu, &trainer.model, val, val_tile)?)
        }
        (_, last) => last.map(|(_, v)| v),
    };
    Ok(RunSummary {
        trainer,
        losses,
        log,
        validation,
        interrupted,
        checkpoint: checkpoint_path,
    })
}

/// `--resume` takes a run folder or a checkpoint file.
pub fn resume_checkpoint(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The folder of the run `--resume` names: the folder itself, or the checkpoint file's.
pub fn run_folder(resumed: &Path) -> PathBuf {
    if resumed.is_dir() {
        return resumed.to_path_buf();
    }
    match resumed.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The checkpoint, `loss.csv` (what a resumed run reads back), `metrics.csv` and the
/// training figure (`loss.png` and `loss.svg`).
fn save_run(
    gpu: &Gpu,
    trainer: &Trainer,
    (data, source): (&DataSpec, Option<&DataSource>),
    checkpoint_path: &Path,
    losses: &[(u64, f32)],
    log: &[StepLog],
    out: &Path,
) -> Result<()> {
    checkpoint::save_with_data(gpu, trainer, Some(data), source, checkpoint_path)?;
    save_log(losses, log, out)
}

/// `loss.csv`, `metrics.csv` and the training figure.
fn save_log(losses: &[(u64, f32)], log: &[StepLog], out: &Path) -> Result<()> {
    let plot = out.join(LOSS_PLOT_FILE);
    write_loss_csv(&plot.with_extension("csv"), losses)?;
    write_metrics_csv(&out.join(METRICS_FILE), log)?;
    write_training_plots(&plot, log)
}

/// The log of the run being resumed: its `metrics.csv`, or for a run from before that
/// file, its losses alone.
fn earlier_log(folder: &Path, losses: &[(u64, f32)]) -> Vec<StepLog> {
    let folder = run_folder(folder);
    match std::fs::read_to_string(folder.join(METRICS_FILE)) {
        Ok(text) => read_metrics_csv(&text),
        Err(_) => losses
            .iter()
            .map(|&(step, loss)| StepLog::loss_only(step, loss))
            .collect(),
    }
}

/// The loss history of an earlier run (empty if there is none).
fn read_losses(csv: &Path) -> Vec<(u64, f32)> {
    let Ok(text) = std::fs::read_to_string(csv) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let (step, loss) = line.split_once(',')?;
            Some((step.parse().ok()?, loss.parse().ok()?))
        })
        .collect()
}

fn progress_bar(options: &RunOptions, position: u64) -> ProgressBar {
    if !options.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(options.steps).with_position(position);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} step {pos}/{len}  {msg}  [{elapsed_precise}, {eta} left]",
        )
        .expect("valid template"),
    );
    bar
}

/// The input tile validation predicts with, as `unet predict` would: the training tile or
/// the default one if that is larger (the same result for valid convolutions whatever the
/// tile, and many times fewer tiles than a small training tile takes).
pub fn validation_tile(config: &UNetConfig, training_tile: usize) -> usize {
    training_tile.max(config.default_tile())
}

/// Pixel error and foreground IoU at threshold 0.5, averaged over `val`'s images, over
/// their labelled pixels (those of `--ignore-index` are left out, as of every metric).
pub fn validate(gpu: &Gpu, model: &Network, val: &Dataset, tile: usize) -> Result<Validation> {
    // Tiles in batches as large as the device allows, as `predict` runs them.
    let options = TileOptions::fitting(gpu, model, tile)?;
    if model.config().classes > 2 {
        // K classes: 1 - pixel accuracy, and the mean IoU of the foreground classes.
        let report = crate::infer::class_report(gpu, model, val, options)?;
        // The baseline: the most frequent class everywhere (right on its pixels only; of
        // the foreground IoUs, only its own is non-zero, at most its frequency).
        let classes = model.config().classes;
        let mut counts = vec![0usize; classes];
        for sample in val.samples() {
            for &c in &sample.classes.data {
                if let Some(n) = counts.get_mut(c as usize) {
                    *n += 1;
                }
            }
        }
        let labelled = counts.iter().sum::<usize>().max(1) as f64;
        let most = *counts.iter().max().unwrap_or(&0) as f64 / labelled;
        let most_foreground = *counts[1..].iter().max().unwrap_or(&0) as f64 / labelled;
        return Ok(Validation {
            pixel_error: 1.0 - report.pixel_accuracy,
            iou: report.mean_foreground_iou.unwrap_or(0.0),
            one_class_pixel_error: 1.0 - most,
            all_foreground_iou: most_foreground / (classes - 1) as f64,
        });
    }
    let mut total = Validation {
        pixel_error: 0.0,
        iou: 0.0,
        one_class_pixel_error: 0.0,
        all_foreground_iou: 0.0,
    };
    for sample in val.samples() {
        let probs = predict(gpu, model, &sample.image, options)?;
        let fg = &probs[1];
        let pred = ProbabilityMap::new(fg.width, fg.height, fg.data.clone())?.threshold(0.5);
        // Class 1 against the rest, over the labelled pixels (`--ignore-index`).
        let (truth, ignored) = binary_truth(fg.width, fg.height, &sample.classes.data, 1)?;
        total.pixel_error += pixel_error_ignoring(&pred, &truth, ignored.as_ref())?;
        total.iou += iou_ignoring(&pred, &truth, ignored.as_ref())?;
        let labelled = truth.len() - ignored.as_ref().map_or(0, BinaryMap::count_foreground);
        let foreground = truth.count_foreground() as f64 / labelled.max(1) as f64;
        total.one_class_pixel_error += foreground.min(1.0 - foreground);
        total.all_foreground_iou += foreground;
    }
    let n = val.len().max(1) as f64;
    Ok(Validation {
        pixel_error: total.pixel_error / n,
        iou: total.iou / n,
        one_class_pixel_error: total.one_class_pixel_error / n,
        all_foreground_iou: total.all_foreground_iou / n,
    })
}
