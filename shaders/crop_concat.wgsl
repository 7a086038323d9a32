// Centre-crop and concatenate on channels (U-Net's skip connections), one part at a time:
// parts [N, C_k, H_k, W_k] -> out [N, sum_k C_k, H, W], part k in channels
// c0 .. c0 + C_k with c0 = C_0 + ... + C_(k-1), each part's crop window at
// (off_y, off_x) = ((H_k - H) / 2, (W_k - W) / 2), rounded down.
//
//   place, over the part's crop window [N, C_k, H, W]:
//     out[n, c0 + c, y, x] = part[n, c, y + off_y, x + off_x]
//   take (the backward), over dpart [N, C_k, H_k, W_k]:
//     dpart[n, c, yk, xk] = dout[n, c0 + c, yk - off_y, xk - off_x] inside the window, else 0
//
// Every output element is written by exactly one part's `place`, and every dout element
// read by exactly one part's `take`: together the launches make one pass over the data.

struct Params {
    // Rows the launch covers: of the part's crop window (place) or of the part (take).
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

// One workgroup per ROWS rows of the launch's image (rows (n, c, y), `total` of them, the
// grid folded into 2-D), its lanes striding along each row: a row's coordinates are worked
// out once, not for every element (a CPU device divides one lane at a time).
override LANES: u32 = 32u;
const ROWS: u32 = 8u;

fn first_row(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * ROWS;
}

// place bindings
@group(0) @binding(1) var<storage, read> place_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> place_out: array<f32>;

@compute @workgroup_size(LANES)
fn place(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(local_invocation_index) lid: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = first_row(wid, nwg);
    for (var row = first; row < min(first + ROWS, p.total); row++) {
        let y = row % p.h;
        let c = (row / p.h) % p.part_c;
        let n = row / (p.h * p.part_c);
        let src = ((n * p.part_c + c) * p.part_h + y + p.off_y) * p.part_w + p.off_x;
        let dst = ((n * p.out_c + p.c0 + c) * p.h + y) * p.w;
        for (var x = lid; x < p.w; x += LANES) {
            place_out[dst + x] = place_part[src + x];
        }
    }
}

// take bindings
@group(0) @binding(1) var<storage, read> take_dout: array<f32>;
@group(0) @binding(2) var<storage, read_write> take_dpart: array<f32>;

@compute @workgroup_size(LANES)
fn take(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let first = first_row(wid, nwg);
    for (var row = first; row < min(first + ROWS, p.total); row++) {
        let yk = row % p.part_h;
        let c = (row / p.part_h) % p.part_c;
        let n = row / (p.part_h * p.part_c);
        let inside_y = yk >= p.off_y && yk - p.off_y < p.h;
        let src = ((n * p.out_c + p.c0 + c) * p.h + yk - p.off_y) * p.w;
        let dst = row * p.part_w;
        for (var xk = lid; xk < p.part_w; xk += LANES) {
            var g = 0.0;
            if (inside_y && xk >= p.off_x && xk - p.off_x < p.w) {
                g = take_dout[src + xk - p.off_x];
            }
            take_dpart[dst + xk] = g;
        }
    }
}
