//! Every metric over a list of thresholds, and the best value of each, as the challenge
//! reported them: for each metric, the minimum error over the thresholds (maximum for IoU)
//! and the threshold where it occurs. Ties go to the first threshold listed (the lowest, for
//! an ascending list such as [`default_thresholds`]).
//!
//! Over several images, the mean of each metric is taken per threshold, and the best of that
//! mean curve is reported (one threshold for the whole set, as for the challenge's test stack).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::pixel::{iou_ignoring, pixel_error_ignoring};
use super::rand_index::{rand_error_cremi_ignoring, rand_error_ignoring};
use super::warping::warping_error_at_ignoring;
use super::{BinaryMap, MetricsError, ProbabilityMap, Result};

/// The thresholds 0.05, 0.10, ..., 0.95: a network trained with class-balancing weights
/// often does best away from 0.5, so the sweep reaches close to both ends.
pub fn default_thresholds() -> Vec<f32> {
    (1..=19).map(|i| i as f32 / 20.0).collect()
}

/// Every metric at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdScores {
    pub threshold: f32,
    pub pixel_error: f64,
    /// skimage's adapted Rand error (predicted background is one segment).
    pub rand_error: f64,
    /// The CREMI / SNEMI3D adapted Rand error (predicted background is no segment).
    pub rand_error_cremi: f64,
    pub warping_error: f64,
    pub iou: f64,
}

/// The best value of one metric over the thresholds, and where it occurs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub value: f64,
    pub threshold: f32,
}

/// The best of each metric: the lowest error, the highest IoU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestScores {
    pub pixel_error: Best,
    pub rand_error: Best,
    pub rand_error_cremi: Best,
    pub warping_error: Best,
    pub iou: Best,
}

/// One image: the metrics at every threshold, and the best of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageReport {
    pub per_threshold: Vec<ThresholdScores>,
    pub best: BestScores,
}

/// A set of images: each image's report, the mean over images at every threshold, and the
/// best of each metric on that mean curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub thresholds: Vec<f32>,
    pub images: Vec<ImageReport>,
    pub mean: Vec<ThresholdScores>,
    pub best_mean: BestScores,
}

/// Every metric for `prob` thresholded at `threshold` (foreground iff p > threshold).
pub fn scores_at(
    prob: &ProbabilityMap,
    truth: &BinaryMap,
    threshold: f32,
) -> Result<ThresholdScores> {
    scores_at_ignoring(prob, truth, None, threshold)
}

/// [`scores_at`] over the labelled pixels: those `ignored` marks (`--ignore-index`) are left
/// out of every metric (see each metric's `_ignoring` form).
pub fn scores_at_ignoring(
    prob: &ProbabilityMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
    threshold: f32,
) -> Result<ThresholdScores> {
    prob.check_same_size("probability map", truth)?;
    truth.check_ignored(ignored)?;
    let pred = prob.threshold(threshold);
    Ok(ThresholdScores {
        threshold,
        pixel_error: pixel_error_ignoring(&pred, truth, ignored)?,
        rand_error: rand_error_ignoring(&pred, truth, ignored)?,
        rand_error_cremi: rand_error_cremi_ignoring(&pred, truth, ignored)?,
        warping_error: warping_error_at_ignoring(prob, threshold, truth, ignored)?,
        iou: iou_ignoring(&pred, truth, ignored)?,
    })
}

/// Every metric at every threshold for one image (thresholds in parallel).
pub fn sweep_image(
    prob: &ProbabilityMap,
    truth: &BinaryMap,
    thresholds: &[f32],
) -> Result<ImageReport> {
    sweep_image_ignoring(prob, truth, None, thresholds)
}

/// [`sweep_image`] over the labelled pixels (see [`scores_at_ignoring`]).
pub fn sweep_image_ignoring(
    prob: &ProbabilityMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
    thresholds: &[f32],
) -> Result<ImageReport> {
    if thresholds.is_empty() {
        return Err(MetricsError::NoThresholds);
    }
    let per_threshold = thresholds
        .par_iter()
        .map(|&threshold| scores_at_ignoring(prob, truth, ignored, threshold))
        .collect::<Result<Vec<_>>>()?;
    let best = best_scores(&per_threshold);
    Ok(ImageReport {
        per_threshold,
        best,
    })
}

