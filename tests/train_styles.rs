//! The training defaults on every kind of synthetic data: each style, three seeds, a short
//! run of `unet train` with no tuning flags, judged on the held-out images it validates on
//! by default. The bar is the data, not the seed: every seed must reach it.

mod common;

use common::cli::{s, scratch, text, unet};

/// The held-out IoU at the end of `unet train --data synthetic:STYLE --seed SEED --steps N`.
fn held_out_iou(style: &str, seed: u64, steps: u64) -> f64 {
    let out_dir = scratch(&format!("style-{style}-{seed}"));
    let (data, seed_text, steps_text) = (
        format!("synthetic:{style}"),
        seed.to_string(),
        steps.to_string(),
    );
    let out = unet(&[
        "train",
        "--data",
        &data,
        "--seed",
        &seed_text,
        "--steps",
        &steps_text,
        "--out",
        s(&out_dir),
    ]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{style}, seed {seed}:\n{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("validation at threshold 0.5"))
        .unwrap_or_else(|| panic!("no validation summary:\n{log}"));
    line.split("IoU ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ')']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no IoU in {line:?}"))
}

fn every_seed_reaches(style: &str, steps: u64) {
    let scores: Vec<(u64, f64)> = (1..=3)
        .map(|seed| (seed, held_out_iou(style, seed, steps)))
        .collect();
    eprintln!("{style}, {steps} steps: held-out IoU {scores:?}");
    for (seed, iou) in scores {
        assert!(
            iou >= 0.8,
            "{style}, seed {seed}: held-out IoU {iou:.4} < 0.8 after {steps} steps"
        );
    }
}

/// Not met yet: on the EM-like cells at the default tile (188) and rate the held-out IoU of
/// seed 1 went 0.24, 0.74, 0.63 at steps 100, 200, 300 with z-score inputs (0.0 without
/// normalisation): learning, but not steadily above 0.8 in a short run.
#[test]
#[ignore = "the defaults do not reach 0.8 on EM-like cells in a short run yet"]
fn em_like_cells_train_with_the_defaults() {
    every_seed_reaches("em", 400);
}

#[test]
fn fluorescence_like_cells_train_with_the_defaults() {
    every_seed_reaches("fluorescence", 300);
}

/// Not met yet: seeds 1 and 3 reached 0.888 and 0.912 after 400 steps, seed 2 only 0.346.
#[test]
#[ignore = "the defaults do not reach 0.8 on phase-like cells on every seed yet"]
fn phase_contrast_like_cells_train_with_the_defaults() {
    every_seed_reaches("phase", 400);
}

/// Not met yet: on DIC-like data (faint relief, cells the background's mean gray) the
/// defaults stay at the class prior in a short run on every variant tried (raw,
/// percentile- or z-score-normalised input, a zero-initialised head, lr 0.0003, no border
/// term: held-out IoU 0.00 to 0.01 after 200 to 340 steps). Run it with `--ignored`.
#[test]
#[ignore = "the defaults do not learn DIC-like data in a short run yet"]
fn dic_like_cells_train_with_the_defaults() {
    every_seed_reaches("dic", 300);
}
