//! Pixel error and intersection over union (IoU) of the foreground, over every pixel or
//! over the labelled ones (the `_ignoring` forms leave out the pixels an `ignored` map
//! marks, as `--ignore-index` makes them).

use super::{BinaryMap, Result};

/// Pixel error = 1 - (number of pixels where `pred == truth`) / (number of pixels).
///
/// This is the challenge's pixel error: the fraction of pixels whose (thresholded) prediction
/// differs from the binary ground truth. An empty map has error 0.
pub fn pixel_error(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    pixel_error_ignoring(pred, truth, None)
}

/// [`pixel_error`] over the labelled pixels: those `ignored` marks count neither as
/// disagreeing nor in the number of pixels. No labelled pixel: error 0.
pub fn pixel_error_ignoring(
    pred: &BinaryMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<f64> {
    pred.check_same_size("prediction", truth)?;
    truth.check_ignored(ignored)?;
    let labelled = truth.compared_count(ignored);
    if labelled == 0 {
        return Ok(0.0);
    }
    let disagreeing = (0..truth.len())
        .filter(|&i| BinaryMap::compared(ignored, i) && pred.pixels()[i] != truth.pixels()[i])
        .count();
    Ok(disagreeing as f64 / labelled as f64)
}

/// IoU of the foreground = |P ∩ G| / |P ∪ G|, with P, G the foreground pixel sets.
///
/// When both are empty (P ∪ G = ∅) the prediction agrees perfectly with the truth, and the
/// IoU is defined as 1.
pub fn iou(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    iou_ignoring(pred, truth, None)
}

/// [`iou`] of the labelled pixels: P and G hold no pixel that `ignored` marks.
pub fn iou_ignoring(
    pred: &BinaryMap,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<f64> {
    pred.check_same_size("prediction", truth)?;
    truth.check_ignored(ignored)?;
    let (mut intersection, mut union) = (0usize, 0usize);
    for (i, (&p, &t)) in pred.pixels().iter().zip(truth.pixels()).enumerate() {
        if BinaryMap::compared(ignored, i) {
            intersection += usize::from(p && t);
            union += usize::from(p || t);
        }
    }
    if union == 0 {
        return Ok(1.0);
    }
    Ok(intersection as f64 / union as f64)
}
