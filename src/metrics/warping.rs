//! The warping error of Jain et al. (2010), "Boundary learning by optimization with
//! topological constraints" (CVPR), as the ISBI 2012 challenge computed it.
//!
//! The ground truth L* is warped toward the thresholded prediction T by flipping, one at a
//! time, pixels where they disagree, but only **simple points**: pixels whose flip changes no
//! topology (no object or hole is created, deleted, split or merged). The warping error is the
//! number of pixels where the warped labelling still disagrees with T, over the number of
//! pixels. What remains are the topological mistakes of T: each split, merge, added or deleted
//! object costs at least one pixel, and a boundary merely drawn elsewhere costs nothing.
//!
//! The details follow the challenge's implementation, Fiji's
//! `trainableSegmentation.metrics.WarpingError.simplePointWarp2d` (fiji/Trainable_Segmentation,
//! checked at commit 00bb38c):
//!
//! * Connectivity: the **foreground (cell interior) is 4-connected, the background (membrane)
//!   8-connected** (`simple2D(patch, 4)`: T4(fg) == 1 and T8(bg) == 1).
//! * Pixels outside the image are background (Fiji pads the image with a border of zeros).
//! * Order: the disagreeing pixels are visited by decreasing confidence |p - threshold| of the
//!   prediction (most confident first); ties in column-major order (x outer, y inner), the
//!   order Fiji collects them in before its stable sort. Each simple one is flipped at once, and
//!   the pass repeats over the pixels still disagreeing until a pass flips nothing.
//!   (Fiji's comparator truncates confidence differences to steps of 1e-4, so it also treats
//!   nearly equal confidences as ties; here they are compared exactly.)
//!
//! Unlabelled pixels (`--ignore-index`, the `ignored` map of [`warping_error_at_ignoring`])
//! are not compared: the truth is background there and stays so (they are never flipped),
//! and a disagreement there is not counted; the error is over the labelled pixels. A
//! prediction that joins two cells across an unlabelled strip costs nothing, as nothing is
//! known of the strip; one that joins them across labelled pixels costs as before.
//!
//! Jain et al. define the warping error as a minimum over all topology-preserving warps; this
//! greedy warp, like the challenge's, gives an upper bound of it.

use std::sync::OnceLock;

use super::{BinaryMap, Connectivity, ProbabilityMap, Result};

/// The ground truth warped toward a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Warp {
    /// The warped ground truth: topologically equivalent to the original.
    pub warped: BinaryMap,
    /// Pixels where `warped` still disagrees with the prediction.
    pub mismatches: usize,
}

/// Warping error of a binary prediction: (pixels still disagreeing after warping) / (pixels).
/// With no confidences, disagreeing pixels are visited in column-major order.
pub fn warping_error(pred: &BinaryMap, truth: &BinaryMap) -> Result<f64> {
    let warp = warp_truth(truth, pred, None)?;
    Ok(error_fraction(warp.mismatches, truth.len()))
}

/// Warping error of a probability map thresholded at `threshold` (foreground iff p > t),
/// visiting disagreeing pixels by decreasing |p - threshold|, as the challenge did.
pub fn warping_error_at(prob: &ProbabilityMap, threshold: f32, truth: &BinaryMap) -> Result<f64> {
    warping_error_at_ignoring(prob, threshold, truth, None)
}

/// [`warping_error_at`] of the labelled pixels: the pixels `ignored` marks are background
/// in the truth and never flipped nor counted (see the module notes); the error is the
/// labelled pixels still disagreeing over the labelled pixels.
pub fn warping_error_at_ignoring(
    prob: &ProbabilityMap,
    threshold: f32,
    truth: &BinaryMap,
    ignored: Option<&BinaryMap>,
) -> Result<f64> {
    prob.check_same_size("probability map", truth)?;
    let confidence: Vec<f32> = prob
        .pixels()
        .iter()
        .map(|&p| (p - threshold).abs())
        .collect();
    let target = prob.threshold(threshold);
    let warp = warp_labelled(truth, &target, Some(&confidence), ignored)?;
    Ok(error_fraction(
        warp.mismatches,
        truth.compared_count(ignored),
    ))
}

fn error_fraction(mismatches: usize, pixels: usize) -> f64 {
    if pixels == 0 {
        return 0.0;
    }
    mismatches as f64 / pixels as f64
}

/// Warps `truth` toward `target` by flipping simple points only (see the module notes).
/// `confidence` (one value per pixel, higher first) orders the flips; `None` = scan order.
pub fn warp_truth(
    truth: &BinaryMap,
    target: &BinaryMap,
    confidence: Option<&[f32]>,
) -> Result<Warp> {
    warp_labelled(truth, target, confidence, None)
}

