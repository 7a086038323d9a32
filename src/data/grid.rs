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

/// One of the 8 symmetries of a square (the dihedral group D4): flips and quarter turns.
/// Applied to a plane: flip the columns, then the rows, then transpose (swap x and y).
/// Prediction averages over all 8 (test-time augmentation) to smooth out what one
/// orientation of the network gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Symmetry {
    pub flip_x: bool,
    pub flip_y: bool,
    pub transpose: bool,
}

impl Symmetry {
    /// All 8, the identity first.
    pub const ALL: [Symmetry; 8] = {
        let mut all = [Symmetry {
            flip_x: false,
            flip_y: false,
            transpose: false,
        }; 8];
        let mut i = 0;
        while i < 8 {
            all[i] = Symmetry {
                flip_x: i & 1 != 0,
                flip_y: i & 2 != 0,
                transpose: i & 4 != 0,
            };
            i += 1;
        }
        all
    };

    /// The transformed plane: `out(x, y) = grid(source(x, y))`.
    pub fn apply<T: Copy>(&self, grid: &Grid<T>) -> Grid<T> {
        let (width, height) = if self.transpose {
            (grid.height, grid.width)
        } else {
            (grid.width, grid.height)
        };
        Grid::from_fn(width, height, |x, y| {
            let (x, y) = if self.transpose { (y, x) } else { (x, y) };
            let x = if self.flip_x { grid.width - 1 - x } else { x };
            let y = if self.flip_y { grid.height - 1 - y } else { y };
            grid.get(x, y)
        })
    }

    /// The symmetry that undoes this one. Flips are their own inverses and commute;
    /// transposing turns a flip of the columns into a flip of the rows, so undoing
    /// "flip, then transpose" takes the other flip.
    pub fn inverse(&self) -> Symmetry {
        if self.transpose {
            Symmetry {
                flip_x: self.flip_y,
                flip_y: self.flip_x,
                transpose: true,
            }
        } else {
            *self
        }
    }

    /// Undoes [`Symmetry::apply`]: `invert(apply(g)) == g`.
    pub fn invert<T: Copy>(&self, grid: &Grid<T>) -> Grid<T> {
        self.inverse().apply(grid)
    }
}