/// Sweeps every `(probability map, ground truth)` pair (images in parallel) and averages.
pub fn evaluate(images: &[(ProbabilityMap, BinaryMap)], thresholds: &[f32]) -> Result<EvalReport> {
    let images: Vec<_> = images.iter().map(|(p, t)| (p, t, None)).collect();
    evaluate_refs(&images, thresholds)
}

/// [`evaluate`] of `(probability map, ground truth, unlabelled pixels)` triples: each
/// image's metrics over its labelled pixels (see [`scores_at_ignoring`]).
pub fn evaluate_ignoring(
    images: &[(ProbabilityMap, BinaryMap, Option<BinaryMap>)],
    thresholds: &[f32],
) -> Result<EvalReport> {
    let images: Vec<_> = images
        .iter()
        .map(|(p, t, ignored)| (p, t, ignored.as_ref()))
        .collect();
    evaluate_refs(&images, thresholds)
}

type ImageRefs<'a> = (&'a ProbabilityMap, &'a BinaryMap, Option<&'a BinaryMap>);

fn evaluate_refs(images: &[ImageRefs], thresholds: &[f32]) -> Result<EvalReport> {
    if images.is_empty() {
        return Err(MetricsError::NoImages);
    }
    let reports = images
        .par_iter()
        .map(|&(prob, truth, ignored)| sweep_image_ignoring(prob, truth, ignored, thresholds))
        .collect::<Result<Vec<_>>>()?;
    let mean = mean_per_threshold(&reports, thresholds);
    let best_mean = best_scores(&mean);
    Ok(EvalReport {
        thresholds: thresholds.to_vec(),
        images: reports,
        mean,
        best_mean,
    })
}

/// At each threshold k, the mean over images of each metric.
fn mean_per_threshold(reports: &[ImageReport], thresholds: &[f32]) -> Vec<ThresholdScores> {
    let count = reports.len() as f64;
    let mean_of = |k: usize, metric: fn(&ThresholdScores) -> f64| {
        reports
            .iter()
            .map(|r| metric(&r.per_threshold[k]))
            .sum::<f64>()
            / count
    };
    thresholds
        .iter()
        .enumerate()
        .map(|(k, &threshold)| ThresholdScores {
            threshold,
            pixel_error: mean_of(k, |s| s.pixel_error),
            rand_error: mean_of(k, |s| s.rand_error),
            rand_error_cremi: mean_of(k, |s| s.rand_error_cremi),
            warping_error: mean_of(k, |s| s.warping_error),
            iou: mean_of(k, |s| s.iou),
        })
        .collect()
}

fn best_scores(per_threshold: &[ThresholdScores]) -> BestScores {
    let lower = |new: f64, old: f64| new < old;
    let higher = |new: f64, old: f64| new > old;
    BestScores {
        pixel_error: best_of(per_threshold, |s| s.pixel_error, lower),
        rand_error: best_of(per_threshold, |s| s.rand_error, lower),
        rand_error_cremi: best_of(per_threshold, |s| s.rand_error_cremi, lower),
        warping_error: best_of(per_threshold, |s| s.warping_error, lower),
        iou: best_of(per_threshold, |s| s.iou, higher),
    }
}

/// The best `metric` over the thresholds; on ties, the first listed threshold wins.
fn best_of(
    per_threshold: &[ThresholdScores],
    metric: fn(&ThresholdScores) -> f64,
    is_better: fn(f64, f64) -> bool,
) -> Best {
    let first = &per_threshold[0];
    let mut best = Best {
        value: metric(first),
        threshold: first.threshold,
    };
    for scores in &per_threshold[1..] {
        if is_better(metric(scores), best.value) {
            best = Best {
                value: metric(scores),
                threshold: scores.threshold,
            };
        }
    }
    best
}
