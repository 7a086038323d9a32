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
//                     all N * H_out * W_out pixels, split into slices summed by sum_splits.wgsl)
// where X[(ci,ky,kx), (n,y,x)] = inp[n, ci, y + ky - pad, x + kx - pad] (zero outside).
//
// Why this shape: it is tuned for lavapipe/llvmpipe, which runs 8 invocations as the 8
// lanes of one 256-bit SIMD register. There every buffer load whose address is not a
// compile-time expression of constants is done lane by lane (8 bounds-checked scalar loads
// per component), even where the address is the same for the whole workgroup (llvmpipe only
// proves uniformity for constants and push constants, never inside a loop). Loads, not
// FMAs, are the cost. So:
//   - the lanes run over the GEMM's M dimension (grid channels): each invocation owns MI
//     grid channels and loads only its own weights (or g) itself;
//   - the pixels are the same for every invocation of a workgroup: the subgroup loads the
//     source window *cooperatively* (lane l loads window vec4s l, l + SG, ...) and then
//     reads each vec4 from the lane that holds it with subgroupShuffle, whose lane index is
//     a constant once the loops are unrolled (an extract and a broadcast in llvmpipe): one
//     load per lane instead of one per lane *per value*;
//   - each invocation keeps a ROWS x 4*QUADS pixel register tile, so one weight vec4 feeds
//     up to 4 x ROWS x 4*QUADS FMAs;
//   - no workgroup memory and no barriers (the CPU caches serve the reuse);
//   - no bounds checks and no div/mod in the inner loops: cheap preparation passes copy the
//     patch source into a zero-padded buffer whose rows are whole vec4s and cover whole
//     tiles (pad_source), and rearrange the weight so that one invocation's taps of one
//     channel are 16-byte aligned vec4s (arrange_weight).
//
// Subgroups: SG is the smallest subgroup size any pipeline of the device may get, as
// measured when the device opens (src/gpu/subgroups.rs: a driver may run smaller
// subgroups than it reports). Lanes are taken in segments of SG consecutive lane ids (the
// whole subgroup where its size is fixed, SG_FIXED), and each segment loads its own copy of
// a window, so the kernels are right for any subgroup size that is a multiple of SG (all of
// them: sizes are powers of two) as long as the workgroup size is a multiple of the largest
// size, so that no segment is cut short.

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
    // The padded copy's zero margins: rows above the image, columns left of it.
    pad: u32,
    relu: u32,
    // The padded copy: channels, rows, columns (a multiple of 4).
    c_src: u32,
    h_src: u32,
    w_src: u32,
    // backward_weight: the grid channels rounded up to whole workgroups.
    c_grid_pad: u32,
    // conv_gemm: rows of pixel tiles per image.
    tiles_y: u32,
    // backward_weight: pixel tiles of the reduction per split, and values per split in
    // `partial` (the weight's, then with BIAS the bias's).
    per_split: u32,
    split_stride: u32,
    // pad_source: rows to write; arrange_weight: vec4s to write.
    count: u32,
    // backward_weight: columns of pixel tiles per image.
    tiles_x: u32,
    pad_left: u32,
    // conv_gemm: the pixel tiles start `shift` columns left of the grid's first (see
    // "Tile shift" below).
    shift: u32,
    // backward_weight: the padded copy of g (c_grid_pad channels of g_rows rows of
    // g_quads vec4s), its image at row g_top, vec4 g_left.
    g_rows: u32,
    g_quads: u32,
    g_top: u32,
    g_left: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Subgroup segments (see above).
override SG: u32 = 8u;
override SG_FIXED: bool = true;

// The first lane of this lane's segment.
fn segment_start(lane: u32) -> u32 {
    return select(lane - lane % SG, 0u, SG_FIXED);
}

// One row of a window as vec4s: a tile's 4 QUADS columns and 4 more for the taps' reach.
alias WindowRow = array<vec4<f32>, 5>;

// The values s, s + 1, s + 2, s + 3 of a window row (s < 16; a constant once the tile
// loops are unrolled, so this is a register shuffle).
fn four_from(row: ptr<function, WindowRow>, s: u32) -> vec4<f32> {
    return vec4<f32>((*row)[s / 4u][s % 4u], (*row)[(s + 1u) / 4u][(s + 1u) % 4u],
                     (*row)[(s + 2u) / 4u][(s + 2u) % 4u], (*row)[(s + 3u) / 4u][(s + 3u) % 4u]);
}

