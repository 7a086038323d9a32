//! Prediction at scale through the `unet` binary: shards run as separate processes equal one
//! unsharded run byte for byte, a killed shard is rerun without recomputing what it had
//! finished and without anything half-written, TIFF outputs and stacks, and the merged
//! report of the shards' manifests; K > 2 classes through the same path.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::cli::{fails, ok, s, scratch, text, unet_command};
use common::tiny_config;
use image::{ImageBuffer, Luma};
use unet_wgpu::batch::{Manifest, Shard};
use unet_wgpu::data::read_pages;
use unet_wgpu::model::{UNet, UNetConfig};
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{checkpoint, Trainer};
use unet_wgpu::{AdapterChoice, Gpu};

fn tiny_checkpoint(dir: &Path) -> PathBuf {
    tiny_checkpoint_of(dir, 2)
}

/// A tiny untrained network of `classes` classes, saved.
fn tiny_checkpoint_of(dir: &Path, classes: usize) -> PathBuf {
    let gpu = Gpu::new(AdapterChoice::default()).expect("a GPU adapter (or lavapipe)");
    let config = UNetConfig {
        classes,
        ..tiny_config()
    };
    let model = UNet::new(&gpu, config, 7).unwrap();
    let path = dir.join("tiny.safetensors");
    checkpoint::save(&gpu, &Trainer::new(model, Sgd::default(), 7), &path).unwrap();
    path
}

fn texture(w: u32, h: u32, seed: u32) -> ImageBuffer<Luma<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        Luma([((x * 7 + y * 13 + seed * 31) % 256) as u8 ^ ((x / 5 + y / 3) % 2 * 90) as u8])
    })
}

/// `count` PNGs of a few sizes in `dir/images`, and a 3-page TIFF stack.
fn images(dir: &Path, count: u32) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..count {
        texture(30 + i % 3 * 7, 26 + i % 2 * 5, i)
            .save(images.join(format!("img{i:02}.png")))
            .unwrap();
    }
    let file = std::fs::File::create(images.join("stack.tif")).unwrap();
    let mut tiff = tiff::encoder::TiffEncoder::new(file).unwrap();
    for page in 0..3 {
        let page = texture(24, 20, 100 + page);
        tiff.write_image::<tiff::encoder::colortype::Gray8>(24, 20, &page)
            .unwrap();
    }
    images
}

fn predict_args<'a>(checkpoint: &'a Path, input: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "predict",
        "--checkpoint",
        s(checkpoint),
        s(input),
        "--out",
        s(out),
        "--tile",
        "36",
    ]
}

/// Every visible file of `dir` but the manifests, with its bytes.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            !name.starts_with('.') && !name.starts_with("manifest-")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn wait(child: Child) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

