//! A multi-channel image: `channels` planes of `width x height` f32 values, stored plane
//! after plane (CHW, the layout of one NCHW tensor's sample), so `data` goes to the GPU as
//! it is. Gray images have one channel, RGB three, a multi-page stack read as channels one
//! per page.

use super::grid::{GrayImage, Grid};

#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    /// `channels * height * width` values: channel `c`, row `y`, column `x` at
    /// `(c * height + y) * width + x`.
    pub data: Vec<f32>,
}

impl Image {
    /// The image whose channels are `planes` (all the same size, at least one).
    pub fn from_planes(planes: &[GrayImage]) -> Image {
        assert!(!planes.is_empty(), "an image has at least one channel");
        let (width, height) = planes[0].size();
        assert!(planes.iter().all(|p| p.size() == (width, height)));
        Image {
            width,
            height,
            channels: planes.len(),
            data: planes.iter().flat_map(|p| p.data.iter().copied()).collect(),
        }
    }

    /// `(width, height)`, as [`Grid::size`].
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The values of channel `c`, row-major.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.width * self.height;
        &self.data[c * n..(c + 1) * n]
    }

    pub fn plane_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.width * self.height;
        &mut self.data[c * n..(c + 1) * n]
    }

    /// Channel `c` as a plane.
    pub fn channel(&self, c: usize) -> GrayImage {
        Grid {
            width: self.width,
            height: self.height,
            data: self.plane(c).to_vec(),
        }
    }

    /// Every channel as a plane.
    pub fn planes(&self) -> Vec<GrayImage> {
        (0..self.channels).map(|c| self.channel(c)).collect()
    }

    /// The same operation on every channel (all results the same size).
    pub fn map_planes(&self, f: impl FnMut(&GrayImage) -> GrayImage) -> Image {
        Image::from_planes(&self.planes().iter().map(f).collect::<Vec<_>>())
    }

    /// A gray picture of the image for overlays: the mean of its channels, clamped to
    /// [0, 1] (a normalised image is shown by its values in [0, 1]).
    pub fn display_gray(&self) -> GrayImage {
        let n = self.width * self.height;
        let c = self.channels as f32;
        Grid {
            width: self.width,
            height: self.height,
            data: (0..n)
                .map(|i| {
                    let sum: f32 = (0..self.channels).map(|k| self.data[k * n + i]).sum();
                    (sum / c).clamp(0.0, 1.0)
                })
                .collect(),
        }
    }
}

impl From<GrayImage> for Image {
    fn from(gray: GrayImage) -> Image {
        Image {
            width: gray.width,
            height: gray.height,
            channels: 1,
            data: gray.data,
        }
    }
}

/// What prediction takes: an [`Image`], or a gray plane as a one-channel image.
pub trait AsImage {
    fn as_image(&self) -> std::borrow::Cow<'_, Image>;
}

impl AsImage for Image {
    fn as_image(&self) -> std::borrow::Cow<'_, Image> {
        std::borrow::Cow::Borrowed(self)
    }
}

impl AsImage for GrayImage {
    fn as_image(&self) -> std::borrow::Cow<'_, Image> {
        std::borrow::Cow::Owned(Image::from(self.clone()))
    }
}
