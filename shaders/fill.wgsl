// Fill: out[i] = value, for every element. The value travels as raw bits so that NaN
// (used to poison outputs in tests) arrives unchanged.

struct Params {
    total: u32,
    value_bits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.total) {
        return;
    }
    out[i] = p.value_bits;
}
