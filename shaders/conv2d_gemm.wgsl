// 2-D convolution, k x k, stride 1, zero padding, variant 2: register-tiled implicit GEMM.
// The same maths as conv2d.wgsl (variant 1, the reference); see there for the formulas.
//
// Every pass is a matrix product whose reduction operand is gathered on the fly from an
// image ("implicit" GEMM: no im2col buffer exists in memory). Three tensors appear:
//   - the *grid*: the image the GEMM's columns run over, C_grid channels of H_grid x W_grid
//     pixels (the forward's out; backward-input's dinp; backward-weight's g);
//   - the *patch source*: the image the k x k windows are cut from, C_patch channels
//     (the forward's inp; backward-input's g; backward-weight's inp);
//   - the weight, seen as a matrix [C_grid, C_patch * k * k].
//
//   forward:          out[co, pix]  = W[co, (ci,ky,kx)]  x X[(ci,ky,kx), pix]          (+ bias, ReLU)
//   backward-input:   dinp[ci, pix] = W'[ci, (co,ky,kx)] x G[(co,ky,kx), pix]
//                     with W'[ci, co, ky, kx] = W[co, ci, k-1-ky, k-1-kx] (transposed, flipped)
//                     and padding k-1-pad, G = dout * relu'(out)
//   backward-weight:  dW[co, (ci,ky,kx)] = G[co, pix] x X[(ci,ky,kx), pix]^T   (reduced over
//                     all N * H_out * W_out pixels, split into slices summed by sum_splits)
// where X[(ci,ky,kx), (n,y,x)] = inp[n, ci, y + ky - pad, x + kx - pad] (zero outside).
//
// Why this shape: it is tuned for lavapipe/llvmpipe, which runs 8 invocations as the 8
// lanes of one 256-bit SIMD register. There a load whose address differs per lane is a
// gather (a loop of scalar loads), while a load whose address is the same for the whole
// workgroup (derived only from workgroup_id, uniforms and uniform loop counters) is one
// scalar load and a broadcast. So:
//   - the lanes run over the GEMM's M dimension (grid channels): each invocation owns one
//     grid channel, and only its weights (or g) differ per lane;
//   - the pixels are the same for every invocation of a workgroup: their input values are
//     uniform loads, and each invocation keeps a ROWS x 4*QUADS pixel register tile, so
//     one gathered weight vec4 feeds up to 4 x ROWS x 4*QUADS FMAs;
//   - no workgroup memory and no barriers (the CPU caches serve the reuse);
//   - no bounds checks and no div/mod in the inner loops: cheap preparation passes copy the
//     patch source into a zero-padded buffer whose rows are whole vec4s and cover whole
//     tiles (pad_source), and rearrange the weight so that one invocation's taps of one
//     channel are 16-byte aligned vec4s (arrange_weight).

