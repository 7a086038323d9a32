//! Figures with text, drawn with `plotters`: the training curves (PNG and SVG) and the
//! legend under an overlay.
//!
//! Text needs a font. plotters' default font path asks the system (fontconfig and
//! FreeType, system packages); here its pure-Rust `ab_glyph` renderer draws with DejaVu
//! Sans, bundled in `assets/fonts/` (the Bitstream Vera licence, permissive: see
//! `assets/fonts/LICENSE-DejaVu.txt`), so the figures look the same on every machine and
//! nothing outside the crate is needed. The SVG names the font family and keeps the text
//! as text, so its labels can be searched and edited.

use std::ops::Range;
use std::sync::Once;

use image::RgbImage;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::StepLog;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// The training figure's size in pixels.
pub const TRAINING_SIZE: (u32, u32) = (960, 720);

/// Makes the bundled font plotters' sans-serif (once per process).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled DejaVu Sans is a valid font"));
    });
}

const RAW: RGBColor = RGBColor(150, 175, 230);
const SMOOTH: RGBColor = RGBColor(20, 60, 170);
const RATE: RGBColor = RGBColor(200, 90, 20);
const PIXEL_ERROR: RGBColor = RGBColor(190, 30, 30);
const IOU: RGBColor = RGBColor(20, 140, 60);

/// The training curves drawn on an RGB image of `width` x `height`.
pub fn training_png(log: &[StepLog], width: u32, height: u32) -> Result<RgbImage, String> {
    register_font();
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw_training(&root, log).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(RgbImage::from_raw(width, height, buffer).expect("the buffer has the image's size"))
}

/// The training curves as an SVG document.
pub fn training_svg(log: &[StepLog], width: u32, height: u32) -> Result<String, String> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        draw_training(&root, log).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// The loss on the top 60 %, the learning rate and the validation figures side by side
/// below it.
fn draw_training<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    log: &[StepLog],
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let height = root.dim_in_pixel().1;
    let (top, bottom) = root.split_vertically(height * 3 / 5);
    let (left, right) = bottom.split_horizontally(bottom.dim_in_pixel().0 / 2);
    let steps = step_range(log);

    let losses: Vec<(f64, f64)> = log
        .iter()
        .filter(|r| r.loss.is_finite() && r.loss > 0.0)
        .map(|r| (r.step as f64, f64::from(r.loss)))
        .collect();
    let smooth = moving_average(&losses, (losses.len() / 20).clamp(5, 100));
    let (lo, hi) = bounds(losses.iter().map(|p| p.1));
    // A log scale where the loss spans a decade or more, else a linear one.
    if hi / lo >= 10.0 {
        let y = (lo * 0.9..hi * 1.1).log_scale();
        draw_loss(&top, steps.clone(), y, &losses, &smooth, "loss (log scale)")?;
    } else {
        let pad = (hi - lo).max(1e-6) * 0.1;
        draw_loss(
            &top,
            steps.clone(),
            (lo - pad).max(0.0)..hi + pad,
            &losses,
            &smooth,
            "loss",
        )?;
    }

    let rates: Vec<(f64, f64)> = log
        .iter()
        .filter(|r| r.lr.is_finite())
        .map(|r| (r.step as f64, f64::from(r.lr)))
        .collect();
    draw_series_panel(
        &left,
        "learning rate",
        "rate",
        steps.clone(),
        &[("learning rate", RATE, rates)],
        "the rate is not logged for this run",
    )?;
    let pick = |f: fn(&StepLog) -> Option<f64>| -> Vec<(f64, f64)> {
        log.iter()
            .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
            .collect()
    };
    draw_series_panel(
        &right,
        "validation (threshold 0.5)",
        "value",
        steps,
        &[
            ("pixel error", PIXEL_ERROR, pick(|r| r.val_pixel_error)),
            ("foreground IoU", IOU, pick(|r| r.val_iou)),
        ],
        "no validation set (--val or --holdout)",
    )?;
    Ok(())
}

