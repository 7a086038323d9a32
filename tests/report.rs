//! Files written for people: the training curves (with axes, ticks and labels drawn) and
//! their CSVs, overlays with a legend, probability and mask PNGs.

use unet_wgpu::data::Grid;
use unet_wgpu::report::plots::TRAINING_SIZE;
use unet_wgpu::report::{
    read_metrics_csv, write_loss_plot, write_mask_png, write_metrics_csv, write_overlay_figure_png,
    write_probability_png, write_training_plots, StepLog,
};

#[test]
fn loss_plot_writes_a_picture_and_the_numbers() {
    let dir = std::env::temp_dir().join(format!("unet-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let losses: Vec<(u64, f32)> = (0..100).map(|s| (s, 2.0 / (1.0 + s as f32))).collect();
    let png = dir.join("loss.png");
    write_loss_plot(&png, &losses).unwrap();
    let picture = image::open(&png).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), TRAINING_SIZE);
    let drawn = picture.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(drawn > 500, "only {drawn} pixels drawn");
    let csv = std::fs::read_to_string(dir.join("loss.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("step,loss"));
    assert_eq!(csv.lines().nth(2), Some("1,1"));
    assert_eq!(csv.lines().count(), 101);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn probability_and_mask_pngs_hold_the_values() {
    let dir = std::env::temp_dir().join(format!("unet-report-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let map = Grid {
        width: 3,
        height: 1,
        data: vec![0.0f32, 0.5, 1.0],
    };
    write_probability_png(&dir.join("p.png"), &map).unwrap();
    let p = image::open(dir.join("p.png")).unwrap().to_luma16();
    assert_eq!(p.as_raw(), &vec![0u16, 32768, 65535]);
    write_mask_png(&dir.join("m.png"), &map, 0.5).unwrap();
    let m = image::open(dir.join("m.png")).unwrap().to_luma8();
    assert_eq!(
        m.as_raw(),
        &vec![0u8, 0, 255],
        "strictly above the threshold is foreground"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run's log: a loss falling over two decades, a warm-up then a step in the rate, and a
/// validation every 50 steps.
fn run_log() -> Vec<StepLog> {
    (0..300u64)
        .map(|s| StepLog {
            step: s,
            loss: 2.0 / (1.0 + s as f32) + 0.01,
            lr: if s < 50 {
                0.001 * (s + 1) as f32 / 50.0
            } else if s < 200 {
                0.001
            } else {
                0.0003
            },
            val_pixel_error: (s % 50 == 49).then(|| 0.3 - s as f64 / 2000.0),
            val_iou: (s % 50 == 49).then(|| 0.5 + s as f64 / 1000.0),
        })
        .collect()
}

#[test]
fn the_training_figure_has_axis_text_ticks_and_every_panel() {
    let dir = std::env::temp_dir().join(format!("unet-report-axes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("loss.png");
    write_training_plots(&png, &run_log()).unwrap();
    // The SVG keeps the text as text: titles, axis descriptions and tick labels.
    let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>')?.1.split("</text>").next())
        .map(str::trim)
        .collect();
    for text in [
        "training loss",
        "step",
        "loss (log scale)",
        "learning rate",
        "validation (threshold 0.5)",
        "moving average",
        "pixel error",
        "foreground IoU",
        "100",
        "200",
    ] {
        assert!(
            texts.contains(&text),
            "the SVG has no text {text:?} in {texts:?}"
        );
    }
    // The PNG has text pixels (dark, not a curve's colour) in the left and bottom margins of
    // the loss panel, where the tick labels and axis descriptions go.
    let picture = image::open(&png).unwrap().to_rgb8();
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1)
            .flat_map(|x| (y0..y1).map(move |y| (x, y)))
            .filter(|&(x, y)| picture.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count()
    };
    let (w, h) = TRAINING_SIZE;
    let top = h * 3 / 5;
    assert!(
        dark(0, 70, 40, top - 50) > 100,
        "no y tick labels or axis text"
    );
    assert!(
        dark(80, w - 20, top - 45, top) > 100,
        "no x tick labels or axis text"
    );
    assert!(dark(w / 3, 2 * w / 3, 0, 35) > 50, "no title");
    if std::env::var_os("KEEP_FIGURE").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn metrics_csv_holds_every_logged_value_and_reads_back() {
    let dir = std::env::temp_dir().join(format!("unet-report-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = run_log();
    let path = dir.join("metrics.csv");
    write_metrics_csv(&path, &log).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().next(),
        Some("step,loss,lr,val_pixel_error,val_iou")
    );
    assert_eq!(text.lines().count(), 1 + log.len());
    assert!(
        text.lines().nth(1).unwrap().ends_with(",,"),
        "no validation at step 0"
    );
    assert_eq!(read_metrics_csv(&text), log);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_small_overlay_is_enlarged_and_has_a_legend() {
    let dir = std::env::temp_dir().join(format!("unet-report-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = (48, 32);
    let image = Grid {
        width: w,
        height: h,
        data: (0..w * h).map(|i| (i % w) as f32 / w as f32).collect(),
    };
    let prob = Grid {
        width: w,
        height: h,
        data: (0..w * h)
            .map(|i| if i % w < w / 2 { 0.9 } else { 0.1 })
            .collect(),
    };
    let truth = Grid {
        width: w,
        height: h,
        data: (0..w * h).map(|i| u8::from(i % w < w / 3)).collect(),
    };
    let path = dir.join("overlay.png");
    write_overlay_figure_png(&path, &image, &prob, 0.5, Some(&truth)).unwrap();
    let figure = image::open(&path).unwrap().to_rgb8();
    // 48 px wide -> 8x (the largest factor), and three legend lines below the image.
    assert_eq!(figure.width(), 8 * w as u32);
    assert!(
        figure.height() > 8 * h as u32 + 3 * 20,
        "{:?}",
        figure.dimensions()
    );
    let legend_text = (0..figure.width())
        .flat_map(|x| (8 * h as u32..figure.height()).map(move |y| (x, y)))
        .filter(|&(x, y)| x > 30 && figure.get_pixel(x, y).0.iter().all(|&c| c < 80))
        .count();
    assert!(
        legend_text > 200,
        "no legend text ({legend_text} dark pixels)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
