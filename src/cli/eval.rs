//! `unet eval`: the ISBI 2012 metrics of probability maps against masks; and the metrics
//! of a dataset's predictions, which `demo` prints the same way.

use std::path::{Path, PathBuf};

use clap::Args;
use unet_wgpu::data::{read_image, read_mask, Dataset, Grid};
use unet_wgpu::metrics::{evaluate, BinaryMap, EvalReport, ProbabilityMap};
use unet_wgpu::train::checkpoint::write_atomically;
use unet_wgpu::{Error, Result};

use super::args::MaskArgs;

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
}

pub fn run(args: EvalArgs) -> Result<()> {
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

/// The ground truth of a mask file: true where a cell is.
fn read_truth(path: &Path, masks: &MaskArgs) -> Result<BinaryMap> {
    let labels = read_mask(path, masks.format())?;
    Ok(BinaryMap::new(
        labels.width,
        labels.height,
        labels.data.iter().map(|&l| l != 0).collect(),
    )?)
}

/// The challenge metrics of foreground probability maps against a dataset's labels.
pub fn evaluate_dataset(data: &Dataset, foreground: &[Grid<f32>]) -> Result<EvalReport> {
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
