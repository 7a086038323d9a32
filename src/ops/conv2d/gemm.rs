//! Variant 2: the subgroup implicit GEMM (`shaders/conv2d_gemm.wgsl`), tuned for CPU-like
//! devices (lavapipe): register tiles, no workgroup memory, the lanes of a subgroup load
//! the shared window cooperatively and pass it round with shuffles (the shader says why).
//! Its backward-weight splits the pixel reduction into slices whose partial sums a second
//! pass adds in a fixed order, so results are bit-identical run to run. It also runs the
//! 2x2 up-convolution as three 1x1 GEMMs (see "The up-convolution" below).

use std::borrow::Borrow;

use crate::error::Result;
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::super::sum_splits::{add_split_sums, add_split_sums_pair};
use super::{Conv2d, UPCONV_GEMM};

use Access::{Read, ReadWrite};

/// Tile sizes of the implicit-GEMM kernels, passed to WGSL as `override` constants (so the
/// pipeline cache keys on them). See `shaders/conv2d_gemm.wgsl` for what each one tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTiles {
    /// Invocations per workgroup (all kernels): a multiple of the largest subgroup the
    /// device may run ([`GemmTiles::workgroup_step`]); shrunk to fit the channel count.
    pub wg: u32,
    /// Forward/backward-input: grid channels per invocation (1 to 4).
    pub mi: u32,
    /// Forward/backward-input: pixel tile of `rows` x `4 * quads`, held by every invocation
    /// (1 to 4 each).
    pub rows: u32,
    pub quads: u32,
    /// Backward-weight: input channels per workgroup (1 to 8), the same for all its lanes.
    pub bw_ci: u32,
    /// Backward-weight: pixel tile of `bw_rows` x `4 * bw_quads` (1 to 4 each).
    pub bw_rows: u32,
    pub bw_quads: u32,
    /// Backward-weight: aim for at least this many workgroups when splitting the reduction.
    pub min_workgroups: u32,
}

impl GemmTiles {
    /// The largest kernel size the GEMM kernels handle (the halo fits one extra vec4).
    pub const MAX_KERNEL: usize = 5;

    /// Tuned on lavapipe (see docs/kernel-benchmarks.md).
    pub const DEFAULT: GemmTiles = GemmTiles {
        wg: 32,
        mi: 1,
        rows: 3,
        quads: 2,
        bw_ci: 3,
        bw_rows: 2,
        bw_quads: 2,
        min_workgroups: 64,
    };

    /// The default tiles for `gpu`, or None where the GEMM kernels cannot run there (no
    /// usable subgroup operations, or a kernel larger than [`GemmTiles::MAX_KERNEL`]).
    pub fn for_device(gpu: &Gpu, kernel: usize) -> Option<GemmTiles> {
        let tiles = GemmTiles {
            wg: Self::DEFAULT.wg.max(Self::workgroup_step(gpu)?),
            ..Self::DEFAULT
        };
        tiles.check(gpu, kernel).is_ok().then_some(tiles)
    }

    /// Workgroup sizes must be a multiple of this: whole subgroups of the largest size the
    /// device may run, so that no segment of lanes (see "Subgroups" in the shader) is cut
    /// short. None where the device has no usable subgroups.
    pub fn workgroup_step(gpu: &Gpu) -> Option<u32> {
        gpu.subgroups().map(|s| s.max)
    }

    /// Whether these tiles run on `gpu` for a k x k kernel.
    pub fn fits(&self, gpu: &Gpu, kernel: usize) -> bool {
        self.check(gpu, kernel).is_ok()
    }

