//! Synthetic microscopy-like images of cells with instance labels: the built-in default dataset.
//!
//! How an image is made:
//! 1. Cell centres on a jittered grid (spacing `cell_size`). Some centres are left empty
//!    (background), some cells are "separate" (shrunk away from their neighbours by a gap of
//!    `gap_px`), the rest touch their neighbours across a thin membrane of `membrane_px`.
//! 2. Cells are the Voronoi regions of the centres, computed in coordinates warped by a smooth
//!    random displacement field, so that boundaries are wavy rather than straight.
//!    A pixel belongs to its nearest centre's cell if its distance to the Voronoi boundary
//!    is more than half the membrane (plus the gap for separate cells); otherwise it is
//!    membrane/background (label 0).
//! 3. Intensities: cell interiors are mid-gray with a per-cell level and a few dark "organelle"
//!    spots (so intensity alone does not decide the class); membranes are dark or bright (per
//!    image); the open background is darker than cells. Then Gaussian blur, uneven
//!    multiplicative illumination and Gaussian noise.
//!
//! Step 3 is the image's [`SynthStyle`]: the electron-microscopy-like look above (the
//! default), or a light-microscopy look rendered from the same cells by [`styles`]:
//! DIC-like relief, phase-contrast-like halos or fluorescence-like bright cells.

mod styles;

use std::path::Path;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::augment::DisplacementGrid;
use super::dataset::{Dataset, Sample};
use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage};
use super::io::{write_image_png, write_label_png};
use super::mirror::reflect_index;
use super::weights::WeightMapConfig;

/// Knobs of the generator; the defaults make a task a small U-Net learns in minutes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SynthConfig {
    /// Mean distance between cell centres, pixels.
    pub cell_size: f32,
    /// How far centres move off their grid point, as a fraction of `cell_size` (0..0.5).
    pub jitter: f32,
    /// Amplitude (std, pixels) of the smooth warp that makes boundaries irregular.
    pub boundary_wobble: f32,
    /// Thickness of the membrane between touching cells, pixels.
    pub membrane_px: f32,
    /// Fraction of cells shrunk away from their neighbours.
    pub separate_fraction: f32,
    /// Range of the extra gap around separate cells, pixels.
    pub gap_px: (f32, f32),
    /// Fraction of centres left empty (open background).
    pub empty_fraction: f32,
    /// Gaussian blur sigma, pixels (0 = none).
    pub blur_sigma: f32,
    /// Standard deviation of the additive Gaussian noise (intensities are in [0, 1]).
    pub noise_std: f32,
    /// Amplitude of the smooth multiplicative illumination change (0 = even).
    pub illumination: f32,
    /// How the cells are rendered.
    pub style: SynthStyle,
}

/// The imaging modality a synthetic image imitates. Every style draws the same kind of
/// cells (touching and separate, with the same instance labels for the same seed and
/// geometry); only the intensities differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynthStyle {
    /// Electron-microscopy-like (ISBI 2012): gray cells with dark spots, a dark or bright
    /// membrane between touching cells, darker open background.
    #[default]
    Em,
    /// Differential interference contrast: a relief, the directional derivative of each
    /// cell's optical thickness, on a mid-gray background; low contrast, no halos. Cells
    /// and background have the same mean, so only edges and texture tell them apart.
    Dic,
    /// Phase contrast: cells a little darker than the background, each wrapped in a bright
    /// halo that also runs along the line between touching cells.
    Phase,
    /// Fluorescence: a dark background, cells of uneven brightness with brighter spots,
    /// and Poisson (photon-counting) noise.
    Fluorescence,
}

impl SynthStyle {
    pub const ALL: [SynthStyle; 4] = [Self::Em, Self::Dic, Self::Phase, Self::Fluorescence];

    pub fn name(self) -> &'static str {
        match self {
            Self::Em => "em",
            Self::Dic => "dic",
            Self::Phase => "phase",
            Self::Fluorescence => "fluorescence",
        }
    }
}

