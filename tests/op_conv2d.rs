//! conv2d against a naive f64 CPU reference and finite differences.

mod common;

use common::reference::{self, Host};
use common::*;
use unet_wgpu::ops::conv2d::{self, Conv2d, Padding};
use unet_wgpu::{Gpu, Shape, Tensor};

/// The reference convolution in f64: returns the output shape and values (after ReLU if
/// fused).
fn reference_forward(
    conv: &Conv2d,
    inp: Shape,
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    c_out: usize,
) -> (Shape, Vec<f64>) {
    let x = Host {
        shape: inp,
        data: x.to_vec(),
    };
    let out = reference::conv2d(&x, weight, bias, c_out, conv.kernel, conv.pad(), conv.relu);
    (out.shape, out.data)
}

struct Case {
    conv: Conv2d,
    inp: Shape,
    c_out: usize,
}

fn conv(kernel: usize, padding: Padding, relu: bool) -> Conv2d {
    Conv2d {
        kernel,
        padding,
        relu,
    }
}

struct Uploaded {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
}

fn upload_case(gpu: &Gpu, case: &Case, seed: u64) -> Uploaded {
    let mut r = rng(seed);
    let wshape = case.conv.weight_shape(case.inp.c, case.c_out);
    let x = random_vec(&mut r, case.inp.numel());
    let w = random_vec(&mut r, wshape.numel());
    let b = random_vec(&mut r, case.c_out);
    let inp = upload(gpu, case.inp, &x);
    let weight = upload(gpu, wshape, &w);
    let bias = upload(gpu, Shape::vector(case.c_out), &b);
    Uploaded {
        x,
        w,
        b,
        inp,
        weight,
        bias,
    }
}

fn check_forward(gpu: &Gpu, case: &Case, seed: u64) {
    let u = upload_case(gpu, case, seed);
    let out = conv2d::forward(gpu, &case.conv, &u.inp, &u.weight, &u.bias).unwrap();
    let (shape, want) = reference_forward(
        &case.conv,
        case.inp,
        &to_f64(&u.x),
        &to_f64(&u.w),
        &to_f64(&u.b),
        case.c_out,
    );
    assert_eq!(out.shape(), shape);
    let what = format!("conv2d forward {:?} on {}", case.conv, case.inp);
    assert_close(&what, &out.to_vec(gpu).unwrap(), &want, 1e-4, 1e-4);
}

#[test]
fn forward_matches_reference() {
    let gpu = gpu();
    let cases = [
        Case {
            conv: conv(3, Padding::Valid, true),
            inp: Shape::new(1, 3, 7, 9),
            c_out: 5,
        },
        Case {
            conv: conv(3, Padding::Valid, false),
            inp: Shape::new(2, 4, 17, 13),
            c_out: 3,
        },
        Case {
            conv: conv(3, Padding::Same, true),
            inp: Shape::new(2, 5, 11, 6),
            c_out: 7,
        },
        Case {
            conv: conv(1, Padding::Valid, false),
            inp: Shape::new(3, 6, 5, 5),
            c_out: 2,
        },
        Case {
            conv: conv(5, Padding::Same, false),
            inp: Shape::new(1, 2, 9, 8),
            c_out: 3,
        },
        // 8 x 30 x 30 = 7200 outputs: not a multiple of the workgroup size.
        Case {
            conv: conv(3, Padding::Valid, true),
            inp: Shape::new(1, 16, 32, 32),
            c_out: 8,
        },
    ];
    for (seed, case) in cases.iter().enumerate() {
        check_forward(&gpu, case, seed as u64);
    }
}

#[test]
fn forward_folds_large_grids_into_2d() {
    let gpu = gpu();
    // A 1x1 conv over 4200 x 4200 pixels: 17.6 M outputs, more than 65,535 x 256.
    let case = Case {
        conv: conv(1, Padding::Valid, false),
        inp: Shape::new(1, 1, 4200, 4200),
        c_out: 1,
    };
    assert!(
        gpu.grid_1d(case.inp.numel() as u64, 256)[1] > 1,
        "this size must need the fold"
    );
    check_forward(&gpu, &case, 7);
}

