//! Pictures and files a person looks at: the loss curve, prediction overlays, probability
//! maps as 16-bit PNGs. Every file is written atomically (temporary file, then rename), so
//! an interrupted run never leaves a half-written output over a good one.

use std::path::Path;

use image::{ImageBuffer, Luma, Rgb, RgbImage};

use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomically;

fn encode_png<P, C>(path: &Path, image: &ImageBuffer<P, C>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
    write_atomically(path, &bytes)
}

/// A probability map in [0, 1] as a 16-bit grayscale PNG (0..65535).
pub fn write_probability_png(path: &Path, map: &Grid<f32>) -> Result<()> {
    let pixels = map
        .data
        .iter()
        .map(|&p| (p.clamp(0.0, 1.0) * 65535.0).round() as u16)
        .collect();
    let image: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_raw(map.width as u32, map.height as u32, pixels).expect("sizes match");
    encode_png(path, &image)
}

/// A binary mask (prob > threshold) as an 8-bit PNG: 255 = foreground, 0 = background.
pub fn write_mask_png(path: &Path, map: &Grid<f32>, threshold: f32) -> Result<()> {
    let pixels = map
        .data
        .iter()
        .map(|&p| if p > threshold { 255u8 } else { 0 })
        .collect();
    let image: ImageBuffer<Luma<u8>, Vec<u8>> =
        ImageBuffer::from_raw(map.width as u32, map.height as u32, pixels).expect("sizes match");
    encode_png(path, &image)
}

/// The image in gray with the predicted background (prob <= threshold) tinted red and,
/// if given, the true background outlined in green: mistakes stand out at a glance.
pub fn write_overlay_png(
    path: &Path,
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<()> {
    let mut out = RgbImage::new(image.width as u32, image.height as u32);
    for (i, pixel) in out.pixels_mut().enumerate() {
        let g = (image.data[i].clamp(0.0, 1.0) * 255.0) as u8;
        let predicted_background = prob.data[i] <= threshold;
        *pixel = if predicted_background {
            Rgb([g / 2 + 127, g / 2, g / 2])
        } else {
            Rgb([g, g, g])
        };
        if let Some(truth) = truth {
            let (x, y) = (i % image.width, i / image.width);
            if is_class_edge(truth, x, y) {
                *pixel = Rgb([0, 220, 0]);
            }
        }
    }
    encode_png(path, &out)
}

/// Whether (x, y) is background with a foreground 4-neighbour.
fn is_class_edge(truth: &Grid<u8>, x: usize, y: usize) -> bool {
    if truth.get(x, y) != 0 {
        return false;
    }
    let neighbours = [
        (x.wrapping_sub(1), y),
        (x + 1, y),
        (x, y.wrapping_sub(1)),
        (x, y + 1),
    ];
    neighbours
        .iter()
        .any(|&(nx, ny)| nx < truth.width && ny < truth.height && truth.get(nx, ny) != 0)
}

/// The mean of each point's window of `window` points ending at it.
fn moving_average(points: &[(u64, f64)], window: usize) -> Vec<(u64, f64)> {
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(step, value))| {
            sum += value;
            if i >= window {
                sum -= points[i - window].1;
            }
            (step, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// A loss curve: log10(loss) against step, light grid lines at each power of ten.
/// The numbers themselves go into `loss.csv` beside it.
pub fn write_loss_plot(path: &Path, losses: &[(u64, f32)]) -> Result<()> {
    let (width, height, pad) = (640u32, 360u32, 20u32);
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let finite: Vec<(u64, f64)> = losses
        .iter()
        .filter(|(_, l)| l.is_finite() && *l > 0.0)
        .map(|&(s, l)| (s, f64::from(l).log10()))
        .collect();
    if finite.len() >= 2 {
        let (s0, s1) = (finite[0].0 as f64, finite[finite.len() - 1].0 as f64);
        let lo = finite
            .iter()
            .map(|p| p.1)
            .fold(f64::INFINITY, f64::min)
            .floor();
        let hi = finite
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max)
            .ceil()
            .max(lo + 1.0);
        let to_px = |s: f64, l: f64| {
            let x = pad as f64 + (s - s0) / (s1 - s0).max(1.0) * f64::from(width - 2 * pad);
            let y = pad as f64 + (hi - l) / (hi - lo) * f64::from(height - 2 * pad);
            (x, y)
        };
        for decade in lo as i32..=hi as i32 {
            let (_, y) = to_px(s0, f64::from(decade));
            for x in pad..width - pad {
                img.put_pixel(x, y as u32, Rgb([220, 220, 220]));
            }
        }
        // The raw per-step losses in light blue, their moving average over 25 steps on top.
        let smooth = moving_average(&finite, 25);
        for (curve, colour) in [
            (&finite, Rgb([170, 190, 235])),
            (&smooth, Rgb([20, 60, 170])),
        ] {
            for pair in curve.windows(2) {
                let a = to_px(pair[0].0 as f64, pair[0].1);
                let b = to_px(pair[1].0 as f64, pair[1].1);
                let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()) as usize).max(1);
                for k in 0..=steps {
                    let t = k as f64 / steps as f64;
                    let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                    img.put_pixel(x as u32, (y as u32).min(height - 1), colour);
                }
            }
        }
    }
    encode_png(path, &img)?;
    let csv: String = std::iter::once("step,loss\n".to_string())
        .chain(losses.iter().map(|(s, l)| format!("{s},{l}\n")))
        .collect();
    write_atomically(&path.with_extension("csv"), csv.as_bytes())
}
