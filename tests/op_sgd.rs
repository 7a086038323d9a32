//! SGD with momentum against an f64 reference of PyTorch's update, and its validation.

mod common;

use common::*;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::{Error, Gpu, Shape, Tensor};

/// PyTorch's torch.optim.SGD step (dampening 0, not Nesterov), in f64, in place.
fn ref_step(opt: &Sgd, param: &mut [f64], grad: &[f64], velocity: &mut [f64]) {
    let (lr, mu, wd) = (
        f64::from(opt.lr),
        f64::from(opt.momentum),
        f64::from(opt.weight_decay),
    );
    for ((p, &g), v) in param.iter_mut().zip(grad).zip(velocity.iter_mut()) {
        let g = g + wd * *p;
        *v = mu * *v + g;
        *p -= lr * *v;
    }
}

/// Runs `steps` steps on the GPU and in f64 from the same start, with a fresh random
/// gradient each step, and compares parameter and velocity after every step.
fn check_steps(gpu: &Gpu, opt: Sgd, len: usize, steps: usize, random_velocity: bool, seed: u64) {
    let shape = Shape::vector(len);
    let mut rng = rng(seed);
    let p0 = random_vec(&mut rng, len);
    let v0 = if random_velocity {
        random_vec(&mut rng, len)
    } else {
        vec![0.0; len]
    };
    let param = upload(gpu, shape, &p0);
    let velocity = upload(gpu, shape, &v0);
    let grad = Tensor::empty(gpu, shape, "grad").unwrap();
    let (mut want_p, mut want_v) = (to_f64(&p0), to_f64(&v0));
    for step in 0..steps {
        let g = random_vec(&mut rng, len);
        grad.write(gpu, &g).unwrap();
        opt.step(gpu, &param, &grad, &velocity).unwrap();
        ref_step(&opt, &mut want_p, &to_f64(&g), &mut want_v);

        let what = |t| format!("{t} after step {} of {opt:?}, length {len}", step + 1);
        // f32 rounding of a few multiply-adds per step, compounded over the steps.
        assert_close(
            &what("velocity"),
            &velocity.to_vec(gpu).unwrap(),
            &want_v,
            1e-5,
            1e-5,
        );
        assert_close(
            &what("param"),
            &param.to_vec(gpu).unwrap(),
            &want_p,
            1e-5,
            1e-5,
        );
        // The step does not touch the gradient (zeroing it is the caller's job).
        assert_eq!(grad.to_vec(gpu).unwrap(), g, "{}", what("gradient"));
    }
}

#[test]
fn steps_match_pytorch_formula() {
    let gpu = gpu();
    let paper = Sgd::default();
    check_steps(&gpu, paper, 1, 4, false, 1);
    check_steps(&gpu, paper, 1000, 5, false, 2);
    let plain = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    check_steps(&gpu, plain, 257, 5, true, 3);
    let no_momentum = Sgd {
        lr: 0.05,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    check_steps(&gpu, no_momentum, 33, 3, true, 4);
}

#[test]
fn steps_with_weight_decay_match_pytorch_formula() {
    let gpu = gpu();
    let decayed = Sgd {
        lr: 0.05,
        momentum: 0.99,
        weight_decay: 0.1,
    };
    check_steps(&gpu, decayed, 777, 5, false, 5);
    let strong = Sgd {
        lr: 0.01,
        momentum: 0.5,
        weight_decay: 2.0,
    };
    check_steps(&gpu, strong, 255, 4, true, 6);
}

#[test]
fn step_folds_large_parameters_into_2d() {
    let gpu = gpu();
    let len = 65_535 * 256 + 1000;
    assert!(
        gpu.grid_1d(len as u64, 256)[1] > 1,
        "this length must need the 2-D fold"
    );
    let opt = Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    check_steps(&gpu, opt, len, 1, true, 7);
}

#[test]
fn default_is_the_papers_momentum() {
    let opt = Sgd::default();
    assert_eq!(opt.momentum, 0.99);
    assert_eq!(opt.weight_decay, 0.0);
    assert_eq!(opt.lr, 0.01);
    opt.validate().unwrap();
}

#[test]
fn invalid_hyperparameters_are_errors() {
    let gpu = gpu();
    let shape = Shape::vector(10);
    let p0 = random_vec(&mut rng(8), 10);
    let param = upload(&gpu, shape, &p0);
    let grad = Tensor::zeros(&gpu, shape, "grad").unwrap();
    let velocity = Tensor::zeros(&gpu, shape, "velocity").unwrap();
    let ok = Sgd::default();
    let bad = [
        Sgd { lr: 0.0, ..ok },
        Sgd { lr: -0.01, ..ok },
        Sgd { lr: f32::NAN, ..ok },
        Sgd {
            lr: f32::INFINITY,
            ..ok
        },
        Sgd {
            momentum: -0.1,
            ..ok
        },
        Sgd {
            momentum: 1.0,
            ..ok
        },
        Sgd {
            momentum: f32::NAN,
            ..ok
        },
        Sgd {
            weight_decay: -1e-4,
            ..ok
        },
        Sgd {
            weight_decay: f32::NAN,
            ..ok
        },
        Sgd {
            weight_decay: f32::INFINITY,
            ..ok
        },
    ];
    for opt in bad {
        let err = opt.step(&gpu, &param, &grad, &velocity).unwrap_err();
        assert!(
            matches!(err, Error::Shape { op: "sgd", .. }),
            "{opt:?}: {err:?}"
        );
        assert!(opt.validate().is_err(), "{opt:?}");
    }
    // Nothing was dispatched.
    assert_eq!(param.to_vec(&gpu).unwrap(), p0);
    // The edges of the valid ranges are accepted.
    for opt in [
        Sgd {
            momentum: 0.0,
            ..ok
        },
        Sgd {
            lr: 1e-8,
            weight_decay: 0.0,
            ..ok
        },
    ] {
        opt.step(&gpu, &param, &grad, &velocity).unwrap();
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let gpu = gpu();
    let param = Tensor::zeros(&gpu, Shape::vector(12), "param").unwrap();
    let same = Tensor::zeros(&gpu, Shape::vector(12), "same").unwrap();
    let other = Tensor::zeros(&gpu, Shape::new(1, 3, 2, 2), "other").unwrap();
    let opt = Sgd::default();
    for (grad, velocity) in [(&other, &same), (&same, &other)] {
        let err = opt.step(&gpu, &param, grad, velocity).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "sgd", .. }), "{err:?}");
    }
}
