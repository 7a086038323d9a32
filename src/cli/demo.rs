//! `unet demo`: train a small U-Net on synthetic cells, predict the held-out ones, print
//! the metrics.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use unet_wgpu::data::{
    synthetic_dataset, synthetic_rgb_dataset, AugmentConfig, Dataset, Normalize, RgbStain,
    SynthConfig, DEFAULT_NORMALIZE,
};
use unet_wgpu::model::UNetConfig;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::run::{self as training, RunOptions, SgdChanges};
use unet_wgpu::{AdapterChoice, Error, Result};

use super::args::ArchArgs;
use super::eval::{class_report_dataset, evaluate_dataset, print_eval};
use super::train::{predict_dataset, report_run, write_val_outputs};
use super::{open_gpu, stop_flag};

#[derive(Args)]
pub struct DemoArgs {
    /// Training steps.
    #[arg(long, default_value_t = 600)]
    steps: u64,
    /// The run folder.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// SGD learning rate (momentum is the paper's 0.99, so each step moves about
    /// 100 x lr x gradient; 0.01 makes the demo network collapse to one class).
    #[arg(long, default_value_t = 0.001)]
    lr: f32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    arch: ArchArgs,
    /// 3 (with --channels 3): colour cells with background, interior and boundary.
    #[arg(long, value_name = "K", default_value_t = 2)]
    classes: usize,
    /// 3 (with --classes 3): the cells in colour (H&E).
    #[arg(long, value_name = "C", default_value_t = 1)]
    channels: usize,
    /// Per image and channel: none, min-max, percentile, percentile:LOW,HIGH or z-score
    #[arg(long, default_value_t = DEFAULT_NORMALIZE)]
    normalize: Normalize,
}

/// The demo's data: seeded synthetic cells, 16 images to train on and 4 held out.
const DEMO_SIZE: usize = 160;

pub fn run(choice: AdapterChoice, args: DemoArgs) -> Result<()> {
    let colour = match (args.classes, args.channels) {
        (2, 1) => false,
        (3, 3) => true,
        (k, c) => {
            return Err(Error::Config(format!(
                "demo --classes {k} --channels {c}: the demo has gray cells with 2 classes \
                 (the default) or colour cells with 3 (--classes 3 --channels 3)"
            )))
        }
    };
    let gpu = open_gpu(choice)?;
    let kind = if colour {
        "colour (H&E) cells, 3 classes"
    } else {
        "cells"
    };
    eprintln!("generating synthetic {kind} ({DEMO_SIZE}x{DEMO_SIZE}: 16 to train on, 4 held out)");
    let synth = SynthConfig::default();
    let normalize = args.normalize;
    let cells = |count, seed| -> Result<Dataset> {
        let data = if colour {
            synthetic_rgb_dataset(count, DEMO_SIZE, DEMO_SIZE, seed, RgbStain::HAndE, &synth)?
        } else {
            synthetic_dataset(count, DEMO_SIZE, DEMO_SIZE, seed, &synth)?
        };
        Ok(data.normalized(normalize)?)
    };
    let train_set = cells(16, args.seed)?;
    let val_set = cells(4, args.seed + 1_000_000)?;
    let config = args.arch.apply(UNetConfig {
        depth: 3,
        base_channels: 16,
        in_channels: args.channels,
        classes: args.classes,
        ..UNetConfig::small()
    })?;
    let options = RunOptions {
        config,
        tile: config.input_size_for(64),
        batch: 1,
        steps: args.steps,
        sgd: Sgd {
            lr: args.lr,
            momentum: 0.99,
            weight_decay: 0.0,
        },
        seed: args.seed,
        augment: AugmentConfig::default(),
        out: args.out.clone(),
        checkpoint_every: 200,
        validate_every: args.steps.max(1),
        resume: None,
        resume_sgd: SgdChanges::default(),
        schedule: None,
        progress: true,
        detect_collapse: true,
        source: None,
    };
    let summary = training::run(
        &gpu,
        Arc::new(train_set),
        Some(&val_set),
        &options,
        &stop_flag(),
    )?;
    report_run(&summary);
    let maps = predict_dataset(&gpu, &summary, &val_set, options.tile, val_set.len())?;
    write_val_outputs(&val_set, &maps, &args.out)?;
    if colour {
        print!("{}", class_report_dataset(&val_set, &maps)?.table());
        println!("binary metrics with class 1 (interior) as foreground:");
    }
    let eval_report = evaluate_dataset(&val_set, &maps, 1)?;
    print_eval(&eval_report);
    eprintln!("run folder: {}", args.out.display());
    Ok(())
}
