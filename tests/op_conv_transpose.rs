//! 2x2 stride-2 transposed convolution: forward and backward against a CPU reference,
//! finite differences, accumulation into dweight/dbias, bit-reproducible reductions, a
//! layer with many channels and a partial channel block, and shape errors.

mod common;

use common::*;
use unet_wgpu::ops::conv2d::ConvAlgo;
use unet_wgpu::ops::conv_transpose::{self, weight_shape};
use unet_wgpu::{Error, Shape, Tensor};

/// out[n, co, 2i+a, 2j+b] = bias[co] + sum_ci inp[n, ci, i, j] * w[ci, co, a, b].
fn forward_ref(inp: &[f64], s: Shape, weight: &[f64], bias: &[f64]) -> Vec<f64> {
    let c_out = bias.len();
    let ws = weight_shape(s.c, c_out);
    let os = Shape::new(s.n, c_out, 2 * s.h, 2 * s.w);
    let mut out = vec![0.0; os.numel()];
    for n in 0..s.n {
        for co in 0..c_out {
            for y in 0..os.h {
                for x in 0..os.w {
                    let mut acc = bias[co];
                    for ci in 0..s.c {
                        acc += inp[s.index(n, ci, y / 2, x / 2)]
                            * weight[ws.index(ci, co, y % 2, x % 2)];
                    }
                    out[os.index(n, co, y, x)] = acc;
                }
            }
        }
    }
    out
}

/// (dinp, dweight, dbias) of the loss sum(out * dout), by the chain rule on the formula.
fn backward_ref(
    inp: &[f64],
    s: Shape,
    weight: &[f64],
    dout: &[f64],
    c_out: usize,
) -> [Vec<f64>; 3] {
    let ws = weight_shape(s.c, c_out);
    let os = Shape::new(s.n, c_out, 2 * s.h, 2 * s.w);
    let mut dinp = vec![0.0; s.numel()];
    let mut dweight = vec![0.0; ws.numel()];
    let mut dbias = vec![0.0; c_out];
    for n in 0..s.n {
        for co in 0..c_out {
            for y in 0..os.h {
                for x in 0..os.w {
                    let g = dout[os.index(n, co, y, x)];
                    dbias[co] += g;
                    for ci in 0..s.c {
                        let (i, w) = (s.index(n, ci, y / 2, x / 2), ws.index(ci, co, y % 2, x % 2));
                        dinp[i] += g * weight[w];
                        dweight[w] += g * inp[i];
                    }
                }
            }
        }
    }
    [dinp, dweight, dbias]
}

/// Random inp, weight, bias and dout for input shape `s` and `c_out` output channels.
struct Case {
    s: Shape,
    c_out: usize,
    inp: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    dout: Vec<f32>,
}

impl Case {
    fn new(seed: u64, s: Shape, c_out: usize) -> Case {
        let mut r = rng(seed);
        Case {
            s,
            c_out,
            inp: random_vec(&mut r, s.numel()),
            weight: random_vec(&mut r, 4 * s.c * c_out),
            bias: random_vec(&mut r, c_out),
            dout: random_vec(&mut r, 4 * s.n * c_out * s.plane()),
        }
    }
    fn out_shape(&self) -> Shape {
        conv_transpose::out_shape(self.s, self.c_out)
    }
    fn weight_shape(&self) -> Shape {
        weight_shape(self.s.c, self.c_out)
    }
}

/// Uploaded tensors of a case: inp, weight, bias, dout.
fn upload_case(gpu: &unet_wgpu::Gpu, case: &Case) -> [Tensor; 4] {
    [
        upload(gpu, case.s, &case.inp),
        upload(gpu, case.weight_shape(), &case.weight),
        upload(gpu, Shape::vector(case.c_out), &case.bias),
        upload(gpu, case.out_shape(), &case.dout),
    ]
}

/// Both variants: 1 (direct) and the default (the convolution's GEMM kernels).
const ALGOS: [ConvAlgo; 3] = [ConvAlgo::Direct, ConvAlgo::Gemm, ConvAlgo::Tiled];

fn check_against_reference(seed: u64, s: Shape, c_out: usize) {
    for algo in ALGOS {
        check_variant_against_reference(algo, seed, s, c_out);
    }
}

