//! Softmax and the fused pixel-weighted cross-entropy against an f64 CPU reference,
//! finite differences, and run-to-run determinism.

mod common;

use common::reference;
use common::*;
use rand::Rng;
use unet_wgpu::ops::loss::{softmax, softmax_cross_entropy, softmax_cross_entropy_scaled};
use unet_wgpu::{Error, Gpu, Shape, Tensor};

/// f64 dloss/dz_k(x) = w(x)/P * (p_k(x) - [k == l(x)]).
fn ref_dlogits(shape: Shape, logits: &[f64], labels: &[f64], weights: &[f64]) -> Vec<f64> {
    let probs = reference::softmax(shape, logits);
    let pixels = (shape.n * shape.plane()) as f64;
    let mut d = vec![0.0; logits.len()];
    for n in 0..shape.n {
        for y in 0..shape.h {
            for x in 0..shape.w {
                let i = n * shape.plane() + y * shape.w + x;
                for k in 0..shape.c {
                    let j = shape.index(n, k, y, x);
                    let onehot = if k == labels[i] as usize { 1.0 } else { 0.0 };
                    d[j] = weights[i] / pixels * (probs[j] - onehot);
                }
            }
        }
    }
    d
}

/// Random inputs: logits uniform in [-scale, scale), labels in 0..K, weights in [0.5, 10.5)
/// (the paper's maps reach about w0 = 10 near borders).
struct Case {
    shape: Shape,
    logits: Vec<f32>,
    labels: Vec<f32>,
    weights: Vec<f32>,
}

impl Case {
    fn random(shape: Shape, logit_scale: f32, seed: u64) -> Case {
        let mut rng = rng(seed);
        let pixels = shape.n * shape.plane();
        let logits = random_vec(&mut rng, shape.numel())
            .into_iter()
            .map(|v| v * logit_scale)
            .collect();
        let labels = (0..pixels)
            .map(|_| rng.random_range(0..shape.c) as f32)
            .collect();
        let weights = (0..pixels)
            .map(|_| rng.random_range(0.5f32..10.5))
            .collect();
        Case {
            shape,
            logits,
            labels,
            weights,
        }
    }

    fn upload(&self, gpu: &Gpu) -> (Tensor, Tensor, Tensor) {
        let per_pixel = self.shape.with_c(1);
        (
            upload(gpu, self.shape, &self.logits),
            upload(gpu, per_pixel, &self.labels),
            upload(gpu, per_pixel, &self.weights),
        )
    }

    /// (loss, dlogits) from the GPU.
    /// (loss, dlogits), for labels that are all valid.
    fn run(&self, gpu: &Gpu) -> (f32, Vec<f32>) {
        let (loss, invalid, dlogits) = self.run_counting(gpu);
        assert_eq!(invalid, 0.0, "no label is invalid");
        (loss, dlogits)
    }

    /// (loss, pixels with an invalid label, dlogits).
    fn run_counting(&self, gpu: &Gpu) -> (f32, f32, Vec<f32>) {
        let (logits, labels, weights) = self.upload(gpu);
        let out = softmax_cross_entropy(gpu, &logits, &labels, &weights).unwrap();
        assert_eq!(out.loss.shape(), Shape::vector(2));
        assert_eq!(out.dlogits.shape(), self.shape);
        let loss = out.loss.to_vec(gpu).unwrap();
        (loss[0], loss[1], out.dlogits.to_vec(gpu).unwrap())
    }

    fn check(&self, gpu: &Gpu) {
        let (logits, labels, weights) = (
            to_f64(&self.logits),
            to_f64(&self.labels),
            to_f64(&self.weights),
        );
        let (loss, dlogits) = self.run(gpu);
        let want_loss = reference::weighted_cross_entropy(self.shape, &logits, &labels, &weights);
        let want_d = ref_dlogits(self.shape, &logits, &labels, &weights);
        let what = format!("loss of {}", self.shape);
        assert_close(&what, &[loss], &[want_loss], 1e-6, 1e-4);
        // Each gradient is w/P * (p - onehot) with w/P about 10/P: an absolute tolerance
        // relative to that scale.
        let scale = 10.0 / (self.shape.n * self.shape.plane()) as f64;
        let what = format!("dlogits of {}", self.shape);
        assert_close(&what, &dlogits, &want_d, 1e-5 * scale, 1e-4);
    }
}

