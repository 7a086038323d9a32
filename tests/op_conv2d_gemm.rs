//! conv2d variants 2 (subgroup implicit GEMM) and 3 (workgroup-tiled implicit GEMM) against
//! the f64 CPU reference, against variant 1 (direct), against finite differences, and run
//! to run (bit-identical).

mod common;

use common::reference::{self, Host};
use common::*;
use unet_wgpu::ops::conv2d::{self, Conv2d, ConvAlgo, GemmTiles, Padding, TiledTiles};
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::{Gpu, Shape, Tensor};

/// The reference forward in f64, from the shared reference ops (after ReLU if fused).
fn reference_forward(
    conv: &Conv2d,
    inp: Shape,
    x: &[f64],
    w: &[f64],
    b: &[f64],
    c_out: usize,
) -> Vec<f64> {
    let x = Host {
        shape: inp,
        data: x.to_vec(),
    };
    reference::conv2d(&x, w, b, c_out, conv.kernel, conv.pad(), conv.relu).data
}

/// The reference backward in f64: (dinp, dweight, dbias) for g = dout * relu'(out).
/// Index loops on purpose: they spell out the formula in conv2d.wgsl.
#[allow(clippy::needless_range_loop)]
fn reference_backward(
    conv: &Conv2d,
    inp: Shape,
    x: &[f64],
    w: &[f64],
    out: &[f64],
    dout: &[f64],
    c_out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let out_shape = conv.out_shape(inp, c_out).unwrap();
    let (k, pad) = (conv.kernel, conv.pad() as isize);
    let mut dinp = vec![0.0; inp.numel()];
    let mut dw = vec![0.0; c_out * inp.c * k * k];
    let mut db = vec![0.0; c_out];
    for n in 0..out_shape.n {
        for co in 0..c_out {
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let o = out_shape.index(n, co, oy, ox);
                    let g = if conv.relu && out[o] <= 0.0 {
                        0.0
                    } else {
                        dout[o]
                    };
                    db[co] += g;
                    for ci in 0..inp.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy + ky) as isize - pad;
                                let ix = (ox + kx) as isize - pad;
                                if iy < 0 || ix < 0 || iy >= inp.h as isize || ix >= inp.w as isize
                                {
                                    continue;
                                }
                                let i = inp.index(n, ci, iy as usize, ix as usize);
                                let wi = ((co * inp.c + ci) * k + ky) * k + kx;
                                dinp[i] += g * w[wi];
                                dw[wi] += g * x[i];
                            }
                        }
                    }
                }
            }
        }
    }
    (dinp, dw, db)
}

#[derive(Clone, Copy, Debug)]
struct Case {
    conv: Conv2d,
    inp: Shape,
    c_out: usize,
}

fn case(kernel: usize, padding: Padding, relu: bool, inp: Shape, c_out: usize) -> Case {
    Case {
        conv: Conv2d {
            kernel,
            padding,
            relu,
        },
        inp,
        c_out,
    }
}

/// Shapes that exercise every guard: odd sizes, channel counts that are not multiples of
/// the tiles (8 channels per workgroup and up), images narrower and wider than one pixel
/// tile, batch > 1, k = 1 and 5, same padding, with and without ReLU.
fn cases() -> Vec<Case> {
    use Padding::{Same, Valid};
    vec![
        case(3, Valid, true, Shape::new(1, 3, 7, 9), 5),
        case(3, Valid, false, Shape::new(2, 4, 17, 13), 3),
        case(3, Same, true, Shape::new(2, 5, 11, 6), 7),
        case(1, Valid, false, Shape::new(3, 6, 5, 5), 2),
        case(1, Same, true, Shape::new(1, 9, 10, 37), 13),
        case(5, Same, false, Shape::new(1, 2, 9, 8), 3),
        case(3, Valid, true, Shape::new(1, 16, 35, 41), 8),
        case(3, Same, true, Shape::new(2, 11, 19, 70), 17),
        case(3, Valid, true, Shape::new(1, 1, 44, 45), 12),
        // 2 x 138 x 138 = 38,088 output pixels: variant 2's weight gradient cuts them into
        // slices of at most 16,384 pixels (3 slices), variant 3's into 8,192 (5).
        case(3, Valid, true, Shape::new(2, 2, 140, 140), 3),
    ]
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    g: Vec<f32>,
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
}