/// [`warp_truth`] of the labelled pixels: `truth` with the `ignored` pixels as background,
/// warped by flipping labelled pixels only; `mismatches` counts labelled pixels.
fn warp_labelled(
    truth: &BinaryMap,
    target: &BinaryMap,
    confidence: Option<&[f32]>,
    ignored: Option<&BinaryMap>,
) -> Result<Warp> {
    target.check_same_size("prediction", truth)?;
    let width = truth.width();
    let mut warped = truth.without(ignored)?;
    let mut pending = disagreeing_pixels_in_visit_order(&warped, target, confidence);
    pending.retain(|&index| BinaryMap::compared(ignored, index));
    loop {
        let before = pending.len();
        pending.retain(|&index| {
            let (x, y) = (index % width, index / width);
            let code = neighbourhood_code(&warped, x, y);
            let flippable = simple_point_table()[code as usize];
            if flippable {
                let pixel = &mut warped.pixels_mut()[index];
                *pixel = !*pixel;
            }
            !flippable
        });
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    Ok(Warp {
        warped,
        mismatches: pending.len(),
    })
}

/// Indices of the pixels where `truth != target`, column-major, then stably sorted by
/// decreasing confidence.
fn disagreeing_pixels_in_visit_order(
    truth: &BinaryMap,
    target: &BinaryMap,
    confidence: Option<&[f32]>,
) -> Vec<usize> {
    let (width, height) = (truth.width(), truth.height());
    let mut pixels: Vec<usize> = (0..width)
        .flat_map(|x| (0..height).map(move |y| y * width + x))
        .filter(|&index| truth.pixels()[index] != target.pixels()[index])
        .collect();
    if let Some(confidence) = confidence {
        pixels.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    }
    pixels
}

/// The 8 neighbours of `(x, y)` as bits, in row-major order of the 3x3 patch without its
/// centre: bit 0 = (x-1, y-1), bit 1 = (x, y-1), bit 2 = (x+1, y-1), bit 3 = (x-1, y),
/// bit 4 = (x+1, y), bit 5 = (x-1, y+1), bit 6 = (x, y+1), bit 7 = (x+1, y+1).
/// Pixels outside the map are background (0).
fn neighbourhood_code(map: &BinaryMap, x: usize, y: usize) -> u8 {
    let mut code = 0u8;
    for (bit, &(dx, dy)) in Connectivity::Eight.offsets().iter().enumerate() {
        let inside = x.checked_add_signed(dx).zip(y.checked_add_signed(dy));
        if let Some((nx, ny)) = inside.filter(|&(nx, ny)| nx < map.width() && ny < map.height()) {
            if *map.at(nx, ny) {
                code |= 1 << bit;
            }
        }
    }
    code
}

/// `is_simple_point` for every neighbourhood code, computed once.
fn simple_point_table() -> &'static [bool; 256] {
    static TABLE: OnceLock<[bool; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|code| is_simple_point(&patch_from_code(code as u8))))
}

fn patch_from_code(code: u8) -> [[bool; 3]; 3] {
    let mut patch = [[false; 3]; 3];
    for (bit, &(dx, dy)) in Connectivity::Eight.offsets().iter().enumerate() {
        patch[(1 + dy) as usize][(1 + dx) as usize] = code & (1 << bit) != 0;
    }
    patch
}

/// Whether the centre of a 3x3 patch (`patch[row][column]`, `true` = foreground) is a simple
/// point for a 4-connected foreground and an 8-connected background: flipping it, whichever
/// way, changes no topology. The centre's own value does not matter.
///
/// Test (Bertrand & Malandain 1994, as in Fiji's `simple2D(patch, 4)`): x is simple iff
/// T4(x, X) = 1 and T8(x, X̄) = 1, where, over the 8 neighbours N8*(x) without the centre,
/// * T4(x, X) = number of 4-connected components of the foreground that contain one of the
///   4 direct neighbours of x;
/// * T8(x, X̄) = number of 8-connected components of the background.
pub fn is_simple_point(patch: &[[bool; 3]; 3]) -> bool {
    let foreground = *patch;
    let background = patch.map(|row| row.map(|v| !v));
    let t4_foreground = count_neighbour_components(&foreground, Connectivity::Four);
    let t8_background = count_neighbour_components(&background, Connectivity::Eight);
    t4_foreground == 1 && t8_background == 1
}

/// Topological number: components of the set pixels among the 8 neighbours (centre
/// excluded) that are adjacent to the centre under `connectivity`.
fn count_neighbour_components(set: &[[bool; 3]; 3], connectivity: Connectivity) -> usize {
    let is_member = |r: usize, c: usize| set[r][c] && (r, c) != (1, 1);
    let mut component = [[0usize; 3]; 3];
    let mut components = 0;
    for (row, col) in connectivity.offsets().iter().map(|&(dx, dy)| {
        // Seeds: the neighbours adjacent to the centre.
        ((1 + dy) as usize, (1 + dx) as usize)
    }) {
        if !is_member(row, col) || component[row][col] != 0 {
            continue;
        }
        components += 1;
        let mut stack = vec![(row, col)];
        component[row][col] = components;
        while let Some((r, c)) = stack.pop() {
            for &(dx, dy) in connectivity.offsets() {
                let (Some(nr), Some(nc)) = (r.checked_add_signed(dy), c.checked_add_signed(dx))
                else {
                    continue;
                };
                if nr < 3 && nc < 3 && is_member(nr, nc) && component[nr][nc] == 0 {
                    component[nr][nc] = components;
                    stack.push((nr, nc));
                }
            }
        }
    }
    components
}
