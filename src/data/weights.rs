//! The per-pixel loss weights of the U-Net paper (Ronneberger et al. 2015, eq. 2):
//!
//! ```text
//! w(x) = w_c(x) + w0 * exp( -(d1(x) + d2(x))^2 / (2 sigma^2) )
//! ```
//!
//! * `w_c` balances the class frequencies. With `N` pixels of which `N_c` belong to class `c`
//!   (two classes: cell = label > 0, background = label 0), `w_c = N / (2 N_c)`,
//!   i.e. 1 / (frequency of the class), scaled so that the mean of `w_c` over the image is 1
//!   and both classes carry the same total weight. When one class is absent, `w_c = 1`.
//!   Switched off ([`ClassBalance::Off`]), `w_c = 1`.
//! * [`ClassBalance::Total`] balances after the border term instead:
//!   `w(x) = s_c(x) * (1 + w0 * exp(...))`, with `s_c` chosen so that every class present
//!   carries the same total weight `N / K'` (`K'` classes present). The paper's `w_c` comes
//!   first, so on large touching cells the border term makes the background outweigh the
//!   cells (measured: 69% of the weight on the DIC-like style) and predicting
//!   "background" everywhere is what the loss first rewards; balanced after, the gaps still
//!   weigh `1 + w0` times a plain background pixel, but neither class can win by frequency.
//! * `d1`, `d2`: Euclidean distance (between pixel centres) to the border of the nearest and
//!   the second-nearest cell, i.e. to the nearest pixel of that cell. The border term is only
//!   added on background pixels (label 0): it is what makes the thin gaps between touching
//!   cells count in the loss. Cell pixels get `w_c` alone.
//! * Fewer than two cells: no pair of cells to separate, so there is no border term (`w = w_c`).
//!
//! Speed: the border term is below `EPS = 1e-3` wherever `d1 + d2 > R`, with
//! `R = sigma * sqrt(2 ln(w0 / EPS))` (about 21.5 px for w0 = 10, sigma = 5). Because
//! `d1 <= d2`, both cells that matter lie within `R` of the pixel. So each cell's exact EDT is
//! computed only in a window of its bounding box grown by `R` on every side; pixels further
//! away cannot have that cell among the two that matter. The result differs from the
//! untruncated formula by less than `EPS` anywhere.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::distance::squared_distance_transform;
use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage, WeightMap};
use super::io::{write_gray_png, write_npy};
use super::labels::IGNORE;

/// Border terms smaller than this are dropped (see the module notes).
pub const BORDER_TERM_EPS: f32 = 1e-3;

/// Parameters of the weight map; the defaults are the paper's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightMapConfig {
    /// Height of the border term, 10 in the paper.
    pub w0: f32,
    /// Width of the border term in pixels, 5 in the paper.
    pub sigma: f32,
    /// How the classes are balanced (see the module notes).
    pub balance: ClassBalance,
}

/// How the weight map balances the classes (see the module notes for the maths).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassBalance {
    /// `w_c = 1`: only the border term.
    Off,
    /// The paper: `w_c = N / (K' N_c)`, then the border term added.
    #[default]
    Paper,
    /// The border term first, then every class scaled to the same total weight.
    Total,
}

impl ClassBalance {
    pub const NAMES: &'static str = "off, paper, total";

    /// Whether `w_c` is the frequency weight (before any border term).
    fn frequency_weights(self) -> bool {
        self == Self::Paper
    }
}

impl std::str::FromStr for ClassBalance {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            "paper" => Ok(Self::Paper),
            "total" => Ok(Self::Total),
            other => Err(format!(
                "unknown class balance {other:?}: use one of {}",
                Self::NAMES
            )),
        }
    }
}

impl std::fmt::Display for ClassBalance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Paper => "paper",
            Self::Total => "total",
        })
    }
}

impl Default for WeightMapConfig {
    fn default() -> Self {
        Self {
            w0: 10.0,
            sigma: 5.0,
            balance: ClassBalance::Paper,
        }
    }
}

impl WeightMapConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(DataError::InvalidConfig {
                what: "weight map config",
                reason,
            })
        };
        if !(self.w0 >= 0.0 && self.w0.is_finite()) {
            return bad(format!("w0 = {} must be finite and >= 0", self.w0));
        }
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return bad(format!("sigma = {} must be finite and > 0", self.sigma));
        }
        Ok(())
    }

    /// Distance `R` beyond which `d1 + d2` makes the border term smaller than
    /// [`BORDER_TERM_EPS`]: `R = sigma * sqrt(2 ln(w0 / EPS))`; 0 when `w0 <= EPS`.
    pub fn border_reach(&self) -> f32 {
        if self.w0 <= BORDER_TERM_EPS {
            return 0.0;
        }
        self.sigma * (2.0 * (self.w0 / BORDER_TERM_EPS).ln()).sqrt()
    }
}

