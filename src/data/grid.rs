//! A 2-D plane of values in row-major order: the one container the data module passes around.
//!
//! `GrayImage` (intensities in [0, 1]), `LabelImage` (instance ids, 0 = background) and
//! `WeightMap` (per-pixel loss weights) are all `Grid`s, so cropping, mirroring and sampling are
//! written once.

/// A `height x width` plane, row-major: the value at column `x`, row `y` is `data[y * width + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid<T> {
    pub width: usize,
    pub height: usize,
    pub data: Vec<T>,
}

/// Intensities normalised to [0, 1] (8-bit / 255, 16-bit / 65535, RGB converted to luma).
pub type GrayImage = Grid<f32>;
/// Instance labels: 0 = background (membrane), 1.. = one id per cell.
pub type LabelImage = Grid<u32>;
/// Per-pixel weights of the cross-entropy loss, w(x) of the paper.
pub type WeightMap = Grid<f32>;

impl<T: Copy> Grid<T> {
    /// A `height x width` plane filled with `value`.
    pub fn filled(width: usize, height: usize, value: T) -> Self {
        Self {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    /// Builds a plane from `f(x, y)`.
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let mut data = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                data.push(f(x, y));
            }
        }
        Self {
            width,
            height,
            data,
        }
    }

    /// The value at column `x`, row `y` (panics when out of bounds, like slice indexing).
    #[inline]
    pub fn get(&self, x: usize, y: usize) -> T {
        self.data[y * self.width + x]
    }

    #[inline]
    pub fn set(&mut self, x: usize, y: usize, value: T) {
        self.data[y * self.width + x] = value;
    }

    /// Row `y` as a slice.
    pub fn row(&self, y: usize) -> &[T] {
        &self.data[y * self.width..(y + 1) * self.width]
    }

    /// Applies `f` to every value.
    pub fn map<U>(&self, f: impl FnMut(T) -> U) -> Grid<U> {
        Grid {
            width: self.width,
            height: self.height,
            data: self.data.iter().copied().map(f).collect(),
        }
    }

    /// `(width, height)`, the order in which image tools print sizes.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }
}
