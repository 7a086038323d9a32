// 2x2 transposed convolution, stride 2, with bias (U-Net's "up-convolution"), in
// PyTorch's ConvTranspose2d layout: weight [C_in, C_out, 2, 2], bias [C_out].
// Each input pixel (i, j) expands into the 2x2 output block (2i + a, 2j + b); the blocks
// do not overlap, so every output element has exactly one input pixel:
//
//   forward,  one thread per output element:
//     out[n, co, 2i+a, 2j+b] = bias[co] + sum_ci inp[n, ci, i, j] * w[ci, co, a, b]
//   backward_input, one thread per input element:
//     dinp[n, ci, i, j] = sum_co sum_(a,b) dout[n, co, 2i+a, 2j+b] * w[ci, co, a, b]
//   backward_weight, one workgroup per (ci, co), for its four (a, b) at once:
//     dweight[ci, co, a, b] += sum_(n,i,j) inp[n, ci, i, j] * dout[n, co, 2i+a, 2j+b]
//   backward_bias, one workgroup per co:
//     dbias[co] += sum_(n,y,x) dout[n, co, y, x]
//
// The two reductions are deterministic: each thread sums a fixed, strided subset of the
// pixels in a fixed order, then the workgroup adds the partial sums in a fixed tree, and one
// thread adds the total into the gradient. No float atomics, so results are bit-identical
// from run to run. Their workgroups are numbered wid.x + wid.y * nwg.x (the grid is folded
// into 2-D past 65,535 workgroups).

struct Params {
    // What the launch covers: output elements (forward), input elements (backward_input),
    // (ci, co) pairs (backward_weight) or output channels (backward_bias), one workgroup
    // each for the last two.
    total: u32,
    n: u32,
    c_in: u32,
    c_out: u32,
    // The input's H and W; the output is 2H x 2W.
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Threads per workgroup of the element-wise kernels (forward, backward_input).
override WG: u32 = 256;
// Threads per workgroup of the reductions (backward_weight, backward_bias): a power of two.
const RED_WG: u32 = 256u;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn out_h() -> u32 {
    return 2u * p.h;
}

fn out_w() -> u32 {
    return 2u * p.w;
}

// forward bindings
@group(0) @binding(1) var<storage, read> fwd_inp: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> fwd_out: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= p.total) {
        return;
    }
    let x = o % out_w();
    let y = (o / out_w()) % out_h();
    let co = (o / (out_w() * out_h())) % p.c_out;
    let n = o / (out_w() * out_h() * p.c_out);
    let hw = p.h * p.w;

    // inp[n, ci, i, j] and w[ci, co, a, b], stepping ci.
    var inp_at = n * p.c_in * hw + (y / 2u) * p.w + x / 2u;
    var w_at = co * 4u + 2u * (y % 2u) + x % 2u;
    var acc = fwd_bias[co];
    for (var ci = 0u; ci < p.c_in; ci++) {
        acc += fwd_inp[inp_at] * fwd_weight[w_at];
        inp_at += hw;
        w_at += 4u * p.c_out;
    }
    fwd_out[o] = acc;
}

// backward_input bindings
@group(0) @binding(1) var<storage, read> bin_dout: array<f32>;
@group(0) @binding(2) var<storage, read> bin_weight: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bin_dinp: array<f32>;

// The 2x2 block dout[n, co, 2i..2i+2, 2j..2j+2] as (a, b) = (0,0), (0,1), (1,0), (1,1),
// the order of w[ci, co, :, :].
fn dout_block(dout_at: u32) -> vec4<f32> {
    let below = dout_at + out_w();
    return vec4<f32>(bin_dout[dout_at], bin_dout[dout_at + 1u],
                     bin_dout[below], bin_dout[below + 1u]);
}

@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    let j = e % p.w;
    let i = (e / p.w) % p.h;
    let ci = (e / (p.w * p.h)) % p.c_in;
    let n = e / (p.w * p.h * p.c_in);
    let out_plane = out_h() * out_w();

    // dout[n, co, 2i, 2j] and w[ci, co, :, :] (one vec4), stepping co.
    var dout_at = n * p.c_out * out_plane + 2u * i * out_w() + 2u * j;
    var acc = 0.0;
    for (var co = 0u; co < p.c_out; co++) {
        acc += dot(dout_block(dout_at), bin_weight[ci * p.c_out + co]);
        dout_at += out_plane;
    }
    bin_dinp[e] = acc;
}

// backward_weight bindings. dweight is read as vec4s: w[ci, co, :, :] is the vec4 at
// ci * C_out + co.
@group(0) @binding(1) var<storage, read> bw_inp: array<f32>;
@group(0) @binding(2) var<storage, read> bw_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> bw_dweight: array<vec4<f32>>;

var<workgroup> partial4: array<vec4<f32>, RED_WG>;

@compute @workgroup_size(RED_WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let pair = wid.x + wid.y * nwg.x;
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (pair >= p.total) {
        return;
    }
    let ci = pair / p.c_out;
    let co = pair % p.c_out;
    let hw = p.h * p.w;
    let out_plane = out_h() * out_w();

    var acc = vec4<f32>(0.0);
    for (var n = 0u; n < p.n; n++) {
        let inp_plane = (n * p.c_in + ci) * hw;
        let dout_plane = (n * p.c_out + co) * out_plane;
        for (var r = lid; r < hw; r += RED_WG) {
            let i = r / p.w;
            let j = r % p.w;
            let dout_at = dout_plane + 2u * i * out_w() + 2u * j;
            let below = dout_at + out_w();
            let block = vec4<f32>(bw_dout[dout_at], bw_dout[dout_at + 1u],
                                  bw_dout[below], bw_dout[below + 1u]);
            acc += bw_inp[inp_plane + r] * block;
        }
    }

    partial4[lid] = acc;
    workgroupBarrier();
    for (var stride = RED_WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial4[lid] += partial4[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        bw_dweight[pair] += partial4[0];
    }
}

// backward_bias bindings
@group(0) @binding(1) var<storage, read> bb_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> bb_dbias: array<f32>;

var<workgroup> partial1: array<f32, RED_WG>;

@compute @workgroup_size(RED_WG)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let co = wid.x + wid.y * nwg.x;
    if (co >= p.total) {
        return;
    }
    let out_plane = out_h() * out_w();

    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let dout_plane = (n * p.c_out + co) * out_plane;
        for (var r = lid; r < out_plane; r += RED_WG) {
            acc += bb_dout[dout_plane + r];
        }
    }

    partial1[lid] = acc;
    workgroupBarrier();
    for (var stride = RED_WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial1[lid] += partial1[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        bb_dbias[co] += partial1[0];
    }
}
