//! Random training tiles. The network sees a `tile_in x tile_in` input and predicts the central
//! `tile_out x tile_out` window (unpadded convolutions eat `margin = (tile_in - tile_out) / 2`
//! pixels on each side). A training tile is therefore an output window somewhere in the image,
//! the input tile around it with `margin` pixels of context (mirrored where it leaves the image),
//! and the labels and weights of the output window.

use rand::Rng;

use super::augment::{sample_bicubic, sample_nearest, AugmentConfig, Transform};
use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::grid::{Grid, LabelImage, WeightMap};
use super::image::{AsImage, Image};
use super::labels::IGNORE;
use super::mask::foreground_classes;
use super::normalize::Affine;

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
    /// `tile_in x tile_in` intensities, every channel.
    pub image: Image,
    /// `tile_out x tile_out` instance labels (0 = background).
    pub labels: LabelImage,
    /// `tile_out x tile_out` classes 0..K-1 (two classes: 1 = cell, 0 = background);
    /// unlabelled pixels are class 0 with weight 0.
    pub classes: Grid<u8>,
    /// `tile_out x tile_out` loss weights; 0 where the output pixel comes from outside the
    /// image (mirrored context is fine as network input, but is not trained on) and where
    /// it is unlabelled.
    pub weights: WeightMap,
}

/// What a training tile is cut from: one sample's image (normalised by `norm`), objects,
/// classes and weight map, all the same size.
#[derive(Clone, Copy, Debug)]
pub struct TileSource<'a> {
    pub image: &'a Image,
    pub labels: &'a LabelImage,
    pub classes: &'a Grid<u8>,
    pub weights: &'a WeightMap,
    /// Per channel, the normalisation applied to `image`; the gray-value augmentation acts
    /// on the values before it.
    pub norm: &'a [Affine],
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

/// Runs `cut` on the source of an unnormalised image with instance labels and two
/// classes (cell = label > 0), what [`random_training_tile`] and [`training_tile_at`] take.
fn with_binary_source<T>(
    image: &impl AsImage,
    labels: &LabelImage,
    weights: &WeightMap,
    cut: impl FnOnce(&TileSource) -> Result<T>,
) -> Result<T> {
    let image = image.as_image();
    let classes = foreground_classes(labels);
    let norm = vec![Affine::IDENTITY; image.channels];
    cut(&TileSource {
        image: &image,
        labels,
        classes: &classes,
        weights,
        norm: &norm,
    })
}

/// Cuts one augmented training tile from `image`/`labels`/`weights` (all the same size):
/// a random output window, one random transform from `augment` applied jointly.
pub fn random_training_tile(
    image: &impl AsImage,
    labels: &LabelImage,
    weights: &WeightMap,
    spec: TileSpec,
    augment: &AugmentConfig,
    rng: &mut impl Rng,
) -> Result<TrainingTile> {
    with_binary_source(image, labels, weights, |source| {
        random_tile(source, spec, augment, rng)
    })
}

/// [`random_training_tile`] of any source. A transform's gray-value change is drawn once
/// and applies to the first channel; each further channel draws its own afterwards (so
/// one-channel tiles are drawn exactly as before).
pub fn random_tile(
    source: &TileSource,
    spec: TileSpec,
    augment: &AugmentConfig,
    rng: &mut impl Rng,
) -> Result<TrainingTile> {
    let x0 = random_window_start(source.image.width, spec.tile_out, rng);
    let y0 = random_window_start(source.image.height, spec.tile_out, rng);
    let transform = Transform::sample(augment, rng);
    let mut per_channel = vec![transform.clone()];
    for _ in 1..source.image.channels {
        let other = Transform::sample(augment, rng);
        per_channel.push(Transform {
            contrast: other.contrast,
            brightness: other.brightness,
            gamma: other.gamma,
            ..transform.clone()
        });
    }
    tile_at(source, spec, x0, y0, &per_channel)
}

/// The training tile whose output window starts at (`x0`, `y0`) in image coordinates, under
/// `transform` (rotation and elastic deformation act about the window centre).
pub fn training_tile_at(
    image: &impl AsImage,
    labels: &LabelImage,
    weights: &WeightMap,
    spec: TileSpec,
    x0: isize,
    y0: isize,
    transform: &Transform,
) -> Result<TrainingTile> {
    with_binary_source(image, labels, weights, |source| {
        tile_at(source, spec, x0, y0, std::slice::from_ref(transform))
    })
}

/// [`training_tile_at`] of any source: `transforms[0]`'s geometry for every channel and the
/// labels, `transforms[c]`'s gray-value change for channel `c` (the last one for any
/// channel beyond the list).
pub fn tile_at(
    source: &TileSource,
    spec: TileSpec,
    x0: isize,
    y0: isize,
    transforms: &[Transform],
) -> Result<TrainingTile> {
    let TileSource {
        image,
        labels,
        classes,
        weights,
        norm,
    } = *source;
    let transform = &transforms[0];
    let gray_size = Grid::filled(image.width, image.height, 0u8);
    check_same_size(&gray_size, labels, weights)?;
    if classes.size() != labels.size() || norm.len() != image.channels {
        return Err(DataError::InvalidConfig {
            what: "training tile input",
            reason: "classes, labels and one normalisation per channel must match the image".into(),
        });
    }
    TileSpec::new(spec.tile_in, spec.tile_out)?;
    let half = (spec.tile_out as f32 - 1.0) / 2.0;
    let centre = (x0 as f32 + half, y0 as f32 + half);
    let n_in = spec.tile_in;
    let n_out = spec.tile_out;
    let margin = spec.margin();

    // Coordinates of the whole input canvas; the output window is its centre.
    let coords = transform.source_coords(n_in, n_in, centre);
    let mut planes = Vec::with_capacity(image.channels);
    for (c, affine) in norm.iter().enumerate() {
        let mut plane = sample_bicubic(&image.channel(c), &coords, n_in, n_in);
        // The gray-value change acts on the values read, before normalisation.
        if *affine != Affine::IDENTITY {
            plane.data.iter_mut().for_each(|v| *v = affine.invert(*v));
        }
        transforms[c.min(transforms.len() - 1)].adjust_gray_values(&mut plane);
        if *affine != Affine::IDENTITY {
            plane.data.iter_mut().for_each(|v| *v = affine.apply(*v));
        }
        planes.push(plane);
    }
    let tile_image = Image::from_planes(&planes);

    let out_coords: Vec<(f32, f32)> = (0..n_out)
        .flat_map(|y| {
            let row = (y + margin) * n_in + margin;
            coords[row..row + n_out].iter().copied()
        })
        .collect();
    let tile_labels = sample_nearest(labels, &out_coords, n_out, n_out);
    let mut tile_classes = sample_nearest(classes, &out_coords, n_out, n_out);
    let mut tile_weights = sample_nearest(weights, &out_coords, n_out, n_out);
    for (class, weight) in tile_classes.data.iter_mut().zip(&mut tile_weights.data) {
        if *class == IGNORE {
            *class = 0;
            *weight = 0.0;
        }
    }
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
        classes: tile_classes,
        labels: tile_labels,
        weights: tile_weights,
    })
}

fn check_same_size(image: &Grid<u8>, labels: &LabelImage, weights: &WeightMap) -> Result<()> {
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
        let source = TileSource {
            image: &sample.image,
            labels: &sample.labels,
            classes: &sample.classes,
            weights: dataset.weight_map(index)?,
            norm: &sample.norm,
        };
        let mut tile = random_tile(&source, self.spec, &self.augment, &mut rng)?;
        tile.sample_index = index;
        Ok(tile)
    }
}
