//! ReLU backward and dropout against CPU references and the host mirror of the dropout
//! mask, the mask's statistics, and finite differences.

mod common;

use common::*;
use unet_wgpu::ops::activation::{dropout_backward, dropout_forward, relu_backward, DropoutMask};
use unet_wgpu::{Error, Shape};

/// Odd shapes, none a multiple of the 256-wide workgroup.
const SHAPES: [Shape; 3] = [
    Shape::new(1, 1, 1, 1),
    Shape::new(2, 3, 7, 5),
    Shape::new(1, 5, 17, 19),
];

/// dropout(x)[i] = x[i] * scale if the mask keeps i, else 0, in f32 as the kernel does it
/// (one correctly rounded multiply, so the GPU must match bit for bit).
fn ref_dropout(mask: DropoutMask, x: &[f32]) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if mask.keeps(i as u32) {
                v * mask.scale()
            } else {
                0.0
            }
        })
        .collect()
}

fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g.to_bits() != w.to_bits())
        .take(8)
        .map(|(i, (g, w))| format!("[{i}] got {g} want {w}"))
        .collect();
    assert!(bad.is_empty(), "{what}: {}", bad.join(", "));
}

#[test]
fn relu_backward_matches_reference() {
    let gpu = gpu();
    for (s, shape) in SHAPES.into_iter().enumerate() {
        let mut rng = rng(s as u64);
        // A ReLU output: negatives clamped to exactly 0, like the forward's.
        let out: Vec<f32> = random_vec(&mut rng, shape.numel())
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let dout = random_vec(&mut rng, shape.numel());
        let want: Vec<f64> = out
            .iter()
            .zip(&dout)
            .map(|(&o, &d)| if o > 0.0 { f64::from(d) } else { 0.0 })
            .collect();
        let dinp = relu_backward(
            &gpu,
            &upload(&gpu, shape, &out),
            &upload(&gpu, shape, &dout),
        )
        .unwrap();
        assert_eq!(dinp.shape(), shape);
        assert_close(
            &format!("relu dinp of {shape}"),
            &dinp.to_vec(&gpu).unwrap(),
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn relu_backward_matches_finite_differences() {
    let gpu = gpu();
    let shape = Shape::new(2, 3, 5, 3);
    let mut rng = rng(10);
    // Inputs kept away from the kink at 0, where the derivative is undefined.
    let inp: Vec<f64> = random_vec(&mut rng, shape.numel())
        .into_iter()
        .map(|v| if v.abs() < 0.05 { 0.5 } else { f64::from(v) })
        .collect();
    let dout = to_f64(&random_vec(&mut rng, shape.numel()));
    let fake_loss = |x: &[f64]| {
        let out: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
        dot(&out, &dout)
    };
    let numeric = numeric_grad(fake_loss, &inp, 1e-4);
    let out: Vec<f32> = inp.iter().map(|v| v.max(0.0) as f32).collect();
    let dout32: Vec<f32> = dout.iter().map(|&v| v as f32).collect();
    let dinp = relu_backward(
        &gpu,
        &upload(&gpu, shape, &out),
        &upload(&gpu, shape, &dout32),
    )
    .unwrap();
    assert_close(
        "relu dinp vs finite differences",
        &dinp.to_vec(&gpu).unwrap(),
        &numeric,
        1e-6,
        1e-5,
    );
}

#[test]
fn relu_backward_shape_mismatch_is_an_error() {
    let gpu = gpu();
    let out = upload(&gpu, Shape::new(1, 2, 3, 3), &[1.0; 18]);
    let dout = upload(&gpu, Shape::new(1, 2, 3, 4), &[1.0; 24]);
    let err = relu_backward(&gpu, &out, &dout).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
}

#[test]
fn dropout_matches_host_mask() {
    let gpu = gpu();
    for (s, shape) in SHAPES.into_iter().enumerate() {
        for p in [0.1, 0.5, 0.9] {
            let mask = DropoutMask::new(1234 + s as u32, p).unwrap();
            let mut rng = rng(20 + s as u64);
            let inp = random_vec(&mut rng, shape.numel());
            let dout = random_vec(&mut rng, shape.numel());

            let out = dropout_forward(&gpu, &upload(&gpu, shape, &inp), mask).unwrap();
            assert_eq!(out.shape(), shape);
            let what = format!("dropout out of {shape}, {mask:?}");
            assert_bits_eq(&what, &out.to_vec(&gpu).unwrap(), &ref_dropout(mask, &inp));

            let dinp = dropout_backward(&gpu, &upload(&gpu, shape, &dout), mask).unwrap();
            let what = format!("dropout dinp of {shape}, {mask:?}");
            assert_bits_eq(
                &what,
                &dinp.to_vec(&gpu).unwrap(),
                &ref_dropout(mask, &dout),
            );
        }
    }
}

#[test]
fn dropout_keeps_about_one_minus_p() {
    let gpu = gpu();
    let shape = Shape::new(1, 4, 512, 512);
    let n = shape.numel() as f64;
    let ones = vec![1.0f32; shape.numel()];
    let inp = upload(&gpu, shape, &ones);
    for (seed, p) in [(1, 0.5), (2, 0.1), (3, 0.9)] {
        let mask = DropoutMask::new(seed, p).unwrap();
        let out = dropout_forward(&gpu, &inp, mask)
            .unwrap()
            .to_vec(&gpu)
            .unwrap();
        let kept = out.iter().filter(|&&v| v != 0.0).count() as f64;
        // If the hash behaves like independent fair draws, the kept count is
        // Binomial(n, 1 - p): mean n(1-p), sigma sqrt(n p (1-p)) (512 for p = 0.5 here).
        // The mask is a fixed function of the seed, so this cannot flake; a bound of
        // 6 sigma (a 2e-9 two-sided tail) would catch a biased threshold or hash while
        // never rejecting a good one. A threshold off by 1% of p moves the count by
        // 0.01 p n, about 10 sigma for p = 0.5.
        let p = f64::from(p);
        let sigma = (n * p * (1.0 - p)).sqrt();
        let expected = n * (1.0 - p);
        assert!(
            (kept - expected).abs() <= 6.0 * sigma,
            "p = {p}: kept {kept} of {n}, expected {expected} +- 6 x {sigma:.0}"
        );
        // Every kept element is scaled by exactly 1 / (1 - p).
        assert!(out.iter().all(|&v| v == 0.0 || v == mask.scale()));
    }
}

#[test]
fn different_seeds_give_different_masks() {
    let gpu = gpu();
    let shape = Shape::new(1, 1, 64, 64);
    let n = shape.numel();
    let inp = upload(&gpu, shape, &vec![1.0; n]);
    let kept = |seed| {
        let mask = DropoutMask::new(seed, 0.5).unwrap();
        let out = dropout_forward(&gpu, &inp, mask)
            .unwrap()
            .to_vec(&gpu)
            .unwrap();
        out.iter().map(|&v| v != 0.0).collect::<Vec<bool>>()
    };
    let first = kept(7);
    assert_eq!(first, kept(7), "the same seed must give the same mask");
    for other in [8, 0, u32::MAX] {
        let differ = first
            .iter()
            .zip(kept(other))
            .filter(|(a, b)| *a != b)
            .count();
        // Two independent p = 0.5 masks disagree on half the elements (2048 +- 32).
        assert!(
            differ > n / 4,
            "seeds 7 and {other}: masks differ in only {differ} of {n} elements"
        );
    }
}

#[test]
fn dropout_with_p_zero_is_the_identity() {
    let gpu = gpu();
    let shape = Shape::new(2, 3, 7, 5);
    let data = random_vec(&mut rng(30), shape.numel());
    let mask = DropoutMask::new(99, 0.0).unwrap();
    assert_eq!(mask.scale(), 1.0);
    let t = upload(&gpu, shape, &data);
    let out = dropout_forward(&gpu, &t, mask).unwrap();
    assert_bits_eq("p = 0 forward", &out.to_vec(&gpu).unwrap(), &data);
    let dinp = dropout_backward(&gpu, &t, mask).unwrap();
    assert_bits_eq("p = 0 backward", &dinp.to_vec(&gpu).unwrap(), &data);
}

#[test]
fn invalid_dropout_rate_is_an_error() {
    for p in [1.0, 1.5, -0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let err = DropoutMask::new(1, p).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "p = {p}: {err:?}");
    }
    assert!(DropoutMask::new(1, 0.0).is_ok());
    assert!(DropoutMask::new(1, 0.999).is_ok());
}

#[test]
fn dropout_backward_matches_finite_differences() {
    let gpu = gpu();
    let shape = Shape::new(2, 3, 5, 3);
    let mask = DropoutMask::new(42, 0.3).unwrap();
    let mut rng = rng(40);
    let inp = to_f64(&random_vec(&mut rng, shape.numel()));
    let dout32 = random_vec(&mut rng, shape.numel());
    let dout = to_f64(&dout32);
    // The reference forward, in f64, with the same mask.
    let scale = f64::from(mask.scale());
    let fake_loss = |x: &[f64]| {
        let out: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| if mask.keeps(i as u32) { v * scale } else { 0.0 })
            .collect();
        dot(&out, &dout)
    };
    let numeric = numeric_grad(fake_loss, &inp, 1e-4);
    assert!(
        numeric.contains(&0.0) && numeric.iter().any(|&g| g != 0.0),
        "the mask must both drop and keep some of these elements"
    );
    let dinp = dropout_backward(&gpu, &upload(&gpu, shape, &dout32), mask).unwrap();
    assert_close(
        "dropout dinp vs finite differences",
        &dinp.to_vec(&gpu).unwrap(),
        &numeric,
        1e-6,
        1e-5,
    );
}
