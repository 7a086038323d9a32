//! The soak check: many training steps in one process, with the engine's GPU memory (the
//! buffer pool's bytes held) and the process's host memory (VmRSS) sampled as it goes. A
//! leak shows as either figure growing after warm-up; a healthy run holds both flat.
//!
//! The loop is the training run's: augmented tiles of synthetic cells from the background
//! [`TileStream`], one [`Trainer::step`] per batch (the loss read back each step), and a
//! checkpoint written every `checkpoint_every` steps to a scratch file.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::data::{
    synthetic_dataset, AugmentConfig, SynthConfig, TileSampler, TileSpec, TileStream,
};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::{Network, UNetConfig};
use crate::ops::sgd::Sgd;
use crate::train::{checkpoint, Batch, Trainer};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub config: UNetConfig,
    pub tile: usize,
    pub steps: u64,
    /// Take a sample every this many steps.
    pub sample_every: u64,
    /// Samples up to and including this step are warm-up and not judged.
    pub warmup_steps: u64,
    /// Write a checkpoint to `scratch` every this many steps (0: never).
    pub checkpoint_every: u64,
}

/// One sample of the memory figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct SoakSample {
    pub step: u64,
    pub seconds: f64,
    pub loss: f32,
    /// Bytes of every GPU buffer the engine holds (in use or pooled).
    pub gpu_bytes_held: u64,
    /// GPU buffers created so far.
    pub gpu_allocations: u64,
    /// The process's resident host memory (VmRSS), in bytes; 0 where /proc is missing.
    pub host_rss_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub config: String,
    pub tile: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    pub samples: Vec<SoakSample>,
    /// Largest minus smallest GPU bytes held over the samples after warm-up.
    pub gpu_bytes_growth: u64,
    /// GPU buffers created after warm-up.
    pub gpu_allocations_after_warmup: u64,
    /// Last minus first host RSS after warm-up (negative when it shrank).
    pub host_rss_growth: i64,
    /// The host RSS growth allowed for "flat": allocator noise, not a leak.
    pub host_rss_tolerance: u64,
    pub gpu_flat: bool,
    pub host_flat: bool,
}

/// Host RSS may wander by this much after warm-up (allocator caches, page-outs) and
/// still count as flat: 2% of the first post-warm-up figure, at least 8 MiB. A leak of
/// one tile per step (188 x 188 f32, 138 KiB) over 1,000 steps grows it by 135 MiB.
fn host_tolerance(first_rss: u64) -> u64 {
    (first_rss / 50).max(8 << 20)
}

/// The resident set size of this process, from `/proc/self/status` (Linux); 0 elsewhere.
pub fn host_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Runs `options.steps` training steps of `config` on synthetic cells, sampling memory.
pub fn soak(gpu: &Gpu, name: &str, options: &SoakOptions, scratch: &Path) -> Result<SoakReport> {
    let config = options.config;
    let spec = TileSpec::new(options.tile, config.check_tile(options.tile)?)?;
    let data = synthetic_dataset(8, 256, 256, 7, &SynthConfig::default())?;
    let sampler = TileSampler::new(spec, AugmentConfig::default(), 7)?;
    let mut stream = TileStream::new(Arc::new(data), sampler, 2);
    let mut trainer = Trainer::new(Network::new(gpu, config, 7)?, Sgd::default(), 7);
    let (mut labels, mut samples) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while trainer.step < options.steps {
        let tile = stream.next_tile()?;
        labels.clear();
        labels.extend(tile.classes.data.iter().map(|&c| f32::from(c)));
        let batch = Batch {
            input: &tile.image.data,
            labels: &labels,
            weights: &tile.weights.data,
            n: 1,
            tile: options.tile,
        };
        let loss = trainer.step(gpu, &batch)?;
        let step = trainer.step;
        if options.checkpoint_every > 0 && step.is_multiple_of(options.checkpoint_every) {
            checkpoint::save(gpu, &trainer, scratch)?;
        }
        if step.is_multiple_of(options.sample_every.max(1)) || step == options.steps {
            let stats = gpu.pool_stats();
            samples.push(SoakSample {
                step,
                seconds: started.elapsed().as_secs_f64(),
                loss,
                gpu_bytes_held: stats.bytes_held,
                gpu_allocations: stats.allocations,
                host_rss_bytes: host_rss_bytes(),
            });
        }
    }
    Ok(judge(name, options, samples))
}

/// The report: growth of each figure over the samples taken after warm-up.
fn judge(name: &str, options: &SoakOptions, samples: Vec<SoakSample>) -> SoakReport {
    let warm: Vec<&SoakSample> = samples
        .iter()
        .filter(|s| s.step > options.warmup_steps)
        .collect();
    let (gpu_growth, allocations, host_growth, tolerance) = match (warm.first(), warm.last()) {
        (Some(first), Some(last)) => {
            let held = warm.iter().map(|s| s.gpu_bytes_held);
            let gpu_growth = held.clone().max().unwrap_or(0) - held.min().unwrap_or(0);
            // Allocations since the last warm-up sample (or the first judged one).
            let before = samples
                .iter()
                .rev()
                .find(|s| s.step <= options.warmup_steps)
                .unwrap_or(first);
            (
                gpu_growth,
                last.gpu_allocations - before.gpu_allocations,
                last.host_rss_bytes as i64 - first.host_rss_bytes as i64,
                host_tolerance(first.host_rss_bytes),
            )
        }
        _ => (0, 0, 0, 0),
    };
    SoakReport {
        config: name.to_string(),
        tile: options.tile,
        steps: options.steps,
        warmup_steps: options.warmup_steps,
        gpu_flat: !warm.is_empty() && gpu_growth == 0 && allocations == 0,
        host_flat: !warm.is_empty() && host_growth <= tolerance as i64,
        samples,
        gpu_bytes_growth: gpu_growth,
        gpu_allocations_after_warmup: allocations,
        host_rss_growth: host_growth,
        host_rss_tolerance: tolerance,
    }
}

pub fn print_soak_report(r: &SoakReport) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{:>6} {:>9} {:>8} {:>14} {:>12} {:>13}",
        "step", "seconds", "loss", "GPU held MiB", "GPU allocs", "host RSS MiB"
    );
    for s in &r.samples {
        let marker = if s.step <= r.warmup_steps {
            "  (warm-up)"
        } else {
            ""
        };
        println!(
            "{:>6} {:>9.1} {:>8.4} {:>14.2} {:>12} {:>13.1}{marker}",
            s.step,
            s.seconds,
            s.loss,
            mib(s.gpu_bytes_held),
            s.gpu_allocations,
            mib(s.host_rss_bytes)
        );
    }
    let verdict = |flat: bool| if flat { "flat" } else { "NOT flat" };
    println!(
        "after warm-up (step {}): GPU memory {} (grew {} bytes, {} allocations); \
         host memory {} (grew {:.1} MiB, tolerance {:.1} MiB)",
        r.warmup_steps,
        verdict(r.gpu_flat),
        r.gpu_bytes_growth,
        r.gpu_allocations_after_warmup,
        verdict(r.host_flat),
        r.host_rss_growth as f64 / (1 << 20) as f64,
        mib(r.host_rss_tolerance)
    );
}