    /// Why these tiles cannot run on `gpu` for a k x k kernel, if they cannot.
    pub fn check(&self, gpu: &Gpu, kernel: usize) -> std::result::Result<(), String> {
        let Some(subgroups) = gpu.subgroups() else {
            return Err("the device has no usable subgroup operations".into());
        };
        let limits = gpu.limits();
        let ranges = [
            ("mi", self.mi, 4),
            ("rows", self.rows, 4),
            ("quads", self.quads, 4),
            ("bw_ci", self.bw_ci, 8),
            ("bw_rows", self.bw_rows, 4),
            ("bw_quads", self.bw_quads, 4),
        ];
        if kernel > Self::MAX_KERNEL {
            Err(format!(
                "variant 2 handles kernels up to {}x{0}",
                Self::MAX_KERNEL
            ))
        } else if subgroups.min < 4 {
            // The window loads are sized for segments of at least 4 lanes (MAX_ROUNDS).
            Err(format!(
                "subgroups of {} lanes are too small (4 at least)",
                subgroups
            ))
        } else if self.wg == 0 || !self.wg.is_multiple_of(subgroups.max) {
            Err(format!(
                "wg {} is not a multiple of the largest subgroup ({} lanes)",
                self.wg, subgroups.max
            ))
        } else if self.wg > limits.max_compute_invocations_per_workgroup
            || self.wg > limits.max_compute_workgroup_size_x
        {
            Err(format!(
                "wg {} exceeds the device's {} invocations per workgroup",
                self.wg,
                limits
                    .max_compute_invocations_per_workgroup
                    .min(limits.max_compute_workgroup_size_x)
            ))
        } else if let Some((name, value, max)) = ranges
            .into_iter()
            .find(|&(_, v, max)| !(1..=max).contains(&v))
        {
            Err(format!("{name} = {value} is outside 1..={max}"))
        } else {
            Ok(())
        }
    }

    /// Invocations per workgroup for `channels` grid channels, `per_invocation` each: whole
    /// subgroups only.
    fn wg_for(&self, gpu: &Gpu, channels: usize, per_invocation: u32) -> u32 {
        let step = Self::workgroup_step(gpu).expect("GemmTiles::check found subgroups");
        let needed = (channels as u32).div_ceil(per_invocation);
        self.wg.min(needed.div_ceil(step) * step)
    }

    /// The subgroup constants of the kernels (see "Subgroups" in the shader): segments of
    /// the smallest size any pipeline may get, and whether that size is the only one.
    fn subgroup_constants(gpu: &Gpu) -> [(&'static str, f64); 2] {
        let subgroups = gpu.subgroups().expect("GemmTiles::check found subgroups");
        [
            ("SG", f64::from(subgroups.min)),
            ("SG_FIXED", f64::from(u8::from(subgroups.fixed()))),
        ]
    }
}

const GEMM_CONV: Kernel = Kernel {
    shader: shader!("conv2d_gemm.wgsl"),
    entry: "conv_gemm",
    // forward: padded inp, A, bias, out; backward-input: padded g, A, (unused), dinp.
    bindings: &[Read, Read, Read, ReadWrite],
};
const GEMM_BACKWARD_WEIGHT: Kernel = Kernel {
    shader: shader!("conv2d_gemm.wgsl"),
    entry: "backward_weight",
    bindings: &[Read, Read, ReadWrite], // padded g, padded inp, partial
};
/// The padded copy: one source value per load (any width, space-to-depth), vec2s (rows
/// of even width, an even left margin) or vec4s (both in whole vec4s).
const GEMM_PAD_SOURCE: Kernel = pad_kernel("pad_source");
const GEMM_PAD_SOURCE_PAIRS: Kernel = pad_kernel("pad_source_pairs");
const GEMM_PAD_SOURCE_QUADS: Kernel = pad_kernel("pad_source_quads");
const fn pad_kernel(entry: &'static str) -> Kernel {
    Kernel {
        shader: shader!("conv2d_gemm.wgsl"),
        entry,
        bindings: &[Read, Read, ReadWrite], // src, aux (relu mask), padded copy
    }
}
const GEMM_ARRANGE_WEIGHT: Kernel = Kernel {
    shader: shader!("conv2d_gemm.wgsl"),
    entry: "arrange_weight",
    bindings: &[Read, ReadWrite], // weight, A
};

/// out = conv(inp) + bias (ReLU if fused):
/// out[co, pix] = W[co, (ci,ky,kx)] x X[(ci,ky,kx), pix].
pub(super) fn forward(
    gpu: &Gpu,
    tiles: GemmTiles,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let pad = conv.pad() as u32;
    let pass = GemmPass {
        conv: *conv,
        pad,
        weight,
        flip: false,
        bias,
        dst: out,
        grid: out.shape(),
        epilogue: Epilogue::Forward,
    };
    let tiling = ConvTiling::new(gpu, tiles, pass.grid, pad, pad);
    let x = Operand::plain(inp);
    let src = pad_source(
        gpu,
        conv,
        x,
        pad,
        pad,
        tiling.source(x.shape(), conv.kernel),
    )?;
    let records = Records::of(gpu, &pass, x.shape())?;
    gemm_conv(gpu, &pass, &tiling, x.shape(), &src, &records)
}

/// A conv's input gradient on variant 2: the tiles, the weight and the input's shape.
pub(super) struct InputGrad<'a> {
    pub tiles: GemmTiles,
    pub weight: &'a Tensor,
    pub inp_shape: Shape,
}

