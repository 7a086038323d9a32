// Pixel-wise softmax and pixel-weighted cross-entropy (the U-Net paper's energy, eq. 1).
//
// For each pixel x of a batch (P = N*H*W pixels), with K logits z_k(x) at stride H*W:
//
//   m(x)   = max_k z_k(x)
//   lse(x) = m(x) + log(sum_k exp(z_k(x) - m(x)))      log-sum-exp; every exp() <= 1,
//                                                        so large logits cannot overflow
//   p_k(x) = exp(z_k(x) - lse(x))                       softmax
//   term(x) = w(x) * (lse(x) - z_l(x))                  = w(x) * -log p_l(x), l = label
//
//   loss          = (1/P) * sum_x term(x)
//   dloss/dz_k(x) = w(x)/P * (p_k(x) - [k == l(x)])
//
// A label that is not an integer in 0..K is detected explicitly (bit tests and
// comparisons, no reliance on NaN, which fast-math compilers such as Metal's need not
// keep): its pixel adds nothing to the loss and gets zero gradients, and it is counted, so
// that the caller can refuse the batch (see `loss.rs`).
//
// The loss is two passes over the pixels, so that neither binds more than the 4 storage
// buffers WebGPU and GLES 3.1 guarantee: `xent_gradient` writes dlogits, and
// `xent_partials` sums the terms (and the invalid labels) of each workgroup with a fixed
// tree in workgroup memory, one partial sum per workgroup; `xent_reduce` (one workgroup)
// sums the partials in a fixed order and scales by 1/P. No atomics: the sum is
// deterministic.

struct Params {
    // P = N*H*W.
    pixels: u32,
    // H*W: the stride between two classes of one pixel.
    plane: u32,
    // K.
    classes: u32,
    // The number of partial sums (workgroups of the first pass), for xent_reduce.
    partials: u32,
    // 1/P.
    inv_pixels: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// A power of two: the tree reductions halve it.
override WG: u32 = 256;

// (loss term, invalid labels) of each invocation, for the tree reductions.
var<workgroup> scratch: array<vec2<f32>, WG>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The flat index of logit k of pixel i (pixel i = n * plane + s).
fn logit_index(i: u32, k: u32) -> u32 {
    let n = i / p.plane;
    let s = i - n * p.plane;
    return (n * p.classes + k) * p.plane + s;
}

// Sums scratch[0..WG) into scratch[0] with a fixed tree: the same order on every run.
// Called by every invocation of the workgroup (it contains barriers).
fn reduce_scratch(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
    }
}

// [N,K,H,W], read by both entry points.
@group(0) @binding(1) var<storage, read> logits: array<f32>;

// log sum_k exp(z_k) of pixel i, with the largest logit m subtracted before exp.
fn log_sum_exp(i: u32) -> f32 {
    var m = logits[logit_index(i, 0u)];
    for (var k = 1u; k < p.classes; k++) {
        m = max(m, logits[logit_index(i, k)]);
    }
    var sum = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        sum += exp(logits[logit_index(i, k)] - m);
    }
    return m + log(sum);
}

// softmax bindings: logits (above) -> probabilities of the same shape.
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

// One invocation per pixel: probs_k = exp(z_k - lse).
@compute @workgroup_size(WG)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.pixels) {
        return;
    }
    let lse = log_sum_exp(i);
    for (var k = 0u; k < p.classes; k++) {
        let j = logit_index(i, k);
        probs[j] = exp(logits[j] - lse);
    }
}

// xent_gradient and xent_partials bindings: logits (above) and
// labels [N,1,H,W]: the class index of each pixel, as an f32;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
// weights [N,1,H,W]: w(x).
@group(0) @binding(3) var<storage, read> weights: array<f32>;

// The class of pixel i, or K where its label is not an integer in 0..K: infinities and
// NaN are caught by their exponent bits, before any comparison.
fn class_of(i: u32) -> u32 {
    let label = labels[i];
    let finite = (bitcast<u32>(label) & 0x7f800000u) != 0x7f800000u;
    if (finite && label >= 0.0 && label < f32(p.classes) && floor(label) == label) {
        return u32(label);
    }
    return p.classes;
}

// xent_gradient: dlogits [N,K,H,W], written.
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

// One invocation per pixel: its K gradients w/P * (p_k - [k == l]); zero for an invalid
// label.
@compute @workgroup_size(WG)
fn xent_gradient(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.pixels) {
        return;
    }
    let l = class_of(i);
    let lse = log_sum_exp(i);
    let g = select(0.0, weights[i] * p.inv_pixels, l < p.classes);
    for (var k = 0u; k < p.classes; k++) {
        let j = logit_index(i, k);
        let onehot = select(0.0, 1.0, k == l);
        dlogits[j] = g * (exp(logits[j] - lse) - onehot);
    }
}

// xent_partials: one (sum of terms, invalid labels) per workgroup of the grid (the terms
// not yet divided by P).
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;

// One invocation per pixel: its loss term w (lse - z_l), or an invalid label counted,
// into the workgroup's partial sums.
@compute @workgroup_size(WG)
fn xent_partials(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    var mine = vec2<f32>(0.0);
    // No early return: every invocation must reach the barriers of the reduction.
    if (i < p.pixels) {
        let l = class_of(i);
        if (l < p.classes) {
            mine.x = weights[i] * (log_sum_exp(i) - logits[logit_index(i, l)]);
        } else {
            mine.y = 1.0;
        }
    }
    scratch[lid] = mine;
    reduce_scratch(lid);
    if (lid == 0u) {
        partials[wid.x + wid.y * nwg.x] = scratch[0];
    }
}

// xent_reduce bindings.
@group(0) @binding(1) var<storage, read> red_partials: array<vec2<f32>>;
// Shape::vector(2): the loss and the number of pixels with an invalid label.
@group(0) @binding(2) var<storage, read_write> red_loss: array<f32>;

// One workgroup: invocation t sums partials t, t + WG, t + 2 WG, ... in order, then the
// tree adds the WG sums; loss = total / P.
@compute @workgroup_size(WG)
fn xent_reduce(@builtin(local_invocation_index) lid: u32) {
    var sum = vec2<f32>(0.0);
    for (var j = lid; j < p.partials; j += WG) {
        sum += red_partials[j];
    }
    scratch[lid] = sum;
    reduce_scratch(lid);
    if (lid == 0u) {
        red_loss[0] = scratch[0].x * p.inv_pixels;
        red_loss[1] = scratch[0].y;
    }
}
