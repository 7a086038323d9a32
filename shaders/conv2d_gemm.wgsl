// 2-D convolution, k x k, stride 1, zero padding, variant 2: tiled implicit GEMM.
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
// Why this shape (it is tuned for SIMD-across-invocations drivers such as lavapipe, and
// is the classic shared-memory tiling on GPUs):
//   - the k x k windows of neighbouring pixels overlap, so a workgroup stages the input
//     *patch* its pixels need (tile plus a k-1 halo) in workgroup memory once per chunk of
//     channels, and every staged value serves up to k*k taps;
//   - each invocation reads a row window of its patch as two aligned vec4 loads and holds
//     a micro-tile of TILE_M channels x 4 adjacent pixels in registers (k*k*TILE_M*4 FMAs
//     per two vec4 loads);
//   - the weight tile is the same for the whole workgroup, so its reads are uniform
//     (broadcasts), not per-invocation gathers.

struct Params {
    n: u32,
    c_patch: u32,
    h_patch: u32,
    w_patch: u32,
    c_grid: u32,
    h_grid: u32,
    w_grid: u32,
    // Zero padding of the patch source on each side.
    pad: u32,
    relu: u32,
    // backward_weight: tiles of the pixel reduction per split; sum_splits: the split count.
    tiles_per_split: u32,
    splits: u32,
    // sum_splits: elements of dweight.
    count: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Kernel size, compile-time so that the tap loops unroll.
override K: u32 = 3u;
// Grid channels per workgroup; every invocation holds all of them (a multiple of 4, at
// most MAX_TILE_M).
override TILE_M: u32 = 8u;
// Patch-source channels staged per step.
override CHUNK: u32 = 4u;
// Invocations per workgroup along x and y. In the forward-style kernel each covers 4
// adjacent pixels in each of ROWS_PER_INVOCATION rows, so a workgroup covers a
// (4 * WG_X) x (WG_Y * ROWS_PER_INVOCATION) pixel tile.
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override ROWS_PER_INVOCATION: u32 = 4u;

const MAX_TILE_M: u32 = 16u;
const MAX_ROWS_PER_INVOCATION: u32 = 4u;
const MAX_K: u32 = 5u;

// One patch row: 4 * WG_X pixels plus a halo of up to 4 (>= k - 1), in whole vec4s.
override PATCH_ROW_VEC4S: u32 = WG_X + 1u;
override TILE_H: u32 = WG_Y * ROWS_PER_INVOCATION;
override PATCH_ROWS: u32 = TILE_H + K - 1u;
override PATCH_VEC4S: u32 = CHUNK * PATCH_ROWS * PATCH_ROW_VEC4S;
override WEIGHT_TILE_VEC4S: u32 = CHUNK * K * K * TILE_M / 4u;

var<workgroup> patch_tile: array<vec4<f32>, PATCH_VEC4S>;
// weight_tile[((c * K + ky) * K + kx) * TILE_M / 4 + m / 4][m % 4]: the GEMM's A tile,
// transposed so that one tap's TILE_M weights are adjacent and load 4 at a time.
var<workgroup> weight_tile: array<vec4<f32>, WEIGHT_TILE_VEC4S>;

// ---- forward and backward-input: one kernel ----------------------------------------------
// Bindings: forward: inp, weight, bias, out. backward-input: dout, weight, out, dinp
// (`aux` is the bias in the forward and the forward's output, for relu', in the backward).
override BACKWARD_INPUT: bool = false;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// The patch source at (n, c, y, x), zero outside the image or past the last channel.
// In backward-input the source is g = dout * relu'(out), relu' read off the forward's out.
fn patch_source(n: u32, c: u32, y: i32, x: i32) -> f32 {
    let inside = c < p.c_patch && y >= 0 && y < i32(p.h_patch) && x >= 0 && x < i32(p.w_patch);
    // Branch-free: the load always happens (at index 0 when outside) and is then discarded.
    let i = select(0u, ((n * p.c_patch + c) * p.h_patch + u32(y)) * p.w_patch + u32(x), inside);
    var v = src[i];
    if (BACKWARD_INPUT) {
        v = select(v, 0.0, p.relu != 0u && aux[i] <= 0.0);
    }
    return select(0.0, v, inside);
}

// The GEMM's A matrix at (grid channel m, patch channel c, tap ky, kx), zero outside.
fn weight_at(m: u32, c: u32, ky: u32, kx: u32) -> f32 {
    let inside = m < p.c_grid && c < p.c_patch;
    var i: u32;
    if (BACKWARD_INPUT) {
        // W'[ci = m, co = c, ky, kx] = W[co, ci, k-1-ky, k-1-kx], W is [C_out, C_in, k, k].
        i = ((c * p.c_grid + m) * K + (K - 1u - ky)) * K + (K - 1u - kx);
    } else {
        i = ((m * p.c_patch + c) * K + ky) * K + kx;
    }
    return select(0.0, weight[select(0u, i, inside)], inside);
}

@compute @workgroup_size(WG_X, WG_Y)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(local_invocation_index) lindex: u32) {
    // Grid: x = column of pixel tiles, y = row of pixel tiles, z = (image n, block of
    // TILE_M channels); no dimension nears the 65,535 limit for any image that fits.
    let m_blocks = (p.c_grid + TILE_M - 1u) / TILE_M;
    let tile_x0 = wid.x * 4u * WG_X;
    let tile_y0 = wid.y * TILE_H;
    // This invocation's rows: tile_y0 + first_row + r for r < ROWS_PER_INVOCATION.
    let first_row = lid.y * ROWS_PER_INVOCATION;
    let m0 = (wid.z % m_blocks) * TILE_M;
    let n = wid.z / m_blocks;
    let invocations = WG_X * WG_Y;

    // acc[r * TILE_M + m][j]: grid channel m0 + m at pixel
    // (tile_y0 + first_row + r, tile_x0 + 4 lid.x + j).
    var acc: array<vec4<f32>, MAX_TILE_M * MAX_ROWS_PER_INVOCATION>;
    for (var i = 0u; i < TILE_M * ROWS_PER_INVOCATION; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var c0 = 0u; c0 < p.c_patch; c0 += CHUNK) {
        // Stage the patch: CHUNK channels x PATCH_ROWS rows x 4 * PATCH_ROW_VEC4S columns,
        // starting at (tile_y0 - pad, tile_x0 - pad), one vec4 per step.
        for (var q = lindex; q < PATCH_VEC4S; q += invocations) {
            let col = (q % PATCH_ROW_VEC4S) * 4u;
            let row = (q / PATCH_ROW_VEC4S) % PATCH_ROWS;
            let c = c0 + q / (PATCH_ROW_VEC4S * PATCH_ROWS);
            let y = i32(tile_y0 + row) - i32(p.pad);
            let x = i32(tile_x0 + col) - i32(p.pad);
            patch_tile[q] = vec4<f32>(patch_source(n, c, y, x), patch_source(n, c, y, x + 1),
                                 patch_source(n, c, y, x + 2), patch_source(n, c, y, x + 3));
        }
        // Stage the weight tile, 4 channels per step.
        for (var e = lindex; e < WEIGHT_TILE_VEC4S; e += invocations) {
            let m = (e % (TILE_M / 4u)) * 4u;
            let kx = (e / (TILE_M / 4u)) % K;
            let ky = (e / (TILE_M / 4u * K)) % K;
            let c = c0 + e / (TILE_M / 4u * K * K);
            weight_tile[e] = vec4<f32>(weight_at(m0 + m, c, ky, kx), weight_at(m0 + m + 1u, c, ky, kx),
                                       weight_at(m0 + m + 2u, c, ky, kx), weight_at(m0 + m + 3u, c, ky, kx));
        }
        workgroupBarrier();

        // Loads are the cost on SIMD-across-invocation drivers, so each loaded weight
        // vec4 serves ROWS_PER_INVOCATION x 4 pixels, and each row window 4 x k taps.
        for (var c = 0u; c < CHUNK; c++) {
            for (var ky = 0u; ky < K; ky++) {
                // This tap row's weights: w[kx * TILE_M / 4 + m / 4][m % 4].
                var w: array<vec4<f32>, MAX_TILE_M / 4u * MAX_K>;
                let w_base = (c * K + ky) * K * TILE_M / 4u;
                for (var i = 0u; i < K * TILE_M / 4u; i++) {
                    w[i] = weight_tile[w_base + i];
                }
                for (var r = 0u; r < ROWS_PER_INVOCATION; r++) {
                    // The 4 + k - 1 patch values under this invocation's 4 pixels of row r.
                    let row = (c * PATCH_ROWS + first_row + r + ky) * PATCH_ROW_VEC4S + lid.x;
                    let lo = patch_tile[row];
                    let hi = patch_tile[row + 1u];
                    let row_window = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
                    for (var kx = 0u; kx < K; kx++) {
                        let x = vec4<f32>(row_window[kx], row_window[kx + 1u], row_window[kx + 2u], row_window[kx + 3u]);
                        for (var m = 0u; m < TILE_M; m++) {
                            let a = r * TILE_M + m;
                            acc[a] = fma(vec4<f32>(w[kx * TILE_M / 4u + m / 4u][m % 4u]), x, acc[a]);
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }

    // Epilogue: bias and ReLU in the forward; bounds guards for partial tiles.
    for (var m = 0u; m < TILE_M; m++) {
        let co = m0 + m;
        var bias = 0.0;
        if (!BACKWARD_INPUT) {
            bias = aux[min(co, p.c_grid - 1u)];
        }
        for (var r = 0u; r < ROWS_PER_INVOCATION; r++) {
            var v = acc[r * TILE_M + m] + vec4<f32>(bias);
            if (!BACKWARD_INPUT && p.relu != 0u) {
                v = max(v, vec4<f32>(0.0));
            }
            let y = tile_y0 + first_row + r;
            for (var j = 0u; j < 4u; j++) {
                let x = tile_x0 + 4u * lid.x + j;
                if (co < p.c_grid && y < p.h_grid && x < p.w_grid) {
                    dst[((n * p.c_grid + co) * p.h_grid + y) * p.w_grid + x] = v[j];
                }
            }
        }
    }
}

// ---- backward-weight: split-K GEMM -------------------------------------------------------
// dW[co, ci, ky, kx] = sum over (n, y, x) of g[n, co, y, x] * inp[n, ci, y + ky - pad, x + kx - pad]
//
// A workgroup owns TILE_M output channels (co, uniform across it) x WG_CI input channels
// (one per invocation along x) x k rows of taps (one per invocation along y); each
// invocation holds TILE_M x k sums (its ci and ky, every kx). The pixel reduction walks
// tiles of ROWS x 4 * QUADS grid pixels; the tiles are split into `splits` slices (grid
// z), each writing its own partial dW, which sum_splits adds up in a fixed order.
// Bindings: out (for relu'), dout, inp, partial.
override WG_CI: u32 = 8u;
override ROWS: u32 = 4u;
override QUADS: u32 = 8u;

override BW_PATCH_ROWS: u32 = ROWS + K - 1u;
override BW_PATCH_VEC4S: u32 = WG_CI * BW_PATCH_ROWS * (QUADS + 1u);
override G_TILE_VEC4S: u32 = TILE_M * ROWS * QUADS;

var<workgroup> bw_patch: array<vec4<f32>, BW_PATCH_VEC4S>;
// g_tile[(m * ROWS + r) * QUADS + q]: g at channel m0 + m, 4 pixels of row r.
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
    // Grid: x = block of WG_CI input channels, y = block of TILE_M output channels, z = split.
    let ci0 = wid.x * WG_CI;
    let m0 = wid.y * TILE_M;
    let ky = lid.y;
    let invocations = WG_CI * K;
    let tile_w = 4u * QUADS;
    let tiles_x = (p.w_grid + tile_w - 1u) / tile_w;
    let tiles_per_image = tiles_x * ((p.h_grid + ROWS - 1u) / ROWS);
    let first = wid.z * p.tiles_per_split;
    let last = min(first + p.tiles_per_split, p.n * tiles_per_image);

    // acc[m * K + kx]: dW[m0 + m, ci0 + lid.x, ky, kx] over this split's pixels.
    var acc: array<f32, MAX_TILE_M * MAX_K>;
    for (var i = 0u; i < TILE_M * K; i++) {
        acc[i] = 0.0;
    }

    for (var t = first; t < last; t++) {
        let n = t / tiles_per_image;
        let x0 = (t % tiles_x) * tile_w;
        let y0 = ((t % tiles_per_image) / tiles_x) * ROWS;
        // Stage the input patch (with its k-1 halo) and g, both ROWS x tile_w.
        for (var q = lindex; q < BW_PATCH_VEC4S; q += invocations) {
            let col = (q % (QUADS + 1u)) * 4u;
            let row = (q / (QUADS + 1u)) % BW_PATCH_ROWS;
            let c = ci0 + q / ((QUADS + 1u) * BW_PATCH_ROWS);
            let y = i32(y0 + row) - i32(p.pad);
            let x = i32(x0 + col) - i32(p.pad);
            bw_patch[q] = vec4<f32>(input_at(n, c, y, x), input_at(n, c, y, x + 1),
                                    input_at(n, c, y, x + 2), input_at(n, c, y, x + 3));
        }
        for (var q = lindex; q < G_TILE_VEC4S; q += invocations) {
            let x = x0 + (q % QUADS) * 4u;
            let y = y0 + (q / QUADS) % ROWS;
            let co = m0 + q / (QUADS * ROWS);
            g_tile[q] = vec4<f32>(grad_at(n, co, y, x), grad_at(n, co, y, x + 1u),
                                  grad_at(n, co, y, x + 2u), grad_at(n, co, y, x + 3u));
        }
        workgroupBarrier();

        for (var r = 0u; r < ROWS; r++) {
            for (var q = 0u; q < QUADS; q++) {
                // Input row y + ky under the 4 pixels (r, 4q..4q+3), plus the halo.
                let row = (lid.x * BW_PATCH_ROWS + r + ky) * (QUADS + 1u) + q;
                let lo = bw_patch[row];
                let hi = bw_patch[row + 1u];
                let row_window = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
                for (var m = 0u; m < TILE_M; m++) {
                    let g = g_tile[(m * ROWS + r) * QUADS + q];
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
    for (var m = 0u; m < TILE_M; m++) {
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
