//! Pixel error and intersection over union (IoU) of the foreground.

use super::{BinaryMap, Result};

/// Pixel error = 1 - (number of pixels where `pred == truth`) / (number of pixels).
///
/// This is the challenge's pixel error: the fraction of pixels whose (thresholded) prediction
/// differs from the binary ground truth. An empty map has error 0.
pub fn pixel_error(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    pred.check_same_size("prediction", truth)?;
    if truth.is_empty() {
        return Ok(0.0);
    }
    let disagreeing = pred
        .pixels()
        .iter()
        .zip(truth.pixels())
        .filter(|(p, t)| p != t)
        .count();
    Ok(disagreeing as f64 / truth.len() as f64)
}

/// IoU of the foreground = |P ∩ G| / |P ∪ G|, with P, G the foreground pixel sets.
///
/// When both are empty (P ∪ G = ∅) the prediction agrees perfectly with the truth, and the
/// IoU is defined as 1.
pub fn iou(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    pred.check_same_size("prediction", truth)?;
    let (mut intersection, mut union) = (0usize, 0usize);
    for (&p, &t) in pred.pixels().iter().zip(truth.pixels()) {
        intersection += usize::from(p && t);
        union += usize::from(p || t);
    }
    if union == 0 {
        return Ok(1.0);
    }
    Ok(intersection as f64 / union as f64)
}
