//! Intensity normalisation, per image and per channel: each channel of an image is mapped
//! by its own affine function `y = (x - offset) * scale`, whose two numbers come from that
//! channel's values in the whole image (never a tile), so training, validation and
//! prediction see the same mapping of the same image.
//!
//! ```text
//! none           y = x                          (x is already 8-bit / 255 or 16-bit / 65535)
//! min-max        y = (x - min) / (max - min + EPS)
//! percentile     y = (x - p_low) / (p_high - p_low + EPS)    (csbdeep's normalize, no clip)
//! z-score        y = (x - mean) / (std + EPS)                 (population std)
//! ```
//!
//! Percentiles interpolate linearly between the sorted values, as NumPy's default:
//! rank `p / 100 * (n - 1)`. `EPS = 1e-6` is the bioimageio spec's default for
//! `scale_range` and `zero_mean_unit_variance`, so an exported package's preprocessing
//! computes exactly this. Because every mapping is affine, normalising the values in
//! [0, 1] gives the same result as normalising the stored integers (up to EPS).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::image::Image;

/// Added to every denominator (see the module notes).
pub const EPS: f32 = 1e-6;

/// How each channel of an image is normalised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Normalize {
    None,
    MinMax,
    /// Percentiles `low` and `high` (0..100) map to 0 and 1.
    Percentile {
        low: f32,
        high: f32,
    },
    ZScore,
}

/// The one place the default lives: z-score, which trained every synthetic style at the
/// default rate where the bit-depth scaling alone (`none`) and percentiles 1..99.8 left
/// the EM-like style at all background (README, "Training on new kinds of data"). Data
/// already in [0, 1] gets unit variance, about 5x the percentile range's spread, which
/// the He-initialised first layer turns into gradients of the size the rate was set for.
pub const DEFAULT_NORMALIZE: Normalize = Normalize::ZScore;

/// The usual percentile range (csbdeep, CARE, StarDist): 1 .. 99.8.
pub const DEFAULT_PERCENTILES: (f32, f32) = (1.0, 99.8);

impl Default for Normalize {
    fn default() -> Self {
        DEFAULT_NORMALIZE
    }
}

/// `y = (x - offset) * scale`, for one channel of one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub offset: f32,
    pub scale: f32,
}

impl Affine {
    pub const IDENTITY: Affine = Affine {
        offset: 0.0,
        scale: 1.0,
    };

    pub fn apply(&self, x: f32) -> f32 {
        (x - self.offset) * self.scale
    }

    /// The value before [`Affine::apply`] (`scale` is never 0).
    pub fn invert(&self, y: f32) -> f32 {
        y / self.scale + self.offset
    }
}

/// The `p`-th percentile (0..100) of `sorted` values, NumPy's linear interpolation.
pub fn percentile(sorted: &[f32], p: f32) -> f32 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = (p.clamp(0.0, 100.0) as f64 / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let t = rank - lo as f64;
    (sorted[lo] as f64 + t * (sorted[hi] as f64 - sorted[lo] as f64)) as f32
}

impl Normalize {
    /// The mapping of one channel with these `values`.
    pub fn affine(&self, values: &[f32]) -> Affine {
        let ratio = |offset: f32, range: f32| Affine {
            offset,
            scale: 1.0 / (range + EPS),
        };
        match *self {
            Normalize::None => Affine::IDENTITY,
            Normalize::MinMax => {
                let min = values.iter().copied().fold(f32::INFINITY, f32::min);
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if !min.is_finite() {
                    return Affine::IDENTITY;
                }
                ratio(min, max - min)
            }
            Normalize::Percentile { low, high } => {
                let mut sorted = values.to_vec();
                sorted.sort_by(f32::total_cmp);
                let (lo, hi) = (percentile(&sorted, low), percentile(&sorted, high));
                ratio(lo, (hi - lo).max(0.0))
            }
            Normalize::ZScore => {
                let n = values.len().max(1) as f64;
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = values
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
                ratio(mean as f32, var.sqrt() as f32)
            }
        }
    }

    /// The mapping of every channel of `image`.
    pub fn affines(&self, image: &Image) -> Vec<Affine> {
        (0..image.channels)
            .map(|c| self.affine(image.plane(c)))
            .collect()
    }

    /// Normalises `image` in place and returns the mapping of each channel.
    pub fn apply(&self, image: &mut Image) -> Vec<Affine> {
        let affines = self.affines(image);
        for (c, a) in affines.iter().enumerate() {
            if *a != Affine::IDENTITY {
                image.plane_mut(c).iter_mut().for_each(|v| *v = a.apply(*v));
            }
        }
        affines
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Normalize::None => write!(f, "none"),
            Normalize::MinMax => write!(f, "min-max"),
            Normalize::Percentile { low, high } => write!(f, "percentile:{low},{high}"),
            Normalize::ZScore => write!(f, "z-score"),
        }
    }
}

impl FromStr for Normalize {
    type Err = String;

    /// `none`, `min-max`, `z-score`, `percentile` (1..99.8) or `percentile:LOW,HIGH`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "--normalize {s:?}: use none, min-max, z-score, percentile (1,99.8) or \
                 percentile:LOW,HIGH with 0 <= LOW < HIGH <= 100"
            )
        };
        Ok(match s {
            "none" => Normalize::None,
            "min-max" | "minmax" => Normalize::MinMax,
            "z-score" | "zscore" => Normalize::ZScore,
            "percentile" => Normalize::Percentile {
                low: DEFAULT_PERCENTILES.0,
                high: DEFAULT_PERCENTILES.1,
            },
            _ => {
                let range = s.strip_prefix("percentile:").ok_or_else(bad)?;
                let (low, high) = range.split_once(',').ok_or_else(bad)?;
                let low: f32 = low.trim().parse().map_err(|_| bad())?;
                let high: f32 = high.trim().parse().map_err(|_| bad())?;
                if !((0.0..100.0).contains(&low) && low < high && high <= 100.0) {
                    return Err(bad());
                }
                Normalize::Percentile { low, high }
            }
        })
    }
}
