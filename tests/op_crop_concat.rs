//! Centre-crop and concatenate: forward and backward against a CPU reference, a folded
//! grid, finite differences (alone and in U-Net's situation, where the skip tensor also
//! feeds a max-pool), and shape errors.

mod common;

use common::*;
use unet_wgpu::ops::{crop_concat, max_pool};
use unet_wgpu::{Error, Gpu, Shape, Tensor};

/// The crop offset the op documents: half the size difference, rounded down.
fn offset(part: Shape, h: usize, w: usize) -> (usize, usize) {
    ((part.h - h) / 2, (part.w - w) / 2)
}

/// The concatenation's shape and, for each of its channels, (part, channel in the part).
fn channel_map(parts: &[Shape], h: usize, w: usize) -> (Shape, Vec<(usize, usize)>) {
    let map: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(k, s)| (0..s.c).map(move |c| (k, c)))
        .collect();
    (Shape::new(parts[0].n, map.len(), h, w), map)
}

/// out[n, c, y, x] = part_k[n, c - c0_k, y + oy_k, x + ox_k] for the part k that owns c.
fn parts_forward_ref(parts: &[(&[f64], Shape)], h: usize, w: usize) -> Vec<f64> {
    let shapes: Vec<Shape> = parts.iter().map(|p| p.1).collect();
    let (os, map) = channel_map(&shapes, h, w);
    let mut out = Vec::with_capacity(os.numel());
    for n in 0..os.n {
        for &(k, c) in &map {
            let (data, s) = parts[k];
            let (oy, ox) = offset(s, h, w);
            for y in 0..h {
                for x in 0..w {
                    out.push(data[s.index(n, c, y + oy, x + ox)]);
                }
            }
        }
    }
    out
}

/// Each part's gradient of the loss sum(out * dout).
fn parts_backward_ref(dout: &[f64], parts: &[Shape], h: usize, w: usize) -> Vec<Vec<f64>> {
    let (os, map) = channel_map(parts, h, w);
    let mut grads: Vec<Vec<f64>> = parts.iter().map(|s| vec![0.0; s.numel()]).collect();
    for n in 0..os.n {
        for (oc, &(k, c)) in map.iter().enumerate() {
            let s = parts[k];
            let (oy, ox) = offset(s, h, w);
            for y in 0..h {
                for x in 0..w {
                    grads[k][s.index(n, c, y + oy, x + ox)] = dout[os.index(n, oc, y, x)];
                }
            }
        }
    }
    grads
}

/// U-Net's case: [crop(skip), up].
fn forward_ref(skip: &[f64], ss: Shape, up: &[f64], us: Shape) -> Vec<f64> {
    parts_forward_ref(&[(skip, ss), (up, us)], us.h, us.w)
}

/// (dskip, dup) of the loss sum(out * dout).
fn backward_ref(dout: &[f64], ss: Shape, us: Shape) -> (Vec<f64>, Vec<f64>) {
    let mut grads = parts_backward_ref(dout, &[ss, us], us.h, us.w);
    let dup = grads.pop().unwrap();
    (grads.pop().unwrap(), dup)
}

/// 2x2 stride-2 max-pool in f64 (the path the skip tensor also feeds in U-Net).
fn max_pool_ref(inp: &[f64], s: Shape) -> Vec<f64> {
    let mut out = Vec::with_capacity(s.numel() / 4);
    for n in 0..s.n {
        for c in 0..s.c {
            for i in 0..s.h / 2 {
                for j in 0..s.w / 2 {
                    let window = (0..4).map(|k| inp[s.index(n, c, 2 * i + k / 2, 2 * j + k % 2)]);
                    out.push(window.fold(f64::NEG_INFINITY, f64::max));
                }
            }
        }
    }
    out
}

