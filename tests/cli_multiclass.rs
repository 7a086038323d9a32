//! K classes and C channels through the `unet` binary: train, predict and evaluate a
//! three-class RGB synthetic set (class masks stored as gray levels; predictions and
//! labels as PNG and as TIFF), resume it (the data flags against the checkpoint's),
//! evaluate with unlabelled pixels (hand-made cases), train with the issue's `--labels
//! instance`, and the one-line errors of the new bad inputs (a label out of range, K = 1,
//! the wrong channel count, data and weight-map flags a checkpoint was not trained with).

mod common;

use std::path::Path;

use common::cli::{fails, ok, s, scratch, unet};
use unet_wgpu::data::{
    synthetic_rgb_dataset, write_image_png, ClassBalance, Dataset, Grid, MaskFormat, RgbStain,
};
use unet_wgpu::train::checkpoint::read_data_spec;

/// Writes `classes` as an 8-bit gray PNG of `values[class]`.
fn write_class_png(path: &Path, classes: &Grid<u8>, values: &[u8]) {
    let pixels = classes.data.iter().map(|&c| values[c as usize]).collect();
    image::GrayImage::from_raw(classes.width as u32, classes.height as u32, pixels)
        .unwrap()
        .save(path)
        .unwrap();
}

/// `unet train` on the dataset folder `data` into `run` for `steps` steps, at tile 124
/// without validation, with `extra` flags.
fn train_on(data: &Path, run: &Path, steps: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--data",
        s(data),
        "--holdout",
        "0",
        "--tile",
        "124",
        "--steps",
        steps,
        "--out",
        s(run),
    ];
    args.extend_from_slice(extra);
    unet(&args)
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
    let data_flags = ["--data", s(&data_dir), "--holdout", "1", "--tile", "124"];
    let mut train = vec!["train"];
    train.extend_from_slice(&data_flags);
    train.extend_from_slice(&[
        "--steps",
        "2",
        "--normalize",
        "percentile",
        "--w0",
        "8",
        "--out",
        s(&run),
    ]);
    train.extend_from_slice(&values);
    ok(&train);
    let checkpoint = run.join("checkpoint.safetensors");
    let spec = read_data_spec(&checkpoint).unwrap();
    assert_eq!((spec.channels, spec.classes), (3, 3));
    assert_eq!(spec.normalize.to_string(), "percentile:1,99.8");
    // The weight map is stored too: --w0 as given, sigma and the balance the defaults.
    let map = spec
        .weight_map
        .expect("the checkpoint holds its weight map");
    assert_eq!(
        (map.w0, map.sigma, map.balance),
        (8.0, 5.0, ClassBalance::Total)
    );
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

    // The same predictions as TIFF, and the labels as 16-bit TIFFs: the same report.
    let pred_tif = dir.join("pred-tif");
    ok(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&data_dir.join("images")),
        "--out",
        s(&pred_tif),
        "--format",
        "tiff",
    ]);
    assert!(pred_tif.join("001_class.tif").is_file() && pred_tif.join("001_prob.tif").is_file());
    let labels_tif = dir.join("labels-tif");
    std::fs::create_dir_all(&labels_tif).unwrap();
    for sample in data.samples() {
        let file = std::fs::File::create(labels_tif.join(format!("{}.tif", sample.name))).unwrap();
        let values: Vec<u16> = sample
            .classes
            .data
            .iter()
            .map(|&c| [0, 128, 255][c as usize])
            .collect();
        tiff::encoder::TiffEncoder::new(file)
            .unwrap()
            .write_image::<tiff::encoder::colortype::Gray16>(96, 96, &values)
            .unwrap();
    }
    let json_tif = dir.join("eval-tif.json");
    let mut eval_tif = vec![
        "eval",
        "--pred",
        s(&pred_tif),
        "--labels",
        s(&labels_tif),
        "--json",
        s(&json_tif),
    ];
    eval_tif.extend_from_slice(&values);
    assert_eq!(ok(&eval_tif), table);
    let report_tif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_tif).unwrap()).unwrap();
    assert_eq!(
        report_tif, report,
        "TIFF predictions and labels evaluate the same"
    );

    // Resuming checks the data flags against the checkpoint's; flags left out take its.
    let resume = |steps: &str, extra: &[&str]| {
        let mut args = vec!["train", "--resume", s(&run)];
        args.extend_from_slice(&data_flags);
        args.extend_from_slice(&["--steps", steps]);
        args.extend_from_slice(extra);
        unet(&args)
    };
    for (extra, wanted) in [
        (
            &["--normalize", "z-score"][..],
            "was trained with --normalize percentile:1,99.8, not --normalize z-score: pass \
             --normalize percentile:1,99.8 (or leave it out) to resume it",
        ),
        (
            &["--classes", "4"],
            "was trained with --classes 3, not --classes 4",
        ),
        (
            &["--class-values", "0,127,255"],
            "was trained with --class-values 0,128,255, not --class-values 0,127,255",
        ),
        (
            &["--ignore-index", "7"],
            "was trained without --ignore-index, not --ignore-index 7: leave --ignore-index out",
        ),
        (
            &["--channels", "1"],
            "was trained with --channels auto, not --channels 1",
        ),
        (&["--w0", "10"], "was trained with --w0 8, not --w0 10"),
        (
            &["--sigma", "3"],
            "was trained with --sigma 5, not --sigma 3",
        ),
        (
            &["--balance", "paper"],
            "was trained with --balance total, not --balance paper: pass --balance total",
        ),
    ] {
        let err = common::cli::clean_failure(&resume("3", extra));
        assert!(err.contains(wanted), "{extra:?}: {err}");
    }
    // The same flags again, or none at all: it resumes, reading and weighting the data as
    // before (the stored spec, weight map included, is unchanged).
    let mut same = vec![
        "--normalize",
        "percentile",
        "--w0",
        "8",
        "--balance",
        "total",
    ];
    same.extend_from_slice(&values);
    for (steps, extra) in [("3", &same[..]), ("4", &[][..])] {
        let out = resume(steps, extra);
        assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    }
    assert_eq!(read_data_spec(&checkpoint).unwrap(), spec);

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
    // The CLI reads the mask as training does: components of each class as objects, and
    // balances the classes after the border term (its default `--balance total`).
    let classes = &data.samples()[0].classes;
    let objects = unet_wgpu::data::labels::class_objects(classes);
    let config = unet_wgpu::data::WeightMapConfig {
        balance: unet_wgpu::data::ClassBalance::Total,
        ..Default::default()
    };
    let want = unet_wgpu::data::class_weight_map(&objects, classes, 3, true, &config);
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

