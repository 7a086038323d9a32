//! A dataset: image/label pairs in memory, with their weight maps computed once and cached.
//!
//! On disk a dataset is a folder with `images/` and `labels/` holding PNG, TIFF, JPEG or BMP files matched
//! by file stem (`images/07.png` goes with `labels/07.png`; extensions may differ).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage, WeightMap};
use super::image::Image;
use super::io::{read_image_channels, read_pages};
use super::labels::{LabelSpec, IGNORE};
use super::mask::{foreground_classes, mask_to_labels, MaskFormat};
use super::normalize::{Affine, Normalize};
use super::spec::{ChannelMode, DataSpec, StackMode};
use super::weights::{class_weight_map, WeightMapConfig};

/// One training image with its labels (same size).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Where it came from: the file stem, or e.g. "synthetic-003".
    pub name: String,
    /// The image as the network sees it: its channels, normalised (see `norm`).
    pub image: Image,
    /// Objects for the weight map's border term: instance ids, 0 = none.
    pub labels: LabelImage,
    /// The class of each pixel, 0..K-1, or [`IGNORE`] where unlabelled.
    pub classes: Grid<u8>,
    /// How each channel of `image` was normalised from the values read (identity: not).
    pub norm: Vec<Affine>,
}

impl Sample {
    /// A gray image with instance labels, two classes (cell = label > 0), not normalised.
    pub fn binary(name: String, image: GrayImage, labels: LabelImage) -> Sample {
        Sample::new(
            name,
            image.into(),
            labels.clone(),
            foreground_classes(&labels),
        )
    }

    /// An image with its objects and classes, not normalised.
    pub fn new(name: String, image: Image, labels: LabelImage, classes: Grid<u8>) -> Sample {
        Sample {
            norm: vec![Affine::IDENTITY; image.channels],
            name,
            image,
            labels,
            classes,
        }
    }
}

/// How a dataset folder is read: labels, channels, stacks, normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    pub labels: LabelSpec,
    pub channels: ChannelMode,
    pub stack: StackMode,
    pub normalize: Normalize,
}

impl LoadOptions {
    /// Today's reading: gray images, two classes in `format`, no normalisation.
    pub fn two_class(format: MaskFormat) -> LoadOptions {
        LoadOptions {
            labels: LabelSpec::two_class(format),
            channels: ChannelMode::Gray,
            stack: StackMode::Pages,
            normalize: Normalize::None,
        }
    }
}

/// Image/label pairs plus a cache of their weight maps (keyed by the index of the pair).
#[derive(Debug)]
pub struct Dataset {
    samples: Vec<Sample>,
    weight_config: WeightMapConfig,
    weight_maps: Vec<OnceLock<WeightMap>>,
    spec: DataSpec,
    /// The objects are components of one class each (see [`crate::data::labels::Labels::objects_by_class`]).
    objects_by_class: bool,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "tif", "tiff", "jpg", "jpeg", "bmp"];

impl Dataset {
    /// A dataset from samples in memory. Errors if there are none, if an image and its labels
    /// differ in size, or if the weight map config is invalid.
    pub fn new(samples: Vec<Sample>, weight_config: WeightMapConfig) -> Result<Self> {
        weight_config.validate()?;
        if samples.is_empty() {
            return Err(DataError::EmptyDataset {
                dir: PathBuf::from("(in memory)"),
            });
        }
        let channels = samples[0].image.channels;
        for s in &samples {
            if s.image.channels != channels {
                return Err(DataError::ChannelMismatch {
                    path: PathBuf::from(&s.name),
                    got: s.image.channels,
                    expected: channels,
                    context: format!(" (the dataset's first image, {}, has)", samples[0].name),
                });
            }
            if s.image.size() != s.labels.size()
                || s.classes.size() != s.labels.size()
                || s.image.data.is_empty()
            {
                return Err(size_mismatch(
                    Path::new(&s.name),
                    &s.image,
                    Path::new(&s.name),
                    &s.labels,
                ));
            }
        }
        let weight_maps = samples.iter().map(|_| OnceLock::new()).collect();
        let classes = samples
            .iter()
            .flat_map(|s| s.classes.data.iter())
            .filter(|&&c| c != IGNORE)
            .max()
            .map_or(2, |&c| (c as usize + 1).max(2));
        Ok(Self {
            spec: DataSpec {
                channels,
                channel_mode: if channels == 3 {
                    ChannelMode::Rgb
                } else {
                    ChannelMode::Gray
                },
                stack: StackMode::Pages,
                normalize: Normalize::None,
                classes,
                class_values: None,
                ignore_index: None,
                weight_map: Some(weight_config),
                masks: None,
                boundary_width: None,
                class_mask: None,
            },
            objects_by_class: false,
            samples,
            weight_config,
            weight_maps,
        })
    }

    /// What the network trained on this dataset must take and give (see [`DataSpec`]).
    pub fn spec(&self) -> &DataSpec {
        &self.spec
    }

    /// The number of classes K.
    pub fn classes(&self) -> usize {
        self.spec.classes
    }