fn check_against_reference(gpu: &Gpu, seed: u64, ss: Shape, us: Shape) {
    let mut r = rng(seed);
    let skip = random_vec(&mut r, ss.numel());
    let up = random_vec(&mut r, us.numel());
    let os = us.with_c(ss.c + us.c);
    let dout = random_vec(&mut r, os.numel());
    let what = format!("skip {ss}, up {us}");

    let out = crop_concat::forward(gpu, &upload(gpu, ss, &skip), &upload(gpu, us, &up)).unwrap();
    assert_eq!(out.shape(), os, "{what}");
    let want = forward_ref(&to_f64(&skip), ss, &to_f64(&up), us);
    assert_close(
        &format!("out, {what}"),
        &out.to_vec(gpu).unwrap(),
        &want,
        0.0,
        0.0,
    );

    let (dskip, dup) = crop_concat::backward(gpu, &upload(gpu, os, &dout), ss).unwrap();
    assert_eq!((dskip.shape(), dup.shape()), (ss, us), "{what}");
    let (want_dskip, want_dup) = backward_ref(&to_f64(&dout), ss, us);
    assert_close(
        &format!("dskip, {what}"),
        &dskip.to_vec(gpu).unwrap(),
        &want_dskip,
        0.0,
        0.0,
    );
    assert_close(
        &format!("dup, {what}"),
        &dup.to_vec(gpu).unwrap(),
        &want_dup,
        0.0,
        0.0,
    );
}

#[test]
fn forward_and_backward_match_reference() {
    // (skip, up): no crop, even and odd size differences (the odd one rounds the offset
    // down), batch > 1, odd channel counts, element counts that do not divide 256, and a
    // U-Net level (64x64 cropped to 56x56).
    let cases = [
        (Shape::new(1, 1, 3, 3), Shape::new(1, 1, 3, 3)),
        (Shape::new(2, 3, 9, 12), Shape::new(2, 2, 5, 8)),
        (Shape::new(1, 2, 8, 7), Shape::new(1, 3, 5, 4)),
        (Shape::new(3, 5, 11, 10), Shape::new(3, 1, 10, 3)),
        (Shape::new(1, 4, 64, 64), Shape::new(1, 4, 56, 56)),
    ];
    let gpu = gpu();
    for (seed, (ss, us)) in cases.into_iter().enumerate() {
        check_against_reference(&gpu, seed as u64, ss, us);
    }
}

#[test]
fn many_parts_concatenate_in_order_each_centre_cropped() {
    // U-Net++'s case: several earlier nodes of a level (larger, cropped) and the up-sampled
    // map, with odd and even size differences; and a crop alone (one part).
    let gpu = gpu();
    let cases: [(&[Shape], usize, usize); 2] = [
        (
            &[
                Shape::new(2, 3, 9, 8),
                Shape::new(2, 1, 6, 6),
                Shape::new(2, 2, 5, 4),
            ],
            5,
            4,
        ),
        (&[Shape::new(1, 2, 7, 10)], 4, 4),
    ];
    for (seed, (shapes, h, w)) in cases.into_iter().enumerate() {
        let mut r = rng(100 + seed as u64);
        let data: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| random_vec(&mut r, s.numel()))
            .collect();
        let tensors: Vec<Tensor> = shapes
            .iter()
            .zip(&data)
            .map(|(&s, d)| upload(&gpu, s, d))
            .collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let out = crop_concat::forward_parts(&gpu, &refs, h, w).unwrap();
        let data64: Vec<Vec<f64>> = data.iter().map(|d| to_f64(d)).collect();
        let parts: Vec<(&[f64], Shape)> = data64
            .iter()
            .zip(shapes)
            .map(|(d, &s)| (d.as_slice(), s))
            .collect();
        let want = parts_forward_ref(&parts, h, w);
        assert_close("parts out", &out.to_vec(&gpu).unwrap(), &want, 0.0, 0.0);

        let dout = random_vec(&mut r, out.numel());
        let grads =
            crop_concat::backward_parts(&gpu, &upload(&gpu, out.shape(), &dout), shapes).unwrap();
        let want = parts_backward_ref(&to_f64(&dout), shapes, h, w);
        assert_eq!(grads.len(), shapes.len());
        for (k, (got, want)) in grads.iter().zip(&want).enumerate() {
            assert_eq!(got.shape(), shapes[k]);
            let got = got.to_vec(&gpu).unwrap();
            assert_close(&format!("dpart {k}"), &got, want, 0.0, 0.0);
        }
    }
    // The crop helpers are the one-part case.
    let x = upload(
        &gpu,
        Shape::new(1, 1, 3, 3),
        &[1., 2., 3., 4., 5., 6., 7., 8., 9.],
    );
    let centre = crop_concat::crop(&gpu, &x, 1, 1).unwrap();
    assert_eq!(centre.to_vec(&gpu).unwrap(), [5.0]);
    let back = crop_concat::crop_backward(&gpu, &centre, x.shape()).unwrap();
    assert_eq!(
        back.to_vec(&gpu).unwrap(),
        [0., 0., 0., 0., 5., 0., 0., 0., 0.]
    );
}

