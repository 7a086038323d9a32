// The second pass of a split reduction: dst[e] += the partial sums of every split, in split
// order (partial[s * count + e] for s = 0, 1, ...). Deterministic, no atomics: every run
// adds the same numbers in the same order. Used where a reduction over many pixels is cut
// into slices so that no invocation walks a whole image (the weight gradients).
// sum_splits_pair: the same for two results reduced together (a weight gradient and its
// bias gradient), element e < count_first going to dst[e] and the rest to dst2[e - count_first].

struct Params {
    // Elements of dst (and dst2).
    count: u32,
    // Slices of the reduction.
    splits: u32,
    // sum_splits_pair: elements of dst.
    count_first: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst2: array<f32>;

override WG: u32 = 256u;

fn total_of(e: u32) -> f32 {
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        total += partial[s * p.count + e];
    }
    return total;
}

@compute @workgroup_size(WG)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e >= p.count) {
        return;
    }
    dst[e] += total_of(e);
}

@compute @workgroup_size(WG)
fn sum_splits_pair(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG;
    if (e >= p.count) {
        return;
    }
    if (e < p.count_first) {
        dst[e] += total_of(e);
    } else {
        dst2[e - p.count_first] += total_of(e);
    }
}