/// A conv's weight and bias gradients on variant 2: the tiles, the forward's input and
/// dweight, dbias (accumulated).
pub(super) struct ParamGrads<'a> {
    pub tiles: GemmTiles,
    pub inp: &'a Tensor,
    pub dweight: &'a Tensor,
    pub dbias: &'a Tensor,
}

/// The backward of a conv: `input` (dinp, returned) and/or `grads`, from one zero-padded
/// copy of g = dout * relu'(out) that both passes read:
///   dinp[ci, pix] = W'[ci, (co,ky,kx)] x G[(co,ky,kx), pix], a "full" convolution of g
///                   with the transposed, flipped weight (padding k - 1 - pad);
///   dweight += G[co, pix] x X[(ci,ky,kx), pix]^T and dbias[co] += sum over pix of
///   G[co, pix], in one reduction.
/// A `dout` given by value is dropped as soon as the copy is made, so that its buffer is
/// free for the passes' other tensors (in a planned step, see `Gpu::plan_memory`).
pub(super) fn backward(
    gpu: &Gpu,
    conv: &Conv2d,
    out: &Tensor,
    dout: impl Borrow<Tensor>,
    input: Option<InputGrad>,
    grads: Option<ParamGrads>,
) -> Result<Option<Tensor>> {
    let g = Operand {
        relu_of: conv.relu.then_some(out),
        ..Operand::plain(dout.borrow())
    };
    let g_shape = g.shape();
    // The left margin rounded up to a whole vec4, so that backward_weight reads the copy
    // in vec4s (see "Tile shift" in the shader).
    let full_pad = (conv.kernel - 1 - conv.pad()) as u32;
    let (top, left) = (full_pad, full_pad.next_multiple_of(4));
    let input_pass = input.map(|input| {
        let tiling = ConvTiling::new(gpu, input.tiles, input.inp_shape, full_pad, left);
        (input, tiling)
    });
    let weight_pass = grads.map(|grads| {
        let tiling = BwTiling::new(gpu, grads.tiles, conv, g_shape, grads.inp.shape());
        (grads, tiling)
    });
    let needed = cover(
        input_pass
            .iter()
            .map(|(_, tiling)| tiling.source(g_shape, conv.kernel))
            .chain(
                weight_pass
                    .iter()
                    .map(|(_, t)| t.g_needed(g_shape, top, left)),
            ),
    );
    let g_padded = pad_source(gpu, conv, g, top, left, needed)?;
    drop(dout);

    if let Some((grads, tiling)) = weight_pass {
        let pad = conv.pad() as u32;
        let x = Operand::plain(grads.inp);
        let x_padded = pad_source(gpu, conv, x, pad, pad, tiling.x_needed(x.shape()))?;
        let operands = [(&g_padded, g_shape), (&x_padded, x.shape())];
        let dbias = Some(grads.dbias);
        gemm_backward_weight(gpu, conv, &tiling, operands, grads.dweight, dbias)?;
    }
    let Some((input, tiling)) = input_pass else {
        return Ok(None);
    };
    // Made only now, so that it is not alive while the weight gradient runs.
    let dinp = Tensor::empty(gpu, input.inp_shape, "conv2d dinp")?;
    let pass = GemmPass {
        conv: *conv,
        pad: full_pad,
        weight: input.weight,
        flip: true,
        bias: input.weight,
        dst: &dinp,
        grid: dinp.shape(),
        epilogue: Epilogue::BackwardInput,
    };
    let records = Records::of(gpu, &pass, g_shape)?;
    gemm_conv(gpu, &pass, &tiling, g_shape, &g_padded, &records)?;
    Ok(Some(dinp))
}