fn check_variant_against_reference(algo: ConvAlgo, seed: u64, s: Shape, c_out: usize) {
    let gpu = gpu();
    let case = Case::new(seed, s, c_out);
    let [inp, weight, bias, dout] = upload_case(&gpu, &case);
    let (x, w) = (to_f64(&case.inp), to_f64(&case.weight));

    let out = conv_transpose::forward_with(&gpu, algo, &inp, &weight, &bias).unwrap();
    assert_eq!(out.shape(), case.out_shape());
    let want = forward_ref(&x, s, &w, &to_f64(&case.bias));
    assert_close(
        &format!("out {} {s} -> {c_out}", algo.name()),
        &out.to_vec(&gpu).unwrap(),
        &want,
        1e-5,
        1e-4,
    );

    let dweight = Tensor::zeros(&gpu, case.weight_shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(&gpu, Shape::vector(c_out), "dbias").unwrap();
    let dinp =
        conv_transpose::backward_with(&gpu, algo, &inp, &weight, &dout, &dweight, &dbias).unwrap();
    let [want_dinp, want_dweight, want_dbias] = backward_ref(&x, s, &w, &to_f64(&case.dout), c_out);
    let what = format!("{} {s} -> {c_out}", algo.name());
    assert_close(
        &format!("dinp {what}"),
        &dinp.to_vec(&gpu).unwrap(),
        &want_dinp,
        1e-5,
        1e-4,
    );
    assert_close(
        &format!("dweight {what}"),
        &dweight.to_vec(&gpu).unwrap(),
        &want_dweight,
        1e-4,
        1e-4,
    );
    assert_close(
        &format!("dbias {what}"),
        &dbias.to_vec(&gpu).unwrap(),
        &want_dbias,
        1e-4,
        1e-4,
    );
}

#[test]
fn forward_and_backward_match_reference() {
    // (input shape, C_out): odd sizes and channel counts, batch > 1, element counts that
    // do not divide 256, and planes with more pixels than a reduction workgroup has threads
    // (N * H * W > 256, so each thread sums several pixels).
    let cases = [
        (Shape::new(1, 1, 1, 1), 1),
        (Shape::new(2, 3, 5, 7), 4),
        (Shape::new(1, 8, 13, 6), 3),
        (Shape::new(3, 5, 9, 11), 2),
        (Shape::new(2, 2, 17, 23), 5),
        // Variant 1's weight gradient cuts the N * H = 70 input rows into slices of
        // 4096 / 130 = 31 rows: two whole slices and a partial one, across an image edge.
        (Shape::new(2, 1, 35, 130), 2),
    ];
    for (seed, (s, c_out)) in cases.into_iter().enumerate() {
        check_against_reference(seed as u64, s, c_out);
    }
}

#[test]
fn gradients_match_finite_differences() {
    let gpu = gpu();
    let case = Case::new(10, Shape::new(2, 2, 3, 2), 3);
    let [inp, weight, _, dout] = upload_case(&gpu, &case);
    let dweight = Tensor::zeros(&gpu, case.weight_shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(&gpu, Shape::vector(case.c_out), "dbias").unwrap();
    let dinp = conv_transpose::backward(&gpu, &inp, &weight, &dout, &dweight, &dbias).unwrap();

    let (x, w, b, g) = (
        to_f64(&case.inp),
        to_f64(&case.weight),
        to_f64(&case.bias),
        to_f64(&case.dout),
    );
    let s = case.s;
    let eps = 1e-3;
    let fd_inp = numeric_grad(|x| dot(&forward_ref(x, s, &w, &b), &g), &x, eps);
    let fd_weight = numeric_grad(|w| dot(&forward_ref(&x, s, w, &b), &g), &w, eps);
    let fd_bias = numeric_grad(|b| dot(&forward_ref(&x, s, &w, b), &g), &b, eps);
    assert_close(
        "dinp vs fd",
        &dinp.to_vec(&gpu).unwrap(),
        &fd_inp,
        1e-5,
        1e-4,
    );
    assert_close(
        "dweight vs fd",
        &dweight.to_vec(&gpu).unwrap(),
        &fd_weight,
        1e-5,
        1e-4,
    );
    assert_close(
        "dbias vs fd",
        &dbias.to_vec(&gpu).unwrap(),
        &fd_bias,
        1e-5,
        1e-4,
    );
}

#[test]
fn parameter_gradients_accumulate() {
    let gpu = gpu();
    let case = Case::new(20, Shape::new(2, 3, 4, 5), 2);
    let [inp, weight, _, dout] = upload_case(&gpu, &case);
    let dweight = Tensor::zeros(&gpu, case.weight_shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(&gpu, Shape::vector(case.c_out), "dbias").unwrap();

    conv_transpose::backward(&gpu, &inp, &weight, &dout, &dweight, &dbias).unwrap();
    let once = (dweight.to_vec(&gpu).unwrap(), dbias.to_vec(&gpu).unwrap());
    let dinp = conv_transpose::backward(&gpu, &inp, &weight, &dout, &dweight, &dbias).unwrap();
    let twice = (dweight.to_vec(&gpu).unwrap(), dbias.to_vec(&gpu).unwrap());

    let doubled = |v: &[f32]| v.iter().map(|&x| 2.0 * f64::from(x)).collect::<Vec<_>>();
    assert_close(
        "dweight after two calls",
        &twice.0,
        &doubled(&once.0),
        1e-6,
        1e-6,
    );
    assert_close(
        "dbias after two calls",
        &twice.1,
        &doubled(&once.1),
        1e-6,
        1e-6,
    );
    assert!(once.0.iter().chain(&once.1).all(|&v| v != 0.0));

    // dinp is written, not accumulated: the second call's dinp is the reference's.
    let [want_dinp, ..] = backward_ref(
        &to_f64(&case.inp),
        case.s,
        &to_f64(&case.weight),
        &to_f64(&case.dout),
        case.c_out,
    );
    assert_close(
        "dinp of the second call",
        &dinp.to_vec(&gpu).unwrap(),
        &want_dinp,
        1e-5,
        1e-4,
    );
}

#[test]
fn parameter_gradients_are_bit_reproducible() {
    let gpu = gpu();
    // 2 * 30 * 20 = 1,200 pixels per (ci, co): each of 256 threads sums several.
    let case = Case::new(30, Shape::new(2, 4, 30, 20), 3);
    let [inp, weight, _, dout] = upload_case(&gpu, &case);
    let run = || {
        let dweight = Tensor::zeros(&gpu, case.weight_shape(), "dweight").unwrap();
        let dbias = Tensor::zeros(&gpu, Shape::vector(case.c_out), "dbias").unwrap();
        conv_transpose::backward(&gpu, &inp, &weight, &dout, &dweight, &dbias).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.to_vec(&gpu)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        (bits(&dweight), bits(&dbias))
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(
            run(),
            first,
            "the reductions must give the same bits every run"
        );
    }
}

#[test]
fn many_channels_with_a_partial_channel_block_match_reference() {
    let gpu = gpu();
    // 256 x 257 channels: the weight gradient runs in 64 x 65 blocks of 4 x 4 (ci, co),
    // the last output-channel block holding a single channel.
    // With the GEMM, 257 x 4 grid channels and 256 input channels leave partial blocks too.
    let case = Case::new(40, Shape::new(1, 256, 1, 1), 257);
    let [inp, weight, _, dout] = upload_case(&gpu, &case);
    let [_, want_dweight, want_dbias] = backward_ref(
        &to_f64(&case.inp),
        case.s,
        &to_f64(&case.weight),
        &to_f64(&case.dout),
        case.c_out,
    );
    for algo in ALGOS {
        let dweight = Tensor::zeros(&gpu, case.weight_shape(), "dweight").unwrap();
        let dbias = Tensor::zeros(&gpu, Shape::vector(case.c_out), "dbias").unwrap();
        conv_transpose::backward_with(&gpu, algo, &inp, &weight, &dout, &dweight, &dbias).unwrap();
        assert_close(
            &format!("dweight {}", algo.name()),
            &dweight.to_vec(&gpu).unwrap(),
            &want_dweight,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("dbias {}", algo.name()),
            &dbias.to_vec(&gpu).unwrap(),
            &want_dbias,
            1e-6,
            1e-5,
        );
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let gpu = gpu();
    let zeros = |s: Shape| Tensor::zeros(&gpu, s, "t").unwrap();
    let inp = zeros(Shape::new(2, 3, 4, 5));
    let weight = zeros(weight_shape(3, 2));
    let bias = zeros(Shape::vector(2));
    let dout = zeros(Shape::new(2, 2, 8, 10));
    let is_shape_error = |r: unet_wgpu::Result<Tensor>| matches!(r, Err(Error::Shape { .. }));

    // C_in of the weight differs from the input's channels.
    assert!(is_shape_error(conv_transpose::forward(
        &gpu,
        &inp,
        &zeros(weight_shape(4, 2)),
        &bias
    )));
    // A 3x3 kernel.
    assert!(is_shape_error(conv_transpose::forward(
        &gpu,
        &inp,
        &zeros(Shape::new(3, 2, 3, 3)),
        &bias
    )));
    // Bias length differs from C_out.
    assert!(is_shape_error(conv_transpose::forward(
        &gpu,
        &inp,
        &weight,
        &zeros(Shape::vector(3))
    )));
    // dout of the wrong size, dweight or dbias of the wrong shape.
    let dweight = zeros(weight_shape(3, 2));
    let wrong_dout = zeros(Shape::new(2, 2, 8, 9));
    assert!(is_shape_error(conv_transpose::backward(
        &gpu,
        &inp,
        &weight,
        &wrong_dout,
        &dweight,
        &bias
    )));
    let wrong_dweight = zeros(weight_shape(2, 3));
    assert!(is_shape_error(conv_transpose::backward(
        &gpu,
        &inp,
        &weight,
        &dout,
        &wrong_dweight,
        &bias
    )));
    let wrong_dbias = zeros(Shape::vector(3));
    assert!(is_shape_error(conv_transpose::backward(
        &gpu,
        &inp,
        &weight,
        &dout,
        &dweight,
        &wrong_dbias
    )));
    // And the correct call succeeds.
    assert!(conv_transpose::backward(&gpu, &inp, &weight, &dout, &dweight, &bias).is_ok());
}
