//! The foreground-restricted ("adapted") Rand error of the ISBI 2012 / SNEMI3D challenges.
//!
//! Definition, as `skimage.metrics.adapted_rand_error` computes it (scikit-image,
//! `skimage/metrics/_adapted_rand_error.py` and `_contingency_table.py`, checked at commit
//! 13fb011), with alpha = 0.5:
//!
//! * n_ij = number of pixels in ground-truth segment i and predicted segment j, counting only
//!   pixels whose ground-truth label is not 0 (the ground-truth background is ignored).
//! * N = sum_ij n_ij; t_i = sum_j n_ij (truth sizes); s_j = sum_i n_ij (prediction sizes).
//! * Label 0 of the prediction is **not** ignored: all predicted background pixels that fall
//!   in the ground-truth foreground form one segment, label 0, like any other.
//! * Counts are of pairs of distinct pixels (ordered), hence the "- N" terms:
//!   together_both = sum_ij n_ij^2 - N, together_truth = sum_i t_i^2 - N,
//!   together_pred = sum_j s_j^2 - N.
//! * Rand F-score = together_both / (alpha * together_truth + (1 - alpha) * together_pred),
//!   and adapted Rand error = 1 - F-score.
//!
//! Precision and recall here have their textbook meaning (the docstring's): precision =
//! together_both / together_pred (the Rand merge score), recall = together_both /
//! together_truth (the Rand split score). skimage's code returns these two the other way
//! round (scikit-image issue #6485); the error, symmetric at alpha = 0.5, is the same.
//!
//! Where a denominator is 0 (no two foreground pixels share a segment) there is nothing to
//! score: precision or recall is 1 and the error 0, where skimage would return NaN.
//!
//! # The CREMI / SNEMI3D variant ([`adapted_rand_cremi`])
//! The challenges' own reference code (`cremi/evaluation/rand.py`, the SNEMI3D script)
//! differs in how it treats **predicted background** (boundary) pixels: they belong to no
//! segment. With n the number of all pixels, c the predicted-background pixels in the
//! truth foreground, and sums over truth labels i != 0 and predicted labels j != 0:
//! sum_a = sum_i t_i^2 (t_i counting every pixel of truth segment i),
//! sum_b = sum_j s_j^2 + c/n, sum_ab = sum_ij n_ij^2 + c/n; precision = sum_ab / sum_b,
//! recall = sum_ab / sum_a,
//! error = 1 - 2PR / (P + R). A predicted membrane that is a little thicker than the true
//! one then costs a few pixels of recall, where skimage's one background segment merges
//! every cell it touches.
//!
//! # Unlabelled pixels (`--ignore-index`)
//! The `_ignoring` forms take a map of unlabelled pixels. They are made background in the
//! prediction and the truth before either is segmented: they belong to no segment of
//! either, so no pair that holds one is counted (skimage's count skips truth background
//! already; the CREMI form's n counts labelled pixels only). A cell that an unlabelled
//! strip cuts in two is two segments in both maps, so nothing is said about what the
//! prediction does inside the strip.

use std::collections::HashMap;

use super::{connected_components, BinaryMap, Connectivity, LabelMap, Result};

/// The adapted Rand error and the precision and recall it is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandScores {
    /// 1 - F-score.
    pub error: f64,
    /// Pairs together in both / pairs together in the prediction (Rand merge score).
    pub precision: f64,
    /// Pairs together in both / pairs together in the ground truth (Rand split score).
    pub recall: f64,
}

/// Adapted Rand error of two segmentations; ground-truth label 0 is ignored, prediction
/// label 0 is one segment like any other (see the module notes for the formulas).
pub fn adapted_rand(pred: &LabelMap, truth: &LabelMap) -> Result<RandScores> {
    pred.check_same_size("prediction", truth)?;
    let table = contingency_table(pred, truth);
    Ok(scores_from_table(&table))
}

/// The challenge's Rand error of a thresholded prediction: both maps are segmented into
/// 4-connected foreground components, then [`adapted_rand`] gives the error.
pub fn rand_error(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    rand_error_ignoring(pred, truth, None)
}

