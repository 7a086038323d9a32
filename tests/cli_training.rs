//! `unet train`'s schedules, default validation and collapse detection, end to end.

mod common;

use common::cli::{
    checkpoint_metadata, clean_failure, fails, s, scratch, synthetic_folder, text, unet,
};
use unet_wgpu::data::{synthetic_dataset, write_dataset, SynthConfig};

/// The `lr` column of a run's metrics.csv.
fn rates(run: &std::path::Path) -> Vec<f32> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|line| line.split(',').nth(2).unwrap().parse().unwrap())
        .collect()
}

/// `unet train` on synthetic cells at tile 124 without validation, into `out`.
fn train_synthetic(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let base = [
        "train",
        "--data",
        "synthetic",
        "--tile",
        "124",
        "--holdout",
        "0",
        "--out",
        s(out),
    ];
    let args: Vec<&str> = base.into_iter().chain(extra.iter().copied()).collect();
    unet(&args)
}

#[test]
fn a_step_schedule_sets_the_rates_and_a_resumed_run_continues_it() {
    let dir = scratch("schedule");
    let run = |out: &std::path::Path, extra: &[&str]| {
        let out = train_synthetic(out, extra);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let schedule = [
        "--schedule",
        "0.004,0.002@0.5,0.001@0.75",
        "--warmup",
        "2",
        "--steps",
        "8",
    ];
    run(&dir.join("whole"), &schedule);
    assert_eq!(
        rates(&dir.join("whole")),
        [0.002, 0.004, 0.004, 0.004, 0.002, 0.002, 0.001, 0.001]
    );
    // Stopped after 3 steps (the schedule planned for those 3) and resumed to 8 without
    // repeating the schedule: the checkpoint carries it on.
    let split = dir.join("split");
    run(
        &split,
        &[
            "--schedule",
            "0.004,0.002@0.5,0.001@0.75",
            "--warmup",
            "2",
            "--steps",
            "3",
        ],
    );
    let log = run(&split, &["--resume", s(&split), "--steps", "8"]);
    assert!(log.contains("schedule 0.004,0.002@0.5,0.001@0.75"), "{log}");
    // The resumed run keeps the fractions of the first run's 3 planned steps: phases from
    // step 1.5 and 2.25 on, so step 2 runs at the second rate and steps 3.. at the last.
    assert_eq!(
        rates(&split),
        [0.002, 0.004, 0.002, 0.001, 0.001, 0.001, 0.001, 0.001]
    );

    let error = fails(&[
        "train",
        "--data",
        "synthetic",
        "--lr",
        "0.01",
        "--schedule",
        "0.001,0.0001@0.5",
        "--steps",
        "1",
    ]);
    assert!(
        error.contains("--lr") && error.contains("--schedule"),
        "{error}"
    );
    let error = fails(&[
        "train",
        "--data",
        "synthetic",
        "--schedule",
        "0.001,0.0001",
        "--steps",
        "1",
    ]);
    assert!(error.contains("rate@fraction"), "{error}");
}

#[test]
fn by_default_the_rate_decays_by_half_a_cosine_to_a_tenth() {
    let dir = scratch("default-schedule");
    let out = dir.join("default");
    let first = train_synthetic(&out, &["--steps", "4"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    // lr(s) = 0.0001 + 0.0009 (1 + cos(pi s / 4)) / 2, then 0.0001 past the 4 planned steps.
    let cosine =
        |step: f64| 0.0001 + 0.0009 * (1.0 + (std::f64::consts::PI * step / 4.0).cos()) / 2.0;
    let resumed = train_synthetic(&out, &["--resume", s(&out), "--steps", "6"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let got = rates(&out);
    assert_eq!(got.len(), 6, "{got:?}");
    for (step, &rate) in got.iter().enumerate() {
        let expected = cosine((step as f64).min(4.0));
        assert!(
            (rate as f64 - expected).abs() < 1e-8,
            "step {step}: {got:?}"
        );
    }

    // A cosine to 0 resumed past its end would not train: refused, with what to give
    // instead, and the checkpoint left as it was.
    let to_zero = dir.join("to-zero");
    let first = train_synthetic(&to_zero, &["--steps", "2", "--schedule", "cosine"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let before = std::fs::read(to_zero.join("checkpoint.safetensors")).unwrap();
    let error = clean_failure(&train_synthetic(
        &to_zero,
        &["--resume", s(&to_zero), "--steps", "3"],
    ));
    assert!(
        error.contains("rate 0") && error.contains("--schedule"),
        "{error}"
    );
    assert_eq!(
        before,
        std::fs::read(to_zero.join("checkpoint.safetensors")).unwrap()
    );
}

#[test]
fn training_without_val_holds_images_out_and_says_whether_the_network_learned() {
    let dir = scratch("default-val");
    let data = dir.join("data");
    write_dataset(
        &data,
        &synthetic_dataset(10, 64, 64, 3, &SynthConfig::default()).unwrap(),
    )
    .unwrap();
    // One step of training on the folder, into `run`, with `extra` flags; returns stderr.
    let one_step = |run: &str, extra: &[&str]| {
        let out_dir = dir.join(run);
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--mask",
            "instance",
            // The smallest tile (output 4x4): validation predicts with larger tiles, as
            // the overlays of the held-out image do.
            "--tile",
            "92",
            "--steps",
            "1",
            "--out",
            s(&out_dir),
        ];
        args.extend_from_slice(extra);
        let out = unet(&args);
        let log = text(&out.stderr);
        assert!(out.status.success(), "{log}");
        log
    };
    let log = one_step("run", &[]);
    assert!(log.contains("holding out the last 1 of 10 images"), "{log}");
    // One step learns nothing: the summary says so, against the one-class baseline.
    assert!(log.contains("one class everywhere"), "{log}");
    assert!(log.contains("did NOT learn"), "{log}");

    let log = one_step("run0", &["--holdout", "0"]);
    assert!(log.contains("no validation"), "{log}");
}

#[test]
fn a_forced_collapse_stops_the_run_within_a_few_hundred_steps() {
    let dir = scratch("collapse");
    // A learning rate 20 times too high (with momentum 0.99) kills every ReLU within a few
    // hundred steps (a rate 100 times too high makes the weights infinite instead).
    let out = unet(&[
        "train",
        "--data",
        "synthetic",
        "--tile",
        "124",
        "--lr",
        "0.02",
        "--steps",
        "600",
        "--holdout",
        "0",
        "--checkpoint-every",
        "50",
        "--out",
        s(&dir.join("run")),
    ]);
    let error = clean_failure(&out);
    assert!(error.contains("collapsed at step"), "{error}");
    let step: u64 = error
        .split("collapsed at step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .expect("the step is named");
    assert!(step <= 500, "detected only at step {step}: {error}");
    assert!(
        error.contains("--warmup") && error.contains("--lr"),
        "{error}"
    );
    // The losses up to the collapse are kept for the user to look at.
    let losses = std::fs::read_to_string(dir.join("run").join("loss.csv")).unwrap();
    assert_eq!(losses.lines().count() as u64, 1 + step);
}

/// Every tensor of the checkpoint in run folder `run`, by name.
fn checkpoint_tensors(run: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// `train --resume` with no data flags trains on what the run was trained on: its
/// synthetic style and seed (which make the images), its split and how it cut its tiles
/// (tile, batch, augmentation) come from the checkpoint, so the resumed run ends where an
/// unbroken one does, bit for bit. Before they were stored, this resume trained on
/// EM-like cells of seed 1, and on augmented single tiles of the default size. Flags that
/// would train on other images are refused.
#[test]
fn a_resumed_run_takes_its_data_seed_split_and_tiles_from_the_checkpoint() {
    let dir = scratch("resume-source");
    let train = |out: &std::path::Path, steps: &str, extra: &[&str]| {
        let mut args = vec!["train", "--steps", steps, "--out", s(out)];
        args.extend_from_slice(extra);
        unet(&args)
    };
    // A constant rate: the default cosine plans its decay over the first run's --steps.
    let data = [
        "--data",
        "synthetic:phase",
        "--seed",
        "3",
        "--holdout",
        "0",
        "--schedule",
        "constant",
        "--tile",
        "124",
        "--batch",
        "2",
        "--no-augment",
    ];
    let unbroken = dir.join("unbroken");
    let out = train(&unbroken, "4", &data);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let split = dir.join("split");
    let out = train(&split, "2", &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = s(&split);
    for (flag, value, why) in [
        ("--seed", "1", "trained with --seed 3, not --seed 1"),
        (
            "--data",
            "synthetic",
            "trained with --data synthetic:phase, not --data synthetic",
        ),
        (
            "--holdout",
            "2",
            "trained on all of its images, not with --holdout 2",
        ),
    ] {
        let refused = clean_failure(&train(&split, "4", &["--resume", run, flag, value]));
        assert!(refused.contains(why), "{flag} {value}: {refused}");
    }
    let resumed = train(&split, "4", &["--resume", run]);
    let log = text(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert!(!log.contains("validating on"), "--holdout 0 is kept: {log}");
    assert!(
        checkpoint_tensors(&split) == checkpoint_tensors(&unbroken),
        "the resumed run's weights and momentum differ from the unbroken run's"
    );
}

/// Moves `folder` away, checks that resuming `run` without `flag` says what the run `used`
/// it for and names the flag that points the run to the new place, and resumes it with
/// `flag` pointing there.
fn resume_after_moving(
    run: &std::path::Path,
    folder: &std::path::Path,
    (flag, used): (&str, &str),
    steps: &str,
) -> std::process::Output {
    let moved = folder.with_file_name("moved");
    std::fs::rename(folder, &moved).unwrap();
    let gone = fails(&["train", "--resume", s(run), "--steps", steps]);
    let advice =
        format!("which is not there any more: pass {flag} with the folder it has moved to");
    assert!(gone.contains(&format!("was {used} on")), "{gone}");
    assert!(gone.contains(&advice), "{gone}");
    unet(&[
        "train",
        "--resume",
        s(run),
        "--steps",
        steps,
        flag,
        s(&moved),
    ])
}

/// A run validated on a folder of its own resumes without --val, and says what to pass
/// when that folder has moved.
#[test]
fn a_resumed_run_finds_its_validation_folder_again() {
    let dir = scratch("resume-val-folder");
    std::fs::create_dir_all(dir.join("train")).unwrap();
    std::fs::create_dir_all(dir.join("val")).unwrap();
    let data = synthetic_folder(&dir.join("train"), 2, 96, 5);
    let val = synthetic_folder(&dir.join("val"), 1, 96, 6);
    let run = dir.join("run");
    let first = unet(&[
        "train",
        "--data",
        s(&data),
        "--val",
        s(&val),
        "--mask",
        "instance",
        "--tile",
        "124",
        "--steps",
        "1",
        "--out",
        s(&run),
    ]);
    assert!(first.status.success(), "{}", text(&first.stderr));

    let found = resume_after_moving(&run, &val, ("--val", "validated"), "2");
    let log = text(&found.stderr);
    assert!(found.status.success(), "{log}");
    assert!(log.contains("validation at threshold 0.5"), "{log}");
}

/// A run on a folder stores the folder's absolute path and its held-out share: it resumes
/// from another working directory without --data, holding out the same images, and says
/// what to do when the folder has moved.
#[test]
fn a_resumed_run_finds_its_folder_again() {
    let dir = scratch("resume-folder");
    let data = synthetic_folder(&dir, 4, 96, 5);
    let run = dir.join("run");
    let first = common::cli::unet_command(&[
        "train",
        "--data",
        "data",
        "--mask",
        "instance",
        "--holdout",
        "1",
        "--tile",
        "124",
        "--steps",
        "1",
        "--out",
        "run",
    ])
    .current_dir(&dir)
    .output()
    .unwrap();
    assert!(first.status.success(), "{}", text(&first.stderr));

    let resumed = unet(&["train", "--resume", s(&run), "--steps", "2"]);
    let log = text(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    assert!(log.contains("finished at step 2"), "{log}");
    assert!(
        log.contains("validation at threshold 0.5"),
        "the held-out image: {log}"
    );
    assert!(
        !log.contains("holding out the last"),
        "no new default split: {log}"
    );

    let found = resume_after_moving(&run, &data, ("--data", "trained"), "3");
    assert!(found.status.success(), "{}", text(&found.stderr));
}

/// The optimiser settings in the checkpoint of run folder `run`: momentum, weight decay.
fn checkpoint_sgd(run: &std::path::Path) -> (String, String) {
    let meta = checkpoint_metadata(run);
    (meta["momentum"].clone(), meta["weight_decay"].clone())
}

/// A resumed run keeps its checkpoint's momentum and weight decay, and one given replaces
/// it (as `--lr` does). Before, `--momentum` and `--weight-decay` on a resume were ignored
/// without a word.
#[test]
fn a_resumed_run_keeps_its_momentum_unless_given_another() {
    let run = scratch("resume-momentum").join("run");
    let first = train_synthetic(
        &run,
        &[
            "--steps",
            "1",
            "--momentum",
            "0.9",
            "--weight-decay",
            "0.0001",
        ],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let resume = |steps: &str, extra: &[&str]| {
        let mut args = vec!["train", "--resume", s(&run), "--steps", steps];
        args.extend_from_slice(extra);
        let out = unet(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    resume("2", &[]);
    assert_eq!(checkpoint_sgd(&run), ("0.9".into(), "0.0001".into()));
    resume("3", &["--momentum", "0.5"]);
    assert_eq!(checkpoint_sgd(&run), ("0.5".into(), "0.0001".into()));
}