#[test]
fn odd_size_difference_rounds_the_offset_down() {
    let gpu = gpu();
    // A 1x4 skip row cropped to width 1: the offset is 3 / 2 = 1, so element 1 is kept.
    let skip = upload(&gpu, Shape::new(1, 1, 1, 4), &[10.0, 11.0, 12.0, 13.0]);
    let up = upload(&gpu, Shape::new(1, 1, 1, 1), &[20.0]);
    let out = crop_concat::forward(&gpu, &skip, &up).unwrap();
    assert_eq!(out.to_vec(&gpu).unwrap(), [11.0, 20.0]);
    let (dskip, dup) = crop_concat::backward(&gpu, &out, skip.shape()).unwrap();
    assert_eq!(dskip.to_vec(&gpu).unwrap(), [0.0, 11.0, 0.0, 0.0]);
    assert_eq!(dup.to_vec(&gpu).unwrap(), [20.0]);
}

#[test]
fn many_rows_use_a_folded_grid() {
    // The launches run 8 rows per workgroup: 2 * 4 * 70,000 = 560,000 rows of each part
    // need more than 65,535 workgroups, so the grid folds into 2-D.
    let gpu = gpu();
    let (ss, us) = (Shape::new(2, 4, 70_004, 3), Shape::new(2, 4, 70_000, 2));
    assert!(
        gpu.grid_1d((us.n * us.c * us.h) as u64, 8)[1] > 1,
        "this size must need the fold"
    );
    check_against_reference(&gpu, 30, ss, us);
}

#[test]
fn long_rows_are_covered_by_the_lanes_striding() {
    // Rows of a million elements: each lane of a workgroup covers many of them.
    let gpu = gpu();
    let (ss, us) = (
        Shape::new(2, 2, 1, 1_000_004),
        Shape::new(2, 2, 1, 1_000_000),
    );
    check_against_reference(&gpu, 31, ss, us);
}

#[test]
fn gradients_match_finite_differences() {
    let gpu = gpu();
    let (ss, us) = (Shape::new(2, 2, 5, 4), Shape::new(2, 3, 2, 3));
    let mut r = rng(40);
    let skip = random_vec(&mut r, ss.numel());
    let up = random_vec(&mut r, us.numel());
    let dout = random_vec(&mut r, us.with_c(5).numel());
    let (s64, u64_, g) = (to_f64(&skip), to_f64(&up), to_f64(&dout));
    let fd_skip = numeric_grad(|s| dot(&forward_ref(s, ss, &u64_, us), &g), &s64, 1e-3);
    let fd_up = numeric_grad(|u| dot(&forward_ref(&s64, ss, u, us), &g), &u64_, 1e-3);

    let (dskip, dup) = crop_concat::backward(&gpu, &upload(&gpu, us.with_c(5), &dout), ss).unwrap();
    assert_close(
        "dskip vs fd",
        &dskip.to_vec(&gpu).unwrap(),
        &fd_skip,
        1e-6,
        1e-6,
    );
    assert_close("dup vs fd", &dup.to_vec(&gpu).unwrap(), &fd_up, 1e-6, 1e-6);
}