impl FromStr for SynthStyle {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|style| style.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown synthetic style {text:?}: use one of {}",
                    names.join(", ")
                )
            })
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            cell_size: 32.0,
            jitter: 0.35,
            boundary_wobble: 4.0,
            membrane_px: 2.0,
            separate_fraction: 0.3,
            gap_px: (3.0, 7.0),
            empty_fraction: 0.1,
            blur_sigma: 1.0,
            noise_std: 0.05,
            illumination: 0.2,
            style: SynthStyle::Em,
        }
    }
}

impl SynthConfig {
    /// The generator's defaults for `style`. The light-microscopy styles have larger cells
    /// that cover most of the image, as in the paper's DIC-HeLa and PhC-U373 sets.
    pub fn for_style(style: SynthStyle) -> Self {
        let em = Self::default();
        match style {
            SynthStyle::Em => em,
            SynthStyle::Dic | SynthStyle::Phase | SynthStyle::Fluorescence => Self {
                cell_size: 44.0,
                boundary_wobble: 5.0,
                separate_fraction: 0.35,
                empty_fraction: 0.15,
                // A DIC frame's background is even (Koehler illumination, and the prisms
                // cancel what does not change along the shear): its variance is the
                // relief's.
                illumination: if style == SynthStyle::Dic {
                    0.05
                } else {
                    em.illumination
                },
                style,
                ..em
            },
        }
    }

    fn validate(&self) -> Result<()> {
        let ok = self.cell_size >= 4.0
            && (0.0..=0.5).contains(&self.jitter)
            && self.boundary_wobble >= 0.0
            && self.membrane_px >= 0.0
            && (0.0..=1.0).contains(&self.separate_fraction)
            && (0.0..=1.0).contains(&self.empty_fraction)
            && 0.0 <= self.gap_px.0
            && self.gap_px.0 <= self.gap_px.1
            && self.blur_sigma >= 0.0
            && self.noise_std >= 0.0
            && self.illumination >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(DataError::InvalidConfig {
                what: "synthetic cell config",
                reason: format!(
                    "{self:?}: need cell_size >= 4, jitter in [0, 0.5], fractions in [0, 1], \
                     gap_px.0 <= gap_px.1, and all other values >= 0"
                ),
            })
        }
    }
}

/// One cell centre and how its cell looks.
struct Centre {
    x: f32,
    y: f32,
    empty: bool,
    /// Extra distance kept from the Voronoi boundary (0 for touching cells).
    gap: f32,
    brightness: f32,
    /// Dark spots inside the cell: (x, y, radius).
    spots: Vec<(f32, f32, f32)>,
}

