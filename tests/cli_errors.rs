//! Every failure the reliability issue lists, through the `unet` binary: bad input files,
//! bad configuration, bad checkpoints, a full disk, no adapter, running out of GPU memory
//! and losing the device mid-run. Each must end with a non-zero exit and one `error:`
//! line that says what happened and what to do, never a panic; and the cases that must
//! work (images smaller than a tile, a huge image, 16-bit and RGB input) must work.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cli::{clean_failure, fails, ok, output_within, s, scratch, text, unet, unet_command};
use common::tiny_config;
use image::{ImageBuffer, Luma, Rgb};
use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig};
use unet_wgpu::model::{UNet, UNetConfig};
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{checkpoint, Trainer};
use unet_wgpu::{AdapterChoice, Gpu};

/// A freshly initialised tiny network saved as `dir/name`; `seed` sets its weights.
fn tiny_checkpoint(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let gpu = Gpu::new(AdapterChoice::default()).expect("a GPU adapter (or lavapipe)");
    let model = UNet::new(&gpu, tiny_config(), seed).unwrap();
    let path = dir.join(name);
    checkpoint::save(&gpu, &Trainer::new(model, Sgd::default(), seed), &path).unwrap();
    path
}

fn save_gray8(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

/// A textured gray image, so that predictions (and their PNGs) are not uniform.
fn save_texture(path: &Path, w: u32, h: u32) {
    save_gray8(path, w, h, |x, y| {
        ((x * 7 + y * 13) % 256) as u8 ^ ((x / 5 + y / 3) % 2 * 90) as u8
    });
}

/// A dataset folder with one image/mask pair per stem; `mask` gives each mask pixel.
fn make_dataset(dir: &Path, stems: &[&str], size: (u32, u32), mask: impl Fn(u32, u32) -> u8) {
    for sub in ["images", "labels"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for stem in stems {
        save_texture(
            &dir.join("images").join(format!("{stem}.png")),
            size.0,
            size.1,
        );
        save_gray8(
            &dir.join("labels").join(format!("{stem}.png")),
            size.0,
            size.1,
            &mask,
        );
    }
}

/// `unet train` on `data` for `steps` steps of the small config, tile 124.
/// A dataset of two 64x64 synthetic images with instance masks, in `dir/data`.
fn two_synthetic_images(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    write_dataset(
        &data,
        &synthetic_dataset(2, 64, 64, 3, &SynthConfig::default()).unwrap(),
    )
    .unwrap();
    data
}

fn train_args<'a>(data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--tile",
        "124",
        "--steps",
        steps,
        "--out",
        out,
        "--checkpoint-every",
        "1",
        "--validate-every",
        "100000",
    ]
}

fn predict_args<'a>(checkpoint: &'a Path, image: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "predict",
        "--checkpoint",
        s(checkpoint),
        s(image),
        "--out",
        s(out),
    ]
}

/// The (width, height) of an image file.
fn size_of(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

/// The engine's peak GPU memory that `unet predict` reports on stderr.
fn reported_peak_bytes(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("GPU memory: peak"))
        .unwrap_or_else(|| panic!("no GPU memory line:\n{stderr}"));
    let bytes = line.rsplit('(').next().unwrap().trim_end_matches(" bytes)");
    bytes.parse().unwrap_or_else(|_| panic!("{line}"))
}

// ---- Input files ---------------------------------------------------------------------

