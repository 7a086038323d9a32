//! Autotuning of the convolutions: `off` never tunes, a tuned (or cached) choice computes
//! what the reference does, a corrupt cache is rebuilt, and a resumed training run uses
//! the choices kept in its run folder. (The cache's round trip and keys are unit tests in
//! `src/gpu/autotune.rs`.)

mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::reference::{self, Host};
use common::*;
use unet_wgpu::data::{synthetic_dataset, AugmentConfig, SynthConfig};
use unet_wgpu::gpu::autotune::{Source, RUN_FILE};
use unet_wgpu::gpu::TuneMode;
use unet_wgpu::ops::conv2d::autotune::{beats, choice_name, untuned_choice, Problem, TunedPass};
use unet_wgpu::ops::conv2d::{self, Conv2d, ConvAlgo, Padding};
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::run::{run, RunOptions, SgdChanges};
use unet_wgpu::{Gpu, Shape};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unet-autotune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A device tuning in `mode`, with a fresh cache file of its own (not yet written).
fn tuning_gpu(name: &str, mode: TuneMode) -> (Gpu, PathBuf) {
    let cache = scratch(name).join("autotune.json");
    let gpu = gpu();
    gpu.set_autotune(mode, Some(cache.clone()));
    (gpu, cache)
}

const CONV: Conv2d = Conv2d {
    kernel: 3,
    padding: Padding::Valid,
    relu: true,
};
const C_OUT: usize = 7;

fn inp_shape() -> Shape {
    Shape::new(1, 5, 13, 11)
}

/// Runs the three passes of one odd-sized conv with the default launchers and checks the
/// forward against the f64 reference, the backward against variant 1.
fn run_and_check(gpu: &Gpu) {
    let mut r = rng(7);
    let wshape = CONV.weight_shape(inp_shape().c, C_OUT);
    let x = random_vec(&mut r, inp_shape().numel());
    let w = random_vec(&mut r, wshape.numel());
    let b = random_vec(&mut r, C_OUT);
    let inp = upload(gpu, inp_shape(), &x);
    let weight = upload(gpu, wshape, &w);
    let bias = upload(gpu, Shape::vector(C_OUT), &b);
    let out = conv2d::forward(gpu, &CONV, &inp, &weight, &bias).unwrap();
    let host = Host {
        shape: inp_shape(),
        data: to_f64(&x),
    };
    let want = reference::conv2d(&host, &to_f64(&w), &to_f64(&b), C_OUT, 3, 0, true);
    assert_close("forward", &out.to_vec(gpu).unwrap(), &want.data, 1e-4, 1e-4);

    let dout = upload(gpu, out.shape(), &random_vec(&mut r, out.numel()));
    let dinp = conv2d::backward_input(gpu, &CONV, inp_shape(), &weight, &out, &dout).unwrap();
    let direct = ConvAlgo::Direct;
    let want =
        conv2d::backward_input_with(gpu, direct, &CONV, inp_shape(), &weight, &out, &dout).unwrap();
    let want = to_f64(&want.to_vec(gpu).unwrap());
    assert_close(
        "backward_input",
        &dinp.to_vec(gpu).unwrap(),
        &want,
        1e-4,
        1e-4,
    );

    let grads = |algo| {
        let dw = upload(gpu, wshape, &vec![0.0; wshape.numel()]);
        let db = upload(gpu, Shape::vector(C_OUT), &[0.0; C_OUT]);
        conv2d::backward_params_with(gpu, algo, &CONV, &inp, &out, &dout, &dw, &db).unwrap();
        let mut v = dw.to_vec(gpu).unwrap();
        v.extend(db.to_vec(gpu).unwrap());
        v
    };
    let want = to_f64(&grads(ConvAlgo::Direct));
    assert_close("backward_params", &grads(ConvAlgo::Auto), &want, 1e-4, 1e-4);
}

#[test]
fn off_never_tunes_nor_writes() {
    let (gpu, cache) = tuning_gpu("off", TuneMode::Off);
    run_and_check(&gpu);
    assert!(gpu.autotune().decisions().is_empty());
    assert!(!cache.exists(), "off wrote {}", cache.display());
    // A new device is off whatever the environment says.
    let fresh = common::gpu();
    assert_eq!(fresh.autotune().mode(), TuneMode::Off);
}

