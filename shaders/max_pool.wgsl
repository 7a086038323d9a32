// 2x2 max-pool, stride 2, on NCHW tensors whose H and W are even. A "plane" is one
// (n, c) channel image; `plane = n * C + c` indexes both the input and the output.
//
//   forward, one thread per output element:
//     out[plane, i, j]    = max over k = 2a + b, (a, b) in {0, 1}^2, of inp[plane, 2i + a, 2j + b]
//     argmax[plane, i, j] = the winning k: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
//   Ties: k is visited in row-major order 0, 1, 2, 3 and a later position replaces the
//   current best only when strictly greater, so the first maximum wins.
//
//   backward, a gather with one thread per input element (each input element lies in
//   exactly one window, so no two threads write the same element and no atomics are needed):
//     dinp[plane, y, x] = dout[plane, y/2, x/2] if argmax[plane, y/2, x/2] == 2 (y%2) + x%2, else 0
//   backward_add adds that value to dinp instead of writing it.

struct Params {
    // Elements the launch covers: output elements (forward), input elements (backward).
    total: u32,
    inp_h: u32,
    inp_w: u32,
    out_h: u32,
    out_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// forward bindings
@group(0) @binding(1) var<storage, read> fwd_inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> fwd_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_argmax: array<u32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= p.total) {
        return;
    }
    let j = o % p.out_w;
    let i = (o / p.out_w) % p.out_h;
    let plane = o / (p.out_w * p.out_h);
    // The window's top-left input element; the others are +1, +inp_w, +inp_w + 1.
    let top_left = (plane * p.inp_h + 2u * i) * p.inp_w + 2u * j;

    var best = fwd_inp[top_left];
    var best_k = 0u;
    for (var k = 1u; k < 4u; k++) {
        let v = fwd_inp[top_left + (k / 2u) * p.inp_w + k % 2u];
        if (v > best) {
            best = v;
            best_k = k;
        }
    }
    fwd_out[o] = best;
    fwd_argmax[o] = best_k;
}

// backward bindings
@group(0) @binding(1) var<storage, read> bwd_dout: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_argmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> bwd_dinp: array<f32>;

// The gradient reaching input element `e`: its window's dout if it won, else 0.
fn routed_grad(e: u32) -> f32 {
    let x = e % p.inp_w;
    let y = (e / p.inp_w) % p.inp_h;
    let plane = e / (p.inp_w * p.inp_h);
    let o = (plane * p.out_h + y / 2u) * p.out_w + x / 2u;
    let k = 2u * (y % 2u) + x % 2u;
    return select(0.0, bwd_dout[o], bwd_argmax[o] == k);
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    bwd_dinp[e] = routed_grad(e);
}

@compute @workgroup_size(WG)
fn backward_add(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    bwd_dinp[e] += routed_grad(e);
}
