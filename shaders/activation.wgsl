// ReLU backward and dropout, element-wise.
//
//   relu_backward:    dinp = dout * (out > 0)                (out = relu(inp) from the forward)
//   dropout_forward:  out  = inp  * keep(i) / (1 - p)
//   dropout_backward: dinp = dout * keep(i) / (1 - p)
//
// keep(i) is a Bernoulli(1 - p) draw made from a hash of (seed, i), so the backward
// recomputes the forward's mask instead of storing it.

struct Params {
    total: u32,
    seed: u32,
    // keep(i) <=> hash(seed, i) >= drop_threshold, with drop_threshold = p * 2^32.
    drop_threshold: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256;

// PCG hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg(x: u32) -> u32 {
    let state = x * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn keep(i: u32) -> bool {
    return pcg(i ^ pcg(p.seed)) >= p.drop_threshold;
}

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// relu_backward bindings
@group(0) @binding(1) var<storage, read> relu_out: array<f32>;
@group(0) @binding(2) var<storage, read> relu_dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> relu_dinp: array<f32>;

@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    relu_dinp[i] = select(0.0, relu_dout[i], relu_out[i] > 0.0);
}

// dropout bindings: forward reads inp and writes out; backward reads dout and writes dinp.
@group(0) @binding(1) var<storage, read> drop_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> drop_dst: array<f32>;

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if (i >= p.total) {
        return;
    }
    drop_dst[i] = select(0.0, drop_src[i] * p.scale, keep(i));
}
