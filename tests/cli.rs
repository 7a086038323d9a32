//! The `unet` binary end to end: help texts, train a few steps on synthetic data, resume,
//! predict, evaluate, weight maps, and one-line errors for bad input.

mod common;

use common::cli::{fails, ok, s, scratch, text, unet};
use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig};

#[test]
fn every_command_has_help_with_examples() {
    for command in ["demo", "train", "predict", "eval", "weightmap", "info"] {
        let help = ok(&[command, "--help"]);
        assert!(
            help.contains("Usage:") && help.contains("Example"),
            "{command}:\n{help}"
        );
    }
    for bench in ["kernels", "step", "soak"] {
        assert!(
            ok(&["bench", bench, "--help"]).contains("Example"),
            "bench {bench}"
        );
    }
    assert!(ok(&["--help"]).contains("demo"));
}

#[test]
fn a_resumed_run_keeps_its_network_default_tile_and_folder() {
    let run = scratch("resume-unetpp").join("run");
    let first = unet(&[
        "train",
        "--data",
        "synthetic",
        "--arch",
        "unetpp",
        "--tile",
        "64",
        "--steps",
        "1",
        "--out",
        s(&run),
    ]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    // No --arch, --tile or --out: the checkpoint's U-Net++ (whose default tile is 192; the
    // small U-Net's 188 does not fit it), trained on in the same folder.
    let resumed = unet(&["train", "--resume", s(&run), "--steps", "2"]);
    let log = text(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert!(log.contains("finished at step 2"), "{log}");
    assert!(
        log.contains(&format!("run folder: {}", run.display())),
        "{log}"
    );
    let losses = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    assert_eq!(losses.lines().count(), 1 + 2, "{losses}");
}

#[test]
fn train_resume_predict_and_evaluate() {
    let dir = scratch("pipeline");
    let data = dir.join("data");
    let dataset = synthetic_dataset(3, 96, 96, 5, &SynthConfig::default()).unwrap();
    write_dataset(&data, &dataset).unwrap();
    let run = dir.join("run");
    let train = |steps: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--mask",
            "instance",
            "--holdout",
            "1",
            "--tile",
            "124",
        ];
        args.extend_from_slice(&[
            "--steps",
            steps,
            "--out",
            s(&run),
            "--checkpoint-every",
            "1",
        ]);
        args.extend_from_slice(extra);
        unet(&args)
    };
    let first = train("2", &["--schedule", "constant"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    // Resuming keeps the checkpoint's learning rate unless --lr replaces it.
    let resumed = train("3", &["--resume", s(&run)]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stderr).contains("resuming at step 2 with learning rate 0.001"),
        "{}",
        text(&resumed.stderr)
    );
    assert!(
        text(&resumed.stderr).contains("finished at step 3"),
        "{}",
        text(&resumed.stderr)
    );
    let lowered = train("4", &["--resume", s(&run), "--lr", "0.0003"]);
    assert!(
        text(&lowered.stderr).contains("resuming at step 3 with learning rate 0.0003"),
        "{}",
        text(&lowered.stderr)
    );
    let resumed_again = train("5", &["--resume", s(&run)]);
    assert!(
        text(&resumed_again.stderr).contains("with learning rate 0.0003"),
        "the lowered rate is saved in the checkpoint: {}",
        text(&resumed_again.stderr)
    );
    // A resumed run keeps its checkpoint's network: asking for another one is an error,
    // naming the same one is not.
    for other in [&["--config", "paper"][..], &["--arch", "unetpp"]] {
        let refused = train("6", &[&["--resume", s(&run)], other].concat());
        assert!(!refused.status.success(), "resumed with {other:?}");
        let reason = text(&refused.stderr);
        assert!(
            reason.contains("holds a unet of depth 4 with 16 channels and valid padding")
                && reason.contains("leave them out"),
            "{reason}"
        );
    }
    let same = train(
        "5",
        &["--resume", s(&run), "--config", "small", "--arch", "unet"],
    );
    assert!(same.status.success(), "{}", text(&same.stderr));
    let losses = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    assert_eq!(
        losses.lines().count(),
        1 + 5,
        "a header and one line per step:\n{losses}"
    );
    for file in ["checkpoint.safetensors", "loss.png"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }

    let preds = dir.join("preds");
    let image = data
        .join("images")
        .join(format!("{}.png", dataset.samples()[2].name));
    let checkpoint = run.join("checkpoint.safetensors");
    ok(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&image),
        "--out",
        s(&preds),
        "--tile",
        "124",
    ]);
    let stem = image.file_stem().unwrap().to_str().unwrap();
    for suffix in ["prob", "mask", "overlay"] {
        let path = preds.join(format!("{stem}_{suffix}.png"));
        let written = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((written.width(), written.height()), (96, 96), "{suffix}");
    }

    let json = dir.join("eval.json");
    let table = ok(&[
        "eval",
        "--pred",
        s(&preds),
        "--labels",
        s(&data.join("labels")),
        "--mask",
        "instance",
        "--json",
        s(&json),
    ]);
    for metric in [
        "pixel error",
        "Rand (CREMI)",
        "Rand (skimage)",
        "warping error",
        "IoU",
    ] {
        assert!(table.contains(metric), "{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        report["images"].as_array().unwrap().len(),
        1,
        "one prediction matches one label"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weightmap_writes_png_and_npy() {
    let dir = scratch("weightmap");
    let dataset = synthetic_dataset(1, 64, 48, 2, &SynthConfig::default()).unwrap();
    write_dataset(&dir, &dataset).unwrap();
    let mask = dir
        .join("labels")
        .join(format!("{}.png", dataset.samples()[0].name));
    let (png, npy) = (dir.join("w.png"), dir.join("w.npy"));
    ok(&[
        "weightmap",
        s(&mask),
        "--mask",
        "instance",
        "--out",
        s(&png),
        "--npy",
        s(&npy),
        "--w0",
        "10",
        "--sigma",
        "5",
    ]);
    let picture = image::open(&png).unwrap();
    assert_eq!((picture.width(), picture.height()), (64, 48));
    // A .npy file: 10-byte preamble + header, then 64 * 48 little-endian f32.
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(bytes.len() - 10 - header_len, 64 * 48 * 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_step_profiles_the_kernels() {
    let out = ok(&[
        "bench",
        "step",
        "--config",
        "small",
        "--tile",
        "108",
        "--reps",
        "1",
        "--profile",
    ]);
    assert!(out.contains("median"), "{out}");
    if out.contains("timestamps: true") {
        for kernel in [
            "max_pool.wgsl::forward",
            "loss.wgsl::xent_gradient",
            "loss.wgsl::xent_partials",
            "sgd.wgsl::sgd_step",
        ] {
            assert!(out.contains(kernel), "{kernel} missing:\n{out}");
        }
        assert!(
            out.contains("passes:") && out.contains("ms of GPU time"),
            "{out}"
        );
    }
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = scratch("errors");
    let missing = dir.join("nope.png");
    assert!(fails(&["predict", "--checkpoint", s(&missing), s(&missing)]).contains("nope.png"));
    std::fs::write(dir.join("corrupt.safetensors"), b"not a checkpoint").unwrap();
    let corrupt = dir.join("corrupt.safetensors");
    let line = fails(&["predict", "--checkpoint", s(&corrupt), s(&missing)]);
    assert!(
        line.contains("corrupt") || line.contains("truncated"),
        "{line}"
    );
    assert!(fails(&["info", "--config", "paper", "--tile", "574"]).contains("572"));
    assert!(
        fails(&["train", "--data", "synthetic", "--lr=-1", "--out", s(&dir)])
            .contains("learning rate")
    );
    assert!(fails(&["train", "--no-such-flag"]).contains("--no-such-flag"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unetpp_trains_and_predicts_pruned_or_averaged() {
    let dir = scratch("unetpp");
    let data = dir.join("data");
    let dataset = synthetic_dataset(2, 80, 80, 7, &SynthConfig::default()).unwrap();
    write_dataset(&data, &dataset).unwrap();
    let run = dir.join("run");
    // Same padding (U-Net++'s default): the tile must be a multiple of 8 for depth 4.
    let err = fails(&[
        "train",
        "--arch",
        "unetpp",
        "--data",
        s(&data),
        "--mask",
        "instance",
        "--tile",
        "60",
    ]);
    assert!(err.contains("64"), "{err}");
    ok(&[
        "train",
        "--arch",
        "unetpp",
        "--data",
        s(&data),
        "--mask",
        "instance",
        "--tile",
        "64",
        "--steps",
        "2",
        "--out",
        s(&run),
    ]);
    let checkpoint = run.join("checkpoint.safetensors");
    let image = data
        .join("images")
        .join(format!("{}.png", dataset.samples()[0].name));
    for heads in [
        &["--prune", "1"][..],
        &["--heads", "average"],
        &["--prune", "2", "--heads", "average"],
        &["--prune", "1", "--tta"],
    ] {
        let preds = dir.join("preds");
        let mut args = vec![
            "predict",
            "--checkpoint",
            s(&checkpoint),
            s(&image),
            "--out",
            s(&preds),
        ];
        args.extend_from_slice(&["--tile", "64"]);
        args.extend_from_slice(heads);
        ok(&args);
        let stem = image.file_stem().unwrap().to_str().unwrap();
        let prob = image::open(preds.join(format!("{stem}_prob.png"))).unwrap();
        assert_eq!((prob.width(), prob.height()), (80, 80), "{heads:?}");
    }
    let wrong = fails(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&image),
        "--arch",
        "unet",
    ]);
    assert!(wrong.contains("unetpp"), "{wrong}");
    let too_deep = fails(&[
        "predict",
        "--checkpoint",
        s(&checkpoint),
        s(&image),
        "--prune",
        "4",
    ]);
    assert!(too_deep.contains("1..=3"), "{too_deep}");
    let table = ok(&["info", "--config", "small", "--arch", "unetpp"]);
    assert!(
        table.contains("x0_3.head") && table.contains("x1_2.up"),
        "{table}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_device_without_subgroups_is_named_once_at_start() {
    // wgpu's GL backend has no subgroup operations: the convolutions run without them.
    let args = ["bench", "kernels", "--conv", "1,2,8,8,2", "--backend"];
    let gl = unet(&[&args[..], &["gl"]].concat());
    let stderr = text(&gl.stderr);
    if stderr.contains("none on the gl backend") {
        eprintln!("no GL adapter here (CI installs Mesa's llvmpipe): nothing to check");
        return;
    }
    assert!(gl.status.success(), "{stderr}");
    let notes = stderr.matches("convolutions run without them").count();
    assert_eq!(notes, 1, "one note at start:\n{stderr}");
    assert!(stderr.contains("mesa-vulkan-drivers"), "{stderr}");

    let vulkan = unet(&[&args[..], &["vulkan"]].concat());
    let stderr = text(&vulkan.stderr);
    assert!(vulkan.status.success(), "{stderr}");
    assert!(
        !stderr.contains("convolutions run without them"),
        "{stderr}"
    );
}
