//! `cargo bench --bench kernels -- [--quick] [--reps N] [--conv N,C_in,H,W,C_out]
//! [--direct-limit GFLOP] [--no-direct] [--no-check] [--ops-only | --no-ops]`
//!
//! Times every pass of the conv2d variants on the U-Net's 3x3 layers, then the other ops
//! (up-convolution, max-pool, crop+concat, dropout, loss, SGD) on their U-Net shapes
//! (`--quick`: the small set, a quarter of the channels at half size), or one conv shape
//! with `--conv`.

use unet_wgpu::bench::kernels::{self, BenchOptions};
use unet_wgpu::bench::ops::{self, OpShapes};
use unet_wgpu::ops::conv2d::ConvAlgo;
use unet_wgpu::{AdapterChoice, Gpu};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut opts = BenchOptions::default();
    if let Some(reps) = value("--reps") {
        opts.reps = reps.parse()?;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // On the full paper set variant 1 is slow: by default only layers under 5 GFLOP a pass.
    opts.direct_limit_gflop = match value("--direct-limit") {
        Some(v) => v.parse()?,
        None if quick => f64::INFINITY,
        None => 5.0,
    };
    // Tuning experiments only: time without checking against variant 1 first.
    opts.check = !args.iter().any(|a| a == "--no-check");
    if args.iter().any(|a| a == "--no-direct") {
        opts.variants = vec![ConvAlgo::Gemm];
    }

    let gpu = Gpu::new(AdapterChoice::default())?;
    println!("{}", gpu.describe());
    match value("--conv") {
        Some(spec) => kernels::print_reports(&kernels::bench_conv_spec(&gpu, &spec, &opts)?),
        None => {
            let (layers, op_shapes) = if quick {
                (kernels::small_layers(), OpShapes::small())
            } else {
                (kernels::paper_layers(), OpShapes::paper())
            };
            let flag = |f: &str| args.iter().any(|a| a == f);
            if !flag("--ops-only") {
                kernels::bench_conv_layers(&gpu, &layers, &opts, true)?;
            }
            if !flag("--no-ops") {
                ops::bench_ops(&gpu, &op_shapes, &opts, true)?;
            }
        }
    }
    Ok(())
}