// Item i of a window that the lanes of a segment loaded cooperatively, lane l of the
// segment holding items l, l + SG, ... in `held` (= coop[i / SG] on that lane).
fn window_item(held: vec4<f32>, segment: u32, i: u32) -> vec4<f32> {
    return subgroupShuffle(held, segment + i % SG);
}

// Kernel size, compile-time so that the tap loops unroll.
override K: u32 = 3u;
// vec4s holding one channel's k*k taps (3 for k = 3).
override KV: u32 = (K * K + 3u) / 4u;
const MAX_KV: u32 = 7u;
const MAX_K: u32 = 5u;
const MAX_TILE_M: u32 = 16u;

// ---- preparation: zero-padded copy of an image ------------------------------------------
// dst[n, c, y, x] (c < c_src, y < h_src, x < w_src) = src[n, c, y - pad, x - pad_left],
// zero outside src; with MASK (backward) src is dout and is zeroed where relu' (read off the
// forward's out, `aux`) is 0. One invocation writes one row of the copy (w_src / 4 vec4s),
// so that the row's place is worked out once (integer division is per lane on llvmpipe).
// With SPACE_TO_DEPTH, src is an image of c_patch / 4 channels of 2 h_patch x 2 w_patch
// pixels, seen as c_patch channels of h_patch x w_patch: channel 4 c + 2 a + b holds the
// pixels (2 y + a, 2 x + b) of channel c. This is how the up-convolution's backward reads
// dout (see conv_gemm's UPCONV).
// Three entry points, by how many source values one load can take (a buffer load costs
// about the same whatever its width on llvmpipe, so wider loads make the copy cheaper):
//   pad_source        one value at a time: any width, SPACE_TO_DEPTH;
//   pad_source_pairs  vec2s: rows of even width, an even left margin;
//   pad_source_quads  vec4s: rows of whole vec4s, a left margin of whole vec4s.
// In the last two every load is wholly inside or wholly outside the source row.
override MASK: bool = false;
override SPACE_TO_DEPTH: bool = false;
override WG_PREP: u32 = 64u;

// Where src holds the value at (n, c, y, x) of the image pad_source copies.
fn source_index(n: u32, c: u32, y: u32, x: u32) -> u32 {
    if (SPACE_TO_DEPTH) {
        let plane = ((n * (p.c_patch / 4u) + c / 4u) * 2u * p.h_patch);
        return (plane + 2u * y + (c % 4u) / 2u) * 2u * p.w_patch + 2u * x + c % 2u;
    }
    return ((n * p.c_patch + c) * p.h_patch + y) * p.w_patch + x;
}

// A row of the padded copy: where it starts (in vec4s), and the source row it copies.
struct PaddedRow {
    first: u32,
    n: u32,
    c: u32,
    // The source row, where `inside`; otherwise the copy's row is all zeros.
    sy: u32,
    inside: bool,
}

// The row of the copy that invocation `gid` writes (where is_copy_row says it writes one).
fn padded_row(gid: vec3<u32>, nwg: vec3<u32>) -> PaddedRow {
    let row = gid.x + gid.y * nwg.x * WG_PREP;
    let c = (row / p.h_src) % p.c_src;
    let sy = i32(row % p.h_src) - i32(p.pad);
    let inside = c < p.c_patch && sy >= 0 && sy < i32(p.h_patch);
    return PaddedRow(row * (p.w_src / 4u), row / (p.h_src * p.c_src), c, u32(max(sy, 0)), inside);
}

fn is_copy_row(gid: vec3<u32>, nwg: vec3<u32>) -> bool {
    return gid.x + gid.y * nwg.x * WG_PREP < p.count;
}

@group(0) @binding(1) var<storage, read> ps_src: array<f32>;
@group(0) @binding(2) var<storage, read> ps_aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> ps_dst: array<vec4<f32>>;

@compute @workgroup_size(WG_PREP)
fn pad_source(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    if (!is_copy_row(gid, nwg)) {
        return;
    }
    let row = padded_row(gid, nwg);
    for (var q = 0u; q < p.w_src / 4u; q++) {
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let sx = i32(4u * q + j) - i32(p.pad_left);
            if (row.inside && sx >= 0 && sx < i32(p.w_patch)) {
                let i = source_index(row.n, row.c, row.sy, u32(sx));
                var s = ps_src[i];
                if (MASK && p.relu != 0u && ps_aux[i] <= 0.0) {
                    s = 0.0;
                }
                v[j] = s;
            }
        }
        ps_dst[row.first + q] = v;
    }
}

