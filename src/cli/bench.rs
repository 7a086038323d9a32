//! `unet bench`: the kernels on the U-Net's shapes, a whole training step, or a long soak.

use std::path::PathBuf;

use clap::Subcommand;
use unet_wgpu::model::UNetConfig;
use unet_wgpu::{AdapterChoice, Error, Result};

use super::args::ArchArgs;
use super::{open_gpu, write_json};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Every pass of every 3x3 conv layer of the U-Net, each variant checked against
    /// variant 1 (direct) before it is timed, then the other ops (up-convolution,
    /// max-pool, crop+concat, dropout, loss, SGD) on their U-Net shapes; median ms,
    /// GFLOP/s or GB/s, and speedup over variant 1.
    #[command(after_help = "Examples:\n  unet bench kernels --shapes small\n  \
        unet bench kernels --shapes paper --ops-only --json ops.json\n  \
        unet bench kernels --conv 1,64,284,284,64 --json conv.json\n  \
        unet bench kernels --shapes paper --autotune")]
    Kernels {
        /// Layer shapes: paper (from the 572 tile) or small (1/4 channels, 1/2 size).
        #[arg(long, default_value = "small")]
        shapes: String,
        /// Only the other ops, not the 3x3 convolutions.
        #[arg(long)]
        ops_only: bool,
        /// One 3x3 valid conv instead: N,C_in,H,W,C_out.
        #[arg(long)]
        conv: Option<String>,
        /// Timed repetitions per kernel (after a warm-up).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Skip timing variant 1 above this many GFLOP per pass (it is still the check).
        #[arg(long, default_value_t = 5.0)]
        direct_limit: f64,
        /// Also time `auto`: the autotuner's choice per layer and pass (tuned now where the
        /// cache has none, then kept there), and list every choice with its timings.
        #[arg(long)]
        autotune: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A whole training step: forward, loss, backward, SGD.
    #[command(
        after_help = "Examples:\n  unet bench step --config small\n  unet bench step --config paper --reps 1\n  \
        unet bench step --config small --profile\n  \
        unet bench step --config small --arch unetpp --tile 96"
    )]
    Step {
        /// small (depth 4, base 16, tile 188) or paper (depth 5, base 64, tile 572).
        #[arg(long, default_value = "small")]
        config: String,
        /// Input tile size (default: 188 for small, 572 for paper; 192 and 576 with same padding).
        #[arg(long)]
        tile: Option<usize>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Then time each kernel over --reps more steps (GPU timestamps at every pass).
        #[arg(long)]
        profile: bool,
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        arch: ArchArgs,
    },
    /// Many training steps of the small config on synthetic cells, with the GPU memory the
    /// engine holds and the host memory (VmRSS) sampled; says whether both stay flat.
    #[command(
        after_help = "Examples:\n  unet bench soak --steps 1000 --json soak.json\n  \
        unet bench soak --steps 100 --every 10"
    )]
    Soak {
        #[arg(long, default_value_t = 1000)]
        steps: u64,
        /// Sample the memory figures every this many steps.
        #[arg(long, default_value_t = 50)]
        every: u64,
        /// Steps of warm-up not judged (default: a tenth of --steps, at least up to the
        /// first checkpoint at step 200).
        #[arg(long)]
        warmup: Option<u64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

pub fn run(choice: AdapterChoice, command: BenchCommand) -> Result<()> {
    use unet_wgpu::bench::{kernels, ops, soak, step};
    let gpu = open_gpu(choice)?;
    println!("{}", gpu.describe());
    match command {
        BenchCommand::Kernels {
            shapes,
            ops_only,
            conv,
            reps,
            direct_limit,
            autotune,
            json,
        } => {
            let mut opts = kernels::BenchOptions {
                reps,
                direct_limit_gflop: direct_limit,
                ..Default::default()
            };
            if autotune {
                use unet_wgpu::gpu::{autotune::default_cache_path, TuneMode};
                gpu.set_autotune(TuneMode::On, default_cache_path());
                opts.variants.push(unet_wgpu::ops::conv2d::ConvAlgo::Auto);
            }
            let reports = match conv {
                Some(spec) => {
                    let reports = kernels::bench_conv_spec(&gpu, &spec, &opts)?;
                    kernels::print_reports(&reports);
                    reports
                }
                None => {
                    let (layers, op_shapes) = match shapes.as_str() {
                        "paper" => (kernels::paper_layers(), ops::OpShapes::paper()),
                        "small" => (kernels::small_layers(), ops::OpShapes::small()),
                        other => {
                            return Err(Error::Config(format!(
                                "unknown --shapes {other:?}: use paper or small"
                            )))
                        }
                    };
                    let layers = if ops_only { Vec::new() } else { layers };
                    let mut reports = kernels::bench_conv_layers(&gpu, &layers, &opts, true)?;
                    reports.extend(ops::bench_ops(&gpu, &op_shapes, &opts, true)?);
                    reports
                }
            };
            if autotune {
                kernels::print_autotune_choices(&gpu);
            }
            if let Some(path) = json {
                write_json(&path, &reports)?;
            }
        }
        BenchCommand::Step {
            config,
            tile,
            reps,
            profile,
            json,
            arch,
        } => {
            let net = arch.apply(UNetConfig::preset(&config)?)?;
            let tile = tile.unwrap_or_else(|| net.default_tile());
            let report = step::bench_step(&gpu, &config, net, tile, 1, reps, profile)?;
            step::print_step_report(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
        }
        BenchCommand::Soak {
            steps,
            every,
            warmup,
            json,
        } => {
            let config = UNetConfig::small();
            let checkpoint_every = 200;
            let options = soak::SoakOptions {
                config,
                tile: config.default_tile(),
                steps,
                sample_every: every,
                // The first checkpoint allocates its read-back buffers: part of warm-up.
                warmup_steps: warmup.unwrap_or((steps / 10).max(checkpoint_every.min(steps))),
                checkpoint_every,
            };
            let scratch = std::env::temp_dir().join(format!("unet-soak-{}", std::process::id()));
            let report = soak::soak(&gpu, "small", &options, &scratch);
            let _ = std::fs::remove_file(&scratch);
            let report = report?;
            soak::print_soak_report(&report);
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
        }
    }
    Ok(())
}
