//! 2x2 max-pool, stride 2: forward and argmax against a CPU reference, backward as a
//! gather (written and added), finite differences, a large input, and shape errors.

mod common;

use common::*;
use unet_wgpu::ops::max_pool::{self, MaxPoolSaved};
use unet_wgpu::{Error, Gpu, Shape, Tensor};

/// The CPU reference: pooled values and the winning window position k = 2a + b, the first
/// maximum in row-major window order on a tie (as the shader does).
fn pool_ref(inp: &[f64], s: Shape) -> (Vec<f64>, Vec<u32>) {
    let (oh, ow) = (s.h / 2, s.w / 2);
    let mut out = Vec::with_capacity(s.n * s.c * oh * ow);
    let mut argmax = Vec::with_capacity(out.capacity());
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = (f64::NEG_INFINITY, 0);
                    for k in 0..4 {
                        let v = inp[s.index(n, c, 2 * i + k / 2, 2 * j + k % 2)];
                        if v > best.0 {
                            best = (v, k as u32);
                        }
                    }
                    out.push(best.0);
                    argmax.push(best.1);
                }
            }
        }
    }
    (out, argmax)
}

/// dinp of the reference: each dout value goes to its window's winner.
fn pool_backward_ref(dout: &[f64], argmax: &[u32], s: Shape) -> Vec<f64> {
    let (oh, ow) = (s.h / 2, s.w / 2);
    let mut dinp = vec![0.0; s.numel()];
    for (o, (&g, &k)) in dout.iter().zip(argmax).enumerate() {
        let (j, i, plane) = (o % ow, (o / ow) % oh, o / (ow * oh));
        let k = k as usize;
        dinp[(plane * s.h + 2 * i + k / 2) * s.w + 2 * j + k % 2] = g;
    }
    dinp
}

/// Distinct values (a shuffled ramp with steps of 1/len), so that no window has a tie or a
/// near-tie: finite differences are then exact for max.
fn distinct_values(seed: u64, len: usize) -> Vec<f32> {
    let noise = random_vec(&mut rng(seed), len);
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by(|&a, &b| noise[a].total_cmp(&noise[b]));
    let mut values = vec![0.0; len];
    for (rank, &i) in order.iter().enumerate() {
        values[i] = rank as f32 / len as f32 - 0.5;
    }
    values
}

fn check_forward_and_backward(gpu: &Gpu, seed: u64, s: Shape) {
    let mut r = rng(seed);
    let inp = random_vec(&mut r, s.numel());
    let (want_out, want_argmax) = pool_ref(&to_f64(&inp), s);
    let dout = random_vec(&mut r, want_out.len());

    let inp_t = upload(gpu, s, &inp);
    let (out, saved) = max_pool::forward(gpu, &inp_t).unwrap();
    assert_eq!(out.shape(), Shape::new(s.n, s.c, s.h / 2, s.w / 2));
    assert_eq!(saved.inp_shape, s);
    assert_close(
        &format!("out {s}"),
        &out.to_vec(gpu).unwrap(),
        &want_out,
        0.0,
        0.0,
    );
    assert_eq!(
        saved.argmax.to_vec_u32(gpu).unwrap(),
        want_argmax,
        "argmax {s}"
    );

    let dout_t = upload(gpu, out.shape(), &dout);
    let dinp = max_pool::backward(gpu, &dout_t, &saved).unwrap();
    assert_close(
        &format!("dinp {s}"),
        &dinp.to_vec(gpu).unwrap(),
        &pool_backward_ref(&to_f64(&dout), &want_argmax, s),
        0.0,
        0.0,
    );
}

#[test]
fn forward_and_backward_match_reference() {
    // Odd pooled sizes, odd channel counts, batch > 1, element counts that do not divide
    // the workgroup size of 256.
    let shapes = [
        Shape::new(1, 1, 2, 2),
        Shape::new(1, 3, 6, 10),
        Shape::new(2, 5, 14, 22),
        Shape::new(3, 2, 34, 18),
        Shape::new(1, 7, 2, 130),
    ];
    let gpu = gpu();
    for (seed, s) in shapes.into_iter().enumerate() {
        check_forward_and_backward(&gpu, seed as u64, s);
    }
}