fn step_range(log: &[StepLog]) -> Range<f64> {
    let first = log.first().map_or(0.0, |r| r.step as f64);
    let last = log.last().map_or(1.0, |r| r.step as f64);
    first..last.max(first + 1.0)
}

/// The smallest and largest of `values` (1 and 10 when there are none).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    match lo.is_finite() {
        true => (lo, hi.max(lo * 1.0001)),
        false => (1.0, 10.0),
    }
}

fn draw_loss<DB: DrawingBackend, Y>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    steps: Range<f64>,
    y: Y,
    raw: &[(f64, f64)],
    smooth: &[(f64, f64)],
    y_label: &str,
) -> DrawResult<DB>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption("training loss", (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(steps, y)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .x_label_formatter(&|step| format!("{step:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()?;
    chart
        .draw_series(LineSeries::new(raw.iter().copied(), &RAW))?
        .label("loss per step")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RAW));
    chart
        .draw_series(LineSeries::new(
            smooth.iter().copied(),
            SMOOTH.stroke_width(2),
        ))?
        .label("moving average")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], SMOOTH.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A named curve of (step, value) points in a colour.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// A panel of one or more series against the step, or a note when none has a point.
fn draw_series_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    steps: Range<f64>,
    series: &[Series],
    empty_note: &str,
) -> DrawResult<DB> {
    let (lo, hi) = bounds(series.iter().flat_map(|s| s.2.iter().map(|p| p.1)));
    let pad = (hi - lo).max(hi.abs() * 0.05).max(1e-9) * 0.1;
    // From zero for values that are never negative (rates, errors, IoU).
    let floor = if lo >= 0.0 { 0.0 } else { lo - pad };
    let y: Range<f64> = floor..hi + pad;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d::<RangedCoordf64, RangedCoordf64>(steps.into(), y.into())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .x_label_formatter(&|step| format!("{step:.0}"))
        .y_label_formatter(&|&v| tick(v))
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .x_labels(6)
        .y_labels(6)
        .draw()?;
    if series.iter().all(|s| s.2.is_empty()) {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            empty_note.to_string(),
            (w as i32 / 6, h as i32 / 2),
            (FAMILY, 15).into_font().color(&BLACK.mix(0.6)),
        ))?;
        return Ok(());
    }
    for (name, colour, points) in series.iter().filter(|s| !s.2.is_empty()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        if points.len() < 50 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A tick label: plain for moderate values (trailing zeros dropped), scientific for tiny or
/// huge ones (learning rates).
fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if (0.01..1000.0).contains(&v.abs()) {
        let text = format!("{v:.3}");
        return text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{v:.1e}")
}

/// The mean of each point's window of `window` points ending at it.
pub fn moving_average(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
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

/// `image` with a legend below it: one line per entry, a colour swatch and its meaning.
pub fn with_legend(image: &RgbImage, entries: &[([u8; 3], String)]) -> Result<RgbImage, String> {
    register_font();
    const LINE: u32 = 24;
    let width = image.width().max(320);
    let height = image.height() + LINE * entries.len() as u32 + 10;
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    image::imageops::overlay(&mut canvas, image, 0, 0);
    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        for (i, (colour, text)) in entries.iter().enumerate() {
            let y = (image.height() + 6 + LINE * i as u32) as i32;
            let swatch = RGBColor(colour[0], colour[1], colour[2]);
            root.draw(&Rectangle::new([(8, y + 2), (26, y + 18)], swatch.filled()))
                .map_err(|e| e.to_string())?;
            root.draw(&Rectangle::new([(8, y + 2), (26, y + 18)], BLACK))
                .map_err(|e| e.to_string())?;
            root.draw(&Text::new(
                text.clone(),
                (34, y + 2),
                (FAMILY, 16).into_font().color(&BLACK),
            ))
            .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(RgbImage::from_raw(width, height, buffer).expect("the buffer has the image's size"))
}
