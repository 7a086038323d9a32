//! Variant 3: the GPU-class implicit GEMM (`shaders/conv2d_tiled.wgsl`): workgroup tiles
//! of the output staged through workgroup memory, a register tile per invocation, no
//! subgroup operations, within WebGPU's default limits. It runs on every backend (GL and
//! browsers' WebGPU included) and is how GPU GEMMs are built; the shader's header has the
//! table of its six passes (three for the convolution, three for the up-convolution).

use crate::error::Result;
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::super::sum_splits::add_split_sums;
use super::Conv2d;

/// Tile sizes of variant 3, passed to WGSL as `override` constants: a `bm` x `bn` tile of
/// the output per workgroup, the reduction staged `bk` at a time, a 4 x 4 register tile
/// per invocation, so `bm * bn / 16` invocations per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TiledTiles {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
}

impl TiledTiles {
    /// 64 x 64: 256 invocations, 8 KiB of workgroup memory.
    pub const LARGE: TiledTiles = TiledTiles {
        bm: 64,
        bn: 64,
        bk: 16,
    };
    /// For GEMMs of at most 32 rows (layers with few channels): 128 invocations.
    pub const MEDIUM: TiledTiles = TiledTiles {
        bm: 32,
        bn: 64,
        bk: 16,
    };
    /// For GEMMs of at most 16 rows: 64 invocations.
    pub const SMALL: TiledTiles = TiledTiles {
        bm: 16,
        bn: 64,
        bk: 16,
    };

    /// The default tiles for a GEMM with `m` rows: the smallest preset whose rows the
    /// layer fills.
    pub fn for_rows(m: usize) -> TiledTiles {
        match m {
            0..=16 => Self::SMALL,
            17..=32 => Self::MEDIUM,
            _ => Self::LARGE,
        }
    }

    /// Invocations per workgroup.
    pub fn workgroup(&self) -> u32 {
        self.bm * self.bn / 16
    }

    /// Why these tiles cannot run on `gpu`, if they cannot.
    pub fn check(&self, gpu: &Gpu) -> std::result::Result<(), String> {
        let limits = gpu.limits();
        let wg = self.workgroup();
        let max = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x);
        if !(1..=4).contains(&(self.bm / 16)) || !self.bm.is_multiple_of(16) {
            // bm multiple of 16 makes the workgroup a multiple of bn (see the shader).
            Err(format!("bm = {} is not 16, 32, 48 or 64", self.bm))
        } else if !(4..=64).contains(&self.bn) || !self.bn.is_multiple_of(4) {
            Err(format!("bn = {} is not a multiple of 4 up to 64", self.bn))
        } else if !(1..=16).contains(&self.bk) || !wg.is_multiple_of(self.bk) {
            Err(format!(
                "bk = {} is not in 1..=16 or does not divide the {wg} invocations",
                self.bk
            ))
        } else if wg > max {
            Err(format!(
                "{wg} invocations per workgroup exceed the device's {max}"
            ))
        } else {
            Ok(())
        }
    }
}

/// Which of the shader's six passes (`PASS`; see the table in the shader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TiledPass {
    Forward = 0,
    BackwardInput = 1,
    BackwardWeight = 2,
    UpForward = 3,
    UpBackwardInput = 4,
    UpBackwardWeight = 5,
}

impl TiledPass {
    /// The weight gradients reduce over pixels, split into slices.
    fn splits_k(self) -> bool {
        matches!(
            self,
            TiledPass::BackwardWeight | TiledPass::UpBackwardWeight
        )
    }
}

/// Mirrors `struct Params` in `shaders/conv2d_tiled.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct TiledParams {
    pub n: u32,
    pub c_in: u32,
    pub h: u32,
    pub w: u32,
    pub c_out: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub pad: u32,
    pub relu: u32,
    pub gemm_m: u32,
    pub gemm_n: u32,
    pub gemm_k: u32,
    pub k_per_split: u32,
    pub n_tiles_x: u32,
    pub _pad: [u32; 2],
}