#[test]
fn ties_go_to_the_first_maximum_in_row_major_order() {
    let gpu = gpu();
    // One 2x8 image: four windows, columns 0-1, 2-3, 4-5 and 6-7, each with a tie.
    #[rustfmt::skip]
    let inp = [
        1.0, 1.0,   0.0, 2.0,   0.0, 0.0,   -1.0, -3.0,
        1.0, 1.0,   0.0, 2.0,   3.0, 3.0,   -3.0, -1.0,
    ];
    let s = Shape::new(1, 1, 2, 8);
    let (out, saved) = max_pool::forward(&gpu, &upload(&gpu, s, &inp)).unwrap();
    assert_eq!(out.to_vec(&gpu).unwrap(), [1.0, 2.0, 3.0, -1.0]);
    assert_eq!(saved.argmax.to_vec_u32(&gpu).unwrap(), [0, 1, 2, 0]);
    assert_eq!(pool_ref(&to_f64(&inp), s).1, [0, 1, 2, 0]);
}

#[test]
fn backward_add_adds_to_existing_gradient() {
    let gpu = gpu();
    let s = Shape::new(2, 3, 6, 8);
    let mut r = rng(10);
    let inp = random_vec(&mut r, s.numel());
    let existing = random_vec(&mut r, s.numel());
    let (_, argmax) = pool_ref(&to_f64(&inp), s);
    let dout = random_vec(&mut r, argmax.len());

    let (out, saved) = max_pool::forward(&gpu, &upload(&gpu, s, &inp)).unwrap();
    let dout_t = upload(&gpu, out.shape(), &dout);
    let dinp = upload(&gpu, s, &existing);
    max_pool::backward_add(&gpu, &dout_t, &saved, &dinp).unwrap();

    let routed = pool_backward_ref(&to_f64(&dout), &argmax, s);
    let want: Vec<f64> = existing
        .iter()
        .zip(&routed)
        .map(|(&e, g)| f64::from(e) + g)
        .collect();
    assert_close(
        "dinp after add",
        &dinp.to_vec(&gpu).unwrap(),
        &want,
        1e-6,
        1e-6,
    );
    assert!(
        routed
            .iter()
            .zip(&existing)
            .any(|(g, &e)| *g != 0.0 && e != 0.0),
        "the test must add non-zero values to non-zero values"
    );
}

#[test]
fn gradient_matches_finite_differences() {
    let gpu = gpu();
    let s = Shape::new(2, 2, 4, 6);
    let inp = distinct_values(20, s.numel());
    let dout = random_vec(&mut rng(21), s.numel() / 4);
    let g = to_f64(&dout);
    let loss = |x: &[f64]| dot(&pool_ref(x, s).0, &g);
    // Neighbouring values differ by 1/96, far more than eps: no window changes its winner.
    let want = numeric_grad(loss, &to_f64(&inp), 1e-4);

    let (out, saved) = max_pool::forward(&gpu, &upload(&gpu, s, &inp)).unwrap();
    let dinp = max_pool::backward(&gpu, &upload(&gpu, out.shape(), &dout), &saved).unwrap();
    assert_close(
        "dinp vs finite differences",
        &dinp.to_vec(&gpu).unwrap(),
        &want,
        1e-6,
        1e-6,
    );
}

#[test]
fn large_input_matches_reference() {
    let gpu = gpu();
    // 4.2 M windows, one thread each in both passes. (A grid folded into 2-D would need
    // 16.8 M windows, a 268 MB input, past lavapipe's 128 MiB per binding; the fold itself
    // is tested in tests/engine.rs.)
    let s = Shape::new(1, 1, 2, 8_390_000);
    check_forward_and_backward(&gpu, 30, s);
}

#[test]
fn odd_input_is_an_error() {
    let gpu = gpu();
    for s in [Shape::new(1, 2, 5, 4), Shape::new(2, 1, 4, 7)] {
        let inp = Tensor::zeros(&gpu, s, "odd").unwrap();
        let err = max_pool::forward(&gpu, &inp).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("even size"), "{msg}");
        assert!(msg.contains("tile size"), "{msg}");
    }
}

#[test]
fn mismatched_backward_shapes_are_errors() {
    let gpu = gpu();
    let s = Shape::new(1, 2, 4, 6);
    let (out, saved): (Tensor, MaxPoolSaved) =
        max_pool::forward(&gpu, &Tensor::zeros(&gpu, s, "inp").unwrap()).unwrap();
    assert_eq!(out.shape(), Shape::new(1, 2, 2, 3));

    let wrong_dout = Tensor::zeros(&gpu, Shape::new(1, 2, 3, 3), "dout").unwrap();
    assert!(matches!(
        max_pool::backward(&gpu, &wrong_dout, &saved),
        Err(Error::Shape { .. })
    ));
    let dout = Tensor::zeros(&gpu, out.shape(), "dout").unwrap();
    let wrong_dinp = Tensor::zeros(&gpu, Shape::new(1, 3, 4, 6), "dinp").unwrap();
    assert!(matches!(
        max_pool::backward_add(&gpu, &dout, &saved, &wrong_dinp),
        Err(Error::Shape { .. })
    ));
}
