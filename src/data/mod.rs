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
pub mod io;
pub mod mask;
pub mod mirror;
pub mod plan;
pub mod stream;
pub mod synth;
pub mod tiff_out;
pub mod tiles;
pub mod weights;

pub use augment::{augment, AugmentConfig, DisplacementGrid, Transform};
pub use dataset::{Dataset, Sample};
pub use distance::{distance_transform, squared_distance_transform};
pub use error::DataError;
pub use grid::{GrayImage, Grid, LabelImage, Symmetry, WeightMap};
pub use io::{
    decode_pages, npy_bytes, parse_npy, read_image, read_pages, read_stack, write_gray_png,
    write_label_png, write_npy, RawPage,
};
pub use mask::{connected_components, foreground_classes, mask_to_labels, read_mask, MaskFormat};
pub use mirror::{crop_mirrored, mirror_pad, reflect_index};
pub use plan::{PlannedTile, TilePlan};
pub use stream::TileStream;
pub use synth::{synthetic_dataset, synthetic_sample, write_dataset, SynthConfig, SynthStyle};
pub use tiles::{random_training_tile, training_tile_at, TileSampler, TileSpec, TrainingTile};
pub use weights::{
    class_weights, render_weight_map, weight_map, write_weight_map_npy, write_weight_map_png,
    WeightMapConfig,
};
