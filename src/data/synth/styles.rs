//! The light-microscopy looks of the synthetic cells, rendered from their labels.
//!
//! Each renderer starts from two distance maps of the cell mask: `inside`, a cell pixel's
//! distance to the nearest non-cell pixel, and `outside`, a non-cell pixel's distance to
//! the nearest cell. A profile `rise(d) = 1 - exp(-d / r)` climbs from 0 at a cell's edge to
//! 1 in its interior, so a cell is a plateau with soft flanks (a cell's optical thickness
//! or its dye concentration). The membrane between touching cells is non-cell (label 0),
//! so every style has to show it for the network to separate the two cells.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

use super::{gaussian_blur, illumination_field, SynthConfig, SynthStyle};
use crate::data::distance::distance_transform;
use crate::data::grid::{GrayImage, Grid, LabelImage};

/// Renders the image of `labels` (0 = background, 1.. = cells) with `spots` marking the
/// organelles inside cells, in `config.style` (not [`SynthStyle::Em`], which is made with
/// the geometry).
pub(super) fn render(
    config: &SynthConfig,
    labels: &LabelImage,
    spots: &Grid<bool>,
    rng: &mut ChaCha8Rng,
) -> GrayImage {
    let (width, height) = labels.size();
    let cells = labels.data.iter().copied().max().unwrap_or(0) as usize;
    // One random level in [0, 1] per cell (index 0 unused).
    let level: Vec<f32> = (0..=cells).map(|_| rng.random_range(0.0..=1.0)).collect();
    let inside = distance_transform(&labels.map(|l| l == 0));
    let outside = distance_transform(&labels.map(|l| l != 0));
    let rise = |d: f32, r: f32| 1.0 - (-d / r).exp();

    let image = match config.style {
        SynthStyle::Em => unreachable!("the EM look is made with the geometry"),
        SynthStyle::Dic => {
            // Optical thickness: a plateau per cell (0.6..1), thicker organelles, and a
            // granular texture (blurred white noise) inside cells: the cytoplasm's relief,
            // which the smooth background lacks.
            let grain = gaussian_blur(&white_noise(width, height, rng), 1.2);
            let thickness = Grid::from_fn(width, height, |x, y| {
                let label = labels.get(x, y) as usize;
                if label == 0 {
                    return 0.0;
                }
                let spot = if spots.get(x, y) { 0.3 } else { 0.0 };
                let texture = 2.5 * grain.get(x, y);
                (0.6 + 0.4 * level[label] + spot + texture) * rise(inside.get(x, y), 3.0)
            });
            let thickness = gaussian_blur(&thickness, 1.0);
            // DIC shows the derivative of the thickness along the shear direction (here the
            // diagonal), on a mid-gray background: 118 / 255, the DIC-HeLa frames' mean.
            Grid::from_fn(width, height, |x, y| {
                let at = |dx: isize| {
                    let xx = (x as isize + dx).clamp(0, width as isize - 1) as usize;
                    let yy = (y as isize + dx).clamp(0, height as isize - 1) as usize;
                    thickness.get(xx, yy)
                };
                0.463 + 0.12 * (at(1) - at(-1))
            })
        }
        SynthStyle::Phase => Grid::from_fn(width, height, |x, y| {
            let label = labels.get(x, y) as usize;
            if label == 0 {
                // The halo: bright, fading over a few pixels away from every cell edge.
                return 0.5 + 0.3 * (-outside.get(x, y) / 2.5).exp();
            }
            let spot = if spots.get(x, y) { 0.08 } else { 0.0 };
            0.5 - (0.1 + 0.1 * level[label] + spot) * rise(inside.get(x, y), 3.0)
        }),
        SynthStyle::Fluorescence => Grid::from_fn(width, height, |x, y| {
            let label = labels.get(x, y) as usize;
            if label == 0 {
                return 0.03;
            }
            let spot = if spots.get(x, y) { 1.4 } else { 1.0 };
            let brightness = 0.3 + 0.5 * level[label];
            0.03 + brightness * spot * (0.6 + 0.4 * rise(inside.get(x, y), 4.0))
        }),
    };
    let mut image = gaussian_blur(&image, config.blur_sigma);
    let light = illumination_field(width, height, rng);
    for (v, l) in image.data.iter_mut().zip(&light) {
        *v *= 1.0 + config.illumination * l;
    }
    match config.style {
        // Photon counting: a pixel of intensity v collects Poisson(v x PHOTONS) photons.
        SynthStyle::Fluorescence => {
            const PHOTONS: f32 = 40.0;
            for v in &mut image.data {
                let mean = (*v * PHOTONS).max(1e-3);
                let count: f32 = Poisson::new(mean).expect("positive mean").sample(rng);
                *v = (count / PHOTONS).clamp(0.0, 1.0);
            }
        }
        // Camera noise. DIC frames are faint (std about 10 / 255), so their noise is too.
        _ => {
            let noise_std = match config.style {
                SynthStyle::Dic => config.noise_std * 0.3,
                _ => config.noise_std * 0.6,
            };
            for v in &mut image.data {
                let noise = rng.sample::<f32, _>(StandardNormal) * noise_std;
                *v = (*v + noise).clamp(0.0, 1.0);
            }
        }
    }
    image
}

/// Independent standard-normal values, one per pixel.
fn white_noise(width: usize, height: usize, rng: &mut ChaCha8Rng) -> GrayImage {
    Grid::from_fn(width, height, |_, _| rng.sample::<f32, _>(StandardNormal))
}
