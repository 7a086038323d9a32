//! The runtime itself: uploads and downloads, poisoning, the pool, the 2-D dispatch fold,
//! errors for oversized tensors, and every WGSL file validated by naga.

mod common;

use common::*;
use unet_wgpu::ops::fill::fill;
use unet_wgpu::{Error, Shape, Tensor};

#[test]
fn upload_download_round_trip() {
    let gpu = gpu();
    let data = random_vec(&mut rng(1), 3 * 5 * 7);
    let t = upload(&gpu, Shape::new(1, 3, 5, 7), &data);
    assert_eq!(t.to_vec(&gpu).unwrap(), data);
}

#[test]
fn new_tensors_are_poisoned_in_test_mode() {
    let gpu = gpu();
    let t = Tensor::empty(&gpu, Shape::new(2, 3, 4, 5), "poisoned").unwrap();
    assert!(t.to_vec(&gpu).unwrap().iter().all(|v| v.is_nan()));
    let z = Tensor::zeros(&gpu, Shape::new(2, 3, 4, 5), "zeros").unwrap();
    assert!(z.to_vec(&gpu).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn fill_folds_large_dispatches_into_2d() {
    let gpu = gpu();
    // 65,535 workgroups of 256 cover 16,776,960 elements; one more element needs a 2-D grid.
    let numel = 65_535 * 256 + 1000;
    assert!(
        gpu.grid_1d(numel as u64, 256)[1] > 1,
        "this size must need the fold"
    );
    let t = Tensor::empty(&gpu, Shape::new(1, 1, 1, numel), "large").unwrap();
    fill(&gpu, &t, 2.5).unwrap();
    let v = t.to_vec(&gpu).unwrap();
    let wrong = v.iter().filter(|&&x| x != 2.5).count();
    assert_eq!(wrong, 0, "{wrong} of {numel} elements not filled");
}

#[test]
fn lasting_tensors_take_their_exact_size() {
    let gpu = gpu();
    // 100,000 floats: 400,000 B, whose size class is 448 KiB (458,752 B).
    let shape = Shape::new(1, 1, 1, 100_000);
    let held = || gpu.pool_stats().bytes_held;
    let before = held();
    let param = Tensor::lasting_from_slice(&gpu, shape, &vec![1.5; 100_000], "param").unwrap();
    assert_eq!(
        held() - before,
        400_128,
        "400,000 B rounded up to 256 B only"
    );
    let grad = Tensor::lasting_zeros(&gpu, shape, "grad").unwrap();
    assert_eq!(held() - before, 2 * 400_128);
    assert!(param.to_vec(&gpu).unwrap().iter().all(|&v| v == 1.5));
    assert!(grad.to_vec(&gpu).unwrap().iter().all(|&v| v == 0.0));
    // A tensor of the same shape from the size classes is rounded up.
    let before = held();
    let _activation = Tensor::zeros(&gpu, shape, "activation").unwrap();
    assert_eq!(held() - before, 458_752);
}

#[test]
fn pool_reuses_buffers() {
    let gpu = gpu();
    let shape = Shape::new(1, 4, 16, 16);
    drop(Tensor::empty(&gpu, shape, "a").unwrap());
    let before = gpu.pool_stats();
    for _ in 0..5 {
        drop(Tensor::empty(&gpu, shape, "b").unwrap());
    }
    let after = gpu.pool_stats();
    assert_eq!(
        after.allocations, before.allocations,
        "a same-size tensor must reuse"
    );
    assert_eq!(after.reuses, before.reuses + 5);
}

#[test]
fn too_large_tensor_is_a_clear_error() {
    let gpu = gpu();
    let limit = gpu.max_tensor_bytes();
    let elements = (limit / 4 + 1) as usize;
    let err = Tensor::empty(&gpu, Shape::new(1, 1, 1, elements), "huge activation").unwrap_err();
    match &err {
        Error::TooLarge { name, .. } => assert_eq!(name, "huge activation"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("smaller tile"), "{err}");
}

#[test]
fn empty_shape_is_an_error() {
    let gpu = gpu();
    assert!(matches!(
        Tensor::empty(&gpu, Shape::new(1, 0, 3, 3), "nothing"),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        // The GEMM convolutions need subgroup operations (and only run where the device
        // has them), and so does the probe that measures them; nothing else may.
        let needs_subgroups =
            path.ends_with("conv2d_gemm.wgsl") || path.ends_with("subgroup_probe.wgsl");
        let capabilities = if needs_subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities);
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
        validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        // Binding 0 is the params uniform and 1.. the storage buffers: no kernel may bind
        // more than WebGPU and GLES 3.1 guarantee.
        for (_, global) in module.global_variables.iter() {
            if let Some(binding) = &global.binding {
                assert!(
                    binding.binding <= unet_wgpu::gpu::MAX_STORAGE_BINDINGS,
                    "{}: {:?} binds storage buffer {} (at most {} per kernel)",
                    path.display(),
                    global.name,
                    binding.binding,
                    unet_wgpu::gpu::MAX_STORAGE_BINDINGS
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "found only {checked} shaders in {}",
        dir.display()
    );
}

#[test]
fn op_benchmark_reports_every_op_with_its_bandwidth() {
    use unet_wgpu::bench::kernels::{BenchOptions, Pass};
    use unet_wgpu::bench::ops::{bench_ops, OpShapes};
    let gpu = gpu();
    // Tiny shapes with the U-Net's structure: pools of even maps, up-convolutions whose
    // outputs fit inside the skip maps.
    let shapes = OpShapes {
        pool_inputs: vec![Shape::new(1, 2, 12, 12), Shape::new(1, 4, 6, 6)],
        up_inputs: vec![(Shape::new(1, 4, 4, 4), 2), (Shape::new(1, 8, 2, 2), 4)],
        logits: Shape::new(1, 2, 5, 5),
        dropout: Shape::new(1, 8, 2, 2),
        params: 1000,
    };
    let opts = BenchOptions {
        reps: 1,
        warmup: 0,
        ..BenchOptions::default()
    };
    let reports = bench_ops(&gpu, &shapes, &opts, false).unwrap();
    // 2 pools x 2 passes, 2 up-convolutions and 2 concatenations x 2 passes, dropout x 2,
    // loss, SGD.
    assert_eq!(reports.len(), 4 + 8 + 2 + 1 + 1);
    assert!(reports
        .iter()
        .all(|r| r.ms > 0.0 && r.gbps.is_some_and(|b| b > 0.0) && r.speedup.is_none()));
    let ups = reports.iter().filter(|r| r.name.ends_with(".up"));
    assert!(ups.clone().all(|r| r.gflops.is_some()) && ups.count() == 4);
    assert!(reports.iter().any(|r| r.pass == Pass::Update));
    let json = serde_json::to_value(&reports).unwrap();
    for key in ["name", "pass", "variant", "shape", "ms", "gflops", "gbps"] {
        assert!(json[0].get(key).is_some(), "JSON rows have {key}");
    }
}

#[test]
fn a_planned_job_runs_in_its_planned_buffers() {
    let gpu = gpu();
    gpu.set_poison(false);
    // A job whose small tensor dies before its large one is made: a pool serving requests
    // in order needs both buffers, the plan only the large one.
    let job = |scale: f32| -> unet_wgpu::Result<Vec<f32>> {
        let small = Tensor::from_slice(&gpu, Shape::new(1, 1, 1, 1000), &[scale; 1000], "small")?;
        let first = small.to_vec(&gpu)?[0];
        drop(small);
        let large = Tensor::zeros(&gpu, Shape::new(1, 1, 1, 4000), "large")?;
        fill(&gpu, &large, first + 1.0)?;
        large.to_vec(&gpu)
    };
    let before = gpu.pool_stats();
    gpu.plan_memory(|| job(0.0)).unwrap();
    let planned = gpu.pool_stats();
    // One buffer of 4000 floats, 16,000 B rounded up to 256 B.
    assert_eq!(planned.bytes_held - before.bytes_held, 16_128);
    let mut warm = None;
    for run in 0..3 {
        gpu.start_planned_job();
        let v = job(run as f32).unwrap();
        assert!(v.iter().all(|&x| x == run as f32 + 1.0), "run {run}");
        // Only the read-back staging buffers, which come from the size classes, are new,
        // and only in the first run.
        warm.get_or_insert(gpu.pool_stats().allocations);
    }
    assert_eq!(gpu.pool_stats().allocations, warm.unwrap());
    assert_eq!(
        gpu.pool_stats().bytes_held - planned.bytes_held,
        4096 + 16_128
    );
    // A run that asks for something else falls back to the size classes, and still works.
    gpu.start_planned_job();
    let other = Tensor::from_slice(&gpu, Shape::new(1, 1, 1, 7), &[3.0; 7], "other").unwrap();
    assert_eq!(other.to_vec(&gpu).unwrap(), vec![3.0; 7]);
}

#[test]
fn profiling_times_every_pass_by_kernel() {
    use unet_wgpu::ops::conv2d::{self, Conv2d, Padding};
    let gpu = gpu();
    if !gpu.has_timestamps() {
        eprintln!("skipped: this adapter has no timestamp queries");
        assert!(gpu.start_profiling().is_err(), "profiling must refuse");
        return;
    }
    let conv = Conv2d {
        kernel: 3,
        padding: Padding::Valid,
        relu: true,
    };
    let mut r = rng(7);
    let inp = upload(&gpu, Shape::new(1, 4, 20, 20), &random_vec(&mut r, 1600));
    let weight = upload(&gpu, Shape::new(8, 4, 3, 3), &random_vec(&mut r, 288));
    let bias = upload(&gpu, Shape::new(1, 1, 1, 8), &random_vec(&mut r, 8));

    gpu.start_profiling().unwrap();
    for _ in 0..3 {
        conv2d::forward(&gpu, &conv, &inp, &weight, &bias).unwrap();
    }
    fill(&gpu, &inp, 1.0).unwrap();
    let profile = gpu.finish_profiling().unwrap();

    let passes = |kernel: &str| {
        profile
            .kernels
            .iter()
            .find(|k| k.kernel == kernel)
            .map_or(0, |k| k.passes)
    };
    // (Test mode also fills every new tensor with NaN.)
    assert!(passes("fill.wgsl::fill") >= 1, "{profile:?}");
    let conv_passes: usize = profile
        .kernels
        .iter()
        .filter(|k| k.kernel.starts_with("conv2d"))
        .map(|k| k.passes)
        .sum();
    assert_eq!(
        conv_passes % 3,
        0,
        "each forward runs the same passes: {profile:?}"
    );
    assert!(conv_passes >= 3, "{profile:?}");
    assert_eq!(profile.untimed_passes, 0);
    let sum: f64 = profile.kernels.iter().map(|k| k.ms).sum();
    assert!((sum - profile.total_ms).abs() < 1e-9 && profile.total_ms > 0.0);
    assert!(
        profile.kernels.windows(2).all(|w| w[0].ms >= w[1].ms),
        "sorted"
    );
    // Profiling is off again: nothing more is timed.
    assert!(gpu.finish_profiling().unwrap().kernels.is_empty());
}

#[test]
fn subgroup_sizes_are_measured_not_assumed() {
    let gpu = gpu();
    let described = gpu.describe();
    let Some(s) = gpu.subgroups() else {
        assert!(described.contains("subgroups: none"), "{described}");
        return;
    };
    // The kernels rely on segments of s.min lanes inside workgroups of whole s.max
    // subgroups: never more than the driver reports as its smallest size, a power of two.
    assert!(s.min.is_power_of_two() && s.min <= s.max, "{s:?}");
    assert!(s.min <= gpu.info().subgroup_min_size, "{s:?}");
    assert!(s.max >= gpu.info().subgroup_max_size, "{s:?}");
    assert!(
        described.contains(&format!("subgroups: {s}")),
        "{described}"
    );
}