#[test]
fn a_tuned_choice_computes_the_reference_and_is_cached() {
    let (gpu, cache) = tuning_gpu("tuned", TuneMode::On);
    run_and_check(&gpu);
    let decisions = gpu.autotune().decisions().to_vec();
    assert_eq!(decisions.len(), 3, "{decisions:?}");
    for d in &decisions {
        assert_eq!(d.source, Source::Tuned);
        assert!(d.key.contains("1x5x13x11->7"), "{}", d.key);
        // The untuned choice was timed, and only one faster by the margin replaces it.
        let problem = [
            TunedPass::Forward,
            TunedPass::BackwardInput,
            TunedPass::BackwardParams,
        ]
        .into_iter()
        .map(|pass| Problem::conv(pass, &CONV, inp_shape(), C_OUT))
        .find(|p| p.key() == d.key)
        .unwrap_or_else(|| panic!("a decision for another pass: {}", d.key));
        let untuned = choice_name(&untuned_choice(&gpu, &problem));
        let ms = |name: &str| {
            let found = d.tuned.timings.iter().find(|t| t.0 == name);
            found
                .unwrap_or_else(|| panic!("{name} not timed: {:?}", d.tuned))
                .1
        };
        let untuned_ms = ms(&untuned);
        if d.tuned.choice != untuned {
            assert!(beats(ms(&d.tuned.choice), untuned_ms), "{:?}", d.tuned);
        }
    }
    // A later process starts from the cache and times nothing.
    let later = common::gpu();
    later.set_autotune(TuneMode::Cached, Some(cache));
    run_and_check(&later);
    let sources: Vec<Source> = later
        .autotune()
        .decisions()
        .iter()
        .map(|d| d.source)
        .collect();
    assert_eq!(sources, [Source::Cache; 3]);
}

#[test]
fn a_cached_choice_runs_and_cached_mode_tunes_nothing_new() {
    // Put a non-default choice in the cache through the store's own writer.
    let (gpu, cache) = tuning_gpu("cached", TuneMode::On);
    let key = format!("conv3x3 valid relu forward 1x5x13x11->{C_OUT}");
    let tuned = unet_wgpu::gpu::Tuned {
        choice: "tiled 16x32x16".into(),
        timings: vec![],
    };
    gpu.autotune().record(&key, tuned, Source::Tuned);
    gpu.set_autotune(TuneMode::Cached, Some(cache));
    run_and_check(&gpu);
    let decisions = gpu.autotune().decisions().to_vec();
    // Only the forward is in the cache; the backward passes ran the default untuned.
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].tuned.choice, "tiled 16x32x16");
    assert_eq!(decisions[0].source, Source::Cache);
}

#[test]
fn a_corrupt_cache_is_rebuilt() {
    let cache = scratch("corrupt").join("autotune.json");
    std::fs::write(&cache, b"\x00 not json {").unwrap();
    let gpu = gpu();
    gpu.set_autotune(TuneMode::On, Some(cache.clone()));
    run_and_check(&gpu);
    let text = std::fs::read_to_string(&cache).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("rebuilt as JSON");
    assert!(text.contains("1x5x13x11->7"), "{parsed}");
}

#[test]
fn a_resumed_run_uses_its_run_folder_choices() {
    let dir = scratch("resume");
    let cache = dir.join("cache.json");
    let out = dir.join("run");
    let data = Arc::new(synthetic_dataset(2, 64, 64, 3, &SynthConfig::default()).unwrap());
    let options = |steps, resume: Option<PathBuf>| RunOptions {
        config: tiny_config(),
        tile: 44,
        batch: 1,
        steps,
        sgd: Sgd::default(),
        seed: 5,
        augment: AugmentConfig::none(),
        out: out.clone(),
        checkpoint_every: 1,
        validate_every: 1000,
        resume,
        resume_sgd: SgdChanges::default(),
        schedule: None,
        detect_collapse: true,
        progress: false,
        source: None,
    };
    let stop = AtomicBool::new(false);
    let first = gpu();
    first.set_autotune(TuneMode::On, Some(cache.clone()));
    run(&first, Arc::clone(&data), None, &options(1, None), &stop).unwrap();
    let chosen = first.autotune().decisions().to_vec();
    assert!(!chosen.is_empty());
    assert!(out.join(RUN_FILE).exists());

    // The cache changes meanwhile (here: emptied); the resumed run keeps its own choices.
    std::fs::remove_file(&cache).unwrap();
    let resumed = gpu();
    resumed.set_autotune(TuneMode::On, Some(cache));
    run(&resumed, data, None, &options(2, Some(out.clone())), &stop).unwrap();
    let again = resumed.autotune().decisions().to_vec();
    assert_eq!(again.len(), chosen.len());
    for d in &again {
        assert_eq!(d.source, Source::RunFolder, "{}", d.key);
        let before = chosen.iter().find(|c| c.key == d.key).expect("same shapes");
        assert_eq!(d.tuned.choice, before.tuned.choice, "{}", d.key);
    }
}
