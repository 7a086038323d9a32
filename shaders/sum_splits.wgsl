// The second pass of a split reduction: dst[e] += the partial sums of every split, in split
// order (partial[s * count + e] for s = 0, 1, ...). Deterministic, no atomics: every run
// adds the same numbers in the same order. Used where a reduction over many pixels is cut
// into slices so that no invocation walks a whole image (the weight gradients).

struct Params {
    // Elements of dst.
    count: u32,
    // Slices of the reduction.
    splits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e >= p.count) {
        return;
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        total += partial[s * p.count + e];
    }
    dst[e] += total;
}