fn upload_case(gpu: &Gpu, c: &Case, seed: u64) -> Data {
    let mut r = rng(seed);
    let wshape = c.conv.weight_shape(c.inp.c, c.c_out);
    let out_shape = c.conv.out_shape(c.inp, c.c_out).unwrap();
    let x = random_vec(&mut r, c.inp.numel());
    let w = random_vec(&mut r, wshape.numel());
    let b = random_vec(&mut r, c.c_out);
    let g = random_vec(&mut r, out_shape.numel());
    Data {
        inp: upload(gpu, c.inp, &x),
        weight: upload(gpu, wshape, &w),
        bias: upload(gpu, Shape::vector(c.c_out), &b),
        x,
        w,
        b,
        g,
    }
}

/// Every pass of one variant: (out, dinp, dweight, dbias).
fn run_all(gpu: &Gpu, algo: ConvAlgo, c: &Case, d: &Data) -> [Vec<f32>; 4] {
    let out = conv2d::forward_with(gpu, algo, &c.conv, &d.inp, &d.weight, &d.bias).unwrap();
    let dout = upload(gpu, out.shape(), &d.g);
    let dinp =
        conv2d::backward_input_with(gpu, algo, &c.conv, c.inp, &d.weight, &out, &dout).unwrap();
    let dweight = Tensor::zeros(gpu, d.weight.shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(gpu, d.bias.shape(), "dbias").unwrap();
    conv2d::backward_params_with(gpu, algo, &c.conv, &d.inp, &out, &dout, &dweight, &dbias)
        .unwrap();
    [
        out.to_vec(gpu).unwrap(),
        dinp.to_vec(gpu).unwrap(),
        dweight.to_vec(gpu).unwrap(),
        dbias.to_vec(gpu).unwrap(),
    ]
}

/// Checks the four results of `run_all` (`got`) against the f64 reference for weight `w`
/// (`d.w`, or what the weight tensor holds after a change).
fn assert_matches_reference(
    what: &dyn Fn(&str) -> String,
    c: &Case,
    d: &Data,
    w: &[f32],
    got: &[Vec<f32>; 4],
) {
    let (x, w, g) = (to_f64(&d.x), to_f64(w), to_f64(&d.g));
    let want_out = reference_forward(&c.conv, c.inp, &x, &w, &to_f64(&d.b), c.c_out);
    // The backward reference reads relu' off the GPU's own output, as the kernels do, so
    // that a pre-activation within rounding of 0 cannot flip the mask between the two.
    let (want_dinp, want_dw, want_db) =
        reference_backward(&c.conv, c.inp, &x, &w, &to_f64(&got[0]), &g, c.c_out);
    let wants = [want_out, want_dinp, want_dw, want_db];
    for (pass, (got, want)) in ["forward", "dinp", "dweight", "dbias"]
        .iter()
        .zip(got.iter().zip(&wants))
    {
        assert_close(&what(pass), got, want, 1e-4, 1e-4);
    }
}

fn check_against_reference_and_direct(gpu: &Gpu, algo: ConvAlgo, c: &Case, seed: u64) {
    let d = upload_case(gpu, c, seed);
    let fast = run_all(gpu, algo, c, &d);
    let direct = run_all(gpu, ConvAlgo::Direct, c, &d);
    let what = |pass: &str| format!("{pass} {algo:?} {:?} on {} -> {}", c.conv, c.inp, c.c_out);
    assert_matches_reference(&what, c, &d, &d.w, &fast);
    for (pass, (got, reference)) in ["forward", "dinp", "dweight", "dbias"]
        .iter()
        .zip(fast.iter().zip(&direct))
    {
        assert_close(
            &format!("{} vs direct", what(pass)),
            got,
            &to_f64(reference),
            1e-4,
            1e-4,
        );
    }
}

/// Variant 2 reads the weight as records (see `arrange_weight` in the shader). A weight
/// written between a forward and its backward-input, by an SGD step or by an upload (which
/// is how a checkpoint load sets parameters), must be what backward-input reads, and what
/// every pass reads after it. For k = 3, and k = 1 with the weight read as it is (16
/// values) or copied into records (21).
#[test]
fn gemm_weight_records_follow_writes_to_the_weight() {
    let gpu = gpu();
    for c in [
        case(3, Padding::Valid, true, Shape::new(1, 5, 12, 14), 6),
        case(1, Padding::Valid, false, Shape::new(1, 8, 6, 9), 2),
        case(1, Padding::Valid, false, Shape::new(1, 7, 6, 9), 3),
    ] {
        let d = upload_case(&gpu, &c, 11);
        let what = |stage: &'static str| {
            move |pass: &str| format!("{pass} of {:?} on {} {stage}", c.conv, c.inp)
        };
        let got = run_all(&gpu, ConvAlgo::Gemm, &c, &d);
        assert_matches_reference(&what("at first"), &c, &d, &d.w, &got);

        let mut r = rng(12);
        let grad = upload(&gpu, d.weight.shape(), &random_vec(&mut r, d.w.len()));
        let velocity = Tensor::zeros(&gpu, d.weight.shape(), "velocity").unwrap();
        let sgd = Sgd {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let written = random_vec(&mut r, d.w.len());
        let changes: [(&str, &dyn Fn()); 2] = [
            ("an SGD step", &|| {
                sgd.step(&gpu, &d.weight, &grad, &velocity).unwrap()
            }),
            ("an upload", &|| d.weight.write(&gpu, &written).unwrap()),
        ];
        for (change, apply) in changes {
            let before = d.weight.to_vec(&gpu).unwrap();
            let out =
                conv2d::forward_with(&gpu, ConvAlgo::Gemm, &c.conv, &d.inp, &d.weight, &d.bias)
                    .unwrap();
            let dout = upload(&gpu, out.shape(), &d.g);
            apply();
            let after = d.weight.to_vec(&gpu).unwrap();
            assert_ne!(before, after, "{change} changes the weight");
            let dinp = conv2d::backward_input_with(
                &gpu,
                ConvAlgo::Gemm,
                &c.conv,
                c.inp,
                &d.weight,
                &out,
                &dout,
            )
            .unwrap();
            let (x, g) = (to_f64(&d.x), to_f64(&d.g));
            let out = to_f64(&out.to_vec(&gpu).unwrap());
            let (want, ..) =
                reference_backward(&c.conv, c.inp, &x, &to_f64(&after), &out, &g, c.c_out);
            let what = format!("dinp of {:?} with {change} after the forward", c.conv);
            assert_close(&what, &dinp.to_vec(&gpu).unwrap(), &want, 1e-4, 1e-4);
        }
        let got = run_all(&gpu, ConvAlgo::Gemm, &c, &d);
        let now = d.weight.to_vec(&gpu).unwrap();
        assert_matches_reference(&what("after both"), &c, &d, &now, &got);
    }
}

#[test]
fn gemm_matches_reference_and_direct() {
    let gpu = gpu();
    for (seed, c) in cases().iter().enumerate() {
        check_against_reference_and_direct(&gpu, ConvAlgo::Gemm, c, seed as u64);
    }
}

/// `conv2d::backward`, both gradients in one call (on variant 2 from one padded copy of g
/// that both passes read), gives exactly what the two separate launchers give, with and
/// without dinp. The 4x4 valid case pads g by 3 for backward-input, the one tile shift
/// (see the shader) the other cases do not reach.
#[test]
fn backward_in_one_call_matches_the_separate_passes() {
    let gpu = gpu();
    let mut all = cases();
    all.push(case(4, Padding::Valid, true, Shape::new(1, 3, 13, 22), 5));
    for (seed, c) in all.iter().enumerate() {
        let d = upload_case(&gpu, c, 100 + seed as u64);
        let separate = run_all(&gpu, ConvAlgo::Auto, c, &d);
        let what = |pass: &str| format!("{pass} of {:?} on {} -> {}", c.conv, c.inp, c.c_out);
        assert_matches_reference(&what, c, &d, &d.w, &separate);

        let out = conv2d::forward(&gpu, &c.conv, &d.inp, &d.weight, &d.bias).unwrap();
        let dout = upload(&gpu, out.shape(), &d.g);
        for need_dinp in [true, false] {
            let dweight = Tensor::zeros(&gpu, d.weight.shape(), "dweight").unwrap();
            let dbias = Tensor::zeros(&gpu, d.bias.shape(), "dbias").unwrap();
            let grads = [&dweight, &dbias];
            let dinp = conv2d::backward(
                &gpu, &c.conv, &d.inp, &d.weight, &out, &dout, grads, need_dinp,
            )
            .unwrap();
            assert_eq!(dinp.is_some(), need_dinp);
            let mut got = vec![("dweight", dweight.to_vec(&gpu).unwrap(), &separate[2])];
            got.push(("dbias", dbias.to_vec(&gpu).unwrap(), &separate[3]));
            if let Some(dinp) = dinp {
                got.push(("dinp", dinp.to_vec(&gpu).unwrap(), &separate[1]));
            }
            for (pass, one_call, two_calls) in got {
                let same = one_call
                    .iter()
                    .zip(two_calls)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{} (need_dinp {need_dinp}): one call differs",
                    what(pass)
                );
            }
        }
    }
}

