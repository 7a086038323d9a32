// 2-D convolution and the 2x2 up-convolution, variant 3: the GPU-class implicit GEMM.
// The same maths as conv2d.wgsl and conv_transpose.wgsl (variant 1, the references); see
// there for the formulas. No subgroup operations, within WebGPU's default limits (at most
// 256 invocations and 16 KiB of workgroup memory), so it runs on Vulkan, Metal, DX12, GL
// and WebGPU alike.
//
// Every pass is one matrix product C[M, N] = A[M, K] x B[K, N] whose operands are gathered
// from the tensors on the fly ("implicit": no im2col buffer exists). One skeleton serves all
// six passes; only the small functions read_a, read_b and write_c differ, chosen by the
// override constant PASS (the compiler keeps only the chosen branch):
//
//   PASS  what                      M          N              K              A[m, k]                B[k, n]
//   0     conv forward              C_out      N*OH*OW pix    C_in*k*k tap   W[co, ci, ky, kx]      inp[n, ci, oy+ky-pad, ox+kx-pad]
//   1     conv backward-input       C_in       N*H*W pix      C_out*k*k tap  W[co, ci, k-1-ky, k-1-kx]  g[n, co, y+ky-(k-1-pad), x+kx-(k-1-pad)]
//   2     conv backward-weight      C_out      C_in*k*k tap   N*OH*OW pix    g[n, co, oy, ox]       inp[n, ci, oy+ky-pad, ox+kx-pad]
//   3     up-conv forward           4 C_out    N*H*W pix      C_in           W[ci, co, a, b]        inp[n, ci, y, x]
//   4     up-conv backward-input    C_in       N*H*W pix      4 C_out        W[ci, co, a, b]        dout[n, co, 2y+a, 2x+b]
//   5     up-conv backward-weight   C_in       4 C_out        N*H*W pix      inp[n, ci, y, x]       dout[n, co, 2y+a, 2x+b]
//
// with g = dout * relu'(out) (relu' read off the forward's out, where the conv has a ReLU),
// tap = (ci, ky, kx) or (co, ky, kx) flattened as PyTorch stores the weight, zero outside
// the images, and the up-convolution's 2x2 output block folded into m = 4 co + 2 a + b.
// Epilogues (write_c): forward adds the bias and applies the ReLU; the weight gradients
// write one partial sum per slice of the pixel reduction (split-K, grid z), which
// sum_splits.wgsl adds in a fixed order: deterministic, no atomics.
//
// The tiling: a workgroup computes a BM x BN tile of C. The K dimension is walked in steps
// of BK: all invocations load the BM x BK slice of A and the BK x BN slice of B into
// workgroup memory, wait, and then each invocation multiplies its 4 x 4 register tile out
// of them (per k: one vec4 of A, one of B, 16 multiply-adds). Workgroup: (BM / 4) x
// (BN / 4) invocations, invocation (ty, tx) owning rows 4 ty .. 4 ty + 3 and columns
// 4 tx .. 4 tx + 3 of the tile.
// The loads: every invocation loads the same columns of B at every step (WG is a multiple
// of BN, so column e % BN = lid % BN), so its pixel is decomposed once, outside the K
// loop; divisions are what a load costs most on CPU-like devices.