/// `(w_background, w_cell)` as defined in the module notes.
pub fn class_weights(labels: &LabelImage, balance_classes: bool) -> (f32, f32) {
    let total = labels.data.len();
    let cells = labels.data.iter().filter(|&&id| id > 0).count();
    let background = total - cells;
    if !balance_classes || cells == 0 || background == 0 {
        return (1.0, 1.0);
    }
    let w = |count: usize| total as f32 / (2.0 * count as f32);
    (w(background), w(cells))
}

/// A rectangle `[x0, x1) x [y0, y1)` in image coordinates.
#[derive(Clone, Copy, Debug)]
struct Window {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

/// Bounding boxes of every cell id, in increasing id order.
fn cell_bounding_boxes(labels: &LabelImage) -> BTreeMap<u32, Window> {
    let mut boxes: BTreeMap<u32, Window> = BTreeMap::new();
    for y in 0..labels.height {
        for (x, &id) in labels.row(y).iter().enumerate() {
            if id == 0 {
                continue;
            }
            let b = boxes.entry(id).or_insert(Window {
                x0: x,
                y0: y,
                x1: x + 1,
                y1: y + 1,
            });
            b.x0 = b.x0.min(x);
            b.x1 = b.x1.max(x + 1);
            b.y0 = b.y0.min(y);
            b.y1 = b.y1.max(y + 1);
        }
    }
    boxes
}

/// Distance from every pixel of `window` to the nearest pixel of cell `id` (exact EDT).
fn distances_to_cell(labels: &LabelImage, id: u32, window: Window) -> Grid<f32> {
    let features = Grid::from_fn(window.x1 - window.x0, window.y1 - window.y0, |x, y| {
        labels.get(window.x0 + x, window.y0 + y) == id
    });
    squared_distance_transform(&features).map(f32::sqrt)
}

/// `(d1, d2)` for every pixel: distances to the nearest and second-nearest cell, limited to
/// cells within reach (see the module notes); `f32::INFINITY` where no such cell exists.
pub fn nearest_two_cell_distances(labels: &LabelImage, reach: f32) -> (Grid<f32>, Grid<f32>) {
    let (w, h) = labels.size();
    let grow = reach.ceil() as usize;
    let per_cell: Vec<(Window, Grid<f32>)> = cell_bounding_boxes(labels)
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(id, b)| {
            let window = Window {
                x0: b.x0.saturating_sub(grow),
                y0: b.y0.saturating_sub(grow),
                x1: (b.x1 + grow).min(w),
                y1: (b.y1 + grow).min(h),
            };
            (window, distances_to_cell(labels, id, window))
        })
        .collect();

    let mut d1 = Grid::filled(w, h, f32::INFINITY);
    let mut d2 = Grid::filled(w, h, f32::INFINITY);
    for (window, dist) in &per_cell {
        for y in window.y0..window.y1 {
            let local = dist.row(y - window.y0);
            let start = y * w + window.x0;
            let end = y * w + window.x1;
            for ((&d, a), b) in local
                .iter()
                .zip(&mut d1.data[start..end])
                .zip(&mut d2.data[start..end])
            {
                // Keep the two smallest distances seen so far.
                if d < *a {
                    *b = *a;
                    *a = d;
                } else if d < *b {
                    *b = d;
                }
            }
        }
    }
    (d1, d2)
}

/// The weight map of the paper for one label image (see the module notes for the maths).
pub fn weight_map(labels: &LabelImage, config: &WeightMapConfig) -> Result<WeightMap> {
    config.validate()?;
    Ok(weight_map_validated(labels, config))
}

/// [`weight_map`] for a config that has passed [`WeightMapConfig::validate`].
pub(crate) fn weight_map_validated(labels: &LabelImage, config: &WeightMapConfig) -> WeightMap {
    let (w_background, w_cell) = class_weights(labels, config.balance.frequency_weights());
    let mut weights = labels.map(|id| if id > 0 { w_cell } else { w_background });

    let reach = config.border_reach();
    if reach > 0.0 {
        let (d1, d2) = nearest_two_cell_distances(labels, reach);
        let two_sigma_sq = 2.0 * config.sigma * config.sigma;
        for (i, weight) in weights.data.iter_mut().enumerate() {
            // Fewer than two cells within reach leaves d2 infinite: the term is then 0.
            if labels.data[i] == 0 && d2.data[i].is_finite() {
                let sum = d1.data[i] + d2.data[i];
                *weight += config.w0 * (-(sum * sum) / two_sigma_sq).exp();
            }
        }
    }
    if config.balance == ClassBalance::Total {
        balance_totals(&mut weights, 2, |i| Some((labels.data[i] > 0) as usize));
    }
    weights
}

