//! Image I/O, tiling and mirroring, augmentation, weight maps, synthetic data.
//!
//! Everything here runs on the CPU. A training run uses it as
//! files (or [`synthetic_dataset`]) -> [`Dataset`] (images, instance labels, cached weight
//! maps) -> [`TileStream`] (augmented [`TrainingTile`]s made on a background thread);
//! prediction uses [`TilePlan`] to cut a whole image into overlapping tiles and stitch the
//! results.

pub mod augment;
pub mod dataset;
pub mod distance;
pub mod error;
pub mod grid;
pub mod image;
pub mod io;
pub mod labels;
pub mod mask;
pub mod mirror;
pub mod normalize;
pub mod plan;
pub mod spec;
pub mod stream;
pub mod synth;
pub mod synth_rgb;
pub mod tiff_out;
pub mod tiles;
pub mod weights;

pub use augment::{augment, AugmentConfig, DisplacementGrid, Transform};
pub use dataset::{Dataset, LoadOptions, Sample};
pub use distance::{distance_transform, squared_distance_transform};
pub use error::DataError;
pub use grid::{GrayImage, Grid, LabelImage, Symmetry, WeightMap};
pub use image::{AsImage, Image};
pub use io::{
    decode_pages, npy_bytes, pages_to_image, parse_npy, read_image, read_image_channels,
    read_pages, read_stack, write_gray_png, write_image_png, write_label_png, write_npy, RawPage,
};
pub use labels::{parse_class_values, ClassValue, LabelSpec, Labels, IGNORE};
pub use mask::{connected_components, foreground_classes, mask_to_labels, read_mask, MaskFormat};
pub use mirror::{crop_mirrored, mirror_pad, reflect_index};
pub use normalize::{Affine, Normalize, DEFAULT_NORMALIZE};
pub use plan::{PlannedTile, TilePlan};
pub use spec::{ChannelMode, DataSpec, StackMode};
pub use stream::TileStream;
pub use synth::{synthetic_dataset, synthetic_sample, write_dataset, SynthConfig, SynthStyle};
pub use synth_rgb::{synthetic_rgb_dataset, RgbStain};
pub use tiles::{
    random_tile, random_training_tile, tile_at, training_tile_at, TileSampler, TileSource,
    TileSpec, TrainingTile,
};
pub use weights::{
    class_weight_map, class_weights, k_class_weights, render_weight_map, weight_map,
    write_weight_map_npy, write_weight_map_png, ClassBalance, WeightMapConfig,
};