struct Params {
    // The convolution's input [n, c_in, h, w] and output [n, c_out, out_h, out_w].
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    out_h: u32,
    out_w: u32,
    pad: u32,
    relu: u32,
    // The GEMM: C[m, n] = A[m, k] x B[k, n].
    gemm_m: u32,
    gemm_n: u32,
    gemm_k: u32,
    // Weight gradients: K values per slice of the reduction (a multiple of BK).
    k_per_split: u32,
    // Tiles of N per row of the grid (grid x); more tiles continue in grid z (passes 0, 1,
    // 3, 4, whose z is free: a dispatch has at most 65,535 workgroups per dimension).
    n_tiles_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Pass 0, 3: inp, weight, bias, out.   Pass 1: dout, out, weight, dinp.
// Pass 2: dout, out, inp, partial.     Pass 4: dout, weight, (unused), dinp.
// Pass 5: inp, dout, (unused), partial.
@group(0) @binding(1) var<storage, read> t1: array<f32>;
@group(0) @binding(2) var<storage, read> t2: array<f32>;
@group(0) @binding(3) var<storage, read> t3: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

override PASS: u32 = 0u;
// Kernel size (1 for the up-convolution's passes).
override K: u32 = 3u;
override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// The register tile is 4 x 4: one vec4 of A and one of B per step of k.
const TM: u32 = 4u;
const TN: u32 = 4u;
override WG: u32 = (BM / TM) * (BN / TN);
const MAX_BM: u32 = 64u;
const MAX_BN: u32 = 64u;
const MAX_BK: u32 = 16u;

// The slices of A and B of one K step, k-major, as vec4s of 4 consecutive m (or n):
// tile_a[k * BM / 4 + m / 4][m % 4], tile_b[k * BN / 4 + n / 4][n % 4]. 8 KiB, within the
// 16 KiB WebGPU guarantees (and the 16,352 bytes of wgpu's downlevel limits).
var<workgroup> tile_a: array<vec4<f32>, MAX_BK * MAX_BM / 4u>;
var<workgroup> tile_b: array<vec4<f32>, MAX_BK * MAX_BN / 4u>;

// ---- pixel and tap indices ------------------------------------------------------------

// A pixel (n, y, x) of a [*, *, rows, cols] image, from its index n * rows * cols + y * cols + x.
struct Pixel {
    n: u32,
    y: u32,
    x: u32,
}

fn pixel_of(i: u32, rows: u32, cols: u32) -> Pixel {
    let plane = rows * cols;
    let n = i / plane;
    let r = i - n * plane;
    let y = r / cols;
    return Pixel(n, y, r - y * cols);
}

// A tap (c, ky, kx) from its index c * K * K + ky * K + kx.
struct Tap {
    c: u32,
    ky: u32,
    kx: u32,
}

fn tap_of(t: u32) -> Tap {
    let c = t / (K * K);
    let r = t - c * K * K;
    let ky = r / K;
    return Tap(c, ky, r - ky * K);
}

// inp[n, c, y, x] of the convolution's input (from t1, or t3 in pass 2), zero outside.
fn input_at(n: u32, c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.h) || x >= i32(p.w)) {
        return 0.0;
    }
    let i = ((n * p.c_in + c) * p.h + u32(y)) * p.w + u32(x);
    if (PASS == 2u) {
        return t3[i];
    }
    return t1[i];
}

// g[n, c, y, x] = dout * relu'(out) of the convolution's output (dout in t1, out in t2),
// zero outside.
fn g_at(n: u32, c: u32, y: i32, x: i32) -> f32 {
    if (y < 0 || x < 0 || y >= i32(p.out_h) || x >= i32(p.out_w)) {
        return 0.0;
    }
    let i = ((n * p.c_out + c) * p.out_h + u32(y)) * p.out_w + u32(x);
    if (p.relu != 0u && t2[i] <= 0.0) {
        return 0.0;
    }
    return t1[i];
}

// The up-convolution's dout[n, co, 2y + a, 2x + b] for m = 4 co + 2 a + b (dout in t1, or
// t2 in pass 5); its input is h x w, its output 2h x 2w.
fn upconv_dout(n: u32, m: u32, y: u32, x: u32) -> f32 {
    let co = m / 4u;
    let i = ((n * p.c_out + co) * 2u * p.h + 2u * y + (m % 4u) / 2u) * 2u * p.w + 2u * x + m % 2u;
    if (PASS == 5u) {
        return t2[i];
    }
    return t1[i];
}

// ---- the operands of each pass (see the table at the top) --------------------------------
// `px` is the pixel the caller decomposed once: of column `col` in passes 0, 1, 3, 4, of
// reduction index `k` in the weight gradients (2, 5).

fn read_a(m: u32, k: u32, px: Pixel) -> f32 {
    if (m >= p.gemm_m || k >= p.gemm_k) {
        return 0.0;
    }
    switch PASS {
        case 0u: {
            return t2[m * p.gemm_k + k];
        }
        case 1u: {
            let tap = tap_of(k);
            return t3[((tap.c * p.c_in + m) * K + K - 1u - tap.ky) * K + K - 1u - tap.kx];
        }
        case 2u: {
            return g_at(px.n, m, i32(px.y), i32(px.x));
        }
        case 3u: {
            return t2[k * p.gemm_m + m];
        }
        case 4u: {
            return t2[m * p.gemm_k + k];
        }
        default: {
            return t1[((px.n * p.c_in + m) * p.h + px.y) * p.w + px.x];
        }
    }
}

fn read_b(k: u32, col: u32, px: Pixel) -> f32 {
    if (k >= p.gemm_k || col >= p.gemm_n) {
        return 0.0;
    }
    switch PASS {
        case 0u: {
            let tap = tap_of(k);
            let pad = i32(p.pad);
            return input_at(px.n, tap.c, i32(px.y + tap.ky) - pad, i32(px.x + tap.kx) - pad);
        }
        case 1u: {
            let tap = tap_of(k);
            let shift = i32(K - 1u - p.pad);
            return g_at(px.n, tap.c, i32(px.y + tap.ky) - shift, i32(px.x + tap.kx) - shift);
        }
        case 2u: {
            let tap = tap_of(col);
            let pad = i32(p.pad);
            return input_at(px.n, tap.c, i32(px.y + tap.ky) - pad, i32(px.x + tap.kx) - pad);
        }
        case 3u: {
            return t1[((px.n * p.c_in + k) * p.h + px.y) * p.w + px.x];
        }
        case 4u: {
            return upconv_dout(px.n, k, px.y, px.x);
        }
        default: {
            return upconv_dout(px.n, col, px.y, px.x);
        }
    }
}

