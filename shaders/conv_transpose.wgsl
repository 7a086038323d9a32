// 2x2 transposed convolution, stride 2, with bias (U-Net's "up-convolution"), in
// PyTorch's ConvTranspose2d layout: weight [C_in, C_out, 2, 2], bias [C_out].
// Each input pixel (i, j) expands into the 2x2 output block (2i + a, 2j + b); the blocks
// do not overlap, so every output element has exactly one input pixel:
//
//   forward,  one thread per output element:
//     out[n, co, 2i+a, 2j+b] = bias[co] + sum_ci inp[n, ci, i, j] * w[ci, co, a, b]
//   backward_input, one thread per input element:
//     dinp[n, ci, i, j] = sum_co sum_(a,b) dout[n, co, 2i+a, 2j+b] * w[ci, co, a, b]
//   backward_weight, one invocation per block of 4 input x 4 output channels and slice of
//   input rows, which also sums dbias in the same pass over dout:
//     dweight[ci, co, a, b] += sum_(n,i,j) inp[n, ci, i, j] * dout[n, co, 2i+a, 2j+b]
//     dbias[co]             += sum_(n,y,x) dout[n, co, y, x]
//
// The reductions are deterministic: each invocation sums its slice's pixels itself in a
// fixed order, and sum_splits.wgsl adds the slices in order, with no float atomics, so
// results are bit-identical from run to run.

struct Params {
    // What the launch covers: output elements (forward), input elements (backward_input)
    // or (4 ci, 4 co) channel blocks (backward_weight).
    total: u32,
    n: u32,
    c_in: u32,
    c_out: u32,
    // The input's H and W; the output is 2H x 2W.
    h: u32,
    w: u32,
    // backward_weight: input rows (of all N * H) per slice of the reduction.
    rows_per_split: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Threads per workgroup of the element-wise kernels (forward, backward_input).
override WG: u32 = 256;

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

// backward_weight bindings. The partial sums of slice s: pw[s * C_in * C_out + ci * C_out
// + co] = the vec4 (a, b) of dweight[ci, co, :, :], pb[s * C_out + co] of dbias[co].
@group(0) @binding(1) var<storage, read> bw_inp: array<f32>;
@group(0) @binding(2) var<storage, read> bw_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> bw_pw: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> bw_pb: array<f32>;

// Input and output channels per invocation of backward_weight.
const BW_CI: u32 = 4u;
const BW_CO: u32 = 4u;
// Invocations per workgroup of backward_weight (lanes run over output-channel blocks).
override WG_BW: u32 = 32;

// One invocation per block of BW_CI input x BW_CO output channels (grid x, y) and slice of
// rows_per_split input rows of the N * H (grid z); it sums its slice's pixels in order:
//   pw[s, ci, co, a, b] = sum_((n,i) in slice s, j) inp[n, ci, i, j] * dout[n, co, 2i+a, 2j+b]
// Per pixel it loads BW_CI input values and BW_CO 2x2 dout blocks (20 values) for
// BW_CI * BW_CO * 4 = 64 multiply-adds. The invocations of the first input-channel block
// also sum the dout blocks for the bias, in the same pass over dout:
//   pb[s, co] = sum_((n,i) in slice s, j) sum_(a,b) dout[n, co, 2i+a, 2j+b]
// Channels past C_in or C_out (the last block's tail) load a valid channel and are not
// written.
@compute @workgroup_size(WG_BW)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * WG_BW;
    if (t >= p.total) {
        return;
    }
    let split = gid.z;
    let co_blocks = (p.c_out + BW_CO - 1u) / BW_CO;
    let ci0 = (t / co_blocks) * BW_CI;
    let co0 = (t % co_blocks) * BW_CO;
    let hw = p.h * p.w;
    let ow = out_w();
    let out_plane = out_h() * ow;
    let first = split * p.rows_per_split;
    let last = min(first + p.rows_per_split, p.n * p.h);

    var acc: array<vec4<f32>, 16>; // [a * BW_CO + c], a over input, c over output channels
    var bsum: array<vec4<f32>, 4>;
    for (var row = first; row < last; row++) {
        let n = row / p.h;
        let i = row % p.h;
        var inp_at: array<u32, 4>;
        var dout_at: array<u32, 4>;
        for (var a = 0u; a < BW_CI; a++) {
            inp_at[a] = (n * p.c_in + min(ci0 + a, p.c_in - 1u)) * hw + i * p.w;
        }
        for (var c = 0u; c < BW_CO; c++) {
            dout_at[c] = (n * p.c_out + min(co0 + c, p.c_out - 1u)) * out_plane + 2u * i * ow;
        }
        for (var j = 0u; j < p.w; j++) {
            var x: array<f32, 4>;
            for (var a = 0u; a < BW_CI; a++) {
                x[a] = bw_inp[inp_at[a] + j];
            }
            for (var c = 0u; c < BW_CO; c++) {
                let at = dout_at[c] + 2u * j;
                let block = vec4<f32>(bw_dout[at], bw_dout[at + 1u],
                                      bw_dout[at + ow], bw_dout[at + ow + 1u]);
                bsum[c] += block;
                for (var a = 0u; a < BW_CI; a++) {
                    acc[a * BW_CO + c] += x[a] * block;
                }
            }
        }
    }
    for (var c = 0u; c < BW_CO; c++) {
        let co = co0 + c;
        if (co >= p.c_out) {
            continue;
        }
        for (var a = 0u; a < BW_CI; a++) {
            let ci = ci0 + a;
            if (ci < p.c_in) {
                bw_pw[(split * p.c_in + ci) * p.c_out + co] = acc[a * BW_CO + c];
            }
        }
        if (ci0 == 0u) {
            let b = bsum[c];
            bw_pb[split * p.c_out + co] = (b.x + b.y) + (b.z + b.w);
        }
    }
}
