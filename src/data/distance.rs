//! Exact Euclidean distance transform (EDT) by the separable algorithm of Felzenszwalb and
//! Huttenlocher, "Distance Transforms of Sampled Functions" (Theory of Computing, 2012).
//!
//! The squared distance to the nearest feature pixel,
//! ```text
//! D(x, y) = min over features (x', y') of (x - x')^2 + (y - y')^2,
//! ```
//! separates into two 1-D problems, because the minimum over (x', y') can be taken column by
//! column first:
//! ```text
//! G(x, y) = min_y' [ (y - y')^2 + F(x, y') ]    (F = 0 on features, infinity elsewhere)
//! D(x, y) = min_x' [ (x - x')^2 + G(x', y) ].
//! ```
//! Each 1-D problem is the lower envelope of parabolas q -> (q - p)^2 + f(p), computed in O(n).
//! Distances are measured between pixel centres.

use super::grid::Grid;

/// 1-D squared distance transform: `out[q] = min_p ((q - p)^2 + f[p])`, O(n).
///
/// `f` may hold `f64::INFINITY` (no feature there); if every entry is infinite so is the result.
/// `v` and `z` are scratch buffers (reused between calls to avoid allocations).
fn squared_edt_1d(f: &[f64], out: &mut [f64], v: &mut Vec<usize>, z: &mut Vec<f64>) {
    v.clear();
    z.clear();
    // Lower envelope: v[k] = apex of the k-th parabola, which is lowest on [z[k], z[k+1]].
    for (q, &fq) in f.iter().enumerate() {
        if fq.is_infinite() {
            continue; // a parabola at infinity is never part of the envelope
        }
        loop {
            let Some(&p) = v.last() else {
                v.push(q);
                z.push(f64::NEG_INFINITY);
                break;
            };
            // Where the parabolas from p and q intersect.
            let (qf, pf) = (q as f64, p as f64);
            let s = ((fq + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf));
            if s <= *z.last().unwrap() {
                // The parabola from p is hidden by q: drop it and look at the one before.
                v.pop();
                z.pop();
                if v.is_empty() {
                    v.push(q);
                    z.push(f64::NEG_INFINITY);
                    break;
                }
            } else {
                v.push(q);
                z.push(s);
                break;
            }
        }
    }
    if v.is_empty() {
        out.fill(f64::INFINITY);
        return;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        let qf = q as f64;
        while k + 1 < v.len() && z[k + 1] < qf {
            k += 1;
        }
        let d = qf - v[k] as f64;
        *o = d * d + f[v[k]];
    }
}

/// Squared Euclidean distance from every pixel to the nearest `true` pixel of `features`
/// (0 on features; `f32::INFINITY` everywhere when there is no feature at all).
pub fn squared_distance_transform(features: &Grid<bool>) -> Grid<f32> {
    let (w, h) = features.size();
    let mut columns_done = vec![0f64; w * h];
    let mut v = Vec::new();
    let mut z = Vec::new();

    // Pass 1: along each column.
    let mut f = vec![0f64; h];
    let mut out = vec![0f64; h];
    for x in 0..w {
        for (y, fy) in f.iter_mut().enumerate() {
            *fy = if features.data[y * w + x] {
                0.0
            } else {
                f64::INFINITY
            };
        }
        squared_edt_1d(&f, &mut out, &mut v, &mut z);
        for (y, &o) in out.iter().enumerate() {
            columns_done[y * w + x] = o;
        }
    }

    // Pass 2: along each row of the column result.
    let mut data = vec![0f32; w * h];
    let mut out = vec![0f64; w];
    for y in 0..h {
        squared_edt_1d(&columns_done[y * w..(y + 1) * w], &mut out, &mut v, &mut z);
        for (d, &o) in data[y * w..(y + 1) * w].iter_mut().zip(&out) {
            *d = o as f32;
        }
    }
    Grid {
        width: w,
        height: h,
        data,
    }
}

/// Euclidean distance from every pixel to the nearest `true` pixel (see
/// [`squared_distance_transform`]).
pub fn distance_transform(features: &Grid<bool>) -> Grid<f32> {
    squared_distance_transform(features).map(f32::sqrt)
}
