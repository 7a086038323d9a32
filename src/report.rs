//! Pictures and files a person looks at: the training curves and every logged value,
//! prediction overlays, probability maps as 16-bit PNGs. The figures with text (axes,
//! legends) are drawn by [`plots`]. Every file is written atomically (temporary file, then
//! rename), so an interrupted run never leaves a half-written output over a good one.

use std::path::Path;

use image::{ImageBuffer, Luma, Rgb, RgbImage};

pub mod plots;

use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::train::checkpoint::write_atomically;

fn encode_png<P, C>(path: &Path, image: &ImageBuffer<P, C>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    write_atomically(path, &png_bytes(image)?)
}

/// Encodes `image` as PNG bytes.
pub(crate) fn png_bytes<P, C>(image: &ImageBuffer<P, C>) -> Result<Vec<u8>>
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
        .map_err(|e| Error::Config(format!("could not encode a PNG: {e}")))?;
    Ok(bytes)
}

fn plot_error(e: String) -> Error {
    Error::Config(format!("could not draw a figure: {e}"))
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
/// Pixel for pixel the image's size, so it lies over the image and the probability map.
pub fn write_overlay_png(
    path: &Path,
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<()> {
    encode_png(path, &overlay(image, prob, threshold, truth))
}

/// The overlay of [`write_overlay_png`], made to be looked at: a small image is enlarged
/// (nearest neighbour, a whole factor, to at least 384 pixels on its longer side), and a
/// legend below it says which colour means what.
pub fn write_overlay_figure_png(
    path: &Path,
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<()> {
    write_atomically(path, &overlay_png(image, prob, threshold, truth)?)
}

/// The figure of [`write_overlay_figure_png`] as PNG bytes.
pub fn overlay_png(
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<Vec<u8>> {
    png_bytes(&overlay_figure(image, prob, threshold, truth)?)
}

/// The figure of [`write_overlay_figure_png`] as PNG bytes, centred on a white square
/// (the BioImage Model Zoo asks for covers of aspect ratio 1:1 or 2:1).
pub fn square_overlay_png(
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<Vec<u8>> {
    let figure = overlay_figure(image, prob, threshold, truth)?;
    let side = figure.width().max(figure.height());
    let mut square = RgbImage::from_pixel(side, side, Rgb([255, 255, 255]));
    let (x, y) = ((side - figure.width()) / 2, (side - figure.height()) / 2);
    image::imageops::overlay(&mut square, &figure, i64::from(x), i64::from(y));
    png_bytes(&square)
}

fn overlay_figure(
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> Result<RgbImage> {
    let small = overlay(image, prob, threshold, truth);
    let scale = 384u32
        .div_ceil(small.width().max(small.height()))
        .clamp(1, 8);
    let big = image::imageops::resize(
        &small,
        small.width() * scale,
        small.height() * scale,
        image::imageops::FilterType::Nearest,
    );
    let mut entries = vec![
        (BACKGROUND_TINT, "predicted background".to_string()),
        (
            [200, 200, 200],
            format!("predicted foreground (p > {threshold})"),
        ),
    ];
    if truth.is_some() {
        entries.push((TRUTH_EDGE, "true foreground's outline".to_string()));
    }
    plots::with_legend(&big, &entries).map_err(plot_error)
}

/// Predicted background: the gray value mixed half and half with red.
const BACKGROUND_TINT: [u8; 3] = [191, 64, 64];
const TRUTH_EDGE: [u8; 3] = [0, 220, 0];

fn overlay(
    image: &GrayImage,
    prob: &Grid<f32>,
    threshold: f32,
    truth: Option<&Grid<u8>>,
) -> RgbImage {
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
                *pixel = Rgb(TRUTH_EDGE);
            }
        }
    }
    out
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

/// One logged training step: the loss, the learning rate it was taken with, and the
/// validation made after it, if one was.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLog {
    pub step: u64,
    pub loss: f32,
    /// The learning rate of the step, warm-up included (NaN where unknown: runs logged
    /// before metrics.csv existed).
    pub lr: f32,
    pub val_pixel_error: Option<f64>,
    pub val_iou: Option<f64>,
}

impl StepLog {
    /// A step of which only the loss is known.
    pub fn loss_only(step: u64, loss: f32) -> StepLog {
        StepLog {
            step,
            loss,
            lr: f32::NAN,
            val_pixel_error: None,
            val_iou: None,
        }
    }
}

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str = "step,loss,lr,val_pixel_error,val_iou";

/// The training curves of `losses`: `path` (PNG), the same figure as SVG beside it, and the
/// numbers in `loss.csv` (`step,loss`).
pub fn write_loss_plot(path: &Path, losses: &[(u64, f32)]) -> Result<()> {
    let log: Vec<StepLog> = losses
        .iter()
        .map(|&(step, loss)| StepLog::loss_only(step, loss))
        .collect();
    write_training_plots(path, &log)?;
    write_loss_csv(&path.with_extension("csv"), losses)
}

/// `step,loss`, one line per step (what a resumed run reads back).
pub fn write_loss_csv(path: &Path, losses: &[(u64, f32)]) -> Result<()> {
    let csv: String = std::iter::once("step,loss\n".to_string())
        .chain(losses.iter().map(|(s, l)| format!("{s},{l}\n")))
        .collect();
    write_atomically(path, csv.as_bytes())
}

/// The training curves of `log` as a PNG at `path` and an SVG beside it: the loss (raw and
/// its moving average) against the step, on a log scale where it spans a decade or more;
/// the learning-rate schedule; and the validation figures when there are any.
pub fn write_training_plots(path: &Path, log: &[StepLog]) -> Result<()> {
    let (width, height) = plots::TRAINING_SIZE;
    let figure = plots::training_png(log, width, height).map_err(plot_error)?;
    encode_png(path, &figure)?;
    let svg = plots::training_svg(log, width, height).map_err(plot_error)?;
    write_atomically(&path.with_extension("svg"), svg.as_bytes())
}

/// Every logged value, one line per step: `step,loss,lr,val_pixel_error,val_iou` (empty
/// where a step has no validation or its rate is unknown).
pub fn write_metrics_csv(path: &Path, log: &[StepLog]) -> Result<()> {
    let optional = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
    let csv: String = std::iter::once(format!("{METRICS_HEADER}\n"))
        .chain(log.iter().map(|r| {
            let lr = if r.lr.is_nan() {
                String::new()
            } else {
                r.lr.to_string()
            };
            format!(
                "{},{},{lr},{},{}\n",
                r.step,
                r.loss,
                optional(r.val_pixel_error),
                optional(r.val_iou)
            )
        }))
        .collect();
    write_atomically(path, csv.as_bytes())
}

/// Reads a `metrics.csv` written by [`write_metrics_csv`] (an unreadable line is skipped).
pub fn read_metrics_csv(text: &str) -> Vec<StepLog> {
    let field = |s: &str| s.parse::<f64>().ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 5 {
                return None;
            }
            Some(StepLog {
                step: f[0].parse().ok()?,
                loss: f[1].parse().ok()?,
                lr: f[2].parse().unwrap_or(f32::NAN),
                val_pixel_error: field(f[3]),
                val_iou: field(f[4]),
            })
        })
        .collect()
}