/// Makes one `width x height` image with its instance labels, fully determined by `seed`.
pub fn synthetic_sample(
    width: usize,
    height: usize,
    seed: u64,
    config: &SynthConfig,
) -> Result<Sample> {
    config.validate()?;
    if width == 0 || height == 0 {
        return Err(DataError::InvalidConfig {
            what: "synthetic image size",
            reason: format!("{width}x{height} must be at least 1x1"),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = config.cell_size;

    // 1. Centres on a jittered grid with one extra ring outside the image, so that cells at the
    //    border are cut by the border rather than missing.
    let nx = (width as f32 / s).ceil() as usize + 2;
    let ny = (height as f32 / s).ceil() as usize + 2;
    let mut centres = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let mut jitter = || rng.random_range(-config.jitter..=config.jitter) * s;
            let x = (i as f32 - 0.5) * s + jitter();
            let y = (j as f32 - 0.5) * s + jitter();
            let empty = rng.random_bool(config.empty_fraction as f64);
            let separate = rng.random_bool(config.separate_fraction as f64);
            let gap = if separate {
                rng.random_range(config.gap_px.0..=config.gap_px.1)
            } else {
                0.0
            };
            let spots = (0..rng.random_range(0..=2))
                .map(|_| {
                    let r = rng.random_range(1.5..=3.0);
                    let dx = rng.random_range(-0.2..=0.2) * s;
                    let dy = rng.random_range(-0.2..=0.2) * s;
                    (x + dx, y + dy, r)
                })
                .collect();
            let brightness = rng.random_range(0.55..=0.75);
            centres.push(Centre {
                x,
                y,
                empty,
                gap,
                brightness,
                spots,
            });
        }
    }

    // 2. A smooth warp, with nodes about every `cell_size` pixels.
    let nodes = ((width.max(height) as f32 / s).ceil() as usize + 1).max(2);
    let mut normal = |std: f32| rng.sample::<f32, _>(StandardNormal) * std;
    let warp = DisplacementGrid {
        size: nodes,
        vectors: (0..nodes * nodes)
            .map(|_| {
                (
                    normal(config.boundary_wobble),
                    normal(config.boundary_wobble),
                )
            })
            .collect(),
    }
    .field(width, height);

    let dark_membranes = rng.random_bool(0.5);
    let membrane_level = if dark_membranes { 0.12 } else { 0.92 };
    let background_level = 0.3;

    let mut cell_of = Grid::filled(width, height, u32::MAX);
    let mut image = Grid::filled(width, height, 0.0f32);
    let mut spots = Grid::filled(width, height, false);
    for y in 0..height {
        for x in 0..width {
            let (wx, wy) = warp[y * width + x];
            let (px, py) = (x as f32 + wx, y as f32 + wy);
            let (nearest, second) = nearest_two(&centres, nx, ny, s, px, py);
            let a = &centres[nearest];
            let b = &centres[second];
            // Distance from p to the bisector of a and b: (|p-b|^2 - |p-a|^2) / (2 |a-b|).
            let d2a = (px - a.x).powi(2) + (py - a.y).powi(2);
            let d2b = (px - b.x).powi(2) + (py - b.y).powi(2);
            let ab = ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt().max(1e-6);
            let to_boundary = (d2b - d2a) / (2.0 * ab);
            let value = if a.empty {
                background_level
            } else if to_boundary > config.membrane_px / 2.0 + a.gap {
                cell_of.set(x, y, nearest as u32);
                let in_spot = a
                    .spots
                    .iter()
                    .any(|&(sx, sy, r)| (px - sx).powi(2) + (py - sy).powi(2) < r * r);
                spots.set(x, y, in_spot);
                if in_spot {
                    a.brightness + 0.6 * (membrane_level - a.brightness)
                } else {
                    a.brightness
                }
            } else if to_boundary > config.membrane_px / 2.0
                || (b.empty && a.gap == 0.0 && b.gap == 0.0)
            {
                // The gap around a separate cell; or where a cell meets open background,
                // which has no membrane.
                background_level
            } else {
                membrane_level
            };
            image.set(x, y, value);
        }
    }

    // Relabel cells 1, 2, ... in raster order of their first pixel.
    let mut new_id = vec![0u32; centres.len()];
    let mut next = 0;
    let labels: LabelImage = cell_of.map(|c| {
        if c == u32::MAX {
            return 0;
        }
        if new_id[c as usize] == 0 {
            next += 1;
            new_id[c as usize] = next;
        }
        new_id[c as usize]
    });

    // 3. The style's intensities. The EM look is the one made above, then blurred, unevenly
    //    lit and noisy; the others are rendered from the labels.
    if config.style != SynthStyle::Em {
        let image = styles::render(config, &labels, &spots, &mut rng);
        return Ok(Sample::binary(format!("synthetic-{seed}"), image, labels));
    }
    let mut image = gaussian_blur(&image, config.blur_sigma);
    let light = illumination_field(width, height, &mut rng);
    for (v, l) in image.data.iter_mut().zip(&light) {
        let noise = rng.sample::<f32, _>(StandardNormal) * config.noise_std;
        *v = (*v * (1.0 + config.illumination * l) + noise).clamp(0.0, 1.0);
    }

    Ok(Sample::binary(format!("synthetic-{seed}"), image, labels))
}

/// A smooth field in [-1, 1] across the image: bicubic through a random 3x3 grid of values.
/// An image's light is `1 + illumination x field`.
fn illumination_field(width: usize, height: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    DisplacementGrid {
        size: 3,
        vectors: (0..9)
            .map(|_| (rng.random_range(-1.0..=1.0), 0.0))
            .collect(),
    }
    .field(width, height)
    .into_iter()
    .map(|(l, _)| l)
    .collect()
}

/// Indices of the nearest and second-nearest centre to (px, py), searching the 5x5 grid cells
/// around it (jitter <= s/2 and warp of a few pixels keep the answer in there).
fn nearest_two(
    centres: &[Centre],
    nx: usize,
    ny: usize,
    s: f32,
    px: f32,
    py: f32,
) -> (usize, usize) {
    let gi = ((px / s) + 0.5).floor() as isize;
    let gj = ((py / s) + 0.5).floor() as isize;
    let mut best = [(f32::INFINITY, 0usize); 2];
    for j in gj - 2..=gj + 2 {
        for i in gi - 2..=gi + 2 {
            if i < 0 || j < 0 || i >= nx as isize || j >= ny as isize {
                continue;
            }
            let k = j as usize * nx + i as usize;
            let d = (px - centres[k].x).powi(2) + (py - centres[k].y).powi(2);
            if d < best[0].0 {
                best[1] = best[0];
                best[0] = (d, k);
            } else if d < best[1].0 {
                best[1] = (d, k);
            }
        }
    }
    (best[0].1, best[1].1)
}

/// Separable Gaussian blur with mirrored borders.
fn gaussian_blur(image: &GrayImage, sigma: f32) -> GrayImage {
    if sigma <= 0.0 {
        return image.clone();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|t| (-(t * t) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = image.size();
    let blur_x = Grid::from_fn(w, h, |x, y| {
        let row = image.row(y);
        kernel
            .iter()
            .zip(-radius..)
            .map(|(k, t)| k * row[reflect_index(x as isize + t, w)])
            .sum::<f32>()
    });
    Grid::from_fn(w, h, |x, y| {
        kernel
            .iter()
            .zip(-radius..)
            .map(|(k, t)| k * blur_x.get(x, reflect_index(y as isize + t, h)))
            .sum::<f32>()
    })
}

/// `count` synthetic samples of `width x height`; sample `i` uses seed `seed * 1_000_003 + i`
/// (so datasets with different seeds do not share images), with the paper's weight maps.
pub fn synthetic_dataset(
    count: usize,
    width: usize,
    height: usize,
    seed: u64,
    config: &SynthConfig,
) -> Result<Dataset> {
    let samples = (0..count as u64)
        .map(|i| {
            let mut sample = synthetic_sample(
                width,
                height,
                seed.wrapping_mul(1_000_003).wrapping_add(i),
                config,
            )?;
            sample.name = format!("{i:03}");
            Ok(sample)
        })
        .collect::<Result<Vec<_>>>()?;
    Dataset::new(samples, WeightMapConfig::default())
}

/// Writes a dataset as `dir/images/NAME.png` (8-bit gray) and `dir/labels/NAME.png` (16-bit
/// instance labels), readable with `Dataset::open(dir, MaskFormat::Instance)`.
pub fn write_dataset(dir: &Path, dataset: &Dataset) -> Result<()> {
    for sample in dataset.samples() {
        let file = format!("{}.png", sample.name);
        write_image_png(&dir.join("images").join(&file), &sample.image)?;
        write_label_png(&dir.join("labels").join(&file), &sample.labels)?;
    }
    Ok(())
}
