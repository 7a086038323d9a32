//! A dataset: image/label pairs in memory, with their weight maps computed once and cached.
//!
//! On disk a dataset is a folder with `images/` and `labels/` holding PNG or TIFF files matched
//! by file stem (`images/07.png` goes with `labels/07.png`; extensions may differ).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::error::{DataError, Result};
use super::grid::{GrayImage, LabelImage, WeightMap};
use super::io::{read_image, read_pages};
use super::mask::{mask_to_labels, MaskFormat};
use super::weights::{weight_map_validated, WeightMapConfig};

/// One training image with its instance labels (same size).
#[derive(Clone, Debug)]
pub struct Sample {
    /// Where it came from: the file stem, or e.g. "synthetic-003".
    pub name: String,
    pub image: GrayImage,
    pub labels: LabelImage,
}

/// Image/label pairs plus a cache of their weight maps (keyed by the index of the pair).
#[derive(Debug)]
pub struct Dataset {
    samples: Vec<Sample>,
    weight_config: WeightMapConfig,
    weight_maps: Vec<OnceLock<WeightMap>>,
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "tif", "tiff"];

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
        for s in &samples {
            if s.image.size() != s.labels.size() || s.image.data.is_empty() {
                return Err(size_mismatch(
                    Path::new(&s.name),
                    &s.image,
                    Path::new(&s.name),
                    &s.labels,
                ));
            }
        }
        let weight_maps = samples.iter().map(|_| OnceLock::new()).collect();
        Ok(Self {
            samples,
            weight_config,
            weight_maps,
        })
    }

    /// Loads `dir/images/*` and `dir/labels/*` (PNG or TIFF, first page), matched by stem,
    /// in sorted stem order, with the paper's weight map settings.
    pub fn open(dir: &Path, mask_format: MaskFormat) -> Result<Self> {
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
            .map(|(stem, image_path)| load_pair(stem, image_path, &labels[stem], mask_format))
            .collect::<Result<Vec<_>>>()?;
        Self::new(samples, WeightMapConfig::default())
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
            samples.push(Sample {
                name: format!("page-{i:03}"),
                image,
                labels: mask_to_labels(&values, mask_format, masks)?,
            });
        }
        Self::new(samples, WeightMapConfig::default())
    }

    /// The same dataset with other weight map settings (clears the cache).
    pub fn with_weight_config(self, weight_config: WeightMapConfig) -> Result<Self> {
        Self::new(self.samples, weight_config)
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
        Ok(self.weight_maps[index]
            .get_or_init(|| weight_map_validated(&sample.labels, &self.weight_config)))
    }

    /// Computes every weight map now, in parallel (otherwise each is made on first use).
    pub fn precompute_weight_maps(&self) {
        (0..self.len()).into_par_iter().for_each(|i| {
            let _ = self.weight_map(i);
        });
    }
}

fn size_mismatch(
    image_path: &Path,
    image: &GrayImage,
    mask_path: &Path,
    mask: &LabelImage,
) -> DataError {
    DataError::SizeMismatch {
        image: image_path.to_path_buf(),
        image_width: image.width,
        image_height: image.height,
        mask: mask_path.to_path_buf(),
        mask_width: mask.width,
        mask_height: mask.height,
    }
}

fn load_pair(
    stem: &str,
    image_path: &Path,
    mask_path: &Path,
    mask_format: MaskFormat,
) -> Result<Sample> {
    let image = read_image(image_path)?;
    let values = read_pages(mask_path)?[0].to_mask_values(mask_path)?;
    if image.size() != values.size() {
        return Err(size_mismatch(image_path, &image, mask_path, &values));
    }
    Ok(Sample {
        name: stem.to_string(),
        image,
        labels: mask_to_labels(&values, mask_format, mask_path)?,
    })
}

/// The PNG/TIFF files of a folder by stem (hidden files and other extensions are skipped).
fn list_image_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
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