/// An image as a GEMM operand reads it.
#[derive(Clone, Copy)]
struct Operand<'a> {
    tensor: &'a Tensor,
    /// Zero the values where this tensor (the forward's out) is <= 0: g = dout * relu'(out).
    relu_of: Option<&'a Tensor>,
    /// Read [N, C, 2H, 2W] as [N, 4C, H, W], channel 4c + 2a + b holding pixels
    /// (2y + a, 2x + b) of channel c (the up-convolution's dout).
    space_to_depth: bool,
}

impl<'a> Operand<'a> {
    fn plain(tensor: &'a Tensor) -> Operand<'a> {
        Operand {
            tensor,
            relu_of: None,
            space_to_depth: false,
        }
    }

    /// The image the GEMM sees.
    fn shape(&self) -> Shape {
        let s = self.tensor.shape();
        if self.space_to_depth {
            Shape::new(s.n, 4 * s.c, s.h / 2, s.w / 2)
        } else {
            s
        }
    }
}

/// A zero-padded copy of an operand (whole vec4 rows), its image starting at row `top`,
/// column `left`.
struct Padded {
    tensor: Tensor,
    top: u32,
    left: u32,
}

/// The smallest shape that holds each of `shapes` (of one batch size).
fn cover(shapes: impl Iterator<Item = Shape>) -> Shape {
    shapes
        .reduce(|a, b| Shape::new(a.n, a.c.max(b.c), a.h.max(b.h), a.w.max(b.w)))
        .expect("at least one pass")
}

/// What `conv_gemm`'s epilogue does with the sums.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Epilogue {
    /// Add the bias, apply the ReLU if the conv has one.
    Forward,
    /// Store as they are (dinp).
    BackwardInput,
    /// Add bias[m / 4] and scatter channel m = 4 co + 2 a + b to pixel (2y + a, 2x + b)
    /// of channel co (the up-convolution's forward).
    UpConv,
}

/// One `conv_gemm` launch: dst (seen as `grid`) = A x windows of the padded source.
struct GemmPass<'a> {
    /// The kernel size and ReLU of the pass.
    conv: Conv2d,
    /// The zero padding the pass reads its source with.
    pad: u32,
    /// The weight, as stored; `flip`: A is it transposed and flipped (its records read as
    /// `arrange_weight` in the shader says).
    weight: &'a Tensor,
    flip: bool,
    bias: &'a Tensor,
    dst: &'a Tensor,
    grid: Shape,
    epilogue: Epilogue,
}

/// How `conv_gemm` covers a pass's grid: workgroups, pixel tiles, and the tile shift for a
/// source whose left margin is `left` (see "Tile shift" in the shader).
struct ConvTiling {
    tiles: GemmTiles,
    wg: u32,
    tiles_x: u32,
    tiles_y: u32,
    shift: u32,
}

impl ConvTiling {
    /// The tiling of `grid` for a pass with padding `pad`.
    fn new(gpu: &Gpu, tiles: GemmTiles, grid: Shape, pad: u32, left: u32) -> ConvTiling {
        let shift = left - pad;
        ConvTiling {
            tiles,
            wg: tiles.wg_for(gpu, grid.c, tiles.mi),
            tiles_x: (grid.w as u32 + shift).div_ceil(4 * tiles.quads),
            tiles_y: (grid.h as u32).div_ceil(tiles.rows),
            shift,
        }
    }

    /// The padded copy of `patch` the tiles read: rows y0 .. y0 + rows + k - 2 and vec4s
    /// x0 / 4 .. x0 / 4 + quads of every tile.
    fn source(&self, patch: Shape, kernel: usize) -> Shape {
        let t = &self.tiles;
        Shape::new(
            patch.n,
            patch.c,
            (self.tiles_y * t.rows) as usize + kernel - 1,
            (4 * (self.tiles_x * t.quads + 1)) as usize,
        )
    }
}