    /// Input channels.
    pub fn channels(&self) -> usize {
        self.spec.channels
    }

    /// The same samples read with `spec` (its reading modes and K, which must cover
    /// every class present). The dataset keeps its own `normalize` (applied only by
    /// [`Dataset::normalized`]) and weight map (set by [`Dataset::with_weight_config`]).
    pub fn with_spec(mut self, spec: DataSpec, objects_by_class: bool) -> Result<Self> {
        if spec.channels != self.spec.channels {
            return Err(DataError::InvalidConfig {
                what: "dataset",
                reason: format!(
                    "the images have {} channel(s), not {}",
                    self.spec.channels, spec.channels
                ),
            });
        }
        if spec.classes < self.spec.classes {
            return Err(DataError::InvalidConfig {
                what: "dataset",
                reason: format!(
                    "the labels hold class {} but there are only {} classes",
                    self.spec.classes - 1,
                    spec.classes
                ),
            });
        }
        let (normalize, weight_map) = (self.spec.normalize, self.spec.weight_map);
        self.spec = DataSpec {
            normalize,
            weight_map,
            ..spec
        };
        self.objects_by_class = objects_by_class;
        Ok(self)
    }

    /// The dataset with every image normalised by `normalize`, per image and channel (an
    /// error if it already is).
    pub fn normalized(mut self, normalize: Normalize) -> Result<Self> {
        if self
            .samples
            .iter()
            .any(|s| s.norm.iter().any(|a| *a != Affine::IDENTITY))
        {
            return Err(DataError::InvalidConfig {
                what: "dataset",
                reason: "its images are normalised already".into(),
            });
        }
        for s in &mut self.samples {
            s.norm = normalize.apply(&mut s.image);
        }
        self.spec.normalize = normalize;
        Ok(self)
    }

    /// Loads `dir/images/*` and `dir/labels/*` (PNG or TIFF, first page), matched by stem,
    /// in sorted stem order, with the paper's weight map settings.
    pub fn open(dir: &Path, mask_format: MaskFormat) -> Result<Self> {
        Self::open_with(dir, &LoadOptions::two_class(mask_format))
    }

    /// Loads a dataset folder as `options` say: labels into K classes (pixels snapped to a
    /// class value are reported on stderr), images with their channels, normalised.
    pub fn open_with(dir: &Path, options: &LoadOptions) -> Result<Self> {
        options.labels.validate()?;
        let images = list_image_files(&dir.join("images"))?;
        let labels = list_image_files(&dir.join("labels"))?;
        let unmatched = |a: &BTreeMap<String, PathBuf>, b: &BTreeMap<String, PathBuf>| {
            a.iter()
                .filter(|(stem, _)| !b.contains_key(*stem))
                .map(|(_, path)| path.display().to_string())
                .collect::<Vec<_>>()
        };
        let images_without_labels = unmatched(&images, &labels);
        let labels_without_images = unmatched(&labels, &images);
        if !images_without_labels.is_empty() || !labels_without_images.is_empty() {
            return Err(DataError::Unmatched {
                dir: dir.to_path_buf(),
                images_without_labels,
                labels_without_images,
            });
        }
        if images.is_empty() {
            return Err(DataError::EmptyDataset {
                dir: dir.to_path_buf(),
            });
        }
        let pairs: Vec<(&String, &PathBuf)> = images.iter().collect();
        let samples = pairs
            .into_par_iter()
            .map(|(stem, image_path)| load_pair(stem, image_path, &labels[stem], options))
            .collect::<Result<Vec<_>>>()?;
        let snapped: usize = samples.iter().map(|(_, n)| n).sum();
        if snapped > 0 {
            eprintln!("--snap: {snapped} label pixel(s) mapped to the nearest class value");
        }
        let objects_by_class = options.labels.class_mask;
        let samples = samples.into_iter().map(|(s, _)| s).collect();
        let data = Self::new(samples, WeightMapConfig::default())?;
        let spec = DataSpec {
            channels: data.channels(),
            channel_mode: options.channels,
            stack: options.stack,
            normalize: Normalize::None,
            classes: options.labels.classes,
            class_values: options.labels.values.clone(),
            ignore_index: options.labels.ignore,
            weight_map: None,
            masks: Some(options.labels.format),
            boundary_width: options
                .labels
                .boundary_classes()
                .then_some(options.labels.boundary_width),
            class_mask: Some(options.labels.class_mask),
        };
        data.with_spec(spec, objects_by_class)?
            .normalized(options.normalize)
    }

    /// Loads two multi-page TIFF stacks (e.g. ISBI's `train-volume.tif` and
    /// `train-labels.tif`): page `i` of `masks` labels page `i` of `images`.
    pub fn from_tiff_stacks(images: &Path, masks: &Path, mask_format: MaskFormat) -> Result<Self> {
        let image_pages = read_pages(images)?;
        let mask_pages = read_pages(masks)?;
        if image_pages.len() != mask_pages.len() {
            return Err(DataError::StackLengthMismatch {
                images: images.to_path_buf(),
                image_pages: image_pages.len(),
                masks: masks.to_path_buf(),
                mask_pages: mask_pages.len(),
            });
        }
        let mut samples = Vec::with_capacity(image_pages.len());
        for (i, (page, mask_page)) in image_pages.iter().zip(&mask_pages).enumerate() {
            let image = page.to_gray();
            let values = mask_page.to_mask_values(masks)?;
            if image.size() != values.size() {
                return Err(size_mismatch(images, &image, masks, &values));
            }
            samples.push(Sample::binary(
                format!("page-{i:03}"),
                image,
                mask_to_labels(&values, mask_format, masks)?,
            ));
        }
        Self::new(samples, WeightMapConfig::default())
    }

