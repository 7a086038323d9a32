//! Files written for people: the loss curve and its CSV, probability and mask PNGs.

use unet_wgpu::data::Grid;
use unet_wgpu::report::{write_loss_plot, write_mask_png, write_probability_png};

#[test]
fn loss_plot_writes_a_picture_and_the_numbers() {
    let dir = std::env::temp_dir().join(format!("unet-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let losses: Vec<(u64, f32)> = (0..100).map(|s| (s, 2.0 / (1.0 + s as f32))).collect();
    let png = dir.join("loss.png");
    write_loss_plot(&png, &losses).unwrap();
    let picture = image::open(&png).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (640, 360));
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
