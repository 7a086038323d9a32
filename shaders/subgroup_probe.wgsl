// The subgroups as the device really runs them, measured once when the device opens.
//
// The adapter reports a range of subgroup sizes, but a driver can run other sizes: Mesa's
// lavapipe with LP_NATIVE_VECTOR_WIDTH=1024 (or 2048) reports 32 (or 64) lanes, yet its
// subgroup_invocation_id only runs 0..15 and subgroupShuffle reaches 16 lanes. The
// convolution kernels pass values between lanes by lane id, so they must know the
// smallest subgroup a pipeline can get. One workgroup of WG invocations (the largest
// reported size) writes, per invocation i (local index):
//   out[3 i]     = its lane id                               -> the size: max lane id + 1
//   out[3 i + 1] = the local index of its subgroup's first active lane (subgroupBroadcastFirst)
//   out[3 i + 2] = the local index held by lane (lane + 1) % SG of its segment of SG lanes,
//                  read with subgroupShuffle
// The host checks that each shuffle read the invocation it named, in the same subgroup.

struct Params {
    _unused: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

override WG: u32 = 32u;
// The segment width the shuffle is checked in (the measured size, on a second run).
override SG: u32 = 1u;

@compute @workgroup_size(WG)
fn probe(@builtin(local_invocation_index) lid: u32,
         @builtin(subgroup_invocation_id) lane: u32) {
    let first = subgroupBroadcastFirst(lid);
    let target_lane = lane - lane % SG + (lane + 1u) % SG;
    let neighbour = subgroupShuffle(lid, target_lane);
    out[3u * lid] = lane;
    out[3u * lid + 1u] = first;
    out[3u * lid + 2u] = neighbour;
}