/// Scales the weights of each class so that every class present carries the same total,
/// `N / K'` (`N` pixels with a class, `K'` classes present); nothing when fewer than two
/// classes are present. `class_of(i)`: pixel `i`'s class, None for an unlabelled pixel.
fn balance_totals(weights: &mut WeightMap, k: usize, class_of: impl Fn(usize) -> Option<usize>) {
    let (mut totals, mut counts) = (vec![0.0f64; k], vec![0usize; k]);
    for (i, &w) in weights.data.iter().enumerate() {
        if let Some(c) = class_of(i).filter(|&c| c < k) {
            totals[c] += w as f64;
            counts[c] += 1;
        }
    }
    let present = counts.iter().filter(|&&n| n > 0).count();
    if present < 2 {
        return;
    }
    let share = counts.iter().sum::<usize>() as f64 / present as f64;
    let scale: Vec<f32> = totals
        .iter()
        .map(|&t| if t > 0.0 { (share / t) as f32 } else { 1.0 })
        .collect();
    for (i, w) in weights.data.iter_mut().enumerate() {
        if let Some(c) = class_of(i).filter(|&c| c < k) {
            *w *= scale[c];
        }
    }
}

/// `w_c` of K classes: with `N` labelled pixels (unlabelled ones, [`IGNORE`], left out) of
/// which `N_c` are of class `c`, and `K'` classes present, `w_c = N / (K' N_c)`: every class
/// present carries the same total weight and the mean weight is 1. Fewer than two classes
/// present, or `balance` off: every `w_c = 1`. For K = 2 this is [`class_weights`].
pub fn k_class_weights(classes: &Grid<u8>, k: usize, balance: bool) -> Vec<f32> {
    let mut counts = vec![0usize; k];
    for &c in &classes.data {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    let total: usize = counts.iter().sum();
    let present = counts.iter().filter(|&&n| n > 0).count();
    if !balance || present < 2 {
        return vec![1.0; k];
    }
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                1.0
            } else {
                total as f32 / (present as f32 * n as f32)
            }
        })
        .collect()
}

/// The weight map for K classes: `w_c` of [`k_class_weights`] (0 on unlabelled pixels) plus
/// the border term of the paper, which separates touching objects of one class. Objects
/// are `objects`' ids: instances (`objects_by_class` false: the term is added where no
/// object is, as in [`weight_map`]), or components of one class each (`objects_by_class`:
/// for each foreground class the term of its objects is added on the pixels of other
/// classes, and a pixel takes the largest such term). For two classes with instance
/// labels (`classes` = label > 0) this equals [`weight_map`] exactly.
pub fn class_weight_map(
    objects: &LabelImage,
    classes: &Grid<u8>,
    k: usize,
    objects_by_class: bool,
    config: &WeightMapConfig,
) -> WeightMap {
    let w_c = k_class_weights(classes, k, config.balance.frequency_weights());
    let mut weights = classes.map(|c| w_c.get(c as usize).copied().unwrap_or(0.0));
    let reach = config.border_reach();
    if reach > 0.0 {
        add_border_terms(&mut weights, objects, classes, k, objects_by_class, config);
    }
    if config.balance == ClassBalance::Total {
        let class = |i: usize| (classes.data[i] != IGNORE).then_some(classes.data[i] as usize);
        balance_totals(&mut weights, k, class);
    }
    weights
}

/// Adds the border term of [`class_weight_map`] to `weights`.
fn add_border_terms(
    weights: &mut WeightMap,
    objects: &LabelImage,
    classes: &Grid<u8>,
    k: usize,
    objects_by_class: bool,
    config: &WeightMapConfig,
) {
    let reach = config.border_reach();
    let groups: Vec<LabelImage> = if objects_by_class {
        (1..k as u8)
            .map(|c| {
                let data = objects
                    .data
                    .iter()
                    .zip(&classes.data)
                    .map(|(&id, &class)| if class == c { id } else { 0 })
                    .collect();
                Grid {
                    width: objects.width,
                    height: objects.height,
                    data,
                }
            })
            .filter(|g| g.data.iter().any(|&id| id > 0))
            .collect()
    } else {
        vec![objects.clone()]
    };
    let two_sigma_sq = 2.0 * config.sigma * config.sigma;
    let mut term = vec![0.0f32; weights.data.len()];
    for group in &groups {
        let (d1, d2) = nearest_two_cell_distances(group, reach);
        for (i, t) in term.iter_mut().enumerate() {
            if group.data[i] == 0 && d2.data[i].is_finite() {
                let sum = d1.data[i] + d2.data[i];
                *t = t.max(config.w0 * (-(sum * sum) / two_sigma_sq).exp());
            }
        }
    }
    for ((weight, t), &c) in weights.data.iter_mut().zip(&term).zip(&classes.data) {
        if c != IGNORE && *t > 0.0 {
            *weight += t;
        }
    }
}

/// A weight map scaled for viewing (like Fig. 3d of the paper): 0 -> black, the largest
/// weight -> white, linear in between.
pub fn render_weight_map(weights: &WeightMap) -> GrayImage {
    let max = weights.data.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    weights.map(|v| (v * scale).clamp(0.0, 1.0))
}

/// Writes [`render_weight_map`] as an 8-bit gray PNG.
pub fn write_weight_map_png(path: &Path, weights: &WeightMap) -> Result<()> {
    write_gray_png(path, &render_weight_map(weights))
}

/// Writes the weight values as a NumPy `.npy` file (H x W, little-endian f32).
pub fn write_weight_map_npy(path: &Path, weights: &WeightMap) -> Result<()> {
    write_npy(path, weights)
}