/// Runs `conv_gemm` on `src`, the padded copy of the pass's patch source `patch`, with
/// the weight's `records`.
fn gemm_conv(
    gpu: &Gpu,
    pass: &GemmPass,
    tiling: &ConvTiling,
    patch: Shape,
    src: &Padded,
    records: &Records,
) -> Result<()> {
    let (grid, tiles) = (pass.grid, tiling.tiles);
    debug_assert_eq!((src.top, src.left), (pass.pad, pass.pad + tiling.shift));

    let mut params = GemmParams::new(&pass.conv, patch, grid, src);
    params.tiles_y = tiling.tiles_y;
    params.shift = tiling.shift;
    let [sg, sg_fixed] = GemmTiles::subgroup_constants(gpu);
    let flag = |on: bool| f64::from(u8::from(on));
    let constants = [
        ("K", pass.conv.kernel as f64),
        ("WG", f64::from(tiling.wg)),
        ("MI", f64::from(tiles.mi)),
        ("ROWS", f64::from(tiles.rows)),
        ("QUADS", f64::from(tiles.quads)),
        (
            "BACKWARD_INPUT",
            flag(pass.epilogue == Epilogue::BackwardInput),
        ),
        ("UPCONV", flag(pass.epilogue == Epilogue::UpConv)),
        ("FLIP", flag(pass.flip)),
        sg,
        sg_fixed,
    ];
    let workgroups = [
        (grid.c as u32).div_ceil(tiling.wg * tiles.mi),
        tiling.tiles_x,
        grid.n as u32 * tiling.tiles_y,
    ];
    let buffers = [
        src.tensor.buffer(),
        records.tensor().buffer(),
        pass.bias.buffer(),
        pass.dst.buffer(),
    ];
    gpu.dispatch(&GEMM_CONV, &constants, &params, &buffers, workgroups)
}

/// A zero-padded copy of `src` (as the GEMM sees it) of shape `padded` (whole vec4 rows),
/// its image at row `top`, column `left`, masked by relu' where the operand says so.
fn pad_source(
    gpu: &Gpu,
    conv: &Conv2d,
    src: Operand,
    top: u32,
    left: u32,
    padded: Shape,
) -> Result<Padded> {
    let dst = Padded {
        tensor: Tensor::empty(gpu, padded, "conv2d padded source")?,
        top,
        left,
    };
    let mut params = GemmParams::new(conv, src.shape(), src.shape(), &dst);
    params.relu = u32::from(src.relu_of.is_some());
    let rows = (padded.n * padded.c * padded.h) as u32;
    params.count = rows;
    let constants = [
        ("MASK", f64::from(u8::from(src.relu_of.is_some()))),
        ("SPACE_TO_DEPTH", f64::from(u8::from(src.space_to_depth))),
    ];
    // The widest load that stays inside or outside each source row (see the shader).
    let width = src.shape().w as u32;
    let whole = |n: u32| width.is_multiple_of(n) && left.is_multiple_of(n);
    let kernel = if src.space_to_depth || !whole(2) {
        &GEMM_PAD_SOURCE
    } else if whole(4) {
        &GEMM_PAD_SOURCE_QUADS
    } else {
        &GEMM_PAD_SOURCE_PAIRS
    };
    let aux = src.relu_of.unwrap_or(src.tensor);
    let buffers = [src.tensor.buffer(), aux.buffer(), dst.tensor.buffer()];
    let grid = gpu.grid_1d(u64::from(rows), PREP_WORKGROUP);
    gpu.dispatch(kernel, &constants, &params, &buffers, grid)?;
    Ok(dst)
}

/// The weight as `conv_gemm` reads it (see `arrange_weight` in the shader): for k = 1 the
/// weight itself where it is whole vec4s, otherwise its records made by `arrange_weight`.
enum Records<'a> {
    Weight(&'a Tensor),
    Made(Tensor),
}