/// [`rand_error`] of the labelled pixels: the pixels `ignored` marks are made background
/// in both maps before they are segmented, so they join no segment (a cell cut by them is
/// two) and, as truth background, are left out of every pair count.
pub fn rand_error_ignoring(
    pred: &BinaryMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<f64> {
    let (pred_segments, truth_segments) = segments(pred, truth, ignored)?;
    Ok(adapted_rand(&pred_segments, &truth_segments)?.error)
}

/// The 4-connected foreground components of both maps, with the `ignored` pixels as
/// background.
fn segments(
    pred: &BinaryMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<(LabelMap, LabelMap)> {
    pred.check_same_size("prediction", truth)?;
    Ok((
        connected_components(&pred.without(ignored)?, Connectivity::Four),
        connected_components(&truth.without(ignored)?, Connectivity::Four),
    ))
}

/// Adapted Rand error as the CREMI / SNEMI3D reference code computes it: predicted label 0
/// is no segment (see the module notes).
pub fn adapted_rand_cremi(pred: &LabelMap, truth: &LabelMap) -> Result<RandScores> {
    pred.check_same_size("prediction", truth)?;
    Ok(cremi_scores(pred, truth, truth.pixels().len()))
}

/// [`adapted_rand_cremi`] with `n` the number of pixels compared.
fn cremi_scores(pred: &LabelMap, truth: &LabelMap, n: usize) -> RandScores {
    let table = contingency_table(pred, truth);
    let n = n as f64;
    let mut truth_sizes: HashMap<u32, u64> = HashMap::new();
    let mut pred_sizes: HashMap<u32, u64> = HashMap::new();
    let (mut sum_ab, mut background) = (0.0, 0.0);
    for (&(t, p), &count) in &table {
        *truth_sizes.entry(t).or_insert(0) += count;
        if p == 0 {
            background += count as f64;
        } else {
            *pred_sizes.entry(p).or_insert(0) += count;
            sum_ab += (count * count) as f64;
        }
    }
    let squares = |sizes: HashMap<u32, u64>| sizes.values().map(|&s| (s * s) as f64).sum::<f64>();
    let sum_a = squares(truth_sizes);
    let sum_b = squares(pred_sizes) + background / n;
    sum_ab += background / n;
    let ratio_or_one = |num: f64, den: f64| if den == 0.0 { 1.0 } else { num / den };
    let (precision, recall) = (ratio_or_one(sum_ab, sum_b), ratio_or_one(sum_ab, sum_a));
    let f_score = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RandScores {
        error: 1.0 - f_score,
        precision,
        recall,
    }
}

/// [`rand_error`] with the CREMI / SNEMI3D definition ([`adapted_rand_cremi`]).
pub fn rand_error_cremi(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    rand_error_cremi_ignoring(pred, truth, None)
}

/// [`rand_error_cremi`] of the labelled pixels, as [`rand_error_ignoring`]; n counts the
/// labelled pixels only.
pub fn rand_error_cremi_ignoring(
    pred: &BinaryMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<f64> {
    let (pred_segments, truth_segments) = segments(pred, truth, ignored)?;
    let n = truth.compared_count(ignored);
    Ok(cremi_scores(&pred_segments, &truth_segments, n).error)
}

/// n_ij for every (truth label i != 0, prediction label j) pair that occurs.
fn contingency_table(pred: &LabelMap, truth: &LabelMap) -> HashMap<(u32, u32), u64> {
    let mut table = HashMap::new();
    for (&t, &p) in truth.pixels().iter().zip(pred.pixels()) {
        if t != 0 {
            *table.entry((t, p)).or_insert(0u64) += 1;
        }
    }
    table
}

fn scores_from_table(table: &HashMap<(u32, u32), u64>) -> RandScores {
    let mut truth_sizes: HashMap<u32, u64> = HashMap::new();
    let mut pred_sizes: HashMap<u32, u64> = HashMap::new();
    for (&(t, p), &n) in table {
        *truth_sizes.entry(t).or_insert(0) += n;
        *pred_sizes.entry(p).or_insert(0) += n;
    }
    let pixel_count: u64 = table.values().sum();
    let together_both = pairs_sharing_a_segment(table.values(), pixel_count);
    let together_truth = pairs_sharing_a_segment(truth_sizes.values(), pixel_count);
    let together_pred = pairs_sharing_a_segment(pred_sizes.values(), pixel_count);

    // F = both / (alpha * truth + (1 - alpha) * pred); error = 1 - F.
    const ALPHA: f64 = 0.5;
    let f_denominator = ALPHA * together_truth + (1.0 - ALPHA) * together_pred;
    let ratio_or_one = |num: f64, den: f64| if den == 0.0 { 1.0 } else { num / den };
    RandScores {
        error: 1.0 - ratio_or_one(together_both, f_denominator),
        precision: ratio_or_one(together_both, together_pred),
        recall: ratio_or_one(together_both, together_truth),
    }
}

/// Ordered pairs of distinct pixels that share a segment: sum of size^2, minus the N
/// self-pairs (`pixel_count` = N = sum of sizes).
fn pairs_sharing_a_segment<'a>(sizes: impl Iterator<Item = &'a u64>, pixel_count: u64) -> f64 {
    (sizes.map(|&n| n * n).sum::<u64>() - pixel_count) as f64
}
