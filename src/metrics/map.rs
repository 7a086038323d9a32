//! A 2-D grid of pixels, thresholding, and connected components.

use super::{MetricsError, Result};

/// A row-major 2-D map: pixel `(x, y)` is `pixels[y * width + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Map<T> {
    width: usize,
    height: usize,
    pixels: Vec<T>,
}

/// Foreground (cell interior) = `true`, background (membrane) = `false`.
pub type BinaryMap = Map<bool>;
/// P(foreground) per pixel, in [0, 1].
pub type ProbabilityMap = Map<f32>;
/// A segmentation: 0 = background, 1, 2, ... = segment ids.
pub type LabelMap = Map<u32>;

impl<T> Map<T> {
    /// A `width` x `height` map; fails unless `pixels.len() == width * height`.
    pub fn new(width: usize, height: usize, pixels: Vec<T>) -> Result<Self> {
        if pixels.len() != width * height {
            return Err(MetricsError::WrongPixelCount {
                width,
                height,
                expected: width * height,
                got: pixels.len(),
            });
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// All pixels, row-major.
    pub fn pixels(&self) -> &[T] {
        &self.pixels
    }

    /// Number of pixels, `width * height`.
    pub fn len(&self) -> usize {
        self.pixels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// The pixel at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize) -> &T {
        &self.pixels[y * self.width + x]
    }

    pub(crate) fn pixels_mut(&mut self) -> &mut [T] {
        &mut self.pixels
    }

    /// Fails unless `self` (named `what` in the message) has the size of `truth`.
    pub(crate) fn check_same_size<U>(&self, what: &'static str, truth: &Map<U>) -> Result<()> {
        if self.width == truth.width && self.height == truth.height {
            return Ok(());
        }
        Err(MetricsError::SizeMismatch {
            what,
            width: self.width,
            height: self.height,
            truth_width: truth.width,
            truth_height: truth.height,
        })
    }
}

impl BinaryMap {
    /// Whether pixel `index` is compared: not marked in `ignored` (true = unlabelled, as
    /// `--ignore-index` marks them; `None`: every pixel is).
    pub(crate) fn compared(ignored: Option<&BinaryMap>, index: usize) -> bool {
        ignored.is_none_or(|m| !m.pixels[index])
    }

    /// Fails unless `ignored` (if any) has `self`'s size.
    pub(crate) fn check_ignored(&self, ignored: Option<&BinaryMap>) -> Result<()> {
        ignored.map_or(Ok(()), |m| m.check_same_size("map of ignored pixels", self))
    }

    /// `self` with the `ignored` pixels set to background (unchanged without them); fails
    /// unless `ignored` has `self`'s size.
    pub(crate) fn without(&self, ignored: Option<&BinaryMap>) -> Result<BinaryMap> {
        self.check_ignored(ignored)?;
        let Some(ignored) = ignored else {
            return Ok(self.clone());
        };
        let pixels = self
            .pixels
            .iter()
            .zip(&ignored.pixels)
            .map(|(&v, &ig)| v && !ig)
            .collect();
        Ok(BinaryMap {
            width: self.width,
            height: self.height,
            pixels,
        })
    }

    /// Pixels not marked in `ignored` (all of them without it).
    pub(crate) fn compared_count(&self, ignored: Option<&BinaryMap>) -> usize {
        ignored.map_or(self.len(), |m| m.pixels.iter().filter(|&&ig| !ig).count())
    }

    /// From 8-bit labels such as the ISBI label PNGs: nonzero (255) = foreground (cell
    /// interior), 0 = background (membrane).
    pub fn from_u8_labels(width: usize, height: usize, labels: &[u8]) -> Result<Self> {
        Self::new(width, height, labels.iter().map(|&v| v != 0).collect())
    }

    /// Number of foreground pixels.
    pub fn count_foreground(&self) -> usize {
        self.pixels.iter().filter(|&&v| v).count()
    }
}

impl ProbabilityMap {
    /// Foreground iff `p > threshold` (strictly, as the challenge's Fiji scripts do).
    pub fn threshold(&self, threshold: f32) -> BinaryMap {
        let pixels = self.pixels.iter().map(|&p| p > threshold).collect();
        BinaryMap {
            width: self.width,
            height: self.height,
            pixels,
        }
    }
}

/// Which neighbours of a pixel touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Up, down, left, right.
    Four,
    /// The four above plus the four diagonals.
    Eight,
}

impl Connectivity {
    /// Offsets `(dx, dy)` of the neighbours.
    pub(crate) fn offsets(self) -> &'static [(isize, isize)] {
        const FOUR: [(isize, isize); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];
        const EIGHT: [(isize, isize); 8] = [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ];
        match self {
            Connectivity::Four => &FOUR,
            Connectivity::Eight => &EIGHT,
        }
    }
}

/// Labels the connected components of the foreground: background pixels get 0, the
/// components get 1, 2, ... in row-major order of their first pixel. A breadth-first flood
/// fill from each unlabelled foreground pixel.
pub fn connected_components(map: &BinaryMap, connectivity: Connectivity) -> LabelMap {
    let (width, height) = (map.width, map.height);
    let mut labels = vec![0u32; map.len()];
    let mut next_label = 0u32;
    let mut queue = std::collections::VecDeque::new();
    for start in 0..map.len() {
        if !map.pixels[start] || labels[start] != 0 {
            continue;
        }
        next_label += 1;
        labels[start] = next_label;
        queue.push_back(start);
        while let Some(index) = queue.pop_front() {
            let (x, y) = (index % width, index / width);
            for &(dx, dy) in connectivity.offsets() {
                let (Some(nx), Some(ny)) = (x.checked_add_signed(dx), y.checked_add_signed(dy))
                else {
                    continue;
                };
                if nx >= width || ny >= height {
                    continue;
                }
                let neighbour = ny * width + nx;
                if map.pixels[neighbour] && labels[neighbour] == 0 {
                    labels[neighbour] = next_label;
                    queue.push_back(neighbour);
                }
            }
        }
    }
    LabelMap {
        width,
        height,
        pixels: labels,
    }
}