/// Checks both backward passes against finite differences of the f64 reference, with
/// the fake loss L = sum(out * g): dL/dout = g.
fn check_backward(gpu: &Gpu, case: &Case, seed: u64) {
    let u = upload_case(gpu, case, seed);
    let conv = case.conv;
    let (x, w, b) = (to_f64(&u.x), to_f64(&u.w), to_f64(&u.b));
    let out = conv2d::forward(gpu, &conv, &u.inp, &u.weight, &u.bias).unwrap();
    let g = random_vec(&mut rng(seed + 100), out.numel());
    let dout = upload(gpu, out.shape(), &g);
    let g = to_f64(&g);

    let dinp = conv2d::backward_input(gpu, &conv, case.inp, &u.weight, &out, &dout).unwrap();
    let dweight = Tensor::zeros(gpu, u.weight.shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(gpu, u.bias.shape(), "dbias").unwrap();
    conv2d::backward_params(gpu, &conv, &u.inp, &out, &dout, &dweight, &dbias).unwrap();

    // With a fused ReLU the loss has kinks where a pre-activation is 0; the random data
    // keeps every pre-activation farther from 0 than the finite-difference step moves it.
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        dot(
            &reference_forward(&conv, case.inp, x, w, b, case.c_out).1,
            &g,
        )
    };
    let eps = 1e-4;
    let what = format!("{conv:?} on {}", case.inp);
    let want = numeric_grad(|v| loss(v, &w, &b), &x, eps);
    assert_close(
        &format!("dinp {what}"),
        &dinp.to_vec(gpu).unwrap(),
        &want,
        1e-3,
        1e-3,
    );
    let want = numeric_grad(|v| loss(&x, v, &b), &w, eps);
    assert_close(
        &format!("dweight {what}"),
        &dweight.to_vec(gpu).unwrap(),
        &want,
        1e-3,
        1e-3,
    );
    let want = numeric_grad(|v| loss(&x, &w, v), &b, eps);
    assert_close(
        &format!("dbias {what}"),
        &dbias.to_vec(gpu).unwrap(),
        &want,
        1e-3,
        1e-3,
    );
}

#[test]
fn backward_matches_finite_differences() {
    let gpu = gpu();
    let cases = [
        Case {
            conv: conv(3, Padding::Valid, false),
            inp: Shape::new(1, 2, 6, 5),
            c_out: 3,
        },
        Case {
            conv: conv(3, Padding::Valid, true),
            inp: Shape::new(2, 3, 5, 7),
            c_out: 2,
        },
        Case {
            conv: conv(3, Padding::Same, true),
            inp: Shape::new(2, 2, 5, 4),
            c_out: 3,
        },
        Case {
            conv: conv(1, Padding::Valid, false),
            inp: Shape::new(2, 3, 4, 3),
            c_out: 2,
        },
    ];
    for (seed, case) in cases.iter().enumerate() {
        check_backward(&gpu, case, 10 + seed as u64);
    }
}

#[test]
fn parameter_gradients_accumulate() {
    let gpu = gpu();
    let case = Case {
        conv: conv(3, Padding::Valid, true),
        inp: Shape::new(1, 2, 6, 6),
        c_out: 2,
    };
    let u = upload_case(&gpu, &case, 3);
    let out = conv2d::forward(&gpu, &case.conv, &u.inp, &u.weight, &u.bias).unwrap();
    let dout = upload(&gpu, out.shape(), &random_vec(&mut rng(4), out.numel()));
    let dweight = Tensor::zeros(&gpu, u.weight.shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(&gpu, u.bias.shape(), "dbias").unwrap();
    conv2d::backward_params(&gpu, &case.conv, &u.inp, &out, &dout, &dweight, &dbias).unwrap();
    let (w1, b1) = (dweight.to_vec(&gpu).unwrap(), dbias.to_vec(&gpu).unwrap());
    conv2d::backward_params(&gpu, &case.conv, &u.inp, &out, &dout, &dweight, &dbias).unwrap();
    let double = |v: &[f32]| v.iter().map(|&x| 2.0 * f64::from(x)).collect::<Vec<_>>();
    assert_close(
        "dweight twice",
        &dweight.to_vec(&gpu).unwrap(),
        &double(&w1),
        1e-6,
        1e-6,
    );
    assert_close(
        "dbias twice",
        &dbias.to_vec(&gpu).unwrap(),
        &double(&b1),
        1e-6,
        1e-6,
    );
    assert!(
        w1.iter().any(|&v| v != 0.0),
        "the gradient must not be trivially zero"
    );
}

#[test]
fn mismatched_shapes_are_errors() {
    let gpu = gpu();
    let c = conv(3, Padding::Valid, false);
    let inp = Tensor::zeros(&gpu, Shape::new(1, 3, 8, 8), "inp").unwrap();
    let wrong_weight = Tensor::zeros(&gpu, Shape::new(4, 2, 3, 3), "weight").unwrap();
    let bias = Tensor::zeros(&gpu, Shape::vector(4), "bias").unwrap();
    let err = conv2d::forward(&gpu, &c, &inp, &wrong_weight, &bias).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");

    let tiny = Tensor::zeros(&gpu, Shape::new(1, 2, 2, 2), "tiny").unwrap();
    let weight = Tensor::zeros(&gpu, Shape::new(4, 2, 3, 3), "weight").unwrap();
    let err = conv2d::forward(&gpu, &c, &tiny, &weight, &bias).unwrap_err();
    assert!(err.to_string().contains("smaller than"), "{err}");

    let inp2 = Tensor::zeros(&gpu, Shape::new(1, 2, 8, 8), "inp").unwrap();
    let short_bias = Tensor::zeros(&gpu, Shape::vector(3), "bias").unwrap();
    let err = conv2d::forward(&gpu, &c, &inp2, &weight, &short_bias).unwrap_err();
    assert!(err.to_string().contains("bias"), "{err}");
}
