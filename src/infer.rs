//! Overlap-tile prediction of a whole image of any size (Fig. 2 of the paper): the image
//! is cut into tiles whose outputs cover it exactly, the missing context at the border is
//! filled by mirroring, and the tiles' predictions are stitched into one map.
//!
//! Tile origins sit on multiples of 2^(depth-1), the network's total pooling stride, so
//! every tile sees the same max-pool grid as one pass over the whole (mirror-padded) image
//! would: with valid convolutions the stitched map equals that one pass exactly.
//!
//! A large image is predicted in bands of tile rows ([`predict_bands`]): only the tiles of
//! one batch are cut out (mirrored where they leave the image) and sent to the GPU, and
//! only one band of probabilities is held before it is handed on, so GPU memory is set by
//! the tile and batch, and host memory by the image itself (4 bytes per pixel as f32)
//! plus one band.

use crate::data::{AsImage, Grid, Image, PlannedTile, Symmetry, TilePlan, TileSpec};
use crate::error::Error;
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
    image: &impl AsImage,
    options: TileOptions,
) -> Result<Vec<Grid<f32>>> {
    let image = &*image.as_image();
    if !options.average_symmetries {
        return predict_tiles(gpu, model, image, options);
    }
    let mut sums = Vec::new();
    for symmetry in Symmetry::ALL {
        let turned = image.map_planes(|plane| symmetry.apply(plane));
        let maps = predict_tiles(gpu, model, &turned, options)?;
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

/// [`predict`] of one orientation: overlap-tile prediction, stitched (one band holding
/// every tile row, so the tiles are batched exactly as a single pass over the plan).
fn predict_tiles(
    gpu: &Gpu,
    model: &Network,
    image: &Image,
    options: TileOptions,
) -> Result<Vec<Grid<f32>>> {
    let mut maps = Vec::new();
    predict_bands(gpu, model, image, options, usize::MAX, |band| {
        maps = band.maps;
        Ok(())
    })?;
    Ok(maps)
}

/// Rows `y .. y + height` of an image's class probabilities: `classes` planes of the
/// image's width and the band's height.
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    pub y: usize,
    pub height: usize,
    pub maps: Vec<Grid<f32>>,
}

/// How many tile rows a band needs so that one band fills at least one batch of tiles:
/// `batch / columns`, rounded up, and at least one.
pub fn band_tile_rows(plan: &TilePlan, batch: usize) -> usize {
    batch.max(1).div_ceil(plan_columns(plan)).max(1)
}

/// Tiles per tile row of `plan` (its tiles are stored row by row).
fn plan_columns(plan: &TilePlan) -> usize {
    let first_row = plan.tiles[0].out_y;
    plan.tiles
        .iter()
        .take_while(|t| t.out_y == first_row)
        .count()
}

/// Overlap-tile prediction of `image` in bands of `tile_rows` tile rows, top to bottom,
/// each handed to `emit` as soon as it is stitched (one orientation: no test-time
/// augmentation). The GPU holds one batch of tiles at a time and the host one band of
/// probabilities (`classes` x 4 bytes per pixel of the band) beside the image, so neither
/// grows with the image's height. Each tile is predicted exactly as by [`predict`], which
/// is this with a single band, so the bands stitched together equal its result bit for bit
/// (the kernels compute each tile of a batch on its own, whatever the batch holds).
pub fn predict_bands(
    gpu: &Gpu,
    model: &Network,
    image: &impl AsImage,
    options: TileOptions,
    tile_rows: usize,
    mut emit: impl FnMut(Band) -> Result<()>,
) -> Result<()> {
    let image = &*image.as_image();
    let plan = plan(model, image.width, image.height, options.tile)?;
    let (tile_in, tile_out) = (plan.spec.tile_in, plan.spec.tile_out);
    let config = model.config();
    check_channels(model, image)?;
    let planes = image.planes();
    let classes = config.classes;
    let band_tiles = plan_columns(&plan).saturating_mul(tile_rows.max(1));
    for band_plan in plan.tiles.chunks(band_tiles) {
        let y = band_plan[0].out_y;
        let last = band_plan[band_plan.len() - 1];
        let height = last.out_y + last.out_height - y;
        let mut maps = vec![Grid::filled(image.width, height, 0.0f32); classes];
        for chunk in band_plan.chunks(options.batch.max(1)) {
            let mut input = Vec::with_capacity(chunk.len() * planes.len() * tile_in * tile_in);
            for tile in chunk {
                for plane in &planes {
                    input.extend_from_slice(&plan.extract_tile(plane, tile)?.data);
                }
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
                    stitch_into_band(map, y, tile, &probs[start..start + plane], tile_out);
                }
            }
        }
        emit(Band { y, height, maps })?;
    }
    Ok(())
}

/// An image whose channel count is not the network's input channels is an error that
/// says both.
pub fn check_channels(model: &Network, image: &Image) -> Result<()> {
    let expected = model.config().in_channels;
    if image.channels == expected {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the image has {} channel(s) but the network takes {expected}: read it with \
         --channels {expected} (gray <-> RGB), or use a checkpoint trained on {}-channel images",
        image.channels, image.channels
    )))
}

/// The class of every pixel: the index of its largest probability (the first on ties).
pub fn class_map(maps: &[Grid<f32>]) -> Grid<u8> {
    let (w, h) = (maps[0].width, maps[0].height);
    Grid {
        width: w,
        height: h,
        data: (0..w * h)
            .map(|i| {
                let mut best = 0;
                for (k, map) in maps.iter().enumerate() {
                    if map.data[i] > maps[best].data[i] {
                        best = k;
                    }
                }
                best as u8
            })
            .collect(),
    }
}

/// Writes the part of a `tile_out x tile_out` prediction that `tile` owns into `band`, a
/// plane of the image's width whose first row is image row `band_y`.
fn stitch_into_band(
    band: &mut Grid<f32>,
    band_y: usize,
    tile: &PlannedTile,
    prediction: &[f32],
    tile_out: usize,
) {
    for dy in 0..tile.out_height {
        let src = (tile.offset_y + dy) * tile_out + tile.offset_x;
        let dst = (tile.out_y - band_y + dy) * band.width + tile.out_x;
        band.data[dst..dst + tile.out_width]
            .copy_from_slice(&prediction[src..src + tile.out_width]);
    }
}

/// The K-class metrics of `model` on `data`: every sample predicted, its class map
/// (argmax) compared with the sample's classes (unlabelled pixels left out).
pub fn class_report(
    gpu: &Gpu,
    model: &Network,
    data: &crate::data::Dataset,
    options: TileOptions,
) -> Result<crate::metrics::ClassReport> {
    let mut confusion = crate::metrics::ConfusionMatrix::new(model.config().classes);
    for sample in data.samples() {
        let maps = predict(gpu, model, &sample.image, options)?;
        confusion.add(&sample.classes.data, &class_map(&maps).data)?;
    }
    Ok(confusion.report())
}
