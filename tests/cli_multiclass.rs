//! K classes and C channels through the `unet` binary: train, predict and evaluate a
//! three-class RGB synthetic set (class masks stored as gray levels), and the one-line
//! errors of the new bad inputs (a label out of range, K = 1, the wrong channel count).

mod common;

use std::path::Path;

use common::cli::{fails, ok, s, scratch, unet};
use unet_wgpu::data::{synthetic_rgb_dataset, write_image_png, Dataset, Grid, RgbStain};
use unet_wgpu::train::checkpoint::read_data_spec;

/// Writes `classes` as an 8-bit gray PNG of `values[class]`.
fn write_class_png(path: &Path, classes: &Grid<u8>, values: &[u8]) {
    let pixels = classes.data.iter().map(|&c| values[c as usize]).collect();
    image::GrayImage::from_raw(classes.width as u32, classes.height as u32, pixels)
        .unwrap()
        .save(path)
        .unwrap();
}

/// A three-class colour dataset on disk: RGB images, masks of 0 / 128 / 255.
fn write_rgb_set(dir: &Path, data: &Dataset) {
    for sub in ["images", "labels"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for sample in data.samples() {
        let file = format!("{}.png", sample.name);
        write_image_png(&dir.join("images").join(&file), &sample.image).unwrap();
        write_class_png(
            &dir.join("labels").join(&file),
            &sample.classes,
            &[0, 128, 255],
        );
    }
}

#[test]
fn three_class_rgb_train_predict_evaluate() {
    let dir = scratch("multiclass");
    let data_dir = dir.join("data");
    let data = synthetic_rgb_dataset(3, 96, 96, 4, RgbStain::HAndE, &Default::default()).unwrap();
    write_rgb_set(&data_dir, &data);
    let run = dir.join("run");
    let values = ["--classes", "3", "--class-values", "0,128,255"];
    let mut train = vec![
        "train",
        "--data",
        s(&data_dir),
        "--holdout",
        "1",
        "--tile",
        "124",
        "--steps",
        "2",
        "--normalize",
        "percentile",
        "--out",
        s(&run),
    ];
    train.extend_from_slice(&values);
    ok(&train);
    let checkpoint = run.join("checkpoint.safetensors");
    let spec = read_data_spec(&checkpoint).unwrap();
    assert_eq!((spec.channels, spec.classes), (3, 3));
    assert_eq!(spec.normalize.to_string(), "percentile:1,99.8");
    assert!(
        run.join("overlay_002.png").is_file(),
        "a K-class validation overlay"
    );

    let pred = dir.join("pred");
    let printed = ok(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&data_dir.join("images")),
        "--out",
        s(&pred),
    ]);
    // Through the batch path: the outputs of each input on one line, a manifest.
    assert!(
        printed.contains("000_{prob_0,prob_1,prob_2,class,overlay}.png"),
        "{printed}"
    );
    assert!(pred.join("manifest-shard-0-of-1.json").is_file());
    for name in ["class", "prob_0", "prob_1", "prob_2", "overlay"] {
        assert!(pred.join(format!("001_{name}.png")).is_file(), "{name}");
    }
    let class_map = image::open(pred.join("001_class.png")).unwrap().to_luma8();
    assert_eq!(class_map.dimensions(), (96, 96));
    assert!(class_map.pixels().all(|p| p.0[0] < 3));

    let json = dir.join("eval.json");
    let labels = data_dir.join("labels");
    let mut eval = vec![
        "eval",
        "--pred",
        s(&pred),
        "--labels",
        s(&labels),
        "--json",
        s(&json),
    ];
    eval.extend_from_slice(&values);
    let table = ok(&eval);
    assert!(
        table.contains("mean foreground IoU") && table.contains("confusion"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["classes"]["per_class"].as_array().unwrap().len(), 3);
    let confusion = report["classes"]["confusion"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(
        total,
        3 * 96 * 96,
        "every pixel of the three images counted once"
    );
    assert!(report["binary"]["best_mean"]["iou"]["value"].is_number());

    // A gray image into a network of three input channels: a clear error.
    let gray = dir.join("gray.png");
    image::GrayImage::from_pixel(96, 96, image::Luma([90]))
        .save(&gray)
        .unwrap();
    let err = fails(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&gray),
        "--out",
        s(&dir.join("pred-gray")),
    ]);
    assert!(
        err.contains("1 channel(s) but the network takes 3"),
        "{err}"
    );
}

#[test]
fn new_bad_inputs_fail_with_one_line() {
    let dir = scratch("multiclass-errors");
    let data_dir = dir.join("data");
    let data =
        synthetic_rgb_dataset(1, 48, 48, 5, RgbStain::Fluorescence, &Default::default()).unwrap();
    write_rgb_set(&data_dir, &data);
    let run = dir.join("run");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", s(&data_dir), "--steps", "1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", s(&run)]);
        unet(&args)
    };
    // The masks hold 0, 128, 255: as class indices of 3 classes, 255 (first met) is out
    // of range.
    let err = common::cli::clean_failure(&train(&["--classes", "3"]));
    for part in [
        "labels/000.png",
        "label value 255",
        "0, 128, 255",
        "--class-values",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // The K-class weight map of one of those masks.
    let map = dir.join("weights.png");
    let npy = dir.join("weights.npy");
    let label = data_dir.join("labels").join("000.png");
    let printed = ok(&[
        "weightmap",
        s(&label),
        "--out",
        s(&map),
        "--npy",
        s(&npy),
        "--classes",
        "3",
        "--class-values",
        "0,128,255",
    ]);
    assert!(printed.contains("48x48"), "{printed}");
    let (shape, values) = unet_wgpu::data::parse_npy(&std::fs::read(&npy).unwrap()).unwrap();
    assert_eq!(shape, vec![48, 48]);
    // The CLI reads the mask as training does: components of each class as objects.
    let classes = &data.samples()[0].classes;
    let objects = unet_wgpu::data::labels::class_objects(classes);
    let want = unet_wgpu::data::class_weight_map(&objects, classes, 3, true, &Default::default());
    assert_eq!(values, want.data);
    let err = common::cli::clean_failure(&train(&["--classes", "1"]));
    assert!(err.contains("--classes 1 must be between 2"), "{err}");
    let err = common::cli::clean_failure(&train(&["--classes", "3", "--class-values", "0,255"]));
    assert!(err.contains("one value per class"), "{err}");
}

#[test]
fn the_demo_runs_three_colour_classes() {
    let dir = scratch("multiclass-demo");
    let printed = ok(&[
        "demo",
        "--classes",
        "3",
        "--channels",
        "3",
        "--steps",
        "2",
        "--out",
        s(&dir),
    ]);
    assert!(
        printed.contains("mean foreground IoU") && printed.contains("warping error"),
        "{printed}"
    );
    assert!(dir.join("overlay_000.png").is_file());
    let spec = read_data_spec(&dir.join("checkpoint.safetensors")).unwrap();
    assert_eq!(
        spec.normalize.to_string(),
        "z-score",
        "the colour demo's default"
    );
    let err = fails(&["demo", "--classes", "3", "--out", s(&dir)]);
    assert!(err.contains("--classes 3 --channels 3"), "{err}");
}
