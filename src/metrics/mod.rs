//! The ISBI 2012 challenge metrics (pixel error, Rand error, warping error) and IoU, on the CPU.
//!
//! Conventions shared by every metric here:
//!
//! * Maps are row-major 2-D grids ([`Map`]): pixel `(x, y)` is at index `y * width + x`.
//! * **Foreground = cell interior** (`true` in a [`BinaryMap`], 255 in the ISBI label PNGs);
//!   background = membrane (`false`, 0 in the PNGs).
//! * A probability map holds P(foreground) in [0, 1]. It is thresholded as
//!   **foreground iff `p > threshold`** (strictly greater, as the challenge's Fiji scripts do).
//! * Segments are the connected components of the foreground with **4-connectivity**
//!   ([`Connectivity::Four`]): membranes are one pixel thin, so 8-connected cells would leak
//!   into each other across a diagonal step of the membrane. The background is then
//!   8-connected, the matching pair of digital topology (used by the warping error).
//!
//! * **Unlabelled pixels** (`--ignore-index`): every metric has an `_ignoring` form that
//!   takes a [`BinaryMap`] of them (`true` = unlabelled) and leaves them out: pixel error
//!   and IoU count labelled pixels only; Rand and warping error treat them as background
//!   that is never compared (see [`rand_index`] and [`warping`]). K-class metrics skip
//!   truth [`classes::IGNORE`].
//!
//! Layout: [`map`] (the grid type, thresholding, connected components), [`pixel`] (pixel error,
//! IoU), [`rand_index`] (adapted Rand error), [`warping`] (simple points, warping error), [`sweep`]
//! (every metric over a list of thresholds, and the serialisable [`EvalReport`]).

pub mod classes;
pub mod map;
pub mod pixel;
pub mod rand_index;
pub mod sweep;
pub mod warping;

pub use classes::{binary_truth, ClassReport, ClassScores, ConfusionMatrix};
pub use map::{connected_components, BinaryMap, Connectivity, LabelMap, Map, ProbabilityMap};
pub use pixel::{iou, iou_ignoring, pixel_error, pixel_error_ignoring};
pub use rand_index::{
    adapted_rand, adapted_rand_cremi, rand_error, rand_error_cremi, rand_error_cremi_ignoring,
    rand_error_ignoring, RandScores,
};
pub use sweep::{
    default_thresholds, evaluate, evaluate_ignoring, scores_at, scores_at_ignoring, sweep_image,
    sweep_image_ignoring, Best, BestScores, EvalReport, ImageReport, ThresholdScores,
};
pub use warping::{
    is_simple_point, warp_truth, warping_error, warping_error_at, warping_error_at_ignoring, Warp,
};

/// What can go wrong when a metric is asked for: every case is a caller's mistake in sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "metrics: a {width}x{height} map needs {expected} pixels but {got} were given; \
         pass width*height values in row-major order"
    )]
    WrongPixelCount {
        width: usize,
        height: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "metrics: the {what} is {width}x{height} but the ground truth is \
         {truth_width}x{truth_height}; crop both to the same region first"
    )]
    SizeMismatch {
        what: &'static str,
        width: usize,
        height: usize,
        truth_width: usize,
        truth_height: usize,
    },
    #[error("metrics: the threshold sweep needs at least one threshold")]
    NoThresholds,
    #[error(
        "metrics: class {class} is not one of the {classes} classes; predict and evaluate \
         with the same --classes"
    )]
    ClassOutOfRange { class: usize, classes: usize },
    #[error("metrics: there are no images to evaluate")]
    NoImages,
}

/// Shorthand for the results of this module.
pub type Result<T> = std::result::Result<T, MetricsError>;