// C[m, col] of slice `split`, into its tensor.
fn write_c(m: u32, col: u32, split: u32, v: f32) {
    switch PASS {
        case 0u: {
            let px = pixel_of(col, p.out_h, p.out_w);
            var out = v + t3[m];
            if (p.relu != 0u) {
                out = max(out, 0.0);
            }
            dst[((px.n * p.c_out + m) * p.out_h + px.y) * p.out_w + px.x] = out;
        }
        case 1u, 4u: {
            let px = pixel_of(col, p.h, p.w);
            dst[((px.n * p.c_in + m) * p.h + px.y) * p.w + px.x] = v;
        }
        case 3u: {
            let px = pixel_of(col, p.h, p.w);
            let co = m / 4u;
            let y = 2u * px.y + (m % 4u) / 2u;
            let x = 2u * px.x + m % 2u;
            dst[((px.n * p.c_out + co) * 2u * p.h + y) * 2u * p.w + x] = v + t3[co];
        }
        default: {
            // The weight gradients: [split, M, N], N the weight's inner dimensions.
            dst[(split * p.gemm_m + m) * p.gemm_n + col] = v;
        }
    }
}

// ---- the skeleton ------------------------------------------------------------------------

// Weight gradients reduce over pixels, split into slices (grid z); the other passes use
// grid z to continue the N tiles past grid x.
fn splits_k() -> bool {
    return PASS == 2u || PASS == 5u;
}

// The pixel of GEMM index i (a column, or k in the weight gradients): of the output in
// passes 0 and 2, of the input otherwise.
fn pixel_of_index(i: u32) -> Pixel {
    if (PASS == 0u || PASS == 2u) {
        return pixel_of(i, p.out_h, p.out_w);
    }
    return pixel_of(i, p.h, p.w);
}

@compute @workgroup_size(WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    var n_tile = wid.x;
    var split = 0u;
    var k_first = 0u;
    var k_last = p.gemm_k;
    if (splits_k()) {
        split = wid.z;
        k_first = split * p.k_per_split;
        k_last = min(k_first + p.k_per_split, p.gemm_k);
    } else {
        n_tile += wid.z * p.n_tiles_x;
    }
    let m0 = wid.y * BM;
    let n0 = n_tile * BN;
    let tx = lid % (BN / TN);
    let ty = lid / (BN / TN);
    // The column of B this invocation loads at every step, and its pixel (passes 0, 1, 3, 4).
    let b_col = n0 + lid % BN;
    let col_px = pixel_of_index(b_col);

    var acc: array<vec4<f32>, TM>;
    for (var k0 = k_first; k0 < k_last; k0 += BK) {
        // Stage the A and B slices of this K step. A: consecutive invocations load
        // consecutive k (a weight row, or pixels of g); every invocation keeps its k, lid % BK
        // (WG is a multiple of BK), so in the weight gradients its pixel is one per step.
        let a_k = k0 + lid % BK;
        var k_px = Pixel(0u, 0u, 0u);
        if (splits_k()) {
            k_px = pixel_of_index(a_k);
        }
        for (var e = lid; e < BM * BK; e += WG) {
            let mm = e / BK;
            var v = 0.0;
            if (a_k < k_last) {
                v = read_a(m0 + mm, a_k, k_px);
            }
            tile_a[(lid % BK) * (BM / 4u) + mm / 4u][mm % 4u] = v;
        }
        // B: consecutive columns (pixels), except in the weight gradients, whose B runs over
        // pixels along k (the same k and pixel as A's).
        for (var e = lid; e < BK * BN; e += WG) {
            var kk = e / BN;
            var nn = e % BN;
            var px = col_px;
            if (splits_k()) {
                kk = e % BK;
                nn = e / BK;
                px = k_px;
            }
            var v = 0.0;
            if (k0 + kk < k_last) {
                v = read_b(k0 + kk, n0 + nn, px);
            }
            tile_b[kk * (BN / 4u) + nn / 4u][nn % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = tile_a[kk * (BM / 4u) + ty];
            let b = tile_b[kk * (BN / 4u) + tx];
            for (var i = 0u; i < TM; i++) {
                acc[i] = fma(vec4<f32>(a[i]), b, acc[i]);
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let m = m0 + ty * TM + i;
        for (var j = 0u; j < TN; j++) {
            let col = n0 + tx * TN + j;
            if (m < p.gemm_m && col < p.gemm_n) {
                write_c(m, col, split, acc[i][j]);
            }
        }
    }
}
