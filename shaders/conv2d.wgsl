// 2-D convolution, k x k, stride 1, zero padding `pad` ("valid" = 0 as in the paper,
// "same" = (k-1)/2 for U-Net++), variant 1: direct, one invocation per output value.
// It is the simple reference that faster variants are checked against.
//
// Forward, for output (n, co, oy, ox):
//   out = bias[co] + sum_{ci, ky, kx} inp[n, ci, oy + ky - pad, ox + kx - pad] * w[co, ci, ky, kx]
//   (taps outside the input read zero), then out = max(out, 0) when ReLU is fused.
//
// Backward, with g = dout * (out > 0) when ReLU is fused (else g = dout):
//   dinp[n, ci, iy, ix]   = sum_{co, ky, kx} g[n, co, iy - ky + pad, ix - kx + pad] * w[co, ci, ky, kx]
//   dw[co, ci, ky, kx]   += sum_{n, oy, ox} g[n, co, oy, ox] * inp[n, ci, oy + ky - pad, ox + kx - pad]
//   dbias[co]            += sum_{n, oy, ox} g[n, co, oy, ox]

struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    k: u32,
    pad: u32,
    out_h: u32,
    out_w: u32,
    relu: u32,
    total: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- forward -------------------------------------------------------------------------
@group(0) @binding(1) var<storage, read> f_inp: array<f32>;
@group(0) @binding(2) var<storage, read> f_weight: array<f32>;
@group(0) @binding(3) var<storage, read> f_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_out: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    let ox = i % p.out_w;
    let oy = (i / p.out_w) % p.out_h;
    let co = (i / (p.out_w * p.out_h)) % p.c_out;
    let n = i / (p.out_w * p.out_h * p.c_out);

    var acc = f_bias[co];
    for (var ci = 0u; ci < p.c_in; ci++) {
        let plane = (n * p.c_in + ci) * p.h;
        let wbase = (co * p.c_in + ci) * p.k * p.k;
        for (var ky = 0u; ky < p.k; ky++) {
            // iy = oy + ky - pad, computed in i32 so that taps above the input are skipped.
            let iy = i32(oy + ky) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            for (var kx = 0u; kx < p.k; kx++) {
                let ix = i32(ox + kx) - i32(p.pad);
                if (ix < 0 || ix >= i32(p.w)) {
                    continue;
                }
                acc += f_inp[(plane + u32(iy)) * p.w + u32(ix)] * f_weight[wbase + ky * p.k + kx];
            }
        }
    }
    if (p.relu != 0u) {
        acc = max(acc, 0.0);
    }
    f_out[i] = acc;
}

// ---- backward: the gradient reaching the pre-activation --------------------------------
@group(0) @binding(1) var<storage, read> b_out: array<f32>;
@group(0) @binding(2) var<storage, read> b_dout: array<f32>;

// g = dout * relu'(pre-activation); relu' is read off the forward's output.
fn grad_at(j: u32) -> f32 {
    if (p.relu != 0u && b_out[j] <= 0.0) {
        return 0.0;
    }
    return b_dout[j];
}

// ---- backward: input gradient (written) ------------------------------------------------
@group(0) @binding(3) var<storage, read> bi_weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> bi_dinp: array<f32>;

@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / (p.w * p.h)) % p.c_in;
    let n = i / (p.w * p.h * p.c_in);

    var acc = 0.0;
    for (var co = 0u; co < p.c_out; co++) {
        let plane = (n * p.c_out + co) * p.out_h;
        let wbase = (co * p.c_in + ci) * p.k * p.k;
        for (var ky = 0u; ky < p.k; ky++) {
            let oy = i32(iy + p.pad) - i32(ky);
            if (oy < 0 || oy >= i32(p.out_h)) {
                continue;
            }
            for (var kx = 0u; kx < p.k; kx++) {
                let ox = i32(ix + p.pad) - i32(kx);
                if (ox < 0 || ox >= i32(p.out_w)) {
                    continue;
                }
                acc += grad_at((plane + u32(oy)) * p.out_w + u32(ox)) * bi_weight[wbase + ky * p.k + kx];
            }
        }
    }
    bi_dinp[i] = acc;
}

// ---- backward: weight and bias gradients (accumulated) ---------------------------------
// One workgroup per weight element (or per output channel for the bias): its invocations
// stride over the N * out_h * out_w output pixels, then a tree sum in workgroup memory.
// No atomics, so the result is the same on every run.
@group(0) @binding(3) var<storage, read> bw_inp: array<f32>;
@group(0) @binding(4) var<storage, read_write> bw_dweight: array<f32>;
@group(0) @binding(3) var<storage, read_write> bb_dbias: array<f32>;

var<workgroup> partial: array<f32, WG>;

// Sums `partial` over the workgroup; the total ends in partial[0].
fn workgroup_sum(lid: u32) {
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    // p.total = number of weight elements; the workgroup grid may be folded into 2-D.
    let e = wid.x + wid.y * nwg.x;
    let kx = e % p.k;
    let ky = (e / p.k) % p.k;
    let ci = (e / (p.k * p.k)) % p.c_in;
    let co = e / (p.k * p.k * p.c_in);
    let pixels = p.out_h * p.out_w;

    var acc = 0.0;
    if (e < p.total) {
        for (var j = lid; j < p.n * pixels; j += WG) {
            let n = j / pixels;
            let oy = (j % pixels) / p.out_w;
            let ox = j % p.out_w;
            let iy = i32(oy + ky) - i32(p.pad);
            let ix = i32(ox + kx) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h) || ix < 0 || ix >= i32(p.w)) {
                continue;
            }
            let g = grad_at(((n * p.c_out + co) * p.out_h + oy) * p.out_w + ox);
            acc += g * bw_inp[((n * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
        }
    }
    partial[lid] = acc;
    workgroup_sum(lid);
    if (lid == 0u && e < p.total) {
        bw_dweight[e] += partial[0];
    }
}

@compute @workgroup_size(WG)
fn backward_bias(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let co = wid.x;
    let pixels = p.out_h * p.out_w;
    var acc = 0.0;
    // Two loops rather than one over n * pixels: no division per element, which a CPU
    // device runs one lane at a time.
    for (var n = 0u; n < p.n; n++) {
        let plane = (n * p.c_out + co) * pixels;
        for (var j = lid; j < pixels; j += WG) {
            acc += grad_at(plane + j);
        }
    }
    partial[lid] = acc;
    workgroup_sum(lid);
    if (lid == 0u) {
        bb_dbias[co] += partial[0];
    }
}