#[test]
fn three_shards_as_processes_equal_one_unsharded_run_and_merge_into_a_complete_report() {
    let dir = scratch("shards");
    let checkpoint = tiny_checkpoint(&dir);
    let input = images(&dir, 7);
    let whole = dir.join("whole");
    ok(&predict_args(&checkpoint, &input, &whole));

    // Three shard processes at once, all into one shared folder.
    let shared = dir.join("shared");
    let children: Vec<Child> = (0..3)
        .map(|k| {
            let shard = format!("{k}/3");
            let mut args = predict_args(&checkpoint, &input, &shared);
            args.extend(["--shard", &shard]);
            unet_command(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        wait(child);
    }
    let (want, got) = (outputs(&whole), outputs(&shared));
    assert_eq!(
        want.len(),
        8 * 3,
        "8 inputs, 3 outputs each: {:?}",
        want.keys()
    );
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs between the runs");
    }
    assert!(hidden(&shared).is_empty(), "{:?}", hidden(&shared));

    // The stack is predicted page by page into 3-page TIFF stacks.
    let pages = read_pages(&whole.join("stack_prob.tif")).unwrap();
    assert_eq!(pages.len(), 3);
    assert!(pages
        .iter()
        .all(|p| (p.width, p.height, p.bit_depth) == (24, 20, 16)));

    // Each shard got its round-robin share of the 8 sorted inputs.
    for k in 0..3 {
        let manifest = Manifest::load(&shared, Shard::new(k, 3).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(manifest.total_inputs, 8);
        assert_eq!(manifest.assigned.len(), [3, 3, 2][k]);
        assert_eq!(manifest.records.len(), manifest.assigned.len());
        assert_eq!(manifest.settings.checkpoint_sha256.len(), 64);
    }
    let report = ok(&["predict", "--merge-report", s(&shared)]);
    assert!(
        report.contains("8 of 8 inputs done") && report.contains("complete"),
        "{report}"
    );

    // A shard that never ran, and an output lost since, are listed as missing.
    std::fs::remove_file(shared.join("manifest-shard-1-of-3.json")).unwrap();
    std::fs::remove_file(shared.join("manifest-shard-1-of-3.jsonl")).unwrap();
    std::fs::remove_file(shared.join("img00_mask.png")).unwrap();
    let line = fails(&["predict", "--merge-report", s(&shared)]);
    assert!(line.contains("4 of 8 inputs are not done"), "{line}");
    let out = unet_command(&["predict", "--merge-report", s(&shared)])
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(
        report.contains("shard 1/3: no manifest (its 3 inputs")
            && report.contains("missing: ")
            && report.contains("img00.png"),
        "{report}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_shard_reruns_without_recomputing_finished_images_or_leaving_partial_files() {
    let dir = scratch("killed");
    let checkpoint = tiny_checkpoint(&dir);
    let input = images(&dir, 40);
    let out = dir.join("out");
    let journal = out.join("manifest-shard-0-of-1.jsonl");
    let mut child = unet_command(&predict_args(&checkpoint, &input, &out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 2 {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed mid-run");

    // Whatever is in place is whole; the journal names the finished inputs.
    let finished: Vec<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|r| {
            r["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        finished.len() >= 6 && finished.len() < 41 * 3,
        "{finished:?}"
    );
    for name in outputs(&out).keys() {
        read_pages(&out.join(name)).unwrap_or_else(|e| panic!("{name} is half-written: {e}"));
    }
    let mtimes: Vec<SystemTime> = finished
        .iter()
        .map(|n| std::fs::metadata(out.join(n)).unwrap().modified().unwrap())
        .collect();

    let stdout = ok(&predict_args(&checkpoint, &input, &out));
    let complete = finished.len() / 3;
    assert!(
        stdout.contains(&format!("{} predicted (", 41 - complete))
            && stdout.contains(&format!("{complete} already complete")),
        "{stdout}"
    );
    for (name, before) in finished.iter().zip(&mtimes) {
        let after = std::fs::metadata(out.join(name))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(*before, after, "{name} was written again");
    }
    assert!(hidden(&out).is_empty(), "left over: {:?}", hidden(&out));
    let manifest = Manifest::load(&out, Shard::ALL).unwrap().unwrap();
    assert_eq!(manifest.runs.len(), 1, "the killed run wrote no summary");
    assert_eq!(manifest.records.len(), 41);
    assert_eq!(
        manifest.records.iter().filter(|r| r.run == 1).count(),
        complete
    );

    // The outputs equal an uninterrupted run's; --overwrite predicts everything again.
    let fresh = dir.join("fresh");
    ok(&predict_args(&checkpoint, &input, &fresh));
    assert!(
        outputs(&fresh) == outputs(&out),
        "the rerun's outputs differ"
    );
    let mut again = predict_args(&checkpoint, &input, &out);
    again.push("--overwrite");
    assert!(ok(&again).contains("41 predicted ("));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiff_outputs_hold_the_png_values_and_bad_shards_are_one_line_errors() {
    let dir = scratch("tiff-out");
    let checkpoint = tiny_checkpoint(&dir);
    let image = dir.join("big.png");
    texture(300, 270, 3).save(&image).unwrap();
    let (png, tif) = (dir.join("png"), dir.join("tif"));
    ok(&predict_args(&checkpoint, &image, &png));
    let mut args = predict_args(&checkpoint, &image, &tif);
    args.extend(["--format", "tiff", "--no-overlap"]);
    ok(&args);
    for kind in ["prob", "mask", "overlay"] {
        let want = read_pages(&png.join(format!("big_{kind}.png"))).unwrap();
        let got = read_pages(&tif.join(format!("big_{kind}.tif"))).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].width,
                got[0].height,
                got[0].channels,
                got[0].bit_depth
            ),
            (
                want[0].width,
                want[0].height,
                want[0].channels,
                want[0].bit_depth
            ),
            "{kind}"
        );
        assert!(got[0].samples == want[0].samples, "{kind}: values differ");
    }

    let mut bad = predict_args(&checkpoint, &image, &tif);
    bad.extend(["--shard", "3/3"]);
    assert!(fails(&bad).contains("0 <= K < N"));
    let mut env = predict_args(&checkpoint, &image, &tif);
    env.push("--shard-from-env");
    let out = unet_command(&env)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    let line = common::cli::clean_failure(&out);
    assert!(line.contains("--shards N"), "{line}");
    let glob = dir.join("nothing-*.png");
    assert!(fails(&predict_args(&checkpoint, &glob, &tif)).contains("matches no files"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_from_the_environment_cover_every_input_once() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let slurm = Shard::from_env(
        env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(slurm, Shard::new(4, 8).unwrap());
    let k8s = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "2")]), Some(3)).unwrap();
    assert_eq!(k8s, Shard::new(2, 3).unwrap());
    assert!(Shard::from_env(env(&[]), Some(3)).is_err());
    for count in 1..6 {
        for total in 0..20 {
            let owners: Vec<usize> = (0..total)
                .map(|i| {
                    let owners: Vec<usize> = (0..count)
                        .filter(|&k| Shard::new(k, count).unwrap().owns(i))
                        .collect();
                    assert_eq!(owners.len(), 1);
                    owners[0]
                })
                .collect();
            for k in 0..count {
                let share = owners.iter().filter(|&&o| o == k).count();
                assert_eq!(Shard::new(k, count).unwrap().share(total), share);
            }
        }
    }
}

#[test]
fn k_classes_take_the_batch_path_shards_stacks_tiff_and_reruns() {
    let dir = scratch("classes-batch");
    let checkpoint = tiny_checkpoint_of(&dir, 3);
    let input = images(&dir, 3);
    let whole = dir.join("whole");
    let printed = ok(&predict_args(&checkpoint, &input, &whole));
    assert!(
        printed.contains("img00_{prob_0,prob_1,prob_2,class,overlay}.png")
            && printed.contains("stack_{prob,class,overlay}.tif"),
        "{printed}"
    );
    // 3 PNG inputs with 5 files each (3 probabilities, class map, overlay); the stack as
    // 3 TIFFs: the class map and overlay a page per image, the probabilities a page per
    // class of each image (image-major).
    let want = outputs(&whole);
    assert_eq!(want.len(), 3 * 5 + 3, "{:?}", want.keys());
    let class_pages = read_pages(&whole.join("stack_class.tif")).unwrap();
    let prob_pages = read_pages(&whole.join("stack_prob.tif")).unwrap();
    assert_eq!((class_pages.len(), prob_pages.len()), (3, 9));
    assert!(class_pages
        .iter()
        .all(|p| p.bit_depth == 8 && p.channels == 1));
    for (i, page) in class_pages.iter().enumerate() {
        // The class map is the most probable class (up to the 16-bit rounding of ties).
        for (j, &c) in page.samples.iter().enumerate() {
            let p: Vec<u16> = (0..3).map(|k| prob_pages[3 * i + k].samples[j]).collect();
            let most = *p.iter().max().unwrap();
            assert!(
                c < 3 && p[c as usize] + 1 >= most,
                "page {i} pixel {j}: {c} {p:?}"
            );
        }
    }

    // Two shards, run one after the other into one folder, equal the unsharded run.
    let shared = dir.join("shared");
    for k in 0..2 {
        let shard = format!("{k}/2");
        let mut args = predict_args(&checkpoint, &input, &shared);
        args.extend(["--shard", &shard]);
        ok(&args);
    }
    assert!(outputs(&shared) == want, "sharded K-class outputs differ");
    assert!(hidden(&shared).is_empty(), "{:?}", hidden(&shared));
    let report = ok(&["predict", "--merge-report", s(&shared)]);
    assert!(report.contains("4 of 4 inputs done"), "{report}");

    // A rerun skips every complete input; a lost class map is predicted again.
    std::fs::remove_file(whole.join("img01_class.png")).unwrap();
    let again = ok(&predict_args(&checkpoint, &input, &whole));
    assert!(
        again.contains("1 predicted (") && again.contains("3 already complete"),
        "{again}"
    );
    assert!(outputs(&whole) == want, "the rerun's outputs differ");

    // --format tiff holds the PNGs' values: the class map, and a page per class.
    let tif = dir.join("tif");
    let image = input.join("img00.png");
    let mut args = predict_args(&checkpoint, &image, &tif);
    args.extend(["--format", "tiff", "--no-overlap"]);
    ok(&args);
    let class_tif = read_pages(&tif.join("img00_class.tif")).unwrap();
    let class_png = read_pages(&whole.join("img00_class.png")).unwrap();
    assert!(class_tif.len() == 1 && class_tif[0].samples == class_png[0].samples);
    let prob_tif = read_pages(&tif.join("img00_prob.tif")).unwrap();
    assert_eq!(prob_tif.len(), 3);
    for (k, page) in prob_tif.iter().enumerate() {
        let png = read_pages(&whole.join(format!("img00_prob_{k}.png"))).unwrap();
        assert!(page.samples == png[0].samples, "class {k}: values differ");
    }
    let overlay = read_pages(&tif.join("img00_overlay.tif")).unwrap();
    assert_eq!(
        (overlay[0].width, overlay[0].height, overlay[0].channels),
        (class_png[0].width, class_png[0].height, 3)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
