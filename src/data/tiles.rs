//! Random training tiles. The network sees a `tile_in x tile_in` input and predicts the central
//! `tile_out x tile_out` window (unpadded convolutions eat `margin = (tile_in - tile_out) / 2`
//! pixels on each side). A training tile is therefore an output window somewhere in the image,
//! the input tile around it with `margin` pixels of context (mirrored where it leaves the image),
//! and the labels and weights of the output window.

use rand::Rng;

use super::augment::{sample_bicubic, sample_nearest, AugmentConfig, Transform};
use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage, WeightMap};
use super::mask::foreground_classes;

/// Input and output sizes of the network (square tiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSpec {
    pub tile_in: usize,
    pub tile_out: usize,
}

impl TileSpec {
    /// The paper's tile: 572 in, 388 out.
    pub const PAPER: TileSpec = TileSpec {
        tile_in: 572,
        tile_out: 388,
    };

    /// Checks `tile_out >= 1`, `tile_in >= tile_out` and that the difference is even.
    pub fn new(tile_in: usize, tile_out: usize) -> Result<Self> {
        let bad = |reason| {
            Err(DataError::InvalidTiling {
                tile_in,
                tile_out,
                reason,
            })
        };
        if tile_out == 0 {
            return bad("tile_out must be at least 1");
        }
        if tile_in < tile_out {
            return bad("tile_in must be at least tile_out");
        }
        if !(tile_in - tile_out).is_multiple_of(2) {
            return bad("tile_in - tile_out must be even (the same margin on each side)");
        }
        Ok(Self { tile_in, tile_out })
    }

    /// Context on each side of the output window: `(tile_in - tile_out) / 2`.
    pub fn margin(&self) -> usize {
        (self.tile_in - self.tile_out) / 2
    }
}

/// One training example, ready for the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingTile {
    /// Index of the dataset sample it was cut from.
    pub sample_index: usize,
    /// `tile_in x tile_in` intensities.
    pub image: GrayImage,
    /// `tile_out x tile_out` instance labels (0 = background).
    pub labels: LabelImage,
    /// `tile_out x tile_out` classes: 1 = cell, 0 = background.
    pub classes: Grid<u8>,
    /// `tile_out x tile_out` loss weights; 0 where the output pixel comes from outside the
    /// image (mirrored context is fine as network input, but is not trained on).
    pub weights: WeightMap,
}

/// Top-left corner of a random `tile_out` window along an axis of `n` pixels. When the image is
/// at least as large, the window lies inside it (every position equally likely); when it is
/// smaller, the window covers the whole image and sticks out by a random amount on each side.
fn random_window_start(n: usize, tile_out: usize, rng: &mut impl Rng) -> isize {
    if n >= tile_out {
        rng.random_range(0..=n - tile_out) as isize
    } else {
        -(rng.random_range(0..=tile_out - n) as isize)
    }
}

/// Cuts one augmented training tile from `image`/`labels`/`weights` (all the same size):
/// a random output window, one random transform from `augment` applied jointly.
pub fn random_training_tile(
    image: &GrayImage,
    labels: &LabelImage,
    weights: &WeightMap,
    spec: TileSpec,
    augment: &AugmentConfig,
    rng: &mut impl Rng,
) -> Result<TrainingTile> {
    let x0 = random_window_start(image.width, spec.tile_out, rng);
    let y0 = random_window_start(image.height, spec.tile_out, rng);
    let transform = Transform::sample(augment, rng);
    training_tile_at(image, labels, weights, spec, x0, y0, &transform)
}

/// The training tile whose output window starts at (`x0`, `y0`) in image coordinates, under
/// `transform` (rotation and elastic deformation act about the window centre).
pub fn training_tile_at(
    image: &GrayImage,
    labels: &LabelImage,
    weights: &WeightMap,
    spec: TileSpec,
    x0: isize,
    y0: isize,
    transform: &Transform,
) -> Result<TrainingTile> {
    check_same_size(image, labels, weights)?;
    TileSpec::new(spec.tile_in, spec.tile_out)?;
    let half = (spec.tile_out as f32 - 1.0) / 2.0;
    let centre = (x0 as f32 + half, y0 as f32 + half);
    let n_in = spec.tile_in;
    let n_out = spec.tile_out;
    let margin = spec.margin();

    // Coordinates of the whole input canvas; the output window is its centre.
    let coords = transform.source_coords(n_in, n_in, centre);
    let mut tile_image = sample_bicubic(image, &coords, n_in, n_in);
    transform.adjust_gray_values(&mut tile_image);

    let out_coords: Vec<(f32, f32)> = (0..n_out)
        .flat_map(|y| {
            let row = (y + margin) * n_in + margin;
            coords[row..row + n_out].iter().copied()
        })
        .collect();
    let tile_labels = sample_nearest(labels, &out_coords, n_out, n_out);
    let mut tile_weights = sample_nearest(weights, &out_coords, n_out, n_out);
    let (w, h) = (image.width as f32, image.height as f32);
    for (weight, &(sx, sy)) in tile_weights.data.iter_mut().zip(&out_coords) {
        let (rx, ry) = (sx.round(), sy.round());
        if rx < 0.0 || ry < 0.0 || rx >= w || ry >= h {
            *weight = 0.0;
        }
    }
    Ok(TrainingTile {
        sample_index: 0,
        image: tile_image,
        classes: foreground_classes(&tile_labels),
        labels: tile_labels,
        weights: tile_weights,
    })
}

fn check_same_size(image: &GrayImage, labels: &LabelImage, weights: &WeightMap) -> Result<()> {
    let (w, h) = image.size();
    if labels.size() != (w, h) || weights.size() != (w, h) || w == 0 || h == 0 {
        return Err(DataError::InvalidConfig {
            what: "training tile input",
            reason: format!(
                "image {w}x{h}, labels {}x{}, weights {}x{} must be the same non-empty size",
                labels.width, labels.height, weights.width, weights.height
            ),
        });
    }
    Ok(())
}

/// Draws training tiles from a dataset: tile `k` depends only on `(seed, k)`, so any tile of
/// the sequence can be rebuilt on its own and the sequence is the same on every run.
#[derive(Clone, Debug)]
pub struct TileSampler {
    pub spec: TileSpec,
    pub augment: AugmentConfig,
    pub seed: u64,
}

impl TileSampler {
    pub fn new(spec: TileSpec, augment: AugmentConfig, seed: u64) -> Result<Self> {
        TileSpec::new(spec.tile_in, spec.tile_out)?;
        augment.validate()?;
        Ok(Self {
            spec,
            augment,
            seed,
        })
    }

    /// Tile number `k`: a random sample of the dataset (uniform), a random window, a random
    /// transform, all drawn from ChaCha8 seeded with `seed`, stream `k`.
    pub fn tile(&self, dataset: &Dataset, k: u64) -> Result<TrainingTile> {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(k);
        let index = rng.random_range(0..dataset.len());
        let sample = dataset.sample(index)?;
        let weights = dataset.weight_map(index)?;
        let mut tile = random_training_tile(
            &sample.image,
            &sample.labels,
            weights,
            self.spec,
            &self.augment,
            &mut rng,
        )?;
        tile.sample_index = index;
        Ok(tile)
    }
}