/// Writes 8-bit gray `values` (row-major, `width` wide) as a PNG.
fn write_gray(path: &Path, width: u32, values: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let height = values.len() as u32 / width;
    image::GrayImage::from_raw(width, height, values.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn eval_leaves_unlabelled_pixels_out_for_two_and_k_classes() {
    let dir = scratch("eval-ignore");
    // 6x4: cells (255) in columns 0..2, background (0) in 4..5, column 3 unlabelled
    // (128). The prediction (a 0/1 map, so every threshold agrees) says cell in columns
    // 0..3 and at (5, 0): column 3 is not compared, (5, 0) is the one labelled mistake.
    let (w, h) = (6, 4);
    let label: Vec<u8> = (0..w * h)
        .map(|i| match i % w {
            0..=2 => 255,
            3 => 128,
            _ => 0,
        })
        .collect();
    let prob: Vec<u8> = (0..w * h)
        .map(|i| if i % w <= 3 || i == 5 { 255 } else { 0 })
        .collect();
    write_gray(&dir.join("labels/a.png"), w as u32, &label);
    write_gray(&dir.join("pred/a_prob.png"), w as u32, &prob);
    let json = dir.join("eval.json");
    let eval = |pred: &str, labels: &str, extra: &[&str]| {
        let (pred, labels) = (dir.join(pred), dir.join(labels));
        let mut args = ["eval", "--pred", s(&pred), "--labels", s(&labels)]
            .map(String::from)
            .to_vec();
        args.extend(
            ["--json", s(&json)]
                .iter()
                .chain(extra)
                .map(|a| a.to_string()),
        );
        args
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let printed = run(eval("pred", "labels", &["--ignore-index", "128"]));
    assert!(
        printed.contains("4 unlabelled pixel(s) (--ignore-index 128) left out"),
        "{printed}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let best = &report["best_mean"];
    let value = |metric: &str| best[metric]["value"].as_f64().unwrap();
    // 1 wrong of 20 labelled pixels; P = 12 cells + (5, 0), G = the 12 cells.
    assert!((value("pixel_error") - 1.0 / 20.0).abs() < 1e-12, "{best}");
    assert!((value("iou") - 12.0 / 13.0).abs() < 1e-12, "{best}");
    // Without --ignore-index, 128 is neither value of a binary mask: a one-line error.
    let args = eval("pred", "labels", &[]);
    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("a.png"), "{err}");

    // K = 3: class masks 0/1/2 with 9 unlabelled, class maps as predict writes them.
    // Truth: row 0 class 1, row 1 class 2, rows 2..3 class 0, column 0 unlabelled.
    // Prediction: right but for (1, 1) (class 1 for 2) and column 0 (all class 2).
    let truth: Vec<u8> = (0..w * h)
        .map(|i| match (i % w, i / w) {
            (0, _) => 9,
            (_, 0) => 1,
            (_, 1) => 2,
            _ => 0,
        })
        .collect();
    let pred: Vec<u8> = (0..w * h)
        .map(|i| match (i % w, i / w) {
            (0, _) => 2,
            (1, 1) => 1,
            (_, 0) => 1,
            (_, 1) => 2,
            _ => 0,
        })
        .collect();
    write_gray(&dir.join("labels-k/a.png"), w as u32, &truth);
    write_gray(&dir.join("pred-k/a_class.png"), w as u32, &pred);
    let printed = run(eval(
        "pred-k",
        "labels-k",
        &["--classes", "3", "--ignore-index", "9"],
    ));
    assert!(printed.contains("4 unlabelled pixel(s)"), "{printed}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // 20 labelled pixels: 5 of class 1 (all right), 5 of class 2 (one taken for 1), 10
    // of class 0.
    let confusion = &report["classes"]["confusion"];
    assert_eq!(
        confusion,
        &serde_json::json!([[10, 0, 0], [0, 5, 0], [0, 1, 4]])
    );
    // Class 1 as foreground: 1 wrong of 20; P = 6 pixels, G = 5, IoU 5/6.
    let best = &report["binary"]["best_mean"];
    let value = |metric: &str| best[metric]["value"].as_f64().unwrap();
    assert!((value("pixel_error") - 1.0 / 20.0).abs() < 1e-12, "{best}");
    assert!((value("iou") - 5.0 / 6.0).abs() < 1e-12, "{best}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_takes_the_issues_labels_instance_spelling() {
    let dir = scratch("labels-instance");
    // Two images with three touching instances each (ids 1..3), as 8-bit masks.
    for i in 0..2u8 {
        let (w, h) = (48u32, 48u32);
        let mask = image::GrayImage::from_fn(w, h, |x, y| {
            let id = match (x, y) {
                (8..=23, 8..=39) => 1,
                (24..=39, 8..=23) => 2,
                (24..=39, 24..=39) => 3,
                _ => 0,
            };
            image::Luma([id])
        });
        let image = image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([mask.get_pixel(x, y).0[0] * 60 + (x * 3 + y + u32::from(i)) as u8 % 20])
        });
        for (sub, picture) in [("images", &image), ("labels", &mask)] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            picture
                .save(dir.join(sub).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let run = dir.join("run");
    let train = |extra: &[&str]| train_on(&dir, &run, "1", extra);
    // Read as binary masks (the default), ids 1..3 are an error.
    let err = common::cli::clean_failure(&train(&[]));
    assert!(err.contains("0.png") || err.contains("1.png"), "{err}");
    // --labels instance --classes 3, as the issue spells it: background, interior,
    // boundary, exactly as --mask instance --classes 3.
    let out = train(&["--labels", "instance", "--classes", "3"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    let spec = read_data_spec(&run.join("checkpoint.safetensors")).unwrap();
    assert_eq!(spec.classes, 3);
    assert_eq!(spec.boundary_width, Some(2), "the default boundary, stored");
    // A resumed run keeps the boundary class: another width would train on other labels.
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", s(&run), "--steps", "2"];
        args.extend_from_slice(extra);
        unet(&args)
    };
    let err = common::cli::clean_failure(&resume(&["--boundary-width", "3"]));
    assert!(
        err.contains("was trained with --boundary-width 2, not --boundary-width 3"),
        "{err}"
    );
    let out = resume(&[]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    // Both spellings at once: a usage error.
    let err = common::cli::clean_failure(&train(&["--labels", "instance", "--mask", "instance"]));
    assert!(err.contains("--mask"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_resumed_run_reads_its_masks_as_the_checkpoint_did() {
    let dir = scratch("resume-masks");
    // The issue's DIC masks: 16-bit, cells 0 and background 65535.
    for i in 0..2u16 {
        let (w, h) = (48u32, 48u32);
        let cell = |x: u32, y: u32| (8..=20).contains(&x) && (8..=40).contains(&y) || x > 24;
        let mask = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(w, h, |x, y| {
            image::Luma([if cell(x, y) { 0 } else { 65535 }])
        });
        let image = image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if cell(x, y) { 150 } else { 90 } + ((x + y + u32::from(i)) % 9) as u8])
        });
        for sub in ["images", "labels"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        mask.save(dir.join("labels").join(format!("{i}.png")))
            .unwrap();
        image
            .save(dir.join("images").join(format!("{i}.png")))
            .unwrap();
    }
    let run = dir.join("run");
    let train = |first: bool, extra: &[&str]| {
        let mut args = vec!["train"];
        if first {
            args.extend_from_slice(&["--data", s(&dir), "--out", s(&run)]);
        } else {
            args.extend_from_slice(&["--resume", s(&run), "--data", s(&dir)]);
        }
        args.extend_from_slice(&["--holdout", "0", "--tile", "124", "--steps"]);
        args.push(if first { "1" } else { "2" });
        args.extend_from_slice(extra);
        unet(&args)
    };
    let out = train(true, &["--invert", "--foreground", "65535"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    let checkpoint = run.join("checkpoint.safetensors");
    let spec = read_data_spec(&checkpoint).unwrap();
    assert_eq!(
        spec.masks,
        Some(MaskFormat::Binary {
            foreground: 0,
            background: 65535
        })
    );
    // Resumed with other mask flags: refused, saying what to pass.
    for (extra, wanted) in [
        (
            &["--foreground", "255"][..],
            "was trained with --foreground 65535, not --foreground 255: pass --foreground \
             65535 (or leave it out)",
        ),
        (
            &["--mask", "instance"],
            "was trained with --mask binary, not --mask instance",
        ),
        // --classes 2 would read the binary masks as class indices.
        (
            &["--classes", "2"],
            "was trained without --classes, not --classes 2: leave --classes out",
        ),
    ] {
        let err = common::cli::clean_failure(&train(false, extra));
        assert!(err.contains(wanted), "{extra:?}: {err}");
    }
    // Left out, the flags are the checkpoint's: without them these masks would be refused
    // (65535 is no value of the default 0 / 255 masks), and --foreground 65535 alone would
    // read every cell as background.
    let out = train(false, &[]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    let out = train(false, &["--foreground", "65535"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    assert_eq!(read_data_spec(&checkpoint).unwrap(), spec);
    // Without --data too: the checkpoint names the folder.
    let out = unet(&["train", "--resume", s(&run), "--steps", "3"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    assert_eq!(read_data_spec(&checkpoint).unwrap(), spec);
    // A checkpoint from before the folder was stored: without --data the run would train
    // on synthetic cells, so it is refused, saying what to pass.
    without_source(&checkpoint);
    let err = fails(&["train", "--resume", s(&run), "--steps", "4"]);
    assert!(
        err.contains("was trained on a folder of images and masks: pass --data with that folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rewrites the checkpoint at `path` without its `source` metadata, as checkpoints were
/// written before it.
fn without_source(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap();
    assert!(metadata.remove("source").is_some(), "{metadata:?}");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let rewritten = safetensors::serialize(file.tensors(), Some(metadata)).unwrap();
    std::fs::write(path, rewritten).unwrap();
}

/// Masks of class indices with two classes (`--classes 2`, 0 and 1) are told apart from
/// binary masks in the checkpoint: a resumed run reads them as class indices again
/// without being told (as binary masks, the value 1 would be refused).
#[test]
fn a_resumed_run_reads_two_class_indices_again() {
    let dir = scratch("resume-class-indices");
    for i in 0..2u8 {
        let classes = Grid::from_fn(40, 40, |x, y| {
            u8::from((x / 10 + y / 10 + i as usize).is_multiple_of(2))
        });
        for sub in ["images", "labels"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        write_class_png(
            &dir.join("labels").join(format!("{i}.png")),
            &classes,
            &[0, 1],
        );
        write_class_png(
            &dir.join("images").join(format!("{i}.png")),
            &classes,
            &[60, 180],
        );
    }
    let run = dir.join("run");
    let out = train_on(&dir, &run, "1", &["--classes", "2"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    let spec = read_data_spec(&run.join("checkpoint.safetensors")).unwrap();
    assert_eq!((spec.classes, spec.class_mask), (2, Some(true)));
    let out = unet(&["train", "--resume", s(&run), "--steps", "2"]);
    assert!(out.status.success(), "{}", common::cli::text(&out.stderr));
    assert_eq!(
        read_data_spec(&run.join("checkpoint.safetensors")).unwrap(),
        spec
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