    /// The same dataset with other weight map settings (clears the cache).
    pub fn with_weight_config(self, weight_config: WeightMapConfig) -> Result<Self> {
        let (spec, by_class) = (self.spec.clone(), self.objects_by_class);
        let mut data = Self::new(self.samples, weight_config)?.with_spec(spec.clone(), by_class)?;
        data.spec.normalize = spec.normalize;
        Ok(data)
    }

    /// The same settings (classes, channels, normalisation, weight maps) for other samples
    /// of this dataset (a split).
    pub fn with_samples(&self, samples: Vec<Sample>) -> Result<Self> {
        let data = Self::new(samples, self.weight_config)?;
        let spec = DataSpec {
            channels: data.channels(),
            ..self.spec.clone()
        };
        let mut data = data.with_spec(spec, self.objects_by_class)?;
        data.spec.normalize = self.spec.normalize;
        Ok(data)
    }

    pub fn weight_config(&self) -> &WeightMapConfig {
        &self.weight_config
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Always false: an empty dataset cannot be built.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn sample(&self, index: usize) -> Result<&Sample> {
        self.samples.get(index).ok_or(DataError::IndexOutOfRange {
            index,
            len: self.samples.len(),
        })
    }

    /// The weight map of sample `index`, computed on first use and then cached.
    pub fn weight_map(&self, index: usize) -> Result<&WeightMap> {
        let sample = self.sample(index)?;
        Ok(self.weight_maps[index].get_or_init(|| {
            class_weight_map(
                &sample.labels,
                &sample.classes,
                self.spec.classes,
                self.objects_by_class,
                &self.weight_config,
            )
        }))
    }

    /// Computes every weight map now, in parallel (otherwise each is made on first use).
    pub fn precompute_weight_maps(&self) {
        (0..self.len()).into_par_iter().for_each(|i| {
            let _ = self.weight_map(i);
        });
    }
}

fn size_mismatch<T, U>(
    image_path: &Path,
    image: &impl Sized2d<T>,
    mask_path: &Path,
    mask: &impl Sized2d<U>,
) -> DataError {
    let ((image_width, image_height), (mask_width, mask_height)) = (image.dims(), mask.dims());
    DataError::SizeMismatch {
        image: image_path.to_path_buf(),
        image_width,
        image_height,
        mask: mask_path.to_path_buf(),
        mask_width,
        mask_height,
    }
}

/// Anything with a width and height, for [`size_mismatch`].
trait Sized2d<T> {
    fn dims(&self) -> (usize, usize);
}

impl<T> Sized2d<T> for Grid<T> {
    fn dims(&self) -> (usize, usize) {
        (self.width, self.height)
    }
}

impl Sized2d<f32> for Image {
    fn dims(&self) -> (usize, usize) {
        self.size()
    }
}

/// One image and its mask, with the pixels snapped to a class value.
fn load_pair(
    stem: &str,
    image_path: &Path,
    mask_path: &Path,
    options: &LoadOptions,
) -> Result<(Sample, usize)> {
    let image = read_image_channels(image_path, options.channels, options.stack)?;
    let labels = options.labels.read(&read_pages(mask_path)?[0], mask_path)?;
    if image.size() != labels.classes.size() {
        return Err(size_mismatch(
            image_path,
            &image,
            mask_path,
            &labels.classes,
        ));
    }
    let sample = Sample::new(stem.to_string(), image, labels.instances, labels.classes);
    Ok((sample, labels.snapped))
}

/// The image files of a folder by stem, as a dataset's `images/` and `labels/` are read
/// (PNG, TIFF, JPEG, BMP; hidden files and other extensions are skipped; two files of one
/// stem are an error).
pub fn list_image_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let io_error = |source| DataError::Io {
        action: "list the folder",
        path: dir.to_path_buf(),
        source,
    };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let (Some(stem), Some(ext)) = (path.file_stem(), path.extension()) else {
            continue;
        };
        let stem = stem.to_string_lossy().to_string();
        let ext = ext.to_string_lossy().to_ascii_lowercase();
        if stem.starts_with('.') || !IMAGE_EXTENSIONS.contains(&ext.as_str()) || !path.is_file() {
            continue;
        }
        if let Some(previous) = files.insert(stem.clone(), path.clone()) {
            return Err(DataError::InvalidConfig {
                what: "dataset",
                reason: format!(
                    "{} and {} have the same stem {stem:?}; keep one file per stem",
                    previous.display(),
                    path.display()
                ),
            });
        }
    }
    Ok(files)
}
