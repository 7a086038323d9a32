//! The whole U-Net: sizes and parameter count, gradients against finite differences of
//! an f64 CPU reference, overfitting one image, exact resume, and no allocation once warm.

mod common;

use std::collections::HashMap;

use common::reference::{self, Host};
use common::*;
use unet_wgpu::model::{Mode, UNet, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{Batch, LrSchedule, Schedule, Trainer};
use unet_wgpu::{Gpu, Shape};

#[test]
fn paper_network_has_the_papers_parameter_count() {
    assert_eq!(UNetConfig::paper().parameter_count(), 31_030_658);
}

#[test]
fn size_calculator_follows_the_paper() {
    let paper = UNetConfig::paper();
    assert_eq!(paper.output_size(572), Some(388));
    assert_eq!(paper.check_tile(572).unwrap(), 388);
    assert_eq!(paper.input_size_for(388), 572);
    // 574 makes an odd max-pool input; the error names the valid neighbours 572 and 588.
    let err = paper.check_tile(574).unwrap_err().to_string();
    assert!(err.contains("572") && err.contains("588"), "{err}");
    let small = UNetConfig::small();
    assert_eq!(small.output_size(188), Some(100));
    let same = UNetConfig {
        padding: Padding::Same,
        ..paper
    };
    assert_eq!(same.output_size(512), Some(512));
    assert!(
        same.output_size(520).is_none(),
        "520 is not divisible by 16"
    );
}

fn tiny(padding: Padding) -> UNetConfig {
    UNetConfig {
        depth: 3,
        base_channels: 4,
        padding,
        dropout: None,
        ..UNetConfig::paper()
    }
}

fn host_params(gpu: &Gpu, model: &UNet) -> HashMap<String, Vec<f64>> {
    model
        .params()
        .iter()
        .map(|p| (p.name.clone(), to_f64(&p.value.to_vec(gpu).unwrap())))
        .collect()
}

/// dL/dparam on the GPU against central differences of the f64 reference network, with
/// the fake loss L = sum(logits * g), for a few elements of every parameter tensor.
fn check_model_gradient(padding: Padding, tile: usize) {
    let gpu = gpu();
    let config = tiny(padding);
    let model = UNet::new(&gpu, config, 5).unwrap();
    let shape = Shape::new(1, 1, tile, tile);
    let x = random_vec(&mut rng(6), shape.numel());
    let acts = model
        .forward(&gpu, upload(&gpu, shape, &x), Mode::Eval)
        .unwrap();
    let g = random_vec(&mut rng(7), acts.logits.numel());
    let dlogits = upload(&gpu, acts.logits.shape(), &g);
    // Read before the backward, which consumes the activations.
    let gpu_logits = acts.logits.to_vec(&gpu).unwrap();
    model.zero_grads(&gpu);
    model.backward(&gpu, acts, &dlogits).unwrap();

    let x = Host {
        shape,
        data: to_f64(&x),
    };
    let g = to_f64(&g);
    let mut params = host_params(&gpu, &model);
    let logits = reference::unet(&config, &params, &x);
    assert_close("logits", &gpu_logits, &logits.data, 1e-4, 1e-4);

    let eps = 1e-6;
    let mut checked = 0;
    for p in model.params() {
        let grad = p.grad.to_vec(&gpu).unwrap();
        let len = grad.len();
        for &i in &[0, len / 2, len - 1] {
            let original = params[&p.name][i];
            let mut loss_at = |v: f64| {
                params.get_mut(&p.name).unwrap()[i] = v;
                dot(&reference::unet(&config, &params, &x).data, &g)
            };
            let numeric = (loss_at(original + eps) - loss_at(original - eps)) / (2.0 * eps);
            loss_at(original);
            let what = format!("{padding:?} d{}[{i}]", p.name);
            assert_close(&what, &grad[i..=i], &[numeric], 1e-3, 1e-3);
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * model.params().len());
}

#[test]
fn whole_model_gradient_matches_finite_differences_valid() {
    // Depth 3, valid convs: 44 -> 4 would leave too little; 60 -> 20.
    check_model_gradient(Padding::Valid, 60);
}

#[test]
fn whole_model_gradient_matches_finite_differences_same() {
    check_model_gradient(Padding::Same, 12);
}

/// One synthetic training image: bright disks (class 1) on a dark background.
fn disks(tile: usize, out: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let margin = (tile - out) / 2;
    let centres = [(0.3, 0.3, 0.18), (0.7, 0.35, 0.15), (0.45, 0.75, 0.2)];
    let inside = |y: usize, x: usize| {
        let (fy, fx) = (y as f64 / tile as f64, x as f64 / tile as f64);
        centres
            .iter()
            .any(|(cy, cx, r)| (fy - cy).powi(2) + (fx - cx).powi(2) < r * r)
    };
    let mut noise = rng(9);
    let image = (0..tile * tile)
        .map(|i| if inside(i / tile, i % tile) { 0.7 } else { 0.2 } + 0.05 * random_vec(&mut noise, 1)[0])
        .collect();
    let labels = (0..out * out)
        .map(|i| f32::from(u8::from(inside(i / out + margin, i % out + margin))))
        .collect();
    (image, labels, vec![1.0; out * out])
}

const SMALL: UNetConfig = UNetConfig {
    depth: 3,
    base_channels: 8,
    dropout: Some(0.5),
    ..UNetConfig::paper()
};

fn small_trainer(gpu: &Gpu, seed: u64) -> Trainer {
    let model = UNet::new(gpu, SMALL, seed).unwrap();
    Trainer::new(
        model,
        Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        seed,
    )
}

const TILE: usize = 60;

/// `copies` copies of the disks image at `TILE`, its labels and weights cropped to the
/// output of `SMALL`.
struct DiskTiles {
    image: Vec<f32>,
    labels: Vec<f32>,
    weights: Vec<f32>,
    copies: usize,
}

impl DiskTiles {
    fn new(copies: usize) -> DiskTiles {
        let (image, labels, weights) = disks(TILE, SMALL.check_tile(TILE).unwrap());
        let repeat = |v: Vec<f32>| v.repeat(copies);
        DiskTiles {
            image: repeat(image),
            labels: repeat(labels),
            weights: repeat(weights),
            copies,
        }
    }

    fn batch(&self) -> Batch<'_> {
        Batch {
            input: &self.image,
            labels: &self.labels,
            weights: &self.weights,
            n: self.copies,
            tile: TILE,
        }
    }
}

#[test]
fn overfits_one_image() {
    let gpu = gpu();
    gpu.set_poison(false);
    let mut trainer = small_trainer(&gpu, 1);
    assert_overfits(&gpu, &mut trainer, &DiskTiles::new(1).batch(), 300);
}

fn weights_of(gpu: &Gpu, trainer: &Trainer) -> Vec<f32> {
    trainer
        .model
        .params()
        .iter()
        .flat_map(|p| p.value.to_vec(gpu).unwrap())
        .collect()
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let gpu = gpu();
    let tiles = DiskTiles::new(1);
    let batch = tiles.batch();

    let mut straight = small_trainer(&gpu, 2);
    for _ in 0..6 {
        straight.step(&gpu, &batch).unwrap();
    }

    let mut first_half = small_trainer(&gpu, 2);
    for _ in 0..3 {
        first_half.step(&gpu, &batch).unwrap();
    }
    let mut resumed = through_checkpoint(&gpu, &first_half, "resume");
    drop(first_half);
    assert_eq!(resumed.step, 3);
    for _ in 0..3 {
        resumed.step(&gpu, &batch).unwrap();
    }

    let (a, b) = (weights_of(&gpu, &straight), weights_of(&gpu, &resumed));
    let want: Vec<f64> = to_f64(&a);
    assert_close("weights after resume", &b, &want, 0.0, 1e-6);
}

#[test]
fn a_schedule_sets_each_steps_rate_and_checkpoints_keep_it() {
    let gpu = gpu();
    let tiles = DiskTiles::new(1);
    let batch = tiles.batch();
    // A warm-up of 2 steps then a drop to a quarter at half of 4 planned steps: rates
    // 0.025, 0.05, 0.0125, 0.0125 (powers of two apart, so exact in f32). A trainer whose
    // rate is set by hand before each step must take bit for bit the same steps.
    let (schedule, base) = Schedule::parse("0.05,0.0125@0.5").unwrap();
    let mut scheduled = small_trainer(&gpu, 4);
    scheduled.sgd.lr = base.unwrap();
    scheduled.schedule = LrSchedule {
        schedule,
        planned_steps: 4,
        warmup: 2,
    };
    let mut by_hand = small_trainer(&gpu, 4);
    let mut constant = small_trainer(&gpu, 4);
    for lr in [0.025, 0.05, 0.0125, 0.0125] {
        assert_eq!(scheduled.lr(), lr, "step {}", scheduled.step);
        scheduled.step(&gpu, &batch).unwrap();
        by_hand.sgd.lr = lr;
        by_hand.step(&gpu, &batch).unwrap();
        constant.step(&gpu, &batch).unwrap();
    }
    let scheduled_weights = weights_of(&gpu, &scheduled);
    assert_eq!(scheduled_weights, weights_of(&gpu, &by_hand));
    assert_ne!(scheduled_weights, weights_of(&gpu, &constant));

    let loaded = through_checkpoint(&gpu, &scheduled, "schedule");
    assert_eq!(loaded.sgd.lr, 0.05);
    assert_eq!(loaded.schedule, scheduled.schedule);
    assert_eq!(loaded.lr(), 0.0125);
}

#[test]
fn warm_steps_allocate_nothing() {
    let gpu = gpu();
    gpu.set_poison(false);
    let mut trainer = small_trainer(&gpu, 3);
    let tiles = DiskTiles::new(2);
    let batch = tiles.batch();
    trainer.step(&gpu, &batch).unwrap();
    let (stats, pipelines) = (gpu.pool_stats(), gpu.pipelines_built());
    for _ in 0..3 {
        trainer.step(&gpu, &batch).unwrap();
    }
    assert_eq!(
        gpu.pool_stats().allocations,
        stats.allocations,
        "a warm step allocated"
    );
    assert_eq!(
        gpu.pipelines_built(),
        pipelines,
        "a warm step built a pipeline"
    );
}

#[test]
fn a_batch_with_invalid_labels_is_refused() {
    let gpu = gpu();
    let mut trainer = small_trainer(&gpu, 1);
    let mut tiles = DiskTiles::new(1);
    // Three pixels whose labels are no class index of the 2 classes.
    for (i, bad) in [(3, 2.0), (40, -1.0), (77, 0.5)] {
        tiles.labels[i] = bad;
    }
    let err = trainer.step(&gpu, &tiles.batch()).unwrap_err();
    assert!(
        matches!(err, unet_wgpu::Error::InvalidLabels { pixels: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not class indices"), "{err}");
}