#[test]
fn other_tile_sizes_match_reference() {
    let gpu = gpu();
    let Some(step) = GemmTiles::workgroup_step(&gpu) else {
        eprintln!("no usable subgroups on this device: variant 2 cannot run here");
        assert_refused(&gpu, GemmTiles::DEFAULT, "no usable subgroup");
        return;
    };
    // Tiles unlike the default: 3 channels per invocation, a 4 x 4 pixel forward tile,
    // a 3 x 4 weight-gradient tile of 3 input channels, and many slices of the reduction,
    // in the smallest workgroup the device allows.
    let tiles = GemmTiles {
        wg: step,
        mi: 3,
        rows: 4,
        quads: 1,
        bw_ci: 3,
        bw_rows: 3,
        bw_quads: 1,
        min_workgroups: 1000,
    };
    assert!(tiles.fits(&gpu, 3), "{:?}", tiles.check(&gpu, 3));
    let algo = ConvAlgo::GemmTiled(tiles);
    for (seed, c) in cases().iter().enumerate().step_by(2) {
        check_against_reference_and_direct(&gpu, algo, c, 50 + seed as u64);
    }
}

/// Running a 3x3 conv with `tiles` is an error whose message contains `why`.
fn assert_refused(gpu: &Gpu, tiles: GemmTiles, why: &str) {
    let c = case(3, Padding::Valid, true, Shape::new(1, 2, 8, 8), 4);
    let d = upload_case(gpu, &c, 1);
    let algo = ConvAlgo::GemmTiled(tiles);
    let err = conv2d::forward_with(gpu, algo, &c.conv, &d.inp, &d.weight, &d.bias)
        .expect_err("tiles that do not fit must be refused");
    let message = err.to_string();
    assert!(message.contains(why), "{message}");
}