@group(0) @binding(1) var<storage, read> pp_src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> pp_aux: array<vec2<f32>>;

// Source pair k of the row whose first pair is `first` (zero outside the row), masked.
fn source_pair(first: u32, k: i32) -> vec2<f32> {
    if (k < 0 || k >= i32(p.w_patch / 2u)) {
        return vec2<f32>(0.0);
    }
    let v = pp_src[first + u32(k)];
    if (MASK && p.relu != 0u) {
        return select(v, vec2<f32>(0.0), pp_aux[first + u32(k)] <= vec2<f32>(0.0));
    }
    return v;
}

@compute @workgroup_size(WG_PREP)
fn pad_source_pairs(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (!is_copy_row(gid, nwg)) {
        return;
    }
    let row = padded_row(gid, nwg);
    let first = source_index(row.n, row.c, row.sy, 0u) / 2u;
    let left = i32(p.pad_left / 2u);
    for (var q = 0u; q < p.w_src / 4u; q++) {
        var v = vec4<f32>(0.0);
        if (row.inside) {
            let k = i32(2u * q) - left;
            v = vec4<f32>(source_pair(first, k), source_pair(first, k + 1));
        }
        ps_dst[row.first + q] = v;
    }
}

@group(0) @binding(1) var<storage, read> pq_src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pq_aux: array<vec4<f32>>;

@compute @workgroup_size(WG_PREP)
fn pad_source_quads(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (!is_copy_row(gid, nwg)) {
        return;
    }
    let row = padded_row(gid, nwg);
    let first = source_index(row.n, row.c, row.sy, 0u) / 4u;
    let left = p.pad_left / 4u;
    for (var q = 0u; q < p.w_src / 4u; q++) {
        var v = vec4<f32>(0.0);
        if (row.inside && q >= left && q - left < p.w_patch / 4u) {
            let i = first + q - left;
            v = pq_src[i];
            if (MASK && p.relu != 0u) {
                v = select(v, vec4<f32>(0.0), pq_aux[i] <= vec4<f32>(0.0));
            }
        }
        ps_dst[row.first + q] = v;
    }
}

// ---- preparation: the weight as the GEMM's A matrix -------------------------------------
// A weight [rows, cols, K, K] (a conv's [C_out, C_in, K, K]; the up-convolution's
// [C_in, C_out, 2, 2] read as [C_in, 4 C_out, 1, 1]) copied into records: with K > 1,
// record (row, col) = vec4s (row * cols + col) * KV .. + KV - 1 hold its K * K taps, zero
// past the last, so that every weight load of conv_gemm is one aligned vec4; with K = 1
// the records are the values themselves, four to a vec4 (the weight as it is, zero past
// its end). conv_gemm reads A[m, c] = record (m, c) in the forward and record (c, m) with
// its taps reversed in backward-input (FLIP): A[m = ci, c = co, t] = W[co, ci, K*K - 1 - t],
// the weight transposed and flipped: one layout for both passes. Each pass makes its copy
// (a small pass); with K = 1 the weight itself serves where its length is whole vec4s.
// rows = c_grid, cols = c_patch here; one invocation writes one vec4.
@group(0) @binding(1) var<storage, read> aw_weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> aw_a: array<vec4<f32>>;

