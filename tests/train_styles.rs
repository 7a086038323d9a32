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

/// With the default flags (z-score inputs, the class balance after the border term, a
/// cosine to a tenth of the rate) seeds 1 / 2 / 3 reached 0.811 / 0.857 / 0.877.
#[test]
fn em_like_cells_train_with_the_defaults() {
    every_seed_reaches("em", 400);
}

#[test]
fn fluorescence_like_cells_train_with_the_defaults() {
    every_seed_reaches("fluorescence", 300);
}

/// With the default flags seeds 1 / 2 / 3 reached 0.907 / 0.867 / 0.809 (seed 2 reached
/// 0.346 at a constant rate with the paper's class balance).
#[test]
fn phase_contrast_like_cells_train_with_the_defaults() {
    every_seed_reaches("phase", 400);
}

/// Not met yet: with the default flags seeds 1 / 2 / 3 reached 0.785 / 0.796 / 0.836 after
/// 400 steps (the one-class baseline 0.70), and seed 1 0.795 after 600 (README, "Training
/// on new kinds of data"). Run it with `--ignored`.
#[test]
#[ignore = "the defaults reach 0.79 to 0.84 on DIC-like cells in a short run, not 0.8 on every seed"]
fn dic_like_cells_train_with_the_defaults() {
    every_seed_reaches("dic", 400);
}
