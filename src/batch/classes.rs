//! What the outputs of a K-class prediction (K > 2) look like: the class map (8-bit
//! class indices), each class's probability (16-bit) and a colour overlay (with a legend
//! in PNG). [`super::outputs`] writes them, as it writes the two-class outputs.

use image::{ImageBuffer, Luma, Rgb, RgbImage};

use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::infer::class_map;
use crate::report::plots::with_legend;
use crate::report::png_bytes;

/// The colour of class `k` in overlays (class 0, the background, is not drawn): a
/// palette of distinct colours (Sasha Trubetskoy's), repeating after 12.
pub fn class_colour(k: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 12] = [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [255, 225, 25],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
    ];
    PALETTE[(k.max(1) - 1) % PALETTE.len()]
}

/// The image in gray with every pixel of a predicted class > 0 blended half with that
/// class's colour.
pub fn class_overlay(gray: &GrayImage, classes: &Grid<u8>) -> RgbImage {
    RgbImage::from_fn(gray.width as u32, gray.height as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        Rgb(overlay_pixel(gray.get(x, y), classes.get(x, y)))
    })
}

/// One pixel of [`class_overlay`]: gray value `v` (0..1) of class `class`.
pub fn overlay_pixel(v: f32, class: u8) -> [u8; 3] {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    match class {
        0 => [g, g, g],
        k => class_colour(k as usize).map(|c| ((c as u16 + g as u16) / 2) as u8),
    }
}

/// [`class_overlay`] with a legend of the `classes` classes below it (`names` if given).
pub fn class_overlay_figure(
    gray: &GrayImage,
    map: &Grid<u8>,
    classes: usize,
    truth: Option<&Grid<u8>>,
) -> Result<RgbImage> {
    let mut image = class_overlay(gray, map);
    let mut entries: Vec<([u8; 3], String)> = (1..classes)
        .map(|k| (class_colour(k), format!("predicted class {k}")))
        .collect();
    if let Some(truth) = truth {
        // True class borders in white: a pixel whose right or lower neighbour differs.
        for y in 0..map.height {
            for x in 0..map.width {
                let t = truth.get(x, y);
                let right = x + 1 < map.width && truth.get(x + 1, y) != t;
                let below = y + 1 < map.height && truth.get(x, y + 1) != t;
                if right || below {
                    image.put_pixel(x as u32, y as u32, Rgb([255, 255, 255]));
                }
            }
        }
        entries.push(([255, 255, 255], "true class borders".into()));
    }
    with_legend(&image, &entries).map_err(|e| Error::Config(format!("could not draw: {e}")))
}

/// A probability as a 16-bit sample (0..65535), as every probability output stores it.
pub fn prob16(p: f32) -> u16 {
    (p.clamp(0.0, 1.0) * 65535.0).round() as u16
}

/// A class map as an 8-bit gray PNG of class indices (`STEM_class.png`).
pub fn class_map_png(classes: &Grid<u8>) -> Result<Vec<u8>> {
    let (w, h) = (classes.width as u32, classes.height as u32);
    let image: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_raw(w, h, classes.data.clone()).expect("sizes match");
    png_bytes(&image)
}

/// The colour overlay of the class `maps` of one image, with a legend, as a PNG
/// (`STEM_overlay.png`).
pub fn class_overlay_png(gray: &GrayImage, maps: &[Grid<f32>]) -> Result<Vec<u8>> {
    png_bytes(&class_overlay_figure(
        gray,
        &class_map(maps),
        maps.len(),
        None,
    )?)
}