const TILED_GEMM: Kernel = Kernel {
    shader: shader!("conv2d_tiled.wgsl"),
    entry: "gemm",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// At most this many reduction values (pixels) per slice of a weight gradient, so that no
/// workgroup walks a whole large image (GPU watchdogs end long dispatches).
const MAX_K_PER_SLICE: u32 = 8192;
/// Aim for at least this many workgroups in a weight gradient (small layers have few
/// output tiles, so the reduction is split to keep the device busy).
const MIN_WORKGROUPS: u32 = 128;

/// One launch of the tiled GEMM: `pass` over `params` (whose GEMM sizes are set), binding
/// `inputs` and `dst`, with `tiles` or the default for the GEMM's rows. Weight-gradient passes write `splits` partial sums of M x N into a
/// temporary and add them into `dst` in order; the others write `dst` directly.
pub(crate) fn run(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    pass: TiledPass,
    kernel: u32,
    mut params: TiledParams,
    inputs: [&Tensor; 3],
    dst: &Tensor,
) -> Result<()> {
    let tiles = tiles.unwrap_or_else(|| TiledTiles::for_rows(params.gemm_m as usize));
    let max = gpu.limits().max_compute_workgroups_per_dimension;
    let m_tiles = params.gemm_m.div_ceil(tiles.bm);
    let n_tiles = params.gemm_n.div_ceil(tiles.bn);
    let constants = [
        ("PASS", f64::from(pass as u32)),
        ("K", f64::from(kernel)),
        ("BM", f64::from(tiles.bm)),
        ("BN", f64::from(tiles.bn)),
        ("BK", f64::from(tiles.bk)),
    ];
    let [a, b, c] = inputs.map(Tensor::buffer);
    if !pass.splits_k() {
        // N tiles past the per-dimension limit continue in grid z.
        params.n_tiles_x = n_tiles.min(max);
        let grid = [
            params.n_tiles_x,
            m_tiles,
            n_tiles.div_ceil(params.n_tiles_x),
        ];
        return gpu.dispatch(
            &TILED_GEMM,
            &constants,
            &params,
            &[a, b, c, dst.buffer()],
            grid,
        );
    }
    let k = params.gemm_k.max(1);
    let steps = k.div_ceil(tiles.bk);
    let wanted = MIN_WORKGROUPS
        .div_ceil(m_tiles * n_tiles)
        .max(k.div_ceil(MAX_K_PER_SLICE))
        .clamp(1, steps.min(max));
    params.k_per_split = steps.div_ceil(wanted) * tiles.bk;
    let splits = k.div_ceil(params.k_per_split);
    params.n_tiles_x = n_tiles;
    let count = (params.gemm_m * params.gemm_n) as usize;
    let partial = Tensor::empty(
        gpu,
        Shape::new(splits as usize, 1, 1, count),
        "conv2d tiled weight-gradient partial sums",
    )?;
    let grid = [n_tiles, m_tiles, splits];
    gpu.dispatch(
        &TILED_GEMM,
        &constants,
        &params,
        &[a, b, c, partial.buffer()],
        grid,
    )?;
    add_split_sums(gpu, &partial, splits as usize, dst)
}

/// The GEMM sizes of a convolution from `inp` to `out` with `conv`'s kernel.
fn conv_params(conv: &Conv2d, inp: Shape, out: Shape) -> TiledParams {
    TiledParams {
        n: inp.n as u32,
        c_in: inp.c as u32,
        h: inp.h as u32,
        w: inp.w as u32,
        c_out: out.c as u32,
        out_h: out.h as u32,
        out_w: out.w as u32,
        pad: conv.pad() as u32,
        relu: u32::from(conv.relu),
        ..TiledParams::default()
    }
}

/// out = conv(inp) + bias (ReLU if fused): pass 0, M = C_out, N = pixels, K = taps.
pub(super) fn forward(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let (i, o) = (inp.shape(), out.shape());
    let mut params = conv_params(conv, i, o);
    params.gemm_m = o.c as u32;
    params.gemm_n = (o.n * o.h * o.w) as u32;
    params.gemm_k = (i.c * conv.kernel * conv.kernel) as u32;
    let k = conv.kernel as u32;
    run(
        gpu,
        tiles,
        TiledPass::Forward,
        k,
        params,
        [inp, weight, bias],
        out,
    )
}

/// dinp (written): pass 1, M = C_in, N = input pixels, K = C_out taps.
pub(super) fn backward_input(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    conv: &Conv2d,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dinp: &Tensor,
) -> Result<()> {
    let (i, o) = (dinp.shape(), out.shape());
    let mut params = conv_params(conv, i, o);
    params.gemm_m = i.c as u32;
    params.gemm_n = (i.n * i.h * i.w) as u32;
    params.gemm_k = (o.c * conv.kernel * conv.kernel) as u32;
    let k = conv.kernel as u32;
    run(
        gpu,
        tiles,
        TiledPass::BackwardInput,
        k,
        params,
        [dout, out, weight],
        dinp,
    )
}

/// dweight += ...: pass 2, M = C_out, N = C_in taps, K = output pixels (split).
pub(super) fn backward_weight(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    conv: &Conv2d,
    inp: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
) -> Result<()> {
    let (i, o) = (inp.shape(), out.shape());
    let mut params = conv_params(conv, i, o);
    params.gemm_m = o.c as u32;
    params.gemm_n = (i.c * conv.kernel * conv.kernel) as u32;
    params.gemm_k = (o.n * o.h * o.w) as u32;
    let k = conv.kernel as u32;
    run(
        gpu,
        tiles,
        TiledPass::BackwardWeight,
        k,
        params,
        [dout, out, inp],
        dweight,
    )
}

/// The up-convolution's sizes: input [n, c_in, h, w], output [n, c_out, 2h, 2w].
fn upconv_params(inp: Shape, c_out: usize) -> TiledParams {
    TiledParams {
        n: inp.n as u32,
        c_in: inp.c as u32,
        h: inp.h as u32,
        w: inp.w as u32,
        c_out: c_out as u32,
        out_h: 2 * inp.h as u32,
        out_w: 2 * inp.w as u32,
        ..TiledParams::default()
    }
}

/// out = up-conv(inp) + bias: pass 3, M = 4 C_out, N = input pixels, K = C_in.
pub(super) fn upconv_forward(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let i = inp.shape();
    let mut params = upconv_params(i, out.shape().c);
    params.gemm_m = 4 * out.shape().c as u32;
    params.gemm_n = (i.n * i.h * i.w) as u32;
    params.gemm_k = i.c as u32;
    run(
        gpu,
        tiles,
        TiledPass::UpForward,
        1,
        params,
        [inp, weight, bias],
        out,
    )
}

/// dinp (written) and dweight (accumulated) of the up-convolution: passes 4 and 5.
pub(super) fn upconv_backward(
    gpu: &Gpu,
    tiles: Option<TiledTiles>,
    inp: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    dinp: &Tensor,
    dweight: &Tensor,
) -> Result<()> {
    let i = inp.shape();
    let c_out = dout.shape().c;
    let mut params = upconv_params(i, c_out);
    params.gemm_m = i.c as u32;
    params.gemm_n = (i.n * i.h * i.w) as u32;
    params.gemm_k = 4 * c_out as u32;
    // Binding 3 is unused by these passes; any tensor fills it.
    run(
        gpu,
        tiles,
        TiledPass::UpBackwardInput,
        1,
        params,
        [dout, weight, weight],
        dinp,
    )?;
    params.gemm_n = 4 * c_out as u32;
    params.gemm_k = (i.n * i.h * i.w) as u32;
    run(
        gpu,
        tiles,
        TiledPass::UpBackwardWeight,
        1,
        params,
        [inp, dout, dout],
        dweight,
    )
}