#[test]
fn tiled_matches_reference_and_direct() {
    let gpu = gpu();
    for (seed, c) in cases().iter().enumerate() {
        check_against_reference_and_direct(&gpu, ConvAlgo::Tiled, c, 70 + seed as u64);
    }
}

#[test]
fn other_tiled_tile_sizes_match_reference() {
    let gpu = gpu();
    // The presets on shapes they were not chosen for, and tiles whose sizes do not divide
    // the layers' (8 values of K per step, 32 invocations).
    let tilings = [
        TiledTiles::LARGE,
        TiledTiles::SMALL,
        TiledTiles {
            bm: 16,
            bn: 32,
            bk: 8,
        },
    ];
    for (t, tiles) in tilings.into_iter().enumerate() {
        assert_eq!(tiles.check(&gpu), Ok(()));
        let algo = ConvAlgo::TiledWith(tiles);
        for (seed, c) in cases().iter().enumerate().skip(t).step_by(3) {
            check_against_reference_and_direct(&gpu, algo, c, 90 + seed as u64);
        }
    }
    for bad in [(64, 64, 32), (8, 64, 16), (32, 6, 16), (16, 32, 7)] {
        let (bm, bn, bk) = bad;
        let tiles = TiledTiles { bm, bn, bk };
        assert!(tiles.check(&gpu).is_err(), "{tiles:?}");
    }
}

