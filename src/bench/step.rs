//! The training-step benchmark: forward, loss, backward and SGD on one batch of tiles,
//! timed with the device synchronised, with the GPU memory the engine allocated.

use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::gpu::Gpu;
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
}

/// Times `reps` training steps of `config` on `tile` x `tile` tiles, after one warm-up step.
pub fn bench_step(
    gpu: &Gpu,
    name: &str,
    config: UNetConfig,
    tile: usize,
    batch: usize,
    reps: usize,
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
        warm_allocations: stats.allocations - allocations,
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
}