impl<'a> Records<'a> {
    /// The records of `pass`'s weight for the patch source `patch`.
    fn of(gpu: &Gpu, pass: &GemmPass<'a>, patch: Shape) -> Result<Records<'a>> {
        let (conv, weight) = (&pass.conv, pass.weight);
        if conv.kernel == 1 && weight.numel().is_multiple_of(4) {
            return Ok(Records::Weight(weight));
        }
        // The weight is [rows = grid channels, cols = patch channels, k, k], read
        // transposed where `flip` says so.
        let (rows, cols) = if pass.flip {
            (patch.c, pass.grid.c)
        } else {
            (pass.grid.c, patch.c)
        };
        let taps = conv.kernel * conv.kernel;
        let vec4s = if taps == 1 {
            (rows * cols).div_ceil(4)
        } else {
            rows * cols * taps.div_ceil(4)
        };
        let shape = Shape::vector(4 * vec4s);
        let a = Tensor::empty(gpu, shape, "conv2d weight records")?;
        let mut params: GemmParams = bytemuck::Zeroable::zeroed();
        params.c_grid = rows as u32;
        params.c_patch = cols as u32;
        params.count = vec4s as u32;
        let constants = [("K", conv.kernel as f64)];
        let buffers = [weight.buffer(), a.buffer()];
        let grid = gpu.grid_1d(vec4s as u64, PREP_WORKGROUP);
        gpu.dispatch(&GEMM_ARRANGE_WEIGHT, &constants, &params, &buffers, grid)?;
        Ok(Records::Made(a))
    }

    fn tensor(&self) -> &Tensor {
        match self {
            Records::Weight(weight) => weight,
            Records::Made(records) => records,
        }
    }
}

/// The most pixels one slice of the weight gradient's reduction covers.
const MAX_PIXELS_PER_SLICE: u32 = 16384;

/// Workgroup size of the preparation passes (`WG_PREP` in the shader).
const PREP_WORKGROUP: u32 = 64;

/// How `backward_weight` covers its reduction for g of shape `g` and patch source `x`:
/// workgroups over blocks of output and input channels, pixel tiles of g, and the slices
/// the tiles are split into.
struct BwTiling {
    tiles: GemmTiles,
    kernel: usize,
    wg: u32,
    co_blocks: u32,
    ci_blocks: u32,
    tiles_x: u32,
    tiles_y: u32,
    per_split: u32,
    splits: u32,
}

impl BwTiling {
    fn new(gpu: &Gpu, tiles: GemmTiles, conv: &Conv2d, g: Shape, x: Shape) -> BwTiling {
        let wg = tiles.wg_for(gpu, g.c, 1);
        let co_blocks = (g.c as u32).div_ceil(wg);
        let ci_blocks = (x.c as u32).div_ceil(tiles.bw_ci);
        let tiles_x = (g.w as u32).div_ceil(4 * tiles.bw_quads);
        let tiles_y = (g.h as u32).div_ceil(tiles.bw_rows);
        let pixel_tiles = g.n as u32 * tiles_x * tiles_y;
        // Enough slices to give the device min_workgroups workgroups, and slices of at most
        // MAX_PIXELS_PER_SLICE pixels, so that no invocation walks a whole large image (GPU
        // watchdogs end long dispatches); none empty, never more than the per-dimension limit.
        let max_splits = gpu.limits().max_compute_workgroups_per_dimension;
        let wanted = tiles.min_workgroups.div_ceil(ci_blocks * co_blocks);
        let tile_pixels = tiles.bw_rows * 4 * tiles.bw_quads;
        let longest = (MAX_PIXELS_PER_SLICE / tile_pixels).max(1);
        let per_split = pixel_tiles
            .div_ceil(wanted.clamp(1, max_splits))
            .min(longest)
            .max(pixel_tiles.div_ceil(max_splits));
        BwTiling {
            tiles,
            kernel: conv.kernel,
            wg,
            co_blocks,
            ci_blocks,
            tiles_x,
            tiles_y,
            per_split,
            splits: pixel_tiles.div_ceil(per_split),
        }
    }

    /// The padded copy of g the tiles read, with g's image at row `top`, column `left` (a
    /// multiple of 4): every workgroup's channels, and whole tiles from there.
    fn g_needed(&self, g: Shape, top: u32, left: u32) -> Shape {
        let t = &self.tiles;
        Shape::new(
            g.n,
            (self.co_blocks * self.wg) as usize,
            (top + self.tiles_y * t.bw_rows) as usize,
            (left + self.tiles_x * 4 * t.bw_quads) as usize,
        )
    }

