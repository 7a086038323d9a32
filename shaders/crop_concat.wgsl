// Centre-crop and concatenate on channels (U-Net's skip connections), one part at a time:
// parts [N, C_k, H_k, W_k] -> out [N, sum_k C_k, H, W], part k in channels
// c0 .. c0 + C_k with c0 = C_0 + ... + C_(k-1), each part's crop window at
// (off_y, off_x) = ((H_k - H) / 2, (W_k - W) / 2), rounded down.
//
//   place, one thread per element of the part's crop window [N, C_k, H, W]:
//     out[n, c0 + c, y, x] = part[n, c, y + off_y, x + off_x]
//   take (the backward), one thread per element of dpart [N, C_k, H_k, W_k]:
//     dpart[n, c, yk, xk] = dout[n, c0 + c, yk - off_y, xk - off_x] inside the window, else 0
//
// Every output element is written by exactly one part's `place`, and every dout element
// read by exactly one part's `take`: together the launches make one pass over the data.

struct Params {
    // Elements the launch covers: the part's crop window (place) or the part (take).
    total: u32,
    // The part: channels, height, width.
    part_c: u32,
    part_h: u32,
    part_w: u32,
    // The concatenation: channels, height, width, and where the part's channels start.
    out_c: u32,
    h: u32,
    w: u32,
    c0: u32,
    off_y: u32,
    off_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// place bindings
@group(0) @binding(1) var<storage, read> place_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> place_out: array<f32>;

@compute @workgroup_size(WG)
fn place(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    let x = e % p.w;
    let y = (e / p.w) % p.h;
    let c = (e / (p.w * p.h)) % p.part_c;
    let n = e / (p.w * p.h * p.part_c);
    let src = ((n * p.part_c + c) * p.part_h + y + p.off_y) * p.part_w + x + p.off_x;
    place_out[((n * p.out_c + p.c0 + c) * p.h + y) * p.w + x] = place_part[src];
}

// take bindings
@group(0) @binding(1) var<storage, read> take_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> take_dpart: array<f32>;

@compute @workgroup_size(WG)
fn take(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    let xk = e % p.part_w;
    let yk = (e / p.part_w) % p.part_h;
    let c = (e / (p.part_w * p.part_h)) % p.part_c;
    let n = e / (p.part_w * p.part_h * p.part_c);
    let inside = yk >= p.off_y && yk - p.off_y < p.h && xk >= p.off_x && xk - p.off_x < p.w;
    if (inside) {
        take_dpart[e] = take_dout[((n * p.out_c + p.c0 + c) * p.h + yk - p.off_y) * p.w + xk - p.off_x];
    } else {
        take_dpart[e] = 0.0;
    }
}
