//! The overlap-tile strategy for predicting a whole image of any size (Fig. 2 of the paper).
//!
//! The image's `H x W` output is cut into `tile_out x tile_out` windows on a regular grid;
//! each window is predicted from the `tile_in x tile_in` input around it (`margin` pixels of
//! context on each side, mirrored where it leaves the image). The last window along an axis is
//! moved back so that it ends at the image border (more real context, less mirroring) and
//! writes only the part not written yet. So every output pixel is written by exactly one tile.
//! An axis shorter than `tile_out` gets a single window starting at 0 that sticks out past the
//! end; only its first `H` (or `W`) output pixels are written.
//!
//! [`TilePlan::aligned`] keeps every window start on a multiple of a network's pooling stride
//! (windows step by the largest such multiple within `tile_out`, and the last one moves back
//! only to such a multiple), so each tile sees the max-pool grid of one pass over the image.
//!
//! This module knows nothing of networks: it only takes `tile_in` and `tile_out`.

use super::error::{DataError, Result};
use super::grid::Grid;
use super::mirror::crop_mirrored;
use super::tiles::TileSpec;

/// One tile of a plan. All coordinates are in image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedTile {
    /// Top-left corner of the `tile_in x tile_in` input window (may be negative or reach past
    /// the image: those pixels are mirrored).
    pub input_x: isize,
    pub input_y: isize,
    /// The image region this tile writes: `[out_x, out_x + out_width) x [out_y, out_y + out_height)`.
    pub out_x: usize,
    pub out_y: usize,
    pub out_width: usize,
    pub out_height: usize,
    /// Where that region starts inside the tile's `tile_out x tile_out` prediction.
    pub offset_x: usize,
    pub offset_y: usize,
}

/// The tiles that predict an `width x height` image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePlan {
    pub spec: TileSpec,
    pub width: usize,
    pub height: usize,
    pub tiles: Vec<PlannedTile>,
}

/// Along one axis of `n` pixels: `(window_start, write_start, write_len, offset)` per window.
///
/// Window starts are multiples of `align`: windows step by the largest multiple of `align`
/// that fits in `tile_out`, and the last one moves back towards the border only as far as
/// the next multiple of `align` allows (with `align` = 1, exactly to the border).
fn axis_windows(n: usize, tile_out: usize, align: usize) -> Vec<(usize, usize, usize, usize)> {
    if n <= tile_out {
        return vec![(0, 0, n, 0)];
    }
    let step = tile_out / align * align;
    let last_start = (n - tile_out).next_multiple_of(align);
    let count = (n - tile_out).div_ceil(step) + 1;
    (0..count)
        .map(|k| {
            let write_start = k * step;
            let write_end = if k + 1 == count {
                n
            } else {
                write_start + step
            };
            // Only the last window can be moved back (the others start before last_start).
            let window_start = write_start.min(last_start);
            (
                window_start,
                write_start,
                write_end - write_start,
                write_start - window_start,
            )
        })
        .collect()
}

impl TilePlan {
    pub fn new(width: usize, height: usize, spec: TileSpec) -> Result<Self> {
        Self::aligned(width, height, spec, 1)
    }

    /// A plan whose tile origins are multiples of `align` (a network's total pooling
    /// stride), so that every tile sees the max-pool grid of one pass over the whole image.
    pub fn aligned(width: usize, height: usize, spec: TileSpec, align: usize) -> Result<Self> {
        let spec = TileSpec::new(spec.tile_in, spec.tile_out)?;
        if align == 0 || align > spec.tile_out {
            return Err(DataError::InvalidConfig {
                what: "tile plan",
                reason: format!(
                    "alignment {align} must be between 1 and the output tile size {}",
                    spec.tile_out
                ),
            });
        }
        if width == 0 || height == 0 {
            return Err(DataError::InvalidConfig {
                what: "tile plan",
                reason: format!("cannot tile an empty {width}x{height} image"),
            });
        }
        let margin = spec.margin() as isize;
        let columns = axis_windows(width, spec.tile_out, align);
        let rows = axis_windows(height, spec.tile_out, align);
        let mut tiles = Vec::with_capacity(columns.len() * rows.len());
        for &(wy, out_y, out_height, offset_y) in &rows {
            for &(wx, out_x, out_width, offset_x) in &columns {
                tiles.push(PlannedTile {
                    input_x: wx as isize - margin,
                    input_y: wy as isize - margin,
                    out_x,
                    out_y,
                    out_width,
                    out_height,
                    offset_x,
                    offset_y,
                });
            }
        }
        Ok(Self {
            spec,
            width,
            height,
            tiles,
        })
    }

    /// The `tile_in x tile_in` network input of `tile`, mirrored where it leaves the image.
    pub fn extract_tile<T: Copy>(&self, image: &Grid<T>, tile: &PlannedTile) -> Result<Grid<T>> {
        self.check_size("image", image.size())?;
        let n = self.spec.tile_in;
        Ok(crop_mirrored(image, tile.input_x, tile.input_y, n, n))
    }

    /// Writes the part of a `tile_out x tile_out` prediction that `tile` owns into `full`
    /// (a plane the size of the image). For a K-channel prediction call it once per channel.
    pub fn stitch<T: Copy>(
        &self,
        full: &mut Grid<T>,
        tile: &PlannedTile,
        prediction: &Grid<T>,
    ) -> Result<()> {
        self.check_size("output plane", full.size())?;
        let n = self.spec.tile_out;
        if prediction.size() != (n, n) {
            return Err(DataError::InvalidConfig {
                what: "tile prediction",
                reason: format!(
                    "is {}x{} but tile_out is {n}",
                    prediction.width, prediction.height
                ),
            });
        }
        for dy in 0..tile.out_height {
            let src = prediction.row(tile.offset_y + dy);
            let src = &src[tile.offset_x..tile.offset_x + tile.out_width];
            let start = (tile.out_y + dy) * full.width + tile.out_x;
            full.data[start..start + tile.out_width].copy_from_slice(src);
        }
        Ok(())
    }

    fn check_size(&self, what: &'static str, size: (usize, usize)) -> Result<()> {
        if size != (self.width, self.height) {
            return Err(DataError::InvalidConfig {
                what: "tile plan",
                reason: format!(
                    "{what} is {}x{} but the plan is for {}x{}",
                    size.0, size.1, self.width, self.height
                ),
            });
        }
        Ok(())
    }
}
