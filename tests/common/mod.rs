//! Shared test helpers: the GPU, random data, tolerant comparison and finite differences.
#![allow(dead_code)]

pub mod cli;
pub mod reference;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unet_wgpu::model::UNetConfig;
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::train::{checkpoint, Batch, Trainer};
use unet_wgpu::{AdapterChoice, Gpu, Shape, Tensor};

/// The test GPU, in poison mode (new outputs are NaN until a kernel writes them).
pub fn gpu() -> Gpu {
    let gpu = Gpu::new(AdapterChoice::default()).unwrap_or_else(|e| {
        panic!(
            "these tests need a GPU adapter (a real GPU, or Mesa's lavapipe: \
             apt-get install mesa-vulkan-drivers): {e}"
        )
    });
    gpu.set_poison(true);
    gpu
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn random_vec(rng: &mut impl Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn upload(gpu: &Gpu, shape: Shape, data: &[f32]) -> Tensor {
    Tensor::from_slice(gpu, shape, data, "test input").unwrap()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, listing the first mismatches.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<(usize, f32, f64)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (&g, &w))| {
            let diff = (f64::from(g) - w).abs();
            diff.is_nan() || diff > atol + rtol * w.abs()
        })
        .map(|(i, (&g, &w))| (i, g, w))
        .collect();
    if !bad.is_empty() {
        let first: Vec<String> = bad
            .iter()
            .take(8)
            .map(|(i, g, w)| format!("[{i}] got {g} want {w}"))
            .collect();
        panic!(
            "{what}: {} of {} elements differ: {}",
            bad.len(),
            got.len(),
            first.join(", ")
        );
    }
}

/// Central finite differences of a scalar function at `x`, in f64.
pub fn numeric_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + eps;
            let up = f(&probe);
            probe[i] = x[i] - eps;
            let down = f(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * eps)
        })
        .collect()
}

/// sum(a * b): the "fake loss" whose gradient with respect to an op's output is `b`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Trains on one batch until the loss is below a tenth of the first step's, for at most
/// `max_steps` more steps, and asserts that it got there.
pub fn assert_overfits(gpu: &Gpu, trainer: &mut Trainer, batch: &Batch, max_steps: usize) {
    let first = trainer.step(gpu, batch).unwrap();
    let mut last = first;
    for _ in 0..max_steps {
        last = trainer.step(gpu, batch).unwrap();
        if last < first / 10.0 {
            return;
        }
    }
    panic!("loss went from {first} to only {last} in {max_steps} steps");
}

/// A U-Net small enough that even a huge image predicts in seconds on lavapipe: depth 2,
/// 2 base channels, valid convs, no dropout; tile 188 -> 172 (the CLI's default tile).
pub fn tiny_config() -> UNetConfig {
    UNetConfig {
        depth: 2,
        base_channels: 2,
        padding: Padding::Valid,
        dropout: None,
        ..UNetConfig::small()
    }
}

/// `trainer` saved to a checkpoint file and loaded back; `name` keeps tests running at
/// the same time apart, and the file is removed.
pub fn through_checkpoint(gpu: &Gpu, trainer: &Trainer, name: &str) -> Trainer {
    let dir = std::env::temp_dir().join(format!("unet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    checkpoint::save(gpu, trainer, &path).unwrap();
    let loaded = checkpoint::load(gpu, &path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}
