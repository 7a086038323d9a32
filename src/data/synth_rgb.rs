//! Synthetic colour cells with three classes (background, interior, boundary): the cells of
//! [`synthetic_sample`] re-rendered in colour, stained like H&E (pink interiors, a dark
//! purple rim, near-white background) or like multi-channel fluorescence (channel 0 the
//! interior, channel 1 the rim, channel 2 a faint cytoplasm-and-background stain). The gray
//! image's texture (per-cell level, organelles, uneven light) modulates the colours; then a
//! small blur and noise per channel. The classes are [`instance_classes`] of the instances,
//! boundary width [`DEFAULT_BOUNDARY_WIDTH`].

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::dataset::{Dataset, Sample};
use super::error::Result;
use super::grid::{GrayImage, Grid};
use super::image::Image;
use super::labels::{instance_classes, DEFAULT_BOUNDARY_WIDTH};
use super::mirror::reflect_index;
use super::normalize::Normalize;
use super::spec::{ChannelMode, DataSpec, StackMode};
use super::synth::{synthetic_sample, SynthConfig};
use super::weights::WeightMapConfig;

/// How the colour cells are stained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RgbStain {
    /// Hematoxylin and eosin, as in histology.
    HAndE,
    /// Three fluorescence channels.
    Fluorescence,
}

/// The colour of class `class` (0 background, 1 interior, 2 boundary) under `stain`.
fn stain_colour(stain: RgbStain, class: u8) -> [f32; 3] {
    match (stain, class) {
        (RgbStain::HAndE, 0) => [0.94, 0.90, 0.93],
        (RgbStain::HAndE, 1) => [0.86, 0.52, 0.68],
        (RgbStain::HAndE, _) => [0.36, 0.20, 0.52],
        (RgbStain::Fluorescence, 0) => [0.04, 0.03, 0.12],
        (RgbStain::Fluorescence, 1) => [0.75, 0.10, 0.30],
        (RgbStain::Fluorescence, _) => [0.15, 0.80, 0.25],
    }
}

/// A 3x3 binomial blur with mirrored borders.
fn blur3(plane: &GrayImage) -> GrayImage {
    let (w, h) = plane.size();
    let k = [0.25f32, 0.5, 0.25];
    let tap = |x: usize, y: usize, dx: isize, dy: isize| {
        plane.get(
            reflect_index(x as isize + dx, w),
            reflect_index(y as isize + dy, h),
        )
    };
    Grid::from_fn(w, h, |x, y| {
        let mut sum = 0.0;
        for (j, kj) in k.iter().enumerate() {
            for (i, ki) in k.iter().enumerate() {
                sum += ki * kj * tap(x, y, i as isize - 1, j as isize - 1);
            }
        }
        sum
    })
}

/// One colour sample: three channels, instances, three classes.
pub fn synthetic_rgb_sample(
    width: usize,
    height: usize,
    seed: u64,
    stain: RgbStain,
    config: &SynthConfig,
) -> Result<Sample> {
    let gray = synthetic_sample(width, height, seed, config)?;
    let texture = gray.image.channel(0);
    let classes = instance_classes(&gray.labels, DEFAULT_BOUNDARY_WIDTH);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c010);
    let planes: Vec<GrayImage> = (0..3)
        .map(|c| {
            let plane = Grid::from_fn(width, height, |x, y| {
                let base = stain_colour(stain, classes.get(x, y))[c];
                // Texture around its mid level changes the stain by up to +-30 %.
                base * (0.7 + 0.6 * texture.get(x, y))
            });
            let mut plane = blur3(&plane);
            for v in &mut plane.data {
                let noise: f32 = StandardNormal.sample(&mut rng);
                *v = (*v + config.noise_std * noise).clamp(0.0, 1.0);
            }
            plane
        })
        .collect();
    Ok(Sample::new(
        gray.name,
        Image::from_planes(&planes),
        gray.labels,
        classes,
    ))
}

/// `count` colour samples (sample `i` from seed `seed * 1_000_003 + i`, as
/// [`super::synthetic_dataset`]), as a three-class, three-channel dataset.
pub fn synthetic_rgb_dataset(
    count: usize,
    width: usize,
    height: usize,
    seed: u64,
    stain: RgbStain,
    config: &SynthConfig,
) -> Result<Dataset> {
    let samples = (0..count as u64)
        .map(|i| {
            let s = seed.wrapping_mul(1_000_003).wrapping_add(i);
            let mut sample = synthetic_rgb_sample(width, height, s, stain, config)?;
            sample.name = format!("{i:03}");
            Ok(sample)
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = DataSpec {
        channels: 3,
        channel_mode: ChannelMode::Rgb,
        stack: StackMode::Pages,
        normalize: Normalize::None,
        classes: 3,
        class_values: None,
        ignore_index: None,
        weight_map: None,
        masks: None,
        boundary_width: None,
        class_mask: None,
    };
    Dataset::new(samples, WeightMapConfig::default())?.with_spec(spec, false)
}
