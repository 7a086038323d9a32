//! `unet eval`: the ISBI 2012 metrics of probability maps against masks; and the metrics
//! of a dataset's predictions, which `demo` prints the same way.

use std::path::{Path, PathBuf};

use clap::Args;
use unet_wgpu::data::{read_image, read_mask, read_pages, Dataset, Grid};
use unet_wgpu::infer::class_map;
use unet_wgpu::metrics::{
    evaluate, BinaryMap, ClassReport, ConfusionMatrix, EvalReport, ProbabilityMap,
};
use unet_wgpu::train::checkpoint::write_atomically;
use unet_wgpu::{Error, Result};

use super::args::{LabelArgs, MaskArgs};

#[derive(Args)]
pub struct EvalArgs {
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
    #[command(flatten)]
    labels_as: LabelArgs,
    /// K > 2 classes: the class the binary metrics (pixel, Rand, warping error, IoU)
    /// treat as foreground.
    #[arg(long, value_name = "C", default_value_t = 1)]
    foreground_class: usize,
}

/// The files of a folder, sorted.
fn list_files(dir: &Path) -> Result<Vec<PathBuf>> {
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
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.labels_as.classes.is_some_and(|k| k > 2) {
        return run_classes(&args);
    }
    let mut pairs = Vec::new();
    for label_path in list_files(&args.labels)? {
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

/// The ground truth of a mask file: true where a cell is.
fn read_truth(path: &Path, masks: &MaskArgs) -> Result<BinaryMap> {
    let labels = read_mask(path, masks.format())?;
    Ok(BinaryMap::new(
        labels.width,
        labels.height,
        labels.data.iter().map(|&l| l != 0).collect(),
    )?)
}

/// The challenge metrics of a dataset's predicted class probabilities (`maps` per sample)
/// against its labels: foreground = class `foreground` (two classes: 1, where the truth
/// is label > 0 as before; K classes: the pixels of that class).
pub fn evaluate_dataset(
    data: &Dataset,
    maps: &[Vec<Grid<f32>>],
    foreground: usize,
) -> Result<EvalReport> {
    let mut pairs = Vec::new();
    for (sample, maps) in data.samples().iter().zip(maps) {
        let prob = &maps[foreground];
        let truth = if maps.len() == 2 {
            sample.labels.data.iter().map(|&l| l != 0).collect()
        } else {
            sample
                .classes
                .data
                .iter()
                .map(|&c| c as usize == foreground)
                .collect()
        };
        pairs.push((
            ProbabilityMap::new(prob.width, prob.height, prob.data.clone())?,
            BinaryMap::new(prob.width, prob.height, truth)?,
        ));
    }
    Ok(evaluate(&pairs, &unet_wgpu::metrics::default_thresholds())?)
}

/// The K-class metrics of a dataset's predicted class probabilities.
pub fn class_report_dataset(data: &Dataset, maps: &[Vec<Grid<f32>>]) -> Result<ClassReport> {
    let mut confusion = ConfusionMatrix::new(data.classes());
    for (sample, maps) in data.samples().iter().zip(maps) {
        confusion.add(&sample.classes.data, &class_map(maps).data)?;
    }
    Ok(confusion.report())
}

/// `unet eval --classes K` (K > 2): class maps `<stem>_class.png` (as `predict` writes
/// them) against class masks read as `--classes`/`--class-values`/`--mask` say; the table
/// of per-class IoU and Dice, accuracy and confusion, then the binary metrics of
/// `--foreground-class` (from `<stem>_prob_C.png` if there, else the class map).
fn run_classes(args: &EvalArgs) -> Result<()> {
    let spec = args.labels_as.spec(&args.masks)?;
    let k = spec.classes;
    if args.foreground_class == 0 || args.foreground_class >= k {
        return Err(Error::Config(format!(
            "--foreground-class {} must be a class other than the background, 1..{}",
            args.foreground_class,
            k - 1
        )));
    }
    let fg = args.foreground_class;
    let mut confusion = ConfusionMatrix::new(k);
    let mut pairs = Vec::new();
    for label_path in list_files(&args.labels)? {
        let stem = label_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let pred_path = args.pred.join(format!("{stem}_class.png"));
        if !pred_path.is_file() {
            continue;
        }
        let truth = spec
            .read(&read_pages(&label_path)?[0], &label_path)?
            .classes;
        let pred = read_pages(&pred_path)?[0].to_mask_values(&pred_path)?;
        if pred.size() != truth.size() {
            return Err(Error::Config(format!(
                "{} is {}x{} but {} is {}x{}: evaluate predictions of these labels' images",
                pred_path.display(),
                pred.width,
                pred.height,
                label_path.display(),
                truth.width,
                truth.height
            )));
        }
        let pred_classes: Vec<u8> = pred.data.iter().map(|&v| v.min(255) as u8).collect();
        confusion
            .add(&truth.data, &pred_classes)
            .map_err(|e| Error::Config(format!("{}: {e}", pred_path.display())))?;
        let prob_path = args.pred.join(format!("{stem}_prob_{fg}.png"));
        let prob = if prob_path.is_file() {
            read_image(&prob_path)?.data
        } else {
            pred_classes
                .iter()
                .map(|&c| f32::from(c as usize == fg))
                .collect()
        };
        let is_fg = truth.data.iter().map(|&c| c as usize == fg).collect();
        pairs.push((
            ProbabilityMap::new(truth.width, truth.height, prob)?,
            BinaryMap::new(truth.width, truth.height, is_fg)?,
        ));
    }
    if pairs.is_empty() {
        return Err(Error::Config(format!(
            "no prediction in {} matches a label in {} (expected <stem>_class.png, as \
             `unet predict` writes for K > 2 classes)",
            args.pred.display(),
            args.labels.display()
        )));
    }
    let report = confusion.report();
    print!("{}", report.table());
    let binary = evaluate(&pairs, &unet_wgpu::metrics::default_thresholds())?;
    println!("binary metrics with class {fg} as foreground:");
    print_eval(&binary);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "classes": report,
            "foreground_class": fg,
            "binary": binary,
        });
        let text = serde_json::to_string_pretty(&json).expect("the report serialises");
        write_atomically(path, text.as_bytes())?;
    }
    Ok(())
}

pub fn print_eval(report: &EvalReport) {
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
