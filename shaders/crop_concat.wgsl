// Centre-crop and concatenate on channels (U-Net's skip connection), skip first:
// skip [N, Cs, Hs, Ws], up [N, Cu, H, W] -> out [N, Cs + Cu, H, W], with the crop window
// at (off_y, off_x) = ((Hs - H) / 2, (Ws - W) / 2), rounded down.
//
//   forward, one thread per output element:
//     out[n, c, y, x] = skip[n, c, y + off_y, x + off_x]   for c <  Cs
//                     = up[n, c - Cs, y, x]                for c >= Cs
//   backward_skip, one thread per skip element:
//     dskip[n, c, ys, xs] = dout[n, c, ys - off_y, xs - off_x] inside the crop window, else 0
//   backward_up, one thread per up element:
//     dup[n, c, y, x] = dout[n, Cs + c, y, x]

struct Params {
    // Elements the launch covers: out (forward), skip (backward_skip) or up (backward_up).
    total: u32,
    skip_c: u32,
    up_c: u32,
    // The output's (and up's) H and W.
    h: u32,
    w: u32,
    skip_h: u32,
    skip_w: u32,
    off_y: u32,
    off_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 256;

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn out_c() -> u32 {
    return p.skip_c + p.up_c;
}

// forward bindings
@group(0) @binding(1) var<storage, read> fwd_skip: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_up: array<f32>;
@group(0) @binding(3) var<storage, read_write> fwd_out: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = linear_index(gid, nwg);
    if (o >= p.total) {
        return;
    }
    let x = o % p.w;
    let y = (o / p.w) % p.h;
    let c = (o / (p.w * p.h)) % out_c();
    let n = o / (p.w * p.h * out_c());
    if (c < p.skip_c) {
        fwd_out[o] = fwd_skip[((n * p.skip_c + c) * p.skip_h + y + p.off_y) * p.skip_w + x + p.off_x];
    } else {
        fwd_out[o] = fwd_up[((n * p.up_c + c - p.skip_c) * p.h + y) * p.w + x];
    }
}

// backward_skip bindings
@group(0) @binding(1) var<storage, read> bs_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> bs_dskip: array<f32>;

@compute @workgroup_size(WG)
fn backward_skip(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    let xs = e % p.skip_w;
    let ys = (e / p.skip_w) % p.skip_h;
    let c = (e / (p.skip_w * p.skip_h)) % p.skip_c;
    let n = e / (p.skip_w * p.skip_h * p.skip_c);
    let inside = ys >= p.off_y && ys - p.off_y < p.h && xs >= p.off_x && xs - p.off_x < p.w;
    if (inside) {
        bs_dskip[e] = bs_dout[((n * out_c() + c) * p.h + ys - p.off_y) * p.w + xs - p.off_x];
    } else {
        bs_dskip[e] = 0.0;
    }
}

// backward_up bindings
@group(0) @binding(1) var<storage, read> bu_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> bu_dup: array<f32>;

@compute @workgroup_size(WG)
fn backward_up(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = linear_index(gid, nwg);
    if (e >= p.total) {
        return;
    }
    // up's plane index n * Cu + c maps to dout's n * (Cs + Cu) + Cs + c.
    let plane = e / (p.w * p.h);
    let n = plane / p.up_c;
    let c = plane % p.up_c;
    bu_dup[e] = bu_dout[((n * out_c() + p.skip_c + c) * p.h * p.w) + e % (p.w * p.h)];
}