/// Finite differences of the f64 reference loss L = sum(out * g) on tiny shapes.
#[test]
fn gemm_backward_matches_finite_differences() {
    let gpu = gpu();
    let tiny = [
        case(3, Padding::Valid, false, Shape::new(1, 2, 6, 5), 3),
        case(3, Padding::Same, true, Shape::new(2, 3, 5, 4), 2),
        case(1, Padding::Valid, true, Shape::new(2, 3, 4, 3), 5),
    ];
    let runs = [ConvAlgo::Gemm, ConvAlgo::Tiled]
        .into_iter()
        .flat_map(|algo| {
            tiny.iter()
                .enumerate()
                .map(move |(seed, c)| (algo, seed, c))
        });
    for (algo, seed, c) in runs {
        let d = upload_case(&gpu, c, 20 + seed as u64);
        let [_, dinp, dweight, dbias] = run_all(&gpu, algo, c, &d);
        let (x, w, b, g) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b), to_f64(&d.g));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            dot(&reference_forward(&c.conv, c.inp, x, w, b, c.c_out), &g)
        };
        let eps = 1e-4;
        let what = format!("{algo:?} {:?} on {}", c.conv, c.inp);
        let want = numeric_grad(|v| loss(v, &w, &b), &x, eps);
        assert_close(&format!("dinp {what}"), &dinp, &want, 1e-3, 1e-3);
        let want = numeric_grad(|v| loss(&x, v, &b), &w, eps);
        assert_close(&format!("dweight {what}"), &dweight, &want, 1e-3, 1e-3);
        let want = numeric_grad(|v| loss(&x, &w, v), &b, eps);
        assert_close(&format!("dbias {what}"), &dbias, &want, 1e-3, 1e-3);
    }
}

#[test]
fn gemm_is_bit_reproducible_and_accumulates() {
    let gpu = gpu();
    let c = case(3, Padding::Valid, true, Shape::new(2, 16, 30, 29), 24);
    let d = upload_case(&gpu, &c, 5);
    for algo in [ConvAlgo::Tiled, ConvAlgo::Gemm] {
        let first = run_all(&gpu, algo, &c, &d);
        let second = run_all(&gpu, algo, &c, &d);
        for (pass, (a, b)) in ["forward", "dinp", "dweight", "dbias"]
            .iter()
            .zip(first.iter().zip(&second))
        {
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{algo:?} {pass}: two runs differ");
        }
    }
    // The default variant, which backward_params below runs.
    let first = run_all(&gpu, ConvAlgo::Auto, &c, &d);
    assert!(
        first[2].iter().any(|&v| v != 0.0),
        "dweight must not be trivially zero"
    );

    // Parameter gradients accumulate: a second backward_params doubles them.
    let out = conv2d::forward(&gpu, &c.conv, &d.inp, &d.weight, &d.bias).unwrap();
    let dout = upload(&gpu, out.shape(), &d.g);
    let dweight = Tensor::zeros(&gpu, d.weight.shape(), "dweight").unwrap();
    let dbias = Tensor::zeros(&gpu, d.bias.shape(), "dbias").unwrap();
    for _ in 0..2 {
        conv2d::backward_params(&gpu, &c.conv, &d.inp, &out, &dout, &dweight, &dbias).unwrap();
    }
    let doubled: Vec<f64> = first[2].iter().map(|&v| 2.0 * f64::from(v)).collect();
    assert_close(
        "dweight twice",
        &dweight.to_vec(&gpu).unwrap(),
        &doubled,
        1e-6,
        1e-6,
    );
}