struct Params {
    // The source image of a pad_source copy, or the unpadded patch source.
    n: u32,
    c_patch: u32,
    h_patch: u32,
    w_patch: u32,
    // The grid (see above).
    c_grid: u32,
    h_grid: u32,
    w_grid: u32,
    // Zero padding on the top and left of the padded copy.
    pad: u32,
    relu: u32,
    // The padded copy: channels, rows, columns (a multiple of 4).
    c_src: u32,
    h_src: u32,
    w_src: u32,
    // The weight matrix's M dimension rounded up to whole workgroups.
    c_grid_pad: u32,
    // conv_gemm: rows of pixel tiles per image.
    tiles_y: u32,
    // backward_weight: pixel tiles of the reduction per split; sum_splits: the split count.
    per_split: u32,
    splits: u32,
    // sum_splits, pad_source, arrange_weight: elements (vec4s for pad_source) to write.
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Kernel size, compile-time so that the tap loops unroll.
override K: u32 = 3u;
// vec4s holding one channel's k*k taps (3 for k = 3).
override KV: u32 = (K * K + 3u) / 4u;
const MAX_KV: u32 = 7u;
const MAX_K: u32 = 5u;
const MAX_TILE_M: u32 = 16u;

// ---- preparation: zero-padded copy of an image ------------------------------------------
// dst[n, c, y, x] (c < c_src, y < h_src, x < w_src) = src[n, c, y - pad, x - pad], zero
// outside src; with MASK (backward) src is dout and is zeroed where relu' (read off the
// forward's out, `aux`) is 0. One invocation writes one vec4.
override MASK: bool = false;
override WG_PREP: u32 = 64u;

@group(0) @binding(1) var<storage, read> ps_src: array<f32>;
@group(0) @binding(2) var<storage, read> ps_aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> ps_dst: array<vec4<f32>>;

@compute @workgroup_size(WG_PREP)
fn pad_source(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_PREP;
    if (e >= p.count) {
        return;
    }
    let quads = p.w_src / 4u;
    let x0 = (e % quads) * 4u;
    let y = (e / quads) % p.h_src;
    let c = (e / (quads * p.h_src)) % p.c_src;
    let n = e / (quads * p.h_src * p.c_src);
    let sy = i32(y) - i32(p.pad);
    var v = vec4<f32>(0.0);
    if (c < p.c_patch && sy >= 0 && sy < i32(p.h_patch)) {
        let row = ((n * p.c_patch + c) * p.h_patch + u32(sy)) * p.w_patch;
        for (var j = 0u; j < 4u; j++) {
            let sx = i32(x0 + j) - i32(p.pad);
            if (sx >= 0 && sx < i32(p.w_patch)) {
                let i = row + u32(sx);
                var s = ps_src[i];
                if (MASK && p.relu != 0u && ps_aux[i] <= 0.0) {
                    s = 0.0;
                }
                v[j] = s;
            }
        }
    }
    ps_dst[e] = v;
}

// ---- preparation: the weight as the GEMM's A matrix -------------------------------------
// a[(c * c_grid_pad + m) * 4 KV + t] = A[m, c, t] for tap t = ky * K + kx, zero for
// m >= c_grid and t >= k*k. Forward: A[m = co, c = ci] = W[co, ci]; backward-input (FLIP):
// A[m = ci, c = co, t] = W[co, ci, k*k - 1 - t] (transposed, flipped).
override FLIP: bool = false;

@group(0) @binding(1) var<storage, read> aw_weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> aw_a: array<f32>;

@compute @workgroup_size(WG_PREP)
fn arrange_weight(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_PREP;
    if (e >= p.count) {
        return;
    }
    let t = e % (4u * KV);
    let m = (e / (4u * KV)) % p.c_grid_pad;
    let c = e / (4u * KV * p.c_grid_pad);
    var v = 0.0;
    if (m < p.c_grid && t < K * K) {
        if (FLIP) {
            v = aw_weight[(c * p.c_grid + m) * K * K + K * K - 1u - t];
        } else {
            v = aw_weight[(m * p.c_patch + c) * K * K + t];
        }
    }
    aw_a[e] = v;
}

// ---- forward and backward-input: one kernel ----------------------------------------------
// grid[m, pix] = sum over (c, ky, kx) of A[m, c, ky, kx] * S[c, y + ky, x + kx] for the
// padded source S. Workgroup: WG invocations, each owning MI consecutive grid channels;
// workgroup_id.x = block of WG * MI channels, .y and .z = column and (image, row) of the
// pixel tile (ROWS rows x 4 QUADS columns, the same for the whole workgroup). Each invocation holds the whole
// MI x ROWS x 4 QUADS tile in registers (spilled to the stack where it must be: a stack
// access is one vector instruction, a buffer load a per-lane loop of ~10). Per channel c
// of the reduction it loads MI * KV weight vec4s and (ROWS + K - 1) x (QUADS + 1) source
// vec4s, and does MI x ROWS x 4 QUADS x K x K FMAs: every loaded value serves many FMAs.
// All tile loops have override-constant bounds, so the compiler unrolls them and every
// private-array index is a constant.
// Bindings: forward: S (padded inp), A, bias, out; backward-input: S (padded g), A, (unused), dinp.
override BACKWARD_INPUT: bool = false;
override WG: u32 = 8u;
override MI: u32 = 1u;
override ROWS: u32 = 3u;
override QUADS: u32 = 2u;
const MAX_MI: u32 = 4u;
const MAX_ROWS: u32 = 4u;
const MAX_QUADS: u32 = 4u;

@group(0) @binding(1) var<storage, read> cg_src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cg_a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> cg_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> cg_dst: array<f32>;

@compute @workgroup_size(WG)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let m0 = (wid.x * WG + lid) * MI;
    let n = wid.z / p.tiles_y;
    let x0 = wid.y * 4u * QUADS;
    let y0 = (wid.z % p.tiles_y) * ROWS;
    let row_quads = p.w_src / 4u;