    /// The padded copy of the patch source `x` the tiles read (padded by the conv's
    /// padding): every workgroup's channels, and the tiles' windows.
    fn x_needed(&self, x: Shape) -> Shape {
        let t = &self.tiles;
        Shape::new(
            x.n,
            (self.ci_blocks * t.bw_ci) as usize,
            (self.tiles_y * t.bw_rows) as usize + self.kernel - 1,
            (4 * (self.tiles_x * t.bw_quads + 1)) as usize,
        )
    }
}

/// dW[co, (ci,ky,kx)] += G[co, pix] x X[(ci,ky,kx), pix]^T, the pixel reduction split
/// into slices: pass 1 writes one partial dW per slice, pass 2 adds them into dweight in
/// slice order (deterministic, no atomics). Both operands are zero-padded copies that
/// cover whole tiles, each with the shape of the image it holds: g (for a conv,
/// dout * relu'(out)) and x (the input, padded by the conv's padding). With `dbias`, the
/// same pass sums g over the pixels into it (`BIAS` in the shader).
fn gemm_backward_weight(
    gpu: &Gpu,
    conv: &Conv2d,
    tiling: &BwTiling,
    [(g, g_shape), (x, x_shape)]: [(&Padded, Shape); 2],
    dweight: &Tensor,
    dbias: Option<&Tensor>,
) -> Result<()> {
    let (t, splits) = (&tiling.tiles, tiling.splits);
    let split_stride = dweight.numel() + dbias.map_or(0, |b| b.numel());
    let g_padded = g.tensor.shape();
    let mut params = GemmParams::new(conv, x_shape, g_shape, x);
    params.c_grid_pad = g_padded.c as u32;
    params.g_rows = g_padded.h as u32;
    params.g_quads = (g_padded.w / 4) as u32;
    params.g_top = g.top;
    params.g_left = g.left / 4;
    params.tiles_x = tiling.tiles_x;
    params.tiles_y = tiling.tiles_y;
    params.per_split = tiling.per_split;
    params.split_stride = split_stride as u32;
    let partial = Tensor::empty(
        gpu,
        Shape::new(splits as usize, 1, 1, split_stride),
        "conv2d dweight partial sums",
    )?;
    let buffers = [g.tensor.buffer(), x.tensor.buffer(), partial.buffer()];
    let [sg, sg_fixed] = GemmTiles::subgroup_constants(gpu);
    let constants = [
        ("K", conv.kernel as f64),
        ("WG", f64::from(tiling.wg)),
        ("BW_CI", f64::from(t.bw_ci)),
        ("BW_ROWS", f64::from(t.bw_rows)),
        ("BW_QUADS", f64::from(t.bw_quads)),
        ("BIAS", f64::from(u8::from(dbias.is_some()))),
        sg,
        sg_fixed,
    ];
    let grid = [tiling.co_blocks, tiling.ci_blocks, splits];
    gpu.dispatch(&GEMM_BACKWARD_WEIGHT, &constants, &params, &buffers, grid)?;
    match dbias {
        Some(dbias) => add_split_sums_pair(gpu, &partial, splits as usize, [dweight, dbias]),
        None => add_split_sums(gpu, &partial, splits as usize, dweight),
    }
}

// ---- The up-convolution on the same kernels ---------------------------------------------
//
// The 2x2 stride-2 transposed convolution (`ops::conv_transpose`) is three k = 1 GEMMs over
// the input's pixels, with the 2x2 output block folded into channels (m = 4 co + 2 a + b):
//   forward:          out block[m, pix] = W[ci, m]^T x inp[ci, pix]   (UPCONV epilogue)
//   backward-input:   dinp[ci, pix] = W[ci, m] x dout_s2d[m, pix]    (space-to-depth read)
//   backward-weight:  dW[ci, m] = inp[ci, pix] x dout_s2d[m, pix]^T
// where dout_s2d[m = 4 co + 2 a + b, y, x] = dout[co, 2y + a, 2x + b] and W[ci, m] is the
// [C_in, C_out, 2, 2] weight read as a C_in x 4 C_out matrix.

/// out = up-conv(inp) + bias, `out` of shape [N, C_out, 2H, 2W].
pub(super) fn upconv_forward(
    gpu: &Gpu,
    tiles: GemmTiles,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let (i, c_out) = (inp.shape(), out.shape().c);
    let pass = GemmPass {
        conv: UPCONV_GEMM,
        pad: 0,
        weight,
        // The transposed read of a 1x1 weight [C_in, 4 C_out] is W[ci, m]^T.
        flip: true,
        bias,
        dst: out,
        grid: Shape::new(i.n, 4 * c_out, i.h, i.w),
        epilogue: Epilogue::UpConv,
    };
    let tiling = ConvTiling::new(gpu, tiles, pass.grid, 0, 0);
    let src = pad_source(
        gpu,
        &UPCONV_GEMM,
        Operand::plain(inp),
        0,
        0,
        tiling.source(i, 1),
    )?;
    let records = Records::of(gpu, &pass, i)?;
    gemm_conv(gpu, &pass, &tiling, i, &src, &records)
}

/// Writes dinp and accumulates dweight of the up-convolution. One padded copy of dout
/// (space-to-depth) is the patch source of both passes.
pub(super) fn upconv_backward(
    gpu: &Gpu,
    tiles: GemmTiles,
    inp: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    dinp: &Tensor,
    dweight: &Tensor,
) -> Result<()> {
    let dout_s2d = Operand {
        space_to_depth: true,
        ..Operand::plain(dout)
    };
    let s2d = dout_s2d.shape();
    let pass = GemmPass {
        conv: UPCONV_GEMM,
        pad: 0,
        weight,
        flip: false,
        bias: weight,
        dst: dinp,
        grid: dinp.shape(),
        epilogue: Epilogue::BackwardInput,
    };
    let input_tiling = ConvTiling::new(gpu, tiles, pass.grid, 0, 0);
    // The weight gradient's rows run over ci: the GEMM's "g" is the input.
    let weight_tiling = BwTiling::new(gpu, tiles, &UPCONV_GEMM, inp.shape(), s2d);
    let needed = cover([input_tiling.source(s2d, 1), weight_tiling.x_needed(s2d)].into_iter());
    let src = pad_source(gpu, &UPCONV_GEMM, dout_s2d, 0, 0, needed)?;
    let records = Records::of(gpu, &pass, s2d)?;
    gemm_conv(gpu, &pass, &input_tiling, s2d, &src, &records)?;
    let g = Operand::plain(inp);
    let g_padded = pad_source(
        gpu,
        &UPCONV_GEMM,
        g,
        0,
        0,
        weight_tiling.g_needed(g.shape(), 0, 0),
    )?;
    let operands = [(&g_padded, g.shape()), (&src, s2d)];
    gemm_backward_weight(gpu, &UPCONV_GEMM, &weight_tiling, operands, dweight, None)
}

/// Mirrors `struct Params` in `shaders/conv2d_gemm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    n: u32,
    c_patch: u32,
    h_patch: u32,
    w_patch: u32,
    c_grid: u32,
    h_grid: u32,
    w_grid: u32,
    pad: u32,
    relu: u32,
    c_src: u32,
    h_src: u32,
    w_src: u32,
    c_grid_pad: u32,
    tiles_y: u32,
    per_split: u32,
    split_stride: u32,
    count: u32,
    tiles_x: u32,
    pad_left: u32,
    shift: u32,
    g_rows: u32,
    g_quads: u32,
    g_top: u32,
    g_left: u32,
}

impl GemmParams {
    /// Params for windows cut from `patch` (seen by the GEMM as `src` holds it, padded)
    /// onto `grid`.
    fn new(conv: &Conv2d, patch: Shape, grid: Shape, src: &Padded) -> GemmParams {
        let padded = src.tensor.shape();
        GemmParams {
            n: patch.n as u32,
            c_patch: patch.c as u32,
            h_patch: patch.h as u32,
            w_patch: patch.w as u32,
            c_grid: grid.c as u32,
            h_grid: grid.h as u32,
            w_grid: grid.w as u32,
            pad: src.top,
            relu: u32::from(conv.relu),
            c_src: padded.c as u32,
            h_src: padded.h as u32,
            w_src: padded.w as u32,
            c_grid_pad: 0,
            tiles_y: 0,
            per_split: 0,
            split_stride: 0,
            count: 0,
            tiles_x: 0,
            pad_left: src.left,
            shift: 0,
            g_rows: 0,
            g_quads: 0,
            g_top: 0,
            g_left: 0,
        }
    }
}