#[test]
fn tiles_fit_the_device() {
    let gpu = gpu();
    let Some(step) = GemmTiles::workgroup_step(&gpu) else {
        // No usable subgroups (GL, browsers): every convolution runs variant 1.
        for k in [1, 3, 5] {
            assert_eq!(GemmTiles::for_device(&gpu, k), None);
        }
        return;
    };
    for k in [1, 3, 5] {
        let tiles = GemmTiles::for_device(&gpu, k).expect("some tiles fit");
        assert!(tiles.fits(&gpu, k));
        assert!(tiles.wg.is_multiple_of(step), "{tiles:?}, step {step}");
    }
    assert!(
        GemmTiles::for_device(&gpu, 7).is_none(),
        "7x7 runs variant 1"
    );
    let fitting = GemmTiles::for_device(&gpu, 3).unwrap();
    let too_big = GemmTiles {
        bw_ci: 9,
        ..fitting
    };
    assert!(!too_big.fits(&gpu, 3));
    assert_refused(&gpu, too_big, "bw_ci = 9");
    let part_of_a_subgroup = GemmTiles {
        wg: step + 1,
        ..fitting
    };
    assert_refused(
        &gpu,
        part_of_a_subgroup,
        "not a multiple of the largest subgroup",
    );
}

#[test]
fn benchmark_layers_and_a_tiny_run() {
    use unet_wgpu::bench::kernels::{self, BenchOptions, Pass};
    let layers = kernels::paper_layers();
    assert_eq!(layers.len(), 18);
    let find = |name: &str| layers.iter().find(|l| l.name == name).unwrap();
    assert_eq!(
        (find("enc0.conv1").inp, find("enc0.conv1").c_out),
        (Shape::new(1, 1, 572, 572), 64)
    );
    assert_eq!(
        (find("enc4.conv2").inp, find("enc4.conv2").c_out),
        (Shape::new(1, 1024, 30, 30), 1024)
    );
    assert_eq!(
        (find("dec3.conv1").inp, find("dec3.conv1").c_out),
        (Shape::new(1, 1024, 56, 56), 512)
    );
    assert_eq!(
        (find("dec0.conv2").inp, find("dec0.conv2").c_out),
        (Shape::new(1, 64, 390, 390), 64)
    );
    let small = kernels::small_layers();
    assert_eq!(
        (small[1].inp, small[1].c_out),
        (Shape::new(1, 16, 285, 285), 16)
    );
    assert!(kernels::parse_conv_spec("1,64,284").is_err());

    let gpu = gpu();
    let opts = BenchOptions {
        reps: 1,
        ..BenchOptions::default()
    };
    let reports = kernels::bench_conv_spec(&gpu, "2,5,13,11,6", &opts).unwrap();
    // Variant 2 only where the device has subgroups.
    let variants = if GemmTiles::workgroup_step(&gpu).is_some() {
        3
    } else {
        2
    };
    assert_eq!(
        reports.len(),
        3 * variants,
        "3 passes x {variants} variants"
    );
    assert!(reports
        .iter()
        .all(|r| r.ms > 0.0 && r.gflops.is_some_and(|g| g > 0.0)));
    let tiled_weight = reports
        .iter()
        .find(|r| r.pass == Pass::BackwardWeight && r.variant == "tiled")
        .unwrap();
    assert!(tiled_weight.speedup.is_some());
}
