//! What a network was trained on, beyond its weights: how images are read into channels,
//! how they are normalised, what the classes are and the weight map of the loss. Stored in
//! every checkpoint (JSON in the header's metadata, key `data`), so that predict, eval and
//! the export read and normalise images exactly as training did. A checkpoint from before
//! this field reads as [`DataSpec::legacy`]: images as gray, no normalisation beyond the
//! bit depth.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::labels::ClassValue;
use super::mask::MaskFormat;
use super::normalize::Normalize;
use super::weights::WeightMapConfig;

/// How many channels an image is read with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelMode {
    /// Gray stays one channel, RGB(A) becomes three.
    #[default]
    Auto,
    /// One channel: colour is turned into luma.
    #[value(name = "1", alias = "gray")]
    Gray,
    /// Three channels: gray is repeated.
    #[value(name = "3", alias = "rgb")]
    Rgb,
}

/// What the pages of a multi-page TIFF are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StackMode {
    /// Separate images (training reads the first page; predict each page).
    #[default]
    Pages,
    /// The channels of one image.
    Channels,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Channels of the network's input.
    pub channels: usize,
    pub channel_mode: ChannelMode,
    pub stack: StackMode,
    pub normalize: Normalize,
    /// K.
    pub classes: usize,
    /// The stored mask values of the classes, if the masks were read through a list.
    pub class_values: Option<Vec<ClassValue>>,
    /// The stored mask value of unlabelled pixels (`--ignore-index`), if any (absent in
    /// checkpoints from before it: none).
    #[serde(default)]
    pub ignore_index: Option<u32>,
    /// The weight map of the training loss (w0, sigma, class balance), so that a resumed
    /// run weighs its pixels as before; absent in checkpoints from before it, and in data
    /// that is only predicted on.
    #[serde(default)]
    pub weight_map: Option<WeightMapConfig>,
    /// How the training masks' stored values were read (`--mask`, `--foreground`,
    /// `--invert`), so that a resumed run reads them as before; absent in checkpoints from
    /// before it, and for data not read from mask files.
    #[serde(default)]
    pub masks: Option<MaskFormat>,
    /// The boundary class's width in pixels (`--boundary-width`) where instance masks are
    /// read as three classes; None otherwise, and in checkpoints from before it.
    #[serde(default)]
    pub boundary_width: Option<usize>,
    /// Whether the mask files stored class indices (or `class_values`) rather than binary
    /// or instance masks: `--classes K` read them, even for K = 2. None for data not read
    /// from mask files, and in checkpoints from before it.
    #[serde(default)]
    pub class_mask: Option<bool>,
}

impl DataSpec {
    /// What a checkpoint without the field means: `channels` read as today (gray, or
    /// several channels as the file holds them), no normalisation beyond the bit depth.
    pub fn legacy(channels: usize, classes: usize) -> DataSpec {
        DataSpec {
            channels,
            channel_mode: match channels {
                1 => ChannelMode::Gray,
                3 => ChannelMode::Rgb,
                _ => ChannelMode::Auto,
            },
            stack: StackMode::Pages,
            normalize: Normalize::None,
            classes,
            class_values: None,
            ignore_index: None,
            weight_map: None,
            masks: None,
            boundary_width: None,
            class_mask: None,
        }
    }
}
