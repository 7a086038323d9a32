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
// A label that is not an integer in 0..K makes its pixel's term and gradients NaN, so
// the loss is NaN (see `loss.rs`).
//
// The sum over pixels is deterministic, with no atomics: `xent_forward_backward` reduces
// each workgroup's terms with a fixed tree in workgroup memory and writes one partial sum
// per workgroup; `xent_reduce` (one workgroup) sums the partials in a fixed order and
// scales by 1/P.

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

var<workgroup> scratch: array<f32, WG>;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// The flat index of logit k of pixel i (pixel i = n * plane + s).
fn logit_index(i: u32, k: u32) -> u32 {
    let n = i / p.plane;
    let s = i - n * p.plane;
    return (n * p.classes + k) * p.plane + s;
}

fn quiet_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
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

// xent_forward_backward bindings: logits (above) and
// labels [N,1,H,W]: the class index of each pixel, as an f32;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
// weights [N,1,H,W]: w(x);
@group(0) @binding(3) var<storage, read> weights: array<f32>;
// dlogits [N,K,H,W]: written;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
// partials, one per workgroup of the grid: the sum of its pixels' terms (not yet divided by P).
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

// One invocation per pixel: its loss term into the workgroup's partial sum, and its K
// gradients into dlogits.
@compute @workgroup_size(WG)
fn xent_forward_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32,
                         @builtin(workgroup_id) wid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    var term = 0.0;
    // No early return: every invocation must reach the barriers of the reduction.
    if (i < p.pixels) {
        let lse = log_sum_exp(i);

        let label = labels[i];
        let valid = label >= 0.0 && label < f32(p.classes) && floor(label) == label;
        let l = select(p.classes, u32(label), valid);
        let w = weights[i];
        let g = w * p.inv_pixels;
        for (var k = 0u; k < p.classes; k++) {
            let j = logit_index(i, k);
            let z = logits[j];
            let onehot = select(0.0, 1.0, k == l);
            dlogits[j] = select(quiet_nan(), g * (exp(z - lse) - onehot), valid);
            if (k == l) {
                term = w * (lse - z);
            }
        }
        if (!valid) {
            term = quiet_nan();
        }
    }
    scratch[lid] = term;
    reduce_scratch(lid);
    if (lid == 0u) {
        partials[wid.x + wid.y * nwg.x] = scratch[0];
    }
}

// xent_reduce bindings.
@group(0) @binding(1) var<storage, read> red_partials: array<f32>;
// Shape::vector(1): the loss.
@group(0) @binding(2) var<storage, read_write> red_loss: array<f32>;

// One workgroup: invocation t sums partials t, t + WG, t + 2 WG, ... in order, then the
// tree adds the WG sums; loss = total / P.
@compute @workgroup_size(WG)
fn xent_reduce(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var j = lid; j < p.partials; j += WG) {
        sum += red_partials[j];
    }
    scratch[lid] = sum;
    reduce_scratch(lid);
    if (lid == 0u) {
        red_loss[0] = scratch[0] * p.inv_pixels;
    }
}
