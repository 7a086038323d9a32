//! Overlap-tile prediction of a whole image of any size (Fig. 2 of the paper): the image
//! is cut into tiles whose outputs cover it exactly, the missing context at the border is
//! filled by mirroring, and the tiles' predictions are stitched into one map.
//!
//! Tile origins sit on multiples of 2^(depth-1), the network's total pooling stride, so
//! every tile sees the same max-pool grid as one pass over the whole (mirror-padded) image
//! would: with valid convolutions the stitched map equals that one pass exactly.

use crate::data::{GrayImage, Grid, Symmetry, TilePlan, TileSpec};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::{Heads, Network};
use crate::tensor::{Shape, Tensor};

/// How to cut an image into tiles, and which heads predict.
#[derive(Clone, Copy, Debug)]
pub struct TileOptions {
    /// Input tile side (must be valid for the network).
    pub tile: usize,
    /// Tiles per forward pass.
    pub batch: usize,
    /// U-Net++'s deep-supervision heads (the default for a U-Net).
    pub heads: Heads,
    /// Average the probabilities over the image's 8 flips and quarter turns (test-time
    /// augmentation, 8x the work; the paper's ISBI entry averaged 7 rotated versions).
    pub average_symmetries: bool,
}

impl TileOptions {
    /// Tiles of side `tile`, batched as far as the device allows: the largest tensor of a
    /// batch must fit one storage binding, and at most `MAX_AUTO_BATCH` tiles go together.
    pub fn fitting(gpu: &Gpu, model: &Network, tile: usize) -> Result<TileOptions> {
        const MAX_AUTO_BATCH: usize = 8;
        // A layer's largest tensor per tile: its input or output, with the concatenated
        // skip counted as the decoder conv's input (c_in already includes it).
        let largest = model
            .config()
            .layers(tile)?
            .iter()
            .map(|l| l.c_in.max(l.c_out) * (l.out_size + 2).pow(2) * 4)
            .max()
            .unwrap_or(1) as u64;
        let fits = (gpu.max_tensor_bytes() / largest).max(1) as usize;
        Ok(TileOptions {
            tile,
            batch: fits.min(MAX_AUTO_BATCH),
            heads: Heads::default(),
            average_symmetries: false,
        })
    }
}

/// The tile plan for an image of `width` x `height` on `model` with input tile `tile`.
pub fn plan(model: &Network, width: usize, height: usize, tile: usize) -> Result<TilePlan> {
    let config = model.config();
    let spec = TileSpec::new(tile, config.check_tile(tile)?)?;
    Ok(TilePlan::aligned(
        width,
        height,
        spec,
        config.pooling_stride(),
    )?)
}

/// Class probabilities of every pixel of `image`: `classes` planes of the image's size.
pub fn predict(
    gpu: &Gpu,
    model: &Network,
    image: &GrayImage,
    options: TileOptions,
) -> Result<Vec<Grid<f32>>> {
    if !options.average_symmetries {
        return predict_tiles(gpu, model, image, options);
    }
    let mut sums = Vec::new();
    for symmetry in Symmetry::ALL {
        let maps = predict_tiles(gpu, model, &symmetry.apply(image), options)?;
        let maps = maps.iter().map(|map| symmetry.invert(map));
        if sums.is_empty() {
            sums = maps.collect();
        } else {
            for (sum, map) in sums.iter_mut().zip(maps) {
                sum.data
                    .iter_mut()
                    .zip(&map.data)
                    .for_each(|(s, v)| *s += v);
            }
        }
    }
    let count = Symmetry::ALL.len() as f32;
    Ok(sums.into_iter().map(|sum| sum.map(|s| s / count)).collect())
}

/// [`predict`] of one orientation: overlap-tile prediction, stitched.
fn predict_tiles(
    gpu: &Gpu,
    model: &Network,
    image: &GrayImage,
    options: TileOptions,
) -> Result<Vec<Grid<f32>>> {
    let plan = plan(model, image.width, image.height, options.tile)?;
    let (tile_in, tile_out) = (plan.spec.tile_in, plan.spec.tile_out);
    let config = model.config();
    let classes = config.classes;
    let mut maps = vec![Grid::filled(image.width, image.height, 0.0f32); classes];
    for chunk in plan.tiles.chunks(options.batch.max(1)) {
        let mut input = Vec::with_capacity(chunk.len() * tile_in * tile_in);
        for tile in chunk {
            input.extend_from_slice(&plan.extract_tile(image, tile)?.data);
        }
        let shape = Shape::new(chunk.len(), config.in_channels, tile_in, tile_in);
        let input = Tensor::from_slice(gpu, shape, &input, "prediction tiles")?;
        let probs = model
            .probabilities(gpu, input, options.heads)?
            .to_vec(gpu)?;
        let plane = tile_out * tile_out;
        for (i, tile) in chunk.iter().enumerate() {
            for (class, map) in maps.iter_mut().enumerate() {
                let start = (i * classes + class) * plane;
                let prediction = Grid {
                    width: tile_out,
                    height: tile_out,
                    data: probs[start..start + plane].to_vec(),
                };
                plan.stitch(map, tile, &prediction)?;
            }
        }
    }
    Ok(maps)
}