#[test]
fn scaled_loss_and_gradient_are_multiplied_by_the_scale() {
    let gpu = gpu();
    let case = Case::random(Shape::new(2, 2, 5, 7), 3.0, 41);
    let (logits, labels, weights) = case.upload(&gpu);
    let scale = 1.0 / 3.0;
    let out = softmax_cross_entropy_scaled(&gpu, &logits, &labels, &weights, scale).unwrap();
    let (z, l, w) = (
        to_f64(&case.logits),
        to_f64(&case.labels),
        to_f64(&case.weights),
    );
    let s = f64::from(scale);
    let want_loss = s * reference::weighted_cross_entropy(case.shape, &z, &l, &w);
    let want_d: Vec<f64> = ref_dlogits(case.shape, &z, &l, &w)
        .iter()
        .map(|d| s * d)
        .collect();
    assert_close(
        "scaled loss",
        &out.loss.to_vec(&gpu).unwrap()[..1],
        &[want_loss],
        1e-6,
        1e-4,
    );
    assert_close(
        "scaled dlogits",
        &out.dlogits.to_vec(&gpu).unwrap(),
        &want_d,
        1e-7,
        1e-4,
    );
}

#[test]
fn loss_matches_reference_two_classes() {
    let gpu = gpu();
    // Odd sizes; 2*13*11 = 286 pixels, not a multiple of the 256-wide workgroup.
    Case::random(Shape::new(2, 2, 13, 11), 3.0, 1).check(&gpu);
    Case::random(Shape::new(1, 2, 1, 1), 3.0, 2).check(&gpu);
}

#[test]
fn loss_matches_reference_more_classes() {
    let gpu = gpu();
    Case::random(Shape::new(3, 3, 7, 9), 3.0, 3).check(&gpu);
    Case::random(Shape::new(2, 5, 17, 15), 3.0, 4).check(&gpu);
}

#[test]
fn loss_is_stable_for_large_logits() {
    let gpu = gpu();
    // Logits in [-100, 100): exp(100) = 2.7e43 overflows f32 (max 3.4e38 = exp(88.7)), so
    // an implementation without the max subtracted returns inf or NaN here. (At +-80 it
    // would not: exp(80) = 5.5e34 still fits, which is why this test goes further.)
    let mut case = Case::random(Shape::new(2, 3, 9, 7), 100.0, 5);
    // Plant the extremes, with a label on the smallest logit of a pixel: its -log p is
    // about 200, while p itself underflows to 0 in f32, so log(softmax) would be -inf.
    case.logits[0] = 100.0;
    case.logits[case.shape.index(0, 1, 0, 0)] = -100.0;
    case.logits[case.shape.index(0, 2, 0, 0)] = 99.0;
    case.labels[0] = 1.0;
    case.check(&gpu);
    let (loss, dlogits) = case.run(&gpu);
    assert!(loss.is_finite() && dlogits.iter().all(|v| v.is_finite()));
}

#[test]
fn loss_sums_many_partials() {
    let gpu = gpu();
    // 2 * 211 * 223 = 94,106 pixels: 368 workgroups of 256, so the final pass adds more
    // than one partial per invocation.
    let shape = Shape::new(2, 2, 211, 223);
    let pixels = (shape.n * shape.plane()) as u64;
    assert!(
        gpu.grid_1d(pixels, 256)[0] > 256,
        "this size must need many partials"
    );
    Case::random(shape, 3.0, 6).check(&gpu);
}

#[test]
fn dlogits_match_finite_differences() {
    let gpu = gpu();
    let case = Case::random(Shape::new(2, 3, 3, 5), 2.0, 7);
    let (labels, weights) = (to_f64(&case.labels), to_f64(&case.weights));
    let logits = to_f64(&case.logits);
    let loss = |z: &[f64]| reference::weighted_cross_entropy(case.shape, z, &labels, &weights);
    let numeric = numeric_grad(loss, &logits, 1e-6);

    // The analytic reference is the derivative of the reference loss...
    let analytic = ref_dlogits(case.shape, &logits, &labels, &weights);
    let got: Vec<f32> = analytic.iter().map(|&v| v as f32).collect();
    assert_close(
        "reference dlogits vs finite differences",
        &got,
        &numeric,
        1e-7,
        1e-4,
    );
    // ...and the GPU's matches the finite differences too.
    let (_, dlogits) = case.run(&gpu);
    assert_close(
        "GPU dlogits vs finite differences",
        &dlogits,
        &numeric,
        1e-6,
        1e-3,
    );
}

