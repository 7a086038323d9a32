// 2x2 max-pool, stride 2, on NCHW tensors whose H and W are even. A "plane" is one
// (n, c) channel image; `plane = n * C + c` indexes both the input and the output.
//
//   forward, one thread per output element:
//     out[plane, i, j]    = max over k = 2a + b, (a, b) in {0, 1}^2, of inp[plane, 2i + a, 2j + b]
//     argmax[plane, i, j] = the winning k: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
//   Ties: k is visited in row-major order 0, 1, 2, 3 and a later position replaces the
//   current best only when strictly greater, so the first maximum wins.
//
//   backward, one thread per output element, i.e. per window: it reads dout and argmax
//   once and writes the window's four dinp elements (each input element lies in exactly
//   one window, so no two threads write the same element and no atomics are needed):
//     dinp[plane, 2i + a, 2j + b] = dout[plane, i, j] if argmax[plane, i, j] == 2a + b, else 0
//   backward_add adds those values to dinp instead of writing them.

struct Params {
    // Elements the launch covers: output elements (windows), forward and backward.
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

// Routes window o's gradient to its winner: writes (or, with `add`, adds) the four dinp
// elements of the window.
fn route_window(o: u32, add: bool) {
    let j = o % p.out_w;
    let i = (o / p.out_w) % p.out_h;
    let plane = o / (p.out_w * p.out_h);
    let top_left = (plane * p.inp_h + 2u * i) * p.inp_w + 2u * j;
    let g = bwd_dout[o];
    let k = bwd_argmax[o];
    for (var w = 0u; w < 4u; w++) {
        let e = top_left + (w / 2u) * p.inp_w + w % 2u;
        let routed = select(0.0, g, k == w);
        if (add) {
            bwd_dinp[e] += routed;
        } else {
            bwd_dinp[e] = routed;
        }
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= p.total) {
        return;
    }
    route_window(o, false);
}

@compute @workgroup_size(WG)
fn backward_add(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= p.total) {
        return;
    }
    route_window(o, true);
}
