//! `unet eval`: the ISBI 2012 metrics of probability maps against masks, and for K > 2
//! classes the per-class metrics of class maps; and the metrics of a dataset's
//! predictions, which `demo` prints the same way. Predictions are read in every format
//! `unet predict` writes (PNG, TIFF, stacks page by page), masks as training reads them,
//! and unlabelled pixels (`--ignore-index`) are left out of every metric.

use std::path::{Path, PathBuf};

use clap::Args;
use unet_wgpu::batch::outputs::{output_names, OutputKind};
use unet_wgpu::data::dataset::list_image_files;
use unet_wgpu::data::{read_pages, Dataset, Grid, LabelSpec};
use unet_wgpu::infer::class_map;
use unet_wgpu::metrics::{
    binary_truth, default_thresholds, evaluate_ignoring, BinaryMap, ClassReport, ConfusionMatrix,
    EvalReport, ProbabilityMap,
};
use unet_wgpu::train::checkpoint::write_atomically;
use unet_wgpu::{Error, Result};

use super::args::{LabelArgs, MaskArgs};

#[derive(Args)]
pub struct EvalArgs {
    /// Predictions as `unet predict` writes them (PNG or TIFF; stacks page by page): two
    /// classes, probability maps `<stem>_prob.*` (or masks: `<stem>_mask.*`, `<stem>.*`);
    /// K > 2, class maps `<stem>_class.*`.
    #[arg(long)]
    pred: PathBuf,
    /// Ground-truth masks `<stem>.*` (PNG, TIFF, JPEG or BMP), read as training reads them
    /// (the mask and label flags below).
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

/// One image (page) for the binary metrics: P(foreground), the truth, its unlabelled pixels.
type Scored = (ProbabilityMap, BinaryMap, Option<BinaryMap>);

pub fn run(args: EvalArgs) -> Result<()> {
    let spec = args.labels_as.spec(&args.masks)?;
    let k = spec.classes;
    let fg = match k {
        2 => 1,
        _ if args.foreground_class == 0 || args.foreground_class >= k => {
            return Err(Error::Config(format!(
                "--foreground-class {} must be a class other than the background, 1..{}",
                args.foreground_class,
                k - 1
            )))
        }
        _ => args.foreground_class,
    };
    let mut confusion = ConfusionMatrix::new(k);
    let mut images: Vec<Scored> = Vec::new();
    let (mut unmatched, mut unlabelled) = (Vec::new(), 0usize);
    for (stem, label_path) in list_image_files(&args.labels)? {
        let Some(pred) = Prediction::find(&args.pred, &stem, k, fg) else {
            unmatched.push(stem);
            continue;
        };
        let truths = read_truth(&label_path, &spec)?;
        let pages = pred.pages(k, fg)?;
        if pages.len() != truths.len() {
            return Err(Error::Config(format!(
                "{} has {} page(s) but {} has {}: evaluate predictions of these labels' images",
                pred.main.display(),
                pages.len(),
                label_path.display(),
                truths.len()
            )));
        }
        for (truth, (classes, prob)) in truths.iter().zip(pages) {
            if prob.size() != truth.size() {
                return Err(Error::Config(format!(
                    "{} is {}x{} but {} is {}x{}: evaluate predictions of these labels' images",
                    pred.main.display(),
                    prob.width,
                    prob.height,
                    label_path.display(),
                    truth.width,
                    truth.height
                )));
            }
            if let Some(classes) = classes {
                confusion
                    .add(&truth.data, &classes.data)
                    .map_err(|e| Error::Config(format!("{}: {e}", pred.main.display())))?;
            }
            let (binary, ignored) = binary_truth(truth.width, truth.height, &truth.data, fg)?;
            unlabelled += ignored.as_ref().map_or(0, BinaryMap::count_foreground);
            let prob = ProbabilityMap::new(prob.width, prob.height, prob.data)?;
            images.push((prob, binary, ignored));
        }
    }
    if images.is_empty() {
        let expected = match k {
            2 => "<stem>_prob.png or .tif, <stem>_mask.*, or <stem>.*",
            _ => "<stem>_class.png or .tif, as `unet predict` writes for K > 2 classes",
        };
        return Err(Error::Config(format!(
            "no prediction in {} matches a label in {} (expected {expected})",
            args.pred.display(),
            args.labels.display()
        )));
    }
    if let Some(first) = unmatched.first() {
        eprintln!(
            "{} label(s) without a prediction in {} left out (first: {first})",
            unmatched.len(),
            args.pred.display()
        );
    }
    let binary = evaluate_ignoring(&images, &default_thresholds())?;
    let report = (k > 2).then(|| confusion.report());
    if let Some(report) = &report {
        print!("{}", report.table());
        println!("binary metrics with class {fg} as foreground:");
    }
    print_eval(&binary);
    if let (Some(value), true) = (spec.ignore, unlabelled > 0) {
        println!(
            "{unlabelled} unlabelled pixel(s) (--ignore-index {value}) left out of every metric"
        );
    }
    if let Some(path) = &args.json {
        let json = match &report {
            None => serde_json::to_value(&binary),
            Some(report) => Ok(serde_json::json!({
                "classes": report,
                "foreground_class": fg,
                "binary": binary,
            })),
        };
        let text = json
            .and_then(|j| serde_json::to_string_pretty(&j))
            .expect("the report serialises");
        write_atomically(path, text.as_bytes())?;
    }
    Ok(())
}

/// The classes (0..K-1, or unlabelled) of every page of a mask file, read as training
/// reads masks.
fn read_truth(path: &Path, spec: &LabelSpec) -> Result<Vec<Grid<u8>>> {
    read_pages(path)?
        .iter()
        .map(|page| Ok(spec.read(page, path)?.classes))
        .collect()
}

/// One page of a prediction: its class map (K > 2) and P(foreground).
type PredictedPage = (Option<Grid<u8>>, Grid<f32>);

/// The prediction files of one stem, as `unet predict` names them.
struct Prediction {
    /// Two classes: the probability map (or mask); K > 2: the class map.
    main: PathBuf,
    /// K > 2: the file holding the foreground class's probability, with the number of its
    /// pages per input page and the page of the class among them (`STEM_prob_C.png`: 1
    /// and 0; `STEM_prob.tif`: K and C).
    prob: Option<(PathBuf, usize, usize)>,
}

impl Prediction {
    /// The files in `dir` for `stem` (PNG before TIFF), if any.
    fn find(dir: &Path, stem: &str, classes: usize, fg: usize) -> Option<Prediction> {
        let existing = |name: &String| Some(dir.join(name)).filter(|p| p.is_file());
        let names = |kind, tiff| output_names(stem, kind, tiff, classes);
        if classes == 2 {
            let mut candidates = Vec::new();
            for kind in [OutputKind::Prob, OutputKind::Mask] {
                candidates.extend(names(kind, false));
                candidates.extend(names(kind, true));
            }
            candidates.extend(["png", "tif", "tiff"].map(|ext| format!("{stem}.{ext}")));
            let main = candidates.iter().find_map(existing)?;
            return Some(Prediction { main, prob: None });
        }
        let main = [false, true]
            .into_iter()
            .find_map(|tiff| existing(&names(OutputKind::Mask, tiff)[0]))?;
        let prob = existing(&names(OutputKind::Prob, false)[fg])
            .map(|path| (path, 1, 0))
            .or_else(|| existing(&names(OutputKind::Prob, true)[0]).map(|p| (p, classes, fg)));
        Some(Prediction { main, prob })
    }

