//! `unet demo`: train a small U-Net on synthetic cells, predict the held-out ones, print
//! the metrics.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use unet_wgpu::data::{synthetic_dataset, AugmentConfig, SynthConfig};
use unet_wgpu::model::UNetConfig;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::run::{self as training, RunOptions};
use unet_wgpu::{AdapterChoice, Result};

use super::args::ArchArgs;
use super::eval::{evaluate_dataset, print_eval};
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
}

/// The demo's data: seeded synthetic cells, 16 images to train on and 4 held out.
const DEMO_SIZE: usize = 160;

pub fn run(choice: AdapterChoice, args: DemoArgs) -> Result<()> {
    let gpu = open_gpu(choice)?;
    eprintln!("generating synthetic cells ({DEMO_SIZE}x{DEMO_SIZE}: 16 to train on, 4 held out)");
    let synth = SynthConfig::default();
    let train_set = synthetic_dataset(16, DEMO_SIZE, DEMO_SIZE, args.seed, &synth)?;
    let val_set = synthetic_dataset(4, DEMO_SIZE, DEMO_SIZE, args.seed + 1_000_000, &synth)?;
    let config = args.arch.apply(UNetConfig {
        depth: 3,
        base_channels: 16,
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
        resume_lr: None,
        schedule: None,
        progress: true,
        detect_collapse: true,
    };
    let summary = training::run(
        &gpu,
        Arc::new(train_set),
        Some(&val_set),
        &options,
        &stop_flag(),
    )?;
    report_run(&summary);
    let foreground = predict_dataset(&gpu, &summary, &val_set, options.tile, val_set.len())?;
    write_val_outputs(&val_set, &foreground, &args.out)?;
    let eval_report = evaluate_dataset(&val_set, &foreground)?;
    print_eval(&eval_report);
    eprintln!("run folder: {}", args.out.display());
    Ok(())
}