    // acc[(i * ROWS + r) * QUADS + q][j]: grid channel m0 + i at pixel (y0 + r, x0 + 4 q + j).
    var acc: array<vec4<f32>, MAX_MI * MAX_ROWS * MAX_QUADS>;
    for (var i = 0u; i < MI * ROWS * QUADS; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    // The first vec4 of the tile's top source row in channel 0 of image n.
    var src_base = ((n * p.c_src) * p.h_src + y0) * row_quads + x0 / 4u;
    // This invocation's first weight vec4 (channel m0, reduction channel 0).
    var a_base = m0 * KV;
    for (var c = 0u; c < p.c_patch; c++) {
        // w[i * KV + t / 4][t % 4]: A[m0 + i, c, tap t].
        var w: array<vec4<f32>, MAX_MI * MAX_KV>;
        for (var i = 0u; i < MI * KV; i++) {
            w[i] = cg_a[a_base + i];
        }
        for (var r = 0u; r < ROWS; r++) {
            for (var ky = 0u; ky < K; ky++) {
                // The source row under tap row ky of output row r: 4 QUADS + 4 values.
                var win: array<vec4<f32>, MAX_QUADS + 1u>;
                for (var q = 0u; q <= QUADS; q++) {
                    win[q] = cg_src[src_base + (r + ky) * row_quads + q];
                }
                for (var kx = 0u; kx < K; kx++) {
                    for (var q = 0u; q < QUADS; q++) {
                        // Source values x0 + 4 q + kx .. + 3.
                        let s = 4u * q + kx;
                        let xs = vec4<f32>(win[s / 4u][s % 4u], win[(s + 1u) / 4u][(s + 1u) % 4u],
                                           win[(s + 2u) / 4u][(s + 2u) % 4u], win[(s + 3u) / 4u][(s + 3u) % 4u]);
                        for (var i = 0u; i < MI; i++) {
                            let t = ky * K + kx;
                            let a = (i * ROWS + r) * QUADS + q;
                            acc[a] = fma(vec4<f32>(w[i * KV + t / 4u][t % 4u]), xs, acc[a]);
                        }
                    }
                }
            }
        }
        src_base += p.h_src * row_quads;
        a_base += p.c_grid_pad * KV;
    }

    // Epilogue: bias and ReLU in the forward; bounds guards for partial tiles.
    for (var i = 0u; i < MI; i++) {
        let m = m0 + i;
        if (m >= p.c_grid) {
            break;
        }
        var bias = 0.0;
        if (!BACKWARD_INPUT) {
            bias = cg_bias[m];
        }
        for (var r = 0u; r < ROWS; r++) {
            let y = y0 + r;
            for (var q = 0u; q < QUADS; q++) {
                var v = acc[(i * ROWS + r) * QUADS + q] + vec4<f32>(bias);
                if (!BACKWARD_INPUT && p.relu != 0u) {
                    v = max(v, vec4<f32>(0.0));
                }
                for (var j = 0u; j < 4u; j++) {
                    let x = x0 + 4u * q + j;
                    if (y < p.h_grid && x < p.w_grid) {
                        cg_dst[((n * p.c_grid + m) * p.h_grid + y) * p.w_grid + x] = v[j];
                    }
                }
            }
        }
    }
}

// ---- backward-weight: split-K GEMM -------------------------------------------------------
// dW[co, ci, ky, kx] = sum over (n, y, x) of g[n, co, y, x] * inp[n, ci, y + ky - pad, x + kx - pad]
//
// A workgroup owns BW_TILE_M output channels (co, uniform across it) x WG_CI input channels
// (one per invocation along x) x k rows of taps (one per invocation along y); each
// invocation holds BW_TILE_M x k sums (its ci and ky, every kx). The pixel reduction walks
// tiles of BW_ROWS x 4 * BW_QUADS grid pixels; the tiles are split into `splits` slices (grid
// z), each writing its own partial dW, which sum_splits adds up in a fixed order.
// (This kernel is still the first implicit-GEMM design, with workgroup-memory tiles: on
// lavapipe it runs faster than a register-only version tried alongside conv_gemm.)
// Bindings: out (for relu'), dout, inp, partial.
override WG_CI: u32 = 8u;
override BW_TILE_M: u32 = 8u;
override BW_ROWS: u32 = 4u;
override BW_QUADS: u32 = 8u;

override BW_PATCH_ROWS: u32 = BW_ROWS + K - 1u;
override BW_PATCH_VEC4S: u32 = WG_CI * BW_PATCH_ROWS * (BW_QUADS + 1u);
override G_TILE_VEC4S: u32 = BW_TILE_M * BW_ROWS * BW_QUADS;

var<workgroup> bw_patch: array<vec4<f32>, BW_PATCH_VEC4S>;
// g_tile[(m * BW_ROWS + r) * BW_QUADS + q]: g at channel m0 + m, 4 pixels of row r.
var<workgroup> g_tile: array<vec4<f32>, G_TILE_VEC4S>;

@group(0) @binding(1) var<storage, read> bw_out: array<f32>;
@group(0) @binding(2) var<storage, read> bw_dout: array<f32>;
@group(0) @binding(3) var<storage, read> bw_inp: array<f32>;
@group(0) @binding(4) var<storage, read_write> bw_partial: array<f32>;

// g = dout * relu'(out) at (n, co, y, x) of the grid, zero outside.
fn grad_at(n: u32, co: u32, y: u32, x: u32) -> f32 {
    let inside = co < p.c_grid && y < p.h_grid && x < p.w_grid;
    let i = select(0u, ((n * p.c_grid + co) * p.h_grid + y) * p.w_grid + x, inside);
    let masked = p.relu != 0u && bw_out[i] <= 0.0;
    return select(0.0, bw_dout[i], inside && !masked);
}

fn input_at(n: u32, c: u32, y: i32, x: i32) -> f32 {
    let inside = c < p.c_patch && y >= 0 && y < i32(p.h_patch) && x >= 0 && x < i32(p.w_patch);
    let i = select(0u, ((n * p.c_patch + c) * p.h_patch + u32(y)) * p.w_patch + u32(x), inside);
    return select(0.0, bw_inp[i], inside);
}

@compute @workgroup_size(WG_CI, K)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) lindex: u32) {
    // Grid: x = block of WG_CI input channels, y = block of BW_TILE_M output channels, z = split.
    let ci0 = wid.x * WG_CI;
    let m0 = wid.y * BW_TILE_M;
    let ky = lid.y;
    let invocations = WG_CI * K;
    let tile_w = 4u * BW_QUADS;
    let tiles_x = (p.w_grid + tile_w - 1u) / tile_w;
    let tiles_per_image = tiles_x * ((p.h_grid + BW_ROWS - 1u) / BW_ROWS);
    let first = wid.z * p.per_split;
    let last = min(first + p.per_split, p.n * tiles_per_image);

    // acc[m * K + kx]: dW[m0 + m, ci0 + lid.x, ky, kx] over this split's pixels.
    var acc: array<f32, MAX_TILE_M * MAX_K>;
    for (var i = 0u; i < BW_TILE_M * K; i++) {
        acc[i] = 0.0;
    }

    for (var t = first; t < last; t++) {
        let n = t / tiles_per_image;
        let x0 = (t % tiles_x) * tile_w;
        let y0 = ((t % tiles_per_image) / tiles_x) * BW_ROWS;
        // Stage the input patch (with its k-1 halo) and g, both BW_ROWS x tile_w.
        for (var q = lindex; q < BW_PATCH_VEC4S; q += invocations) {
            let col = (q % (BW_QUADS + 1u)) * 4u;
            let row = (q / (BW_QUADS + 1u)) % BW_PATCH_ROWS;
            let c = ci0 + q / ((BW_QUADS + 1u) * BW_PATCH_ROWS);
            let y = i32(y0 + row) - i32(p.pad);
            let x = i32(x0 + col) - i32(p.pad);
            bw_patch[q] = vec4<f32>(input_at(n, c, y, x), input_at(n, c, y, x + 1),
                                    input_at(n, c, y, x + 2), input_at(n, c, y, x + 3));
        }
        for (var q = lindex; q < G_TILE_VEC4S; q += invocations) {
            let x = x0 + (q % BW_QUADS) * 4u;
            let y = y0 + (q / BW_QUADS) % BW_ROWS;
            let co = m0 + q / (BW_QUADS * BW_ROWS);
            g_tile[q] = vec4<f32>(grad_at(n, co, y, x), grad_at(n, co, y, x + 1u),
                                  grad_at(n, co, y, x + 2u), grad_at(n, co, y, x + 3u));
        }
        workgroupBarrier();

        for (var r = 0u; r < BW_ROWS; r++) {
            for (var q = 0u; q < BW_QUADS; q++) {
                // Input row y + ky under the 4 pixels (r, 4q..4q+3), plus the halo.
                let row = (lid.x * BW_PATCH_ROWS + r + ky) * (BW_QUADS + 1u) + q;
                let lo = bw_patch[row];
                let hi = bw_patch[row + 1u];
                let row_window = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
                for (var m = 0u; m < BW_TILE_M; m++) {
                    let g = g_tile[(m * BW_ROWS + r) * BW_QUADS + q];
                    for (var kx = 0u; kx < K; kx++) {
                        let x = vec4<f32>(row_window[kx], row_window[kx + 1u], row_window[kx + 2u], row_window[kx + 3u]);
                        acc[m * K + kx] += dot(g, x);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    let ci = ci0 + lid.x;
    for (var m = 0u; m < BW_TILE_M; m++) {
        let co = m0 + m;
        for (var kx = 0u; kx < K; kx++) {
            if (co < p.c_grid && ci < p.c_patch) {
                let e = ((co * p.c_patch + ci) * K + ky) * K + kx;
                bw_partial[wid.z * p.c_grid * p.c_patch * K * K + e] = acc[m * K + kx];
            }
        }
    }
}

// ---- backward-weight, second pass: dweight += the splits' partial sums, in split order --
// Deterministic (no atomics): every run adds the same numbers in the same order.
override WG_SUM: u32 = 256u;

@group(0) @binding(1) var<storage, read> ss_partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> ss_dweight: array<f32>;

@compute @workgroup_size(WG_SUM)
fn sum_splits(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_SUM;
    if (e >= p.count) {
        return;
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        total += ss_partial[s * p.count + e];
    }
    ss_dweight[e] += total;
}