    /// Each page's class map (K > 2) and foreground probability.
    fn pages(&self, classes: usize, fg: usize) -> Result<Vec<PredictedPage>> {
        let pages = read_pages(&self.main)?;
        if classes == 2 {
            return Ok(pages.iter().map(|p| (None, p.to_gray())).collect());
        }
        let maps = pages
            .iter()
            .map(|page| {
                let values = page.to_mask_values(&self.main)?;
                Ok(values.map(|v| v.min(255) as u8))
            })
            .collect::<Result<Vec<Grid<u8>>>>()?;
        let probs: Vec<Grid<f32>> = match &self.prob {
            Some((path, per_page, page)) => {
                let held = read_pages(path)?;
                if held.len() != maps.len() * per_page {
                    return Err(Error::Config(format!(
                        "{} has {} page(s) but {} input page(s) of {classes} classes need {}: \
                         predict them again",
                        path.display(),
                        held.len(),
                        maps.len(),
                        maps.len() * per_page
                    )));
                }
                (0..maps.len())
                    .map(|i| held[i * per_page + page].to_gray())
                    .collect()
            }
            None => maps
                .iter()
                .map(|m| m.map(|c| f32::from(c as usize == fg)))
                .collect(),
        };
        Ok(maps.into_iter().map(Some).zip(probs).collect())
    }
}

/// The challenge metrics of a dataset's predicted class probabilities (`maps` per sample)
/// against its labels: foreground = class `foreground` (two classes: 1, cells), over the
/// labelled pixels.
pub fn evaluate_dataset(
    data: &Dataset,
    maps: &[Vec<Grid<f32>>],
    foreground: usize,
) -> Result<EvalReport> {
    let mut images: Vec<Scored> = Vec::new();
    for (sample, maps) in data.samples().iter().zip(maps) {
        let prob = &maps[foreground];
        let (w, h) = prob.size();
        let (truth, ignored) = binary_truth(w, h, &sample.classes.data, foreground)?;
        images.push((
            ProbabilityMap::new(w, h, prob.data.clone())?,
            truth,
            ignored,
        ));
    }
    Ok(evaluate_ignoring(&images, &default_thresholds())?)
}

/// The K-class metrics of a dataset's predicted class probabilities.
pub fn class_report_dataset(data: &Dataset, maps: &[Vec<Grid<f32>>]) -> Result<ClassReport> {
    let mut confusion = ConfusionMatrix::new(data.classes());
    for (sample, maps) in data.samples().iter().zip(maps) {
        confusion.add(&sample.classes.data, &class_map(maps).data)?;
    }
    Ok(confusion.report())
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