@compute @workgroup_size(WG_PREP)
fn arrange_weight(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * WG_PREP;
    if (e >= p.count) {
        return;
    }
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (K == 1u) {
            let i = 4u * e + j;
            if (i < p.c_grid * p.c_patch) {
                v[j] = aw_weight[i];
            }
        } else {
            let t = 4u * (e % KV) + j;
            if (t < K * K) {
                v[j] = aw_weight[(e / KV) * K * K + t];
            }
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
// of the reduction it loads MI * KV weight vec4s and its share (ROUNDS vec4s) of the
// (ROWS + K - 1) x (QUADS + 1) source window, and does MI x ROWS x 4 QUADS x K x K FMAs:
// every loaded value serves many FMAs.
// All tile loops have override-constant bounds, so the compiler unrolls them and every
// private-array index is a constant.
// Bindings: forward: S (padded inp), A (arrange_weight's records), bias, out;
// backward-input: S (padded g), A, (unused), dinp.
//
// Tile shift: tile column j reads the source window that starts at vec4 j * QUADS of S,
// whose image starts pad_left columns in. A pass with padding `pad` reads grid column x
// from source columns x - pad .., so the tile's grid columns start at 4 QUADS j - shift,
// shift = pad_left - pad (0 where the margin is the padding). Backward-input pads g by
// k - 1 - pad with the left margin rounded up to a whole vec4, so that backward_weight can
// read the same copy in vec4s; its tiles then start shift = 2 columns early (a valid 3x3)
// and the epilogue drops the columns left of the grid.
//
// UPCONV: the 2x2 stride-2 up-convolution's forward, out[n, co, 2y + a, 2x + b] = bias[co]
// + sum over ci of W[ci, co, a, b] * inp[n, ci, y, x], is this GEMM with k = 1 over the
// input's pixels, grid channel m = 4 co + 2 a + b and A[m, ci] = W[ci, co, a, b]; only the
// epilogue differs: it adds bias[m / 4] and scatters each m to its pixel of the 2x2 block.
override BACKWARD_INPUT: bool = false;
override UPCONV: bool = false;
override FLIP: bool = false;
override WG: u32 = 8u;
override MI: u32 = 1u;
override ROWS: u32 = 3u;
override QUADS: u32 = 2u;
const MAX_MI: u32 = 4u;
const MAX_ROWS: u32 = 4u;
const MAX_QUADS: u32 = 4u;
// The source window of one channel: WIN_ROWS rows of QUADS + 1 vec4s, loaded in ROUNDS
// cooperative loads (at most 40 vec4s, in rounds of at least 4 lanes).
override WIN_ROWS: u32 = ROWS + K - 1u;
override WINDOW: u32 = WIN_ROWS * (QUADS + 1u);
override ROUNDS: u32 = (WINDOW + SG - 1u) / SG;
const MAX_ROUNDS: u32 = 10u;

// The weight record that holds A[m, c] (see arrange_weight).
fn weight_record(m: u32, c: u32) -> u32 {
    if (FLIP) {
        return c * p.c_grid + m;
    }
    return m * p.c_patch + c;
}

// Where grid value (n, m, y, x) goes.
fn destination_index(n: u32, m: u32, y: u32, x: u32) -> u32 {
    if (UPCONV) {
        let plane = (n * (p.c_grid / 4u) + m / 4u) * 2u * p.h_grid;
        return (plane + 2u * y + (m % 4u) / 2u) * 2u * p.w_grid + 2u * x + m % 2u;
    }
    return ((n * p.c_grid + m) * p.h_grid + y) * p.w_grid + x;
}

@group(0) @binding(1) var<storage, read> cg_src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cg_a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> cg_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> cg_dst: array<f32>;

@compute @workgroup_size(WG)
fn conv_gemm(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(local_invocation_index) lid: u32,
             @builtin(subgroup_invocation_id) lane: u32) {
    let m0 = (wid.x * WG + lid) * MI;
    let segment = segment_start(lane);
    let n = wid.z / p.tiles_y;
    // The grid column of the tile's first pixel (see "Tile shift").
    let x0 = i32(wid.y * 4u * QUADS) - i32(p.shift);
    let y0 = (wid.z % p.tiles_y) * ROWS;
    let row_quads = p.w_src / 4u;

    // acc[(i * ROWS + r) * QUADS + q][j]: grid channel m0 + i at pixel (y0 + r, x0 + 4 q + j).
    var acc: array<vec4<f32>, MAX_MI * MAX_ROWS * MAX_QUADS>;
    for (var i = 0u; i < MI * ROWS * QUADS; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    // The first vec4 of the tile's top source row in channel 0 of image n.
    var src_base = ((n * p.c_src) * p.h_src + y0) * row_quads + wid.y * QUADS;
    // This invocation's weight records in reduction channel 0 (see arrange_weight); a lane
    // past the last grid channel reads the last one's (its sums are never stored).
    var rec: array<u32, MAX_MI>;
    for (var i = 0u; i < MI; i++) {
        rec[i] = weight_record(min(m0 + i, p.c_grid - 1u), 0u);
    }
    for (var c = 0u; c < p.c_patch; c++) {
        // w[i * KV + t / 4][t % 4]: A[m0 + i, c, tap t] (before FLIP reverses the taps).
        var w: array<vec4<f32>, MAX_MI * MAX_KV>;
        for (var i = 0u; i < MI; i++) {
            if (K == 1u) {
                w[i] = vec4<f32>(cg_a[rec[i] / 4u][rec[i] % 4u]);
            } else {
                for (var v = 0u; v < KV; v++) {
                    w[i * KV + v] = cg_a[rec[i] * KV + v];
                }
            }
            rec[i] += weight_record(0u, 1u);
        }
        // This channel's source window: item i is row i / (QUADS + 1), vec4 i % (QUADS + 1).
        var coop: array<vec4<f32>, MAX_ROUNDS>;
        for (var round = 0u; round < ROUNDS; round++) {
            let i = min(round * SG + lane % SG, WINDOW - 1u);
            coop[round] = cg_src[src_base + (i / (QUADS + 1u)) * row_quads + i % (QUADS + 1u)];
        }
        for (var r = 0u; r < ROWS; r++) {
            for (var ky = 0u; ky < K; ky++) {
                // The source row under tap row ky of output row r: 4 QUADS + 4 values.
                var win: WindowRow;
                for (var q = 0u; q <= QUADS; q++) {
                    let i = (r + ky) * (QUADS + 1u) + q;
                    win[q] = window_item(coop[i / SG], segment, i);
                }
                for (var kx = 0u; kx < K; kx++) {
                    for (var q = 0u; q < QUADS; q++) {
                        // Source values x0 + 4 q + kx .. + 3.
                        let s = 4u * q + kx;
                        let xs = four_from(&win, s);
                        for (var i = 0u; i < MI; i++) {
                            let t = select(ky * K + kx, K * K - 1u - ky * K - kx, FLIP);
                            let a = (i * ROWS + r) * QUADS + q;
                            acc[a] = fma(vec4<f32>(w[i * KV + t / 4u][t % 4u]), xs, acc[a]);
                        }
                    }
                }
            }
        }
        src_base += p.h_src * row_quads;
    }

    // Epilogue: bias and ReLU in the forward; bounds guards for partial tiles.
    for (var i = 0u; i < MI; i++) {
        let m = m0 + i;
        if (m >= p.c_grid) {
            break;
        }
        var bias = 0.0;
        if (UPCONV) {
            bias = cg_bias[m / 4u];
        } else if (!BACKWARD_INPUT) {
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
                    let x = x0 + i32(4u * q + j);
                    if (y < p.h_grid && x >= 0 && x < i32(p.w_grid)) {
                        cg_dst[destination_index(n, m, y, u32(x))] = v[j];
                    }
                }
            }
        }
    }
}

// ---- backward-weight: split-K GEMM -------------------------------------------------------
// dW[co, ci, ky, kx] = sum over (n, y, x) of g[n, co, y, x] * inp[n, ci, y + ky - pad, x + kx - pad]
//
// The same layout as conv_gemm: the lanes run over output channels (one co per invocation,
// WG per workgroup) and load their own g; a workgroup owns BW_CI input channels, the same
// for all its lanes, whose windows the subgroup loads cooperatively. Each invocation holds
// BW_CI x K x K sums. The pixel reduction walks tiles of BW_ROWS x 4 BW_QUADS grid pixels;
// per tile a lane loads BW_ROWS x BW_QUADS g vec4s and its share (BW_ROUNDS vec4s) of the
// BW_CI windows of (BW_ROWS + K - 1) x (BW_QUADS + 1) vec4s, and does BW_CI x K x K x
// BW_ROWS x 4 BW_QUADS FMAs. The tiles are split into `splits` slices (grid z), each
// writing its own partial dW, which sum_splits.wgsl adds up in a fixed order.
// With BIAS the workgroups of the first input-channel block also sum g over their pixels,
// dbias[co] = sum over (n, y, x) of g[n, co, y, x], into the same partial sums (after dW).
//
// Both operands are zero-padded copies made by pad_source, so no load needs a bounds check:
// g = dout * relu'(out) as [n, c_grid_pad, g_rows, 4 g_quads] with its image at row g_top
// and vec4 g_left (the copy backward-input reads too, see "Tile shift"), covering
// tiles_y * BW_ROWS x tiles_x * 4 BW_QUADS pixels from there, and the input, shifted by
// pad, as [n, c_src, h_src, w_src] with c_src a multiple of BW_CI.
// Bindings: padded g, padded inp, partial.
override BIAS: bool = false;
override BW_CI: u32 = 4u;
override BW_ROWS: u32 = 2u;
override BW_QUADS: u32 = 2u;
const MAX_BW_CI: u32 = 8u;
const MAX_BW_ROWS: u32 = 4u;
const MAX_BW_QUADS: u32 = 4u;
override BW_WIN_ROWS: u32 = BW_ROWS + K - 1u;
override BW_WINDOW: u32 = BW_CI * BW_WIN_ROWS * (BW_QUADS + 1u);
override BW_ROUNDS: u32 = (BW_WINDOW + SG - 1u) / SG;
// At most 8 channels x 8 rows x 5 vec4s, in rounds of at least 4 lanes.
const MAX_BW_ROUNDS: u32 = 80u;

@group(0) @binding(1) var<storage, read> bw_g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bw_inp: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bw_partial: array<f32>;

@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32,
                   @builtin(subgroup_invocation_id) lane: u32) {
    // Grid: x = block of WG output channels, y = block of BW_CI input channels, z = split.
    let co = wid.x * WG + lid;
    let ci0 = wid.y * BW_CI;
    let segment = segment_start(lane);
    let tiles_per_image = p.tiles_x * p.tiles_y;
    let first = wid.z * p.per_split;
    let last = min(first + p.per_split, p.n * tiles_per_image);
    let x_row_quads = p.w_src / 4u;

    // acc[(c * K + ky) * K + kx]: dW[co, ci0 + c, ky, kx] over this split's pixels.
    var acc: array<f32, MAX_BW_CI * MAX_K * MAX_K>;
    for (var i = 0u; i < BW_CI * K * K; i++) {
        acc[i] = 0.0;
    }
    var bias_acc = 0.0;

    for (var t = first; t < last; t++) {
        let n = t / tiles_per_image;
        let tile_y = (t % tiles_per_image) / p.tiles_x;
        let tile_x = t % p.tiles_x;

        // g[r * BW_QUADS + q]: this lane's g at row r, pixels 4q .. 4q + 3 of the tile.
        var g: array<vec4<f32>, MAX_BW_ROWS * MAX_BW_QUADS>;
        let g_base = ((n * p.c_grid_pad + co) * p.g_rows + p.g_top + tile_y * BW_ROWS) * p.g_quads
            + p.g_left + tile_x * BW_QUADS;
        for (var r = 0u; r < BW_ROWS; r++) {
            for (var q = 0u; q < BW_QUADS; q++) {
                g[r * BW_QUADS + q] = bw_g[g_base + r * p.g_quads + q];
                if (BIAS) {
                    bias_acc += dot(g[r * BW_QUADS + q], vec4<f32>(1.0));
                }
            }
        }

        // The BW_CI input windows: item i is channel i / (BW_WIN_ROWS * (BW_QUADS + 1)),
        // then row and vec4 within it.
        var coop: array<vec4<f32>, MAX_BW_ROUNDS>;
        let x_base = ((n * p.c_src + ci0) * p.h_src + tile_y * BW_ROWS) * x_row_quads
            + tile_x * BW_QUADS;
        for (var round = 0u; round < BW_ROUNDS; round++) {
            let i = min(round * SG + lane % SG, BW_WINDOW - 1u);
            let quad = i % (BW_QUADS + 1u);
            let row = (i / (BW_QUADS + 1u)) % BW_WIN_ROWS;
            let c = i / ((BW_QUADS + 1u) * BW_WIN_ROWS);
            coop[round] = bw_inp[x_base + (c * p.h_src + row) * x_row_quads + quad];
        }

        for (var c = 0u; c < BW_CI; c++) {
            for (var r = 0u; r < BW_ROWS; r++) {
                for (var ky = 0u; ky < K; ky++) {
                    // Input row r + ky under the tile's row r: 4 BW_QUADS + 4 values.
                    var win: WindowRow;
                    for (var q = 0u; q <= BW_QUADS; q++) {
                        let i = (c * BW_WIN_ROWS + r + ky) * (BW_QUADS + 1u) + q;
                        win[q] = window_item(coop[i / SG], segment, i);
                    }
                    for (var kx = 0u; kx < K; kx++) {
                        for (var q = 0u; q < BW_QUADS; q++) {
                            let s = 4u * q + kx;
                            let xs = four_from(&win, s);
                            let a = (c * K + ky) * K + kx;
                            acc[a] += dot(g[r * BW_QUADS + q], xs);
                        }
                    }
                }
            }
        }
    }

    if (co < p.c_grid) {
        let split = wid.z * p.split_stride;
        for (var c = 0u; c < BW_CI; c++) {
            let ci = ci0 + c;
            if (ci < p.c_patch) {
                for (var t = 0u; t < K * K; t++) {
                    let e = (co * p.c_patch + ci) * K * K + t;
                    bw_partial[split + e] = acc[c * K * K + t];
                }
            }
        }
        if (BIAS && wid.y == 0u) {
            bw_partial[split + p.c_grid * p.c_patch * K * K + co] = bias_acc;
        }
    }
}
