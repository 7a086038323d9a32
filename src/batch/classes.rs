//! The outputs of a K-class prediction (K > 2): the class map (8-bit PNG of class indices),
//! each class's probability (16-bit PNG per class, or one multi-page 16-bit TIFF with a
//! page per class) and a colour overlay with a legend. Every file is written under a
//! hidden temporary name and renamed into place when whole.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgb, RgbImage};

use super::outputs::temporary;
use crate::data::tiff_out::{Samples, TiledTiffWriter};
use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::infer::class_map;
use crate::report::plots::with_legend;
use crate::report::png_bytes;
use crate::train::checkpoint::write_atomically;

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
        let g = (gray.get(x, y).clamp(0.0, 1.0) * 255.0).round() as u8;
        match classes.get(x, y) {
            0 => Rgb([g, g, g]),
            k => {
                let c = class_colour(k as usize);
                Rgb(c.map(|v| ((v as u16 + g as u16) / 2) as u8))
            }
        }
    })
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

fn prob16(p: f32) -> u16 {
    (p.clamp(0.0, 1.0) * 65535.0).round() as u16
}

/// Writes the K-class outputs of one image into `out`, named after `stem`:
/// `STEM_class.png`, `STEM_prob_K.png` for every class (or `STEM_prob.tif`, a page per
/// class, with `tiff`) and `STEM_overlay.png`. Returns the file names.
pub fn write_class_outputs(
    out: &Path,
    stem: &str,
    gray: &GrayImage,
    maps: &[Grid<f32>],
    tiff: bool,
) -> Result<Vec<String>> {
    let classes = class_map(maps);
    let (w, h) = (classes.width as u32, classes.height as u32);
    let mut names = Vec::new();
    let put = |names: &mut Vec<String>, name: String, bytes: Vec<u8>| -> Result<()> {
        write_atomically(&out.join(&name), &bytes)?;
        names.push(name);
        Ok(())
    };
    let class_png: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_raw(w, h, classes.data.clone()).expect("sizes match");
    put(
        &mut names,
        format!("{stem}_class.png"),
        png_bytes(&class_png)?,
    )?;
    if tiff {
        let name = format!("{stem}_prob.tif");
        let path: PathBuf = out.join(&name);
        let bytes = (maps.len() * maps[0].data.len() * 2) as u64;
        let mut writer = TiledTiffWriter::create(&temporary(&path), Samples::Gray16, bytes)?;
        for map in maps {
            writer.begin_page(map.width, map.height)?;
            let rows: Vec<u8> = map
                .data
                .iter()
                .flat_map(|&p| prob16(p).to_le_bytes())
                .collect();
            writer.write_rows(&rows)?;
            writer.end_page()?;
        }
        writer.finish()?;
        std::fs::rename(temporary(&path), &path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        names.push(name);
    } else {
        for (k, map) in maps.iter().enumerate() {
            let pixels = map.data.iter().map(|&p| prob16(p)).collect();
            let image: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_raw(w, h, pixels).expect("sizes match");
            put(
                &mut names,
                format!("{stem}_prob_{k}.png"),
                png_bytes(&image)?,
            )?;
        }
    }
    let overlay = class_overlay_figure(gray, &classes, maps.len(), None)?;
    put(
        &mut names,
        format!("{stem}_overlay.png"),
        png_bytes(&overlay)?,
    )?;
    Ok(names)
}