/// U-Net's situation: the skip tensor x feeds both the crop-and-concatenate and the
/// max-pool of its level, L = sum(crop_concat(x, up) * g1) + sum(max_pool(x) * g2).
/// The gradient rule: crop_concat::backward writes dx, then max_pool::backward_add adds
/// the pooling path into it.
#[test]
fn skip_feeding_crop_concat_and_max_pool_gets_both_gradients() {
    let gpu = gpu();
    let (xs, us) = (Shape::new(2, 2, 6, 8), Shape::new(2, 3, 2, 4));
    let os = us.with_c(xs.c + us.c);
    let ps = Shape::new(xs.n, xs.c, xs.h / 2, xs.w / 2);
    let mut r = rng(50);
    // Distinct values, at least 1/len apart, so no pooling window has a near-tie.
    let noise = random_vec(&mut r, xs.numel());
    let mut order: Vec<usize> = (0..xs.numel()).collect();
    order.sort_by(|&a, &b| noise[a].total_cmp(&noise[b]));
    let mut x = vec![0.0f32; xs.numel()];
    for (rank, &i) in order.iter().enumerate() {
        x[i] = rank as f32 / xs.numel() as f32 - 0.5;
    }
    let up = random_vec(&mut r, us.numel());
    let g1 = random_vec(&mut r, os.numel());
    let g2 = random_vec(&mut r, ps.numel());

    let (up64, g1_64, g2_64) = (to_f64(&up), to_f64(&g1), to_f64(&g2));
    let loss =
        |x: &[f64]| dot(&forward_ref(x, xs, &up64, us), &g1_64) + dot(&max_pool_ref(x, xs), &g2_64);
    let want_dx = numeric_grad(loss, &to_f64(&x), 1e-4);

    let x_t = upload(&gpu, xs, &x);
    let (_, pool_saved) = max_pool::forward(&gpu, &x_t).unwrap();
    let (dx, dup) = crop_concat::backward(&gpu, &upload(&gpu, os, &g1), xs).unwrap();
    max_pool::backward_add(&gpu, &upload(&gpu, ps, &g2), &pool_saved, &dx).unwrap();
    assert_close("dx vs fd", &dx.to_vec(&gpu).unwrap(), &want_dx, 1e-6, 1e-5);
    let want_dup = backward_ref(&g1_64, xs, us).1;
    assert_close("dup", &dup.to_vec(&gpu).unwrap(), &want_dup, 0.0, 0.0);
}

#[test]
fn mismatched_shapes_are_errors() {
    let gpu = gpu();
    let zeros = |s: Shape| Tensor::zeros(&gpu, s, "t").unwrap();
    let is_shape_error = |r: unet_wgpu::Result<Tensor>| matches!(r, Err(Error::Shape { .. }));
    let skip = zeros(Shape::new(2, 3, 8, 8));

    // Batch mismatch.
    assert!(is_shape_error(crop_concat::forward(
        &gpu,
        &skip,
        &zeros(Shape::new(1, 3, 4, 4))
    )));
    // Skip smaller than up, in height and in width.
    assert!(is_shape_error(crop_concat::forward(
        &gpu,
        &skip,
        &zeros(Shape::new(2, 3, 9, 4))
    )));
    assert!(is_shape_error(crop_concat::forward(
        &gpu,
        &skip,
        &zeros(Shape::new(2, 3, 4, 9))
    )));
    // And a fitting up tensor works.
    assert!(crop_concat::forward(&gpu, &skip, &zeros(Shape::new(2, 3, 4, 4))).is_ok());

    let backward_fails = |dout: Shape| {
        matches!(
            crop_concat::backward(&gpu, &zeros(dout), skip.shape()),
            Err(Error::Shape { .. })
        )
    };
    assert!(backward_fails(Shape::new(1, 6, 4, 4)), "batch mismatch");
    assert!(
        backward_fails(Shape::new(2, 3, 4, 4)),
        "no up-sampled channels"
    );
    assert!(
        backward_fails(Shape::new(2, 6, 9, 4)),
        "skip smaller than dout"
    );
    assert!(!backward_fails(Shape::new(2, 6, 4, 4)));

    // Parts: nothing to concatenate, and channels that do not add up to dout's.
    assert!(is_shape_error(crop_concat::forward_parts(&gpu, &[], 4, 4)));
    let parts = [Shape::new(2, 3, 8, 8), Shape::new(2, 2, 4, 4)];
    let parts_fail = |dout: Shape| {
        matches!(
            crop_concat::backward_parts(&gpu, &zeros(dout), &parts),
            Err(Error::Shape { .. })
        )
    };
    assert!(parts_fail(Shape::new(2, 4, 4, 4)), "channels do not add up");
    assert!(!parts_fail(Shape::new(2, 5, 4, 4)));
}