#[test]
fn missing_files_and_folders_are_named() {
    let dir = scratch("err-missing");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let nowhere = dir.join("nowhere");
    let image = nowhere.join("a.png");
    let line = fails(&predict_args(&checkpoint, &image, &dir.join("out")));
    assert!(
        line.contains("nowhere/a.png") && line.contains("check that the path exists"),
        "{line}"
    );
    let line = fails(&predict_args(&nowhere.join("c.safetensors"), &image, &dir));
    assert!(
        line.contains("c.safetensors") && line.contains("check that the path exists"),
        "{line}"
    );
    let line = fails(&["train", "--data", s(&nowhere), "--out", s(&dir.join("run"))]);
    assert!(
        line.contains("nowhere/images") && line.contains("check that the path exists"),
        "{line}"
    );
    let line = fails(&["eval", "--pred", s(&dir), "--labels", s(&nowhere)]);
    assert!(
        line.contains("nowhere") && line.contains("check that the path exists"),
        "{line}"
    );
    let line = fails(&["weightmap", s(&image), "--out", s(&dir.join("w.png"))]);
    assert!(line.contains("nowhere/a.png"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_that_are_not_images_or_are_truncated_are_named() {
    let dir = scratch("err-notimage");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let text_file = dir.join("notes.png");
    std::fs::write(&text_file, "this is not a picture").unwrap();
    let line = fails(&predict_args(&checkpoint, &text_file, &dir.join("out")));
    assert!(
        line.contains("notes.png is not a readable PNG or TIFF"),
        "{line}"
    );

    let data = dir.join("data");
    make_dataset(
        &data,
        &["a", "b"],
        (64, 64),
        |x, _| if x < 32 { 255 } else { 0 },
    );
    let label = data.join("labels").join("b.png");
    let bytes = std::fs::read(&label).unwrap();
    std::fs::write(&label, &bytes[..bytes.len() / 2]).unwrap();
    let line = fails(&train_args(s(&data), s(&dir.join("run")), "1"));
    assert!(
        line.contains("labels/b.png is not a readable PNG or TIFF"),
        "{line}"
    );
    assert!(line.contains("give an 8- or 16-bit PNG or TIFF"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn image_and_mask_of_different_sizes_are_named() {
    let dir = scratch("err-sizes");
    make_dataset(&dir, &["a"], (64, 48), |_, _| 255);
    save_gray8(&dir.join("labels").join("a.png"), 60, 48, |_, _| 255);
    let line = fails(&train_args(s(&dir), s(&dir.join("run")), "1"));
    assert!(
        line.contains("images/a.png is 64x48 but its mask"),
        "{line}"
    );
    assert!(line.contains("labels/a.png is 60x48"), "{line}");
    assert!(line.contains("must have the same size"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unexpected_mask_values_name_the_value_and_the_fix() {
    let dir = scratch("err-values");
    make_dataset(&dir, &["a"], (64, 48), |x, y| {
        if (x, y) == (9, 4) {
            128
        } else {
            255
        }
    });
    let line = fails(&train_args(s(&dir), s(&dir.join("run")), "1"));
    assert!(line.contains("mask value 128 at (x=9, y=4)"), "{line}");
    assert!(line.contains("choose the mask format"), "{line}");
    let line = fails(&[
        "weightmap",
        s(&dir.join("labels/a.png")),
        "--out",
        s(&dir.join("w.png")),
    ]);
    assert!(line.contains("mask value 128"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_dataset_says_where_files_go() {
    let dir = scratch("err-empty");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    let line = fails(&train_args(s(&dir), s(&dir.join("run")), "1"));
    assert!(line.contains("holds no image/label pairs"), "{line}");
    assert!(line.contains("put PNG or TIFF files in"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sixteen_bit_and_rgb_images_are_read_as_gray_but_an_rgb_mask_is_refused() {
    let dir = scratch("err-formats");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let (gray16, rgb) = (dir.join("deep.png"), dir.join("colour.png"));
    ImageBuffer::from_fn(50, 40, |x, y| Luma([(x * 1000 + y * 300) as u16]))
        .save(&gray16)
        .unwrap();
    ImageBuffer::from_fn(50, 40, |x, y| Rgb([x as u8 * 5, y as u8 * 6, 100u8]))
        .save(&rgb)
        .unwrap();
    let out = dir.join("out");
    let mut args = predict_args(&checkpoint, &gray16, &out);
    args.push(s(&rgb));
    ok(&args);
    for stem in ["deep", "colour"] {
        assert_eq!(
            size_of(&out.join(format!("{stem}_prob.png"))),
            (50, 40),
            "{stem}"
        );
    }

    let data = dir.join("data");
    make_dataset(&data, &["a"], (50, 40), |_, _| 255);
    ImageBuffer::from_fn(50, 40, |_, _| Rgb([255u8, 255, 255]))
        .save(data.join("labels").join("a.png"))
        .unwrap();
    let line = fails(&train_args(s(&data), s(&dir.join("run")), "1"));
    assert!(
        line.contains("a mask must be single-channel gray, found 8-bit RGB"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Sizes that must work --------------------------------------------------------------

#[test]
fn images_smaller_than_one_tile_train_and_predict_by_mirroring() {
    let dir = scratch("small-images");
    // 40x30 images and a 124 tile (output 36): the context comes from mirroring.
    let data = dir.join("data");
    make_dataset(&data, &["a", "b"], (40, 30), |x, y| {
        if (x / 8 + y / 8) % 2 == 0 {
            255
        } else {
            0
        }
    });
    let run = dir.join("run");
    let out = unet(&train_args(s(&data), s(&run), "2"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("finished at step 2"),
        "{}",
        text(&out.stderr)
    );

    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let preds = dir.join("preds");
    for (stem, size) in [("small", (20, 13)), ("pixel", (1, 1)), ("column", (1, 7))] {
        let image = dir.join(format!("{stem}.png"));
        save_texture(&image, size.0, size.1);
        ok(&predict_args(&checkpoint, &image, &preds));
        for suffix in ["prob", "mask", "overlay"] {
            let output = preds.join(format!("{stem}_{suffix}.png"));
            assert_eq!(size_of(&output), size, "{stem}_{suffix}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_huge_image_predicts_by_tiles_in_the_gpu_memory_of_one_batch() {
    let dir = scratch("huge-image");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    // Tile 1024 -> 1008 output, two tiles per forward pass. The reference image has 3 tiles
    // (batches of 2 and 1); the huge one has 9 (4 batches of 2 and 1 of 1): the same
    // batch shapes, so the engine must hold exactly the same GPU memory for both.
    let (reference, huge) = (dir.join("reference.png"), dir.join("huge.png"));
    save_texture(&reference, 2100, 900);
    save_texture(&huge, 3000, 3000);
    let peak_of = |image: &Path, out: &str| {
        let out = dir.join(out);
        let mut args = predict_args(&checkpoint, image, &out);
        args.extend(["--tile", "1024", "--batch", "2"]);
        let output = output_within(unet_command(&args), Duration::from_secs(900));
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        reported_peak_bytes(&stderr)
    };
    let reference_peak = peak_of(&reference, "reference");
    let huge_peak = peak_of(&huge, "huge");
    assert_eq!(
        huge_peak, reference_peak,
        "GPU memory must depend on the tile and batch, not on the image size"
    );
    for suffix in ["prob", "mask", "overlay"] {
        assert_eq!(
            size_of(&dir.join(format!("huge/huge_{suffix}.png"))),
            (3000, 3000)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Configuration ---------------------------------------------------------------------

#[test]
fn an_invalid_tile_names_the_nearest_valid_ones() {
    let dir = scratch("err-tile");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let image = dir.join("a.png");
    save_texture(&image, 40, 40);
    let mut args = predict_args(&checkpoint, &image, &dir);
    args.extend(["--tile", "187"]);
    let line = fails(&args);
    assert!(line.contains("tile size 187 does not fit"), "{line}");
    assert!(
        line.contains("nearest valid tile sizes: 186, 188"),
        "{line}"
    );
    let line = fails(&[
        "train",
        "--data",
        "synthetic",
        "--tile",
        "125",
        "--out",
        s(&dir),
    ]);
    assert!(
        line.contains("nearest valid tile sizes: 124, 132"),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tile_too_large_for_the_device_names_the_tensor() {
    let dir = scratch("err-too-large");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let image = dir.join("a.png");
    save_texture(&image, 40, 40);

    // Too large for the device's memory (here capped at 1 MiB, as a small device).
    let mut args = predict_args(&checkpoint, &image, &dir);
    args.extend(["--tile", "188"]);
    let mut command = unet_command(&args);
    command.env("UNET_GPU_MEMORY_LIMIT", "1M");
    let line = clean_failure(&command.output().unwrap());
    assert!(
        line.contains("GPU memory limit reached allocating `"),
        "{line}"
    );
    assert!(line.contains("use a smaller tile or batch"), "{line}");

    // Too large for one buffer binding: a 4000 tile's decoder maps are 255 MB, over
    // lavapipe's 128 MiB. A device with larger bindings would try to run it: skip there.
    let gpu = Gpu::new(AdapterChoice::default()).unwrap();
    if gpu.max_tensor_bytes() >= 250 << 20 {
        eprintln!(
            "skipping the binding-limit case: this device binds {} bytes",
            gpu.max_tensor_bytes()
        );
    } else {
        let mut args = predict_args(&checkpoint, &image, &dir);
        args.extend(["--tile", "4000", "--batch", "1"]);
        let line = fails(&args);
        assert!(
            line.contains("tensor `") && line.contains("bytes per buffer"),
            "{line}"
        );
        assert!(line.contains("use a smaller tile"), "{line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn learning_rate_and_momentum_out_of_range_are_refused() {
    let dir = scratch("err-sgd");
    let out = s(&dir);
    for (flag, value, says) in [
        (
            "--lr",
            "0",
            "learning rate 0 must be finite and > 0: give --lr",
        ),
        ("--lr", "NaN", "learning rate NaN must be finite"),
        (
            "--momentum",
            "1.5",
            "momentum 1.5 must be in [0, 1): give --momentum",
        ),
        ("--momentum=-0.1", "", "momentum -0.1 must be in [0, 1)"),
    ] {
        let mut args = vec!["train", "--data", "synthetic", "--out", out, flag];
        if !value.is_empty() {
            args.push(value);
        }
        let line = fails(&args);
        assert!(line.contains(says), "{args:?}: {line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_flags_and_values_are_one_line() {
    let line = fails(&["train", "--no-such-flag"]);
    assert!(
        line.contains("unexpected argument '--no-such-flag'"),
        "{line}"
    );
    assert!(line.contains("--help"), "{line}");
    let line = fails(&["predict", "--checkpoint", "c", "x.png", "--tile", "big"]);
    assert!(
        line.contains("invalid value 'big'") && line.contains("--tile"),
        "{line}"
    );
    let line = fails(&["trian"]);
    assert!(line.contains("unrecognized subcommand 'trian'"), "{line}");
    assert!(
        line.contains("similar subcommand exists: 'train'"),
        "{line}"
    );
}

// ---- Checkpoints -----------------------------------------------------------------------

/// A tensor of a safetensors file: name, shape, little-endian bytes.
type NamedTensor = (String, Vec<usize>, Vec<u8>);

/// The tensors and metadata of a safetensors file.
fn read_safetensors(path: &Path) -> (Vec<NamedTensor>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec()))
        .collect();
    (tensors, header.metadata().clone().unwrap())
}

/// A copy of the checkpoint at `from` with one metadata entry changed.
fn edit_metadata(from: &Path, to: &Path, key: &str, value: &str) {
    let (tensors, mut metadata) = read_safetensors(from);
    metadata.insert(key.to_string(), value.to_string());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data);
            (name.clone(), view.unwrap())
        })
        .collect();
    std::fs::write(to, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints_say_what_is_wrong_with_them() {
    let dir = scratch("err-checkpoint");
    let good = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    let image = dir.join("a.png");
    save_texture(&image, 40, 40);
    let out = dir.join("out");

    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let line = fails(&predict_args(&truncated, &image, &out));
    assert!(
        line.contains("truncated.safetensors") && line.contains("truncated or corrupt"),
        "{line}"
    );

    // Weights of a 2-channel network under the config of a 4-channel one.
    let other = dir.join("other-config.safetensors");
    let config = UNetConfig {
        base_channels: 4,
        ..tiny_config()
    };
    edit_metadata(
        &good,
        &other,
        "config",
        &serde_json::to_string(&config).unwrap(),
    );
    let line = fails(&predict_args(&other, &image, &out));
    assert!(
        line.contains("does not fit the network its config describes"),
        "{line}"
    );
    assert!(
        line.contains("`enc0.conv1.weight` is F32 [2, 1, 3, 3], the model needs F32 [4, 1, 3, 3]"),
        "{line}"
    );

    let newer = dir.join("newer.safetensors");
    edit_metadata(&good, &newer, "format_version", "99");
    let line = fails(&predict_args(&newer, &image, &out));
    assert!(
        line.contains("written by a newer unet-wgpu (format 99") && line.contains("upgrade"),
        "{line}"
    );
    assert!(!out.exists(), "no output for a bad checkpoint");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- A full disk -----------------------------------------------------------------------

/// Makes the next write of `file` hit a full disk, without privileges: outputs are written
/// to a temporary `.<name>.tmp` beside them and then renamed, so a symlink from that name
/// to /dev/full (where every write fails with ENOSPC) makes the write of `file` fail as on
/// a full disk. Returns false (the caller skips) where /dev/full is missing.
///
/// (Limiting file sizes with RLIMIT_FSIZE, as `ulimit -f`, does not work here: lavapipe
/// backs device memory with memfd files, and the process dies of SIGBUS.)
fn next_write_hits_a_full_disk(file: &Path) -> bool {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: no /dev/full to stand for a full disk");
        return false;
    }
    let name = file.file_name().unwrap().to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.tmp"));
    std::os::unix::fs::symlink("/dev/full", tmp).unwrap();
    true
}

/// Every file in `dir` with its bytes, and every symlink with its target.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| match std::fs::read_link(&p) {
            Ok(target) => (p, target.into_os_string().into_encoded_bytes()),
            Err(_) => {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            }
        })
        .collect();
    files.sort();
    files
}

/// A snapshot without `unet predict`'s shard manifests (bookkeeping a new run updates).
fn outputs_of(snapshot: Vec<(PathBuf, Vec<u8>)>) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot
        .into_iter()
        .filter(|(p, _)| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("manifest-shard-")
        })
        .collect()
}

#[test]
fn a_full_disk_fails_clearly_and_keeps_earlier_predictions() {
    let dir = scratch("full-disk-predict");
    let first = tiny_checkpoint(&dir, "first.safetensors", 1);
    let second = tiny_checkpoint(&dir, "second.safetensors", 2);
    let image = dir.join("cells.png");
    save_texture(&image, 200, 200);
    let out = dir.join("out");
    ok(&predict_args(&first, &image, &out));
    let before = outputs_of(snapshot(&out));
    assert_eq!(before.len(), 3, "three outputs");

    // Other weights would give other outputs; with no room to write them the old stay.
    if !next_write_hits_a_full_disk(&out.join("cells_prob.png")) {
        return;
    }
    let line = fails(&predict_args(&second, &image, &out));
    assert!(
        line.contains("cells_prob.png: No space left on device"),
        "{line}"
    );
    assert!(
        line.contains("could not be written because the disk is full"),
        "{line}"
    );
    assert!(line.contains("free some space"), "{line}");
    assert_eq!(
        outputs_of(snapshot(&out)),
        before,
        "earlier outputs intact, no temporary file left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_disk_fails_clearly_and_keeps_the_last_checkpoint() {
    let dir = scratch("full-disk-train");
    let data = two_synthetic_images(&dir);
    let run = dir.join("run");
    let mut args = train_args(s(&data), s(&run), "1");
    args.extend(["--mask", "instance"]);
    ok(&args);
    let checkpoint = run.join("checkpoint.safetensors");
    let before = snapshot(&run);

    if !next_write_hits_a_full_disk(&checkpoint) {
        return;
    }
    let mut args = train_args(s(&data), s(&run), "2");
    args.extend(["--mask", "instance", "--resume", s(&run)]);
    let line = fails(&args);
    assert!(
        line.contains("checkpoint.safetensors: No space left on device"),
        "{line}"
    );
    assert!(
        line.contains("could not be written because the disk is full"),
        "{line}"
    );
    assert_eq!(
        snapshot(&run),
        before,
        "the step-1 checkpoint and loss curve intact"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same on a really full file system (ENOSPC): a 1 MiB tmpfs, where mounting one is
/// allowed (root with CAP_SYS_ADMIN); elsewhere the test says why it skips.
#[test]
fn a_really_full_file_system_fails_clearly_and_keeps_earlier_predictions() {
    let dir = scratch("full-tmpfs");
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", s(&disk)])
        .output();
    match mounted {
        Ok(m) if m.status.success() => {}
        Ok(m) => {
            eprintln!(
                "skipping: cannot mount a tmpfs here ({})",
                text(&m.stderr).trim()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipping: no mount command ({e})");
            return;
        }
    }
    let result = std::panic::catch_unwind(|| {
        let first = tiny_checkpoint(&dir, "first.safetensors", 1);
        let second = tiny_checkpoint(&dir, "second.safetensors", 2);
        let image = dir.join("cells.png");
        save_texture(&image, 200, 200);
        ok(&predict_args(&first, &image, &disk));
        let before = snapshot(&disk);
        // Fill what is left of the disk.
        let filler = vec![0u8; 64 << 10];
        let mut file = std::fs::File::create(disk.join("filler")).unwrap();
        while std::io::Write::write_all(&mut file, &filler).is_ok() {}
        drop(file);
        let filled = snapshot(&disk);
        let line = fails(&predict_args(&second, &image, &disk));
        assert!(
            line.contains("could not be written because the disk is full"),
            "{line}"
        );
        assert!(line.contains("No space left on device"), "{line}");
        assert_eq!(snapshot(&disk), filled, "nothing changed on the full disk");
        assert_eq!(filled.len(), before.len() + 1, "the outputs and the filler");
    });
    let _ = Command::new("umount").arg(s(&disk)).status();
    std::fs::remove_dir_all(&dir).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// ---- The GPU ---------------------------------------------------------------------------

#[test]
fn no_adapter_says_how_to_get_one() {
    // A Vulkan loader that finds no driver: the machine has no Vulkan adapter.
    let mut command = unet_command(&["info", "--backend", "vulkan"]);
    command
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json");
    let line = clean_failure(&command.output().unwrap());
    assert!(
        line.contains("no GPU adapter found (none on the vulkan backend)"),
        "{line}"
    );
    assert!(
        line.contains("apt-get install mesa-vulkan-drivers"),
        "{line}"
    );

    let line = fails(&["info", "--adapter", "no-such-gpu"]);
    assert!(
        line.contains("no GPU adapter matches \"no-such-gpu\""),
        "{line}"
    );
    assert!(line.contains("Pick one with --adapter"), "{line}");
}

#[test]
fn running_out_of_gpu_memory_mid_run_fails_clearly_after_the_first_outputs() {
    let dir = scratch("oom-mid-run");
    let checkpoint = tiny_checkpoint(&dir, "tiny.safetensors", 1);
    // One tile for the first image, batches of four for the second: the second needs
    // more GPU memory. A limit between the two lets the first through only.
    let (small, large) = (dir.join("a_small.png"), dir.join("b_large.png"));
    save_texture(&small, 100, 100);
    save_texture(&large, 600, 600);
    let peak_of = |image: &Path| {
        let probe = dir.join("probe");
        let mut args = predict_args(&checkpoint, image, &probe);
        args.extend(["--batch", "4"]);
        let out = unet(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        reported_peak_bytes(&text(&out.stderr))
    };
    let (one_tile, four_tiles) = (peak_of(&small), peak_of(&large));
    assert!(four_tiles > one_tile, "{four_tiles} > {one_tile}");
    let limit = (one_tile + four_tiles) / 2;

    let out = dir.join("out");
    let mut args = predict_args(&checkpoint, &small, &out);
    args.extend([s(&large), "--batch", "4"]);
    let mut command = unet_command(&args);
    command.env("UNET_GPU_MEMORY_LIMIT", limit.to_string());
    let output = output_within(command, Duration::from_secs(300));
    let line = clean_failure(&output);
    assert!(
        line.contains("GPU memory limit reached allocating `"),
        "{line}"
    );
    assert!(line.contains("use a smaller tile or batch"), "{line}");
    assert!(
        text(&output.stdout).contains("a_small.png ->"),
        "the first image was predicted"
    );
    assert_eq!(size_of(&out.join("a_small_prob.png")), (100, 100));
    assert!(!out.join("b_large_prob.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn losing_the_device_mid_run_fails_clearly_and_keeps_the_last_checkpoint() {
    let dir = scratch("device-lost");
    let data = two_synthetic_images(&dir);
    let run = dir.join("run");
    let mut args = train_args(s(&data), s(&run), "100000");
    args.extend(["--mask", "instance"]);
    // A step or two in: building the network, a step and a checkpoint submit work
    // dozens of times each.
    let mut command = unet_command(&args);
    command
        .env("UNET_TEST_LOSE_DEVICE_AT", "150")
        .env("UNET_GPU_TIMEOUT_S", "60");
    let output = output_within(command, Duration::from_secs(300));
    let line = clean_failure(&output);
    assert!(line.contains("GPU device lost"), "{line}");
    assert!(line.contains("Restart the program"), "{line}");
    // The run got some steps in, and what it left is a good checkpoint.
    let checkpoint = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&checkpoint).expect("a checkpoint from before the loss");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let step: u64 = meta.metadata().as_ref().unwrap()["step"].parse().unwrap();
    assert!(step >= 1, "step {step}");
    std::fs::remove_dir_all(&dir).unwrap();
}