#[test]
fn loss_is_bit_identical_across_runs() {
    let gpu = gpu();
    let case = Case::random(Shape::new(2, 3, 101, 103), 5.0, 8);
    let (first, first_d) = case.run(&gpu);
    for _ in 0..2 {
        let (again, again_d) = case.run(&gpu);
        assert_eq!(first.to_bits(), again.to_bits(), "{first} then {again}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&first_d) == bits(&again_d),
            "dlogits differ between runs"
        );
    }
}

#[test]
fn zero_weights_give_zero_loss_and_gradient() {
    let gpu = gpu();
    let mut case = Case::random(Shape::new(1, 2, 5, 5), 3.0, 9);
    case.weights.fill(0.0);
    let (loss, dlogits) = case.run(&gpu);
    assert_eq!(loss, 0.0);
    assert!(dlogits.iter().all(|&v| v == 0.0), "{dlogits:?}");
}

#[test]
fn invalid_labels_are_counted_and_left_out() {
    let gpu = gpu();
    let shape = Shape::new(1, 3, 4, 5);
    let bad_labels = [
        3.0,
        -1.0,
        1.5,
        1e30,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for bad in bad_labels {
        let mut case = Case::random(shape, 2.0, 10);
        case.labels[7] = bad;
        case.labels[11] = bad;
        let (loss, invalid, dlogits) = case.run_counting(&gpu);
        assert_eq!(invalid, 2.0, "label {bad}: two pixels are invalid");
        // The bad pixels add nothing and get zero gradients: the loss and gradients are
        // those of the same labels with the bad pixels weighted 0.
        let mut labels = to_f64(&case.labels);
        let mut weights = to_f64(&case.weights);
        for i in [7, 11] {
            labels[i] = 0.0;
            weights[i] = 0.0;
        }
        let z = to_f64(&case.logits);
        let want_loss = reference::weighted_cross_entropy(shape, &z, &labels, &weights);
        assert_close(
            &format!("loss, label {bad}"),
            &[loss],
            &[want_loss],
            1e-6,
            1e-4,
        );
        let want = ref_dlogits(shape, &z, &labels, &weights);
        assert_close(
            &format!("dlogits, label {bad}"),
            &dlogits,
            &want,
            1e-7,
            1e-4,
        );
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let gpu = gpu();
    let logits = Tensor::zeros(&gpu, Shape::new(2, 2, 4, 4), "logits").unwrap();
    let good = Tensor::zeros(&gpu, Shape::new(2, 1, 4, 4), "per pixel").unwrap();
    let bad_shapes = [
        Shape::new(1, 1, 4, 4),
        Shape::new(2, 2, 4, 4),
        Shape::new(2, 1, 4, 5),
    ];
    for bad in bad_shapes {
        let bad = Tensor::zeros(&gpu, bad, "bad").unwrap();
        for (labels, weights) in [(&bad, &good), (&good, &bad)] {
            let err = softmax_cross_entropy(&gpu, &logits, labels, weights).unwrap_err();
            assert!(matches!(err, Error::Shape { .. }), "{err:?}");
        }
    }
    let u32_labels = Tensor::empty_u32(&gpu, Shape::new(2, 1, 4, 4), "u32 labels").unwrap();
    let err = softmax_cross_entropy(&gpu, &logits, &u32_labels, &good).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
}

#[test]
fn softmax_matches_reference_and_sums_to_one() {
    let gpu = gpu();
    for (shape, scale, seed) in [
        (Shape::new(2, 2, 13, 11), 3.0, 11),
        (Shape::new(3, 4, 9, 7), 100.0, 12),
    ] {
        let data: Vec<f32> = random_vec(&mut rng(seed), shape.numel())
            .into_iter()
            .map(|v| v * scale)
            .collect();
        let probs = softmax(&gpu, &upload(&gpu, shape, &data))
            .unwrap()
            .to_vec(&gpu)
            .unwrap();
        let want = reference::softmax(shape, &to_f64(&data));
        assert_close(&format!("softmax of {shape}"), &probs, &want, 1e-6, 1e-4);
        for n in 0..shape.n {
            for y in 0..shape.h {
                for x in 0..shape.w {
                    let sum: f64 = (0..shape.c)
                        .map(|k| f64::from(probs[shape.index(n, k, y, x)]))
                        .sum();
                    assert!(
                        (sum - 1.0).abs() < 1e-5,
                        "pixel ({n}, {y}, {x}) sums to {sum}"
                    );
                }
            }
        }
    }
}
