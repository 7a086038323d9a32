//! The training-step benchmark: forward, loss, backward and SGD on one batch of tiles,
//! timed with the device synchronised, with the GPU memory the engine allocated.

use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::gpu::{Gpu, Profile};
use crate::model::{Network, UNetConfig};
use crate::ops::sgd::Sgd;
use crate::train::{Batch, Trainer};

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub config: String,
    /// `unet` or `unetpp`.
    pub arch: String,
    pub tile: usize,
    pub batch: usize,
    pub steps_timed: usize,
    pub median_ms: f64,
    /// Training FLOPs per step / median time. FLOPs per step = 3 x the forward's
    /// 2 x multiply-adds (the backward's input and weight passes cost one forward each).
    pub gflops: f64,
    /// The most GPU memory the engine's buffer pool held at once, parameters included.
    pub peak_gpu_bytes: u64,
    /// The most bytes handed out at once (tensors alive together, in their size classes):
    /// the part of `peak_gpu_bytes` not idle in the pool.
    pub peak_in_use_bytes: u64,
    /// Buffers created after the first step (0 when the pool serves every warm step).
    pub warm_allocations: u64,
    /// With `--profile`: the GPU time per kernel of `steps_timed` more steps.
    pub profile: Option<StepProfile>,
}

/// GPU time per kernel over some steps, and their wall time.
#[derive(Clone, Debug, Serialize)]
pub struct StepProfile {
    pub steps: usize,
    pub wall_ms: f64,
    pub gpu: Profile,
}

/// Runs `step` `steps` times with every pass timed (one profile per step, so that the
/// query set never fills up).
fn profile_steps(
    gpu: &Gpu,
    steps: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<StepProfile> {
    let mut total = StepProfile {
        steps,
        wall_ms: 0.0,
        gpu: Profile::default(),
    };
    for _ in 0..steps {
        gpu.start_profiling()?;
        let start = Instant::now();
        step()?;
        total.wall_ms += start.elapsed().as_secs_f64() * 1e3;
        total.gpu.add(&gpu.finish_profiling()?);
    }
    Ok(total)
}

/// Times `reps` training steps of `config` on `tile` x `tile` tiles, after one warm-up step;
/// with `profile`, then times each kernel over `reps` more steps.
pub fn bench_step(
    gpu: &Gpu,
    name: &str,
    config: UNetConfig,
    tile: usize,
    batch: usize,
    reps: usize,
    profile: bool,
) -> Result<StepReport> {
    let out = config.check_tile(tile)?;
    let model = Network::new(gpu, config, 1)?;
    let mut trainer = Trainer::new(model, Sgd::default(), 1);
    // Any input will do for timing; a gradient pattern keeps the values finite.
    let input: Vec<f32> = (0..batch * config.in_channels * tile * tile)
        .map(|i| (i % 97) as f32 / 97.0)
        .collect();
    let labels: Vec<f32> = (0..batch * out * out)
        .map(|i| ((i / 7) % 2) as f32)
        .collect();
    let weights = vec![1.0; batch * out * out];
    let batch_data = Batch {
        input: &input,
        labels: &labels,
        weights: &weights,
        n: batch,
        tile,
    };

    trainer.step(gpu, &batch_data)?;
    let allocations = gpu.pool_stats().allocations;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        // `step` reads the loss back, which waits for the whole step to finish.
        trainer.step(gpu, &batch_data)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let warm_allocations = gpu.pool_stats().allocations - allocations;
    let profile = if profile {
        Some(profile_steps(gpu, reps.max(1), || {
            trainer.step(gpu, &batch_data).map(drop)
        })?)
    } else {
        None
    };
    times.sort_by(f64::total_cmp);
    let median_ms = times[times.len() / 2];
    let forward_macs: u64 = config.layers(tile)?.iter().map(|l| l.macs).sum();
    let flops = 3.0 * 2.0 * forward_macs as f64 * batch as f64;
    let stats = gpu.pool_stats();
    Ok(StepReport {
        config: name.to_string(),
        arch: config.arch.name().to_string(),
        tile,
        batch,
        steps_timed: times.len(),
        median_ms,
        gflops: flops / (median_ms * 1e-3) / 1e9,
        peak_gpu_bytes: stats.peak_bytes_held,
        peak_in_use_bytes: stats.peak_bytes_in_use,
        warm_allocations,
        profile,
    })
}

pub fn print_step_report(r: &StepReport) {
    println!(
        "{} {} config, tile {} (batch {}): median {:.1} ms per step over {} steps, \
         {:.2} GFLOP/s, peak GPU memory {:.1} MiB ({:.1} MiB in use at once), {} allocations \
         after warm-up",
        r.arch,
        r.config,
        r.tile,
        r.batch,
        r.median_ms,
        r.steps_timed,
        r.gflops,
        r.peak_gpu_bytes as f64 / (1 << 20) as f64,
        r.peak_in_use_bytes as f64 / (1 << 20) as f64,
        r.warm_allocations
    );
    if let Some(profile) = &r.profile {
        print_profile(profile);
    }
}

fn print_profile(p: &StepProfile) {
    let per_step = 1.0 / p.steps as f64;
    println!(
        "\nGPU time per kernel and step, over {} more steps (timestamps at the start and end \
         of each pass):",
        p.steps
    );
    println!(
        "{:<40} {:>6} {:>10} {:>10} {:>6}",
        "kernel", "passes", "ms", "ms/pass", "share"
    );
    for k in &p.gpu.kernels {
        println!(
            "{:<40} {:>6} {:>10.2} {:>10.3} {:>5.1}%",
            k.kernel,
            k.passes / p.steps,
            k.ms * per_step,
            k.ms / k.passes as f64,
            100.0 * k.ms / p.gpu.total_ms
        );
    }
    let passes: usize = p.gpu.kernels.iter().map(|k| k.passes).sum();
    println!(
        "{} passes: {:.1} ms of GPU time in a step of {:.1} ms wall time; the rest is \
         between passes (driver, copies, host){}",
        passes / p.steps,
        p.gpu.total_ms * per_step,
        p.wall_ms * per_step,
        match p.gpu.untimed_passes {
            0 => String::new(),
            n => format!("; {n} more passes were not timed (the query set was full)"),
        }
    );
}
