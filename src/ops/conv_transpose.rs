//! 2x2 transposed convolution with stride 2 and bias (U-Net's "up-convolution"), in
//! PyTorch's ConvTranspose2d layout: `weight` [C_in, C_out, 2, 2] (as
//! `Shape { n: C_in, c: C_out, h: 2, w: 2 }`), `bias` [C_out] (`Shape::vector(C_out)`).
//!
//! out[n, co, 2i+a, 2j+b] = bias[co] + sum_ci inp[n, ci, i, j] * weight[ci, co, a, b],
//! so the output is [N, C_out, 2H, 2W].
//!
//! The forward keeps nothing of its own: the backward needs the forward's `inp` and
//! `weight`, which the caller (the model) holds anyway and passes back in.
//!
//! The backward writes `dinp` and accumulates (`+=`) into `dweight` and `dbias`, following
//! the gradient rule in [`crate::ops`].
//!
//! Two implementations, chosen like the convolution's ([`ConvAlgo`]):
//! - variant 1 (`shaders/conv_transpose.wgsl`): one invocation per output value (forward)
//!   or input value (backward-input), and one per block of 4 input x 4 output channels
//!   and slice of rows summing its pixels in order for the weight and bias gradients
//!   (the slices then added in order);
//! - the default: the convolution's implicit-GEMM kernels, which run the up-convolution as
//!   three 1x1 GEMMs (see "The up-convolution on the same kernels" in `conv2d.rs`).
//!
//! Both are deterministic (no float atomics).

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::conv2d::{self, ConvAlgo};
use super::sum_splits::add_split_sums;
use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// What the launch covers: output elements (forward), input elements
    /// (backward_input) or blocks of [`BW_BLOCK`] x [`BW_BLOCK`] (ci, co) channels
    /// (backward_weight).
    total: u32,
    n: u32,
    c_in: u32,
    c_out: u32,
    /// The input's H and W; the output is 2H x 2W.
    h: u32,
    w: u32,
    /// backward_weight: input rows (of all N * H) per slice of the reduction.
    rows_per_split: u32,
    _pad: u32,
}

impl Params {
    fn new(inp: Shape, c_out: usize, total: usize) -> Params {
        Params {
            total: total as u32,
            n: inp.n as u32,
            c_in: inp.c as u32,
            c_out: c_out as u32,
            h: inp.h as u32,
            w: inp.w as u32,
            rows_per_split: 0,
            _pad: 0,
        }
    }
}

const FORWARD: Kernel = Kernel {
    shader: shader!("conv_transpose.wgsl"),
    entry: "forward",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

const BACKWARD_INPUT: Kernel = Kernel {
    shader: shader!("conv_transpose.wgsl"),
    entry: "backward_input",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

/// inp, dout -> partial sums of dweight and dbias, one per slice of rows.
const BACKWARD_WEIGHT: Kernel = Kernel {
    shader: shader!("conv_transpose.wgsl"),
    entry: "backward_weight",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
};

/// Input and output channels per invocation of backward_weight (`BW_CI`, `BW_CO` in the
/// shader).
const BW_BLOCK: usize = 4;
/// Invocations per workgroup of backward_weight (`WG_BW`): few, so that the small
/// layers' few channel blocks still spread over several workgroups.
const BW_WORKGROUP: u32 = 32;
/// About this many input pixels per invocation of backward_weight: the reduction is cut
/// into slices of whole rows, so that no invocation walks a whole large image (GPU
/// watchdogs end dispatches that run for seconds) and more workgroups share the work.
const BW_PIXELS_PER_SLICE: usize = 4096;

/// The output shape for input `inp` and `c_out` output channels: [N, C_out, 2H, 2W].
pub fn out_shape(inp: Shape, c_out: usize) -> Shape {
    Shape::new(inp.n, c_out, 2 * inp.h, 2 * inp.w)
}

/// The weight shape for `c_in` input and `c_out` output channels: [C_in, C_out, 2, 2].
pub fn weight_shape(c_in: usize, c_out: usize) -> Shape {
    Shape::new(c_in, c_out, 2, 2)
}

/// Checks `weight` against `inp`; returns C_out.
fn check_weight(op: &'static str, inp: Shape, weight: Shape) -> Result<usize> {
    let c_out = weight.c;
    if weight != weight_shape(inp.c, c_out) {
        return Err(Error::shape(
            op,
            format!(
                "weight {weight} does not fit input {inp}: expected [C_in = {}, C_out, 2, 2]",
                inp.c
            ),
        ));
    }
    Ok(c_out)
}

/// Checks that a bias (or its gradient), `name`, has C_out elements.
fn check_bias(op: &'static str, name: &str, bias: Shape, c_out: usize) -> Result<()> {
    if bias != Shape::vector(c_out) {
        return Err(Error::shape(
            op,
            format!("{name} {bias} does not fit C_out = {c_out}: expected [1, 1, 1, {c_out}]"),
        ));
    }
    Ok(())
}

/// out = conv_transpose_2x2_stride2(inp, weight) + bias: [N, C_out, 2H, 2W].
pub fn forward(gpu: &Gpu, inp: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    forward_with(gpu, ConvAlgo::default(), inp, weight, bias)
}

/// [`forward`] with the variant `algo`: [`ConvAlgo::Direct`] runs this module's kernels
/// (variant 1), the GEMM variants the convolution's kernels (see [`super::conv2d`]).
pub fn forward_with(
    gpu: &Gpu,
    algo: ConvAlgo,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "conv-transpose";
    let c_out = check_weight(OP, inp.shape(), weight.shape())?;
    check_bias(OP, "bias", bias.shape(), c_out)?;
    let out = Tensor::empty(gpu, out_shape(inp.shape(), c_out), "conv-transpose out")?;
    if conv2d::upconv_forward(gpu, algo, inp, weight, bias, &out)? {
        return Ok(out);
    }
    gpu.dispatch(
        &FORWARD,
        &[],
        &Params::new(inp.shape(), c_out, out.numel()),
        &[inp.buffer(), weight.buffer(), bias.buffer(), out.buffer()],
        gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE),
    )?;
    Ok(out)
}

/// Returns `dinp` (written) and accumulates `dweight += ...`, `dbias += ...`, from the
/// forward's `inp` and `weight` and the gradient `dout` of its output.
pub fn backward(
    gpu: &Gpu,
    inp: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
) -> Result<Tensor> {
    backward_with(gpu, ConvAlgo::default(), inp, weight, dout, dweight, dbias)
}

/// [`backward`] with the variant `algo` (see [`forward_with`]).
pub fn backward_with(
    gpu: &Gpu,
    algo: ConvAlgo,
    inp: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "conv-transpose backward";
    let c_out = check_weight(OP, inp.shape(), weight.shape())?;
    let want_dout = out_shape(inp.shape(), c_out);
    if dout.shape() != want_dout {
        return Err(Error::shape(
            OP,
            format!(
                "dout has shape {} but the forward's output had {want_dout}",
                dout.shape()
            ),
        ));
    }
    if dweight.shape() != weight.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "dweight has shape {} but weight has {}",
                dweight.shape(),
                weight.shape()
            ),
        ));
    }
    check_bias(OP, "dbias", dbias.shape(), c_out)?;

    let dinp = Tensor::empty(gpu, inp.shape(), "conv-transpose dinp")?;
    if conv2d::upconv_backward(gpu, algo, inp, weight, dout, &dinp, dweight, dbias)? {
        return Ok(dinp);
    }
    gpu.dispatch(
        &BACKWARD_INPUT,
        &[],
        &Params::new(inp.shape(), c_out, dinp.numel()),
        &[dout.buffer(), weight.buffer(), dinp.buffer()],
        gpu.grid_1d(dinp.numel() as u64, WORKGROUP_SIZE),
    )?;
    // One invocation per block of 4 x 4 (ci, co) channels and slice of rows; dbias in the
    // same pass. Then the slices' partial sums are added in order.
    let i = inp.shape();
    let rows = i.n * i.h;
    let max_splits = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let rows_per_split = (BW_PIXELS_PER_SLICE / i.w)
        .max(rows.div_ceil(max_splits))
        .clamp(1, rows);
    let splits = rows.div_ceil(rows_per_split);
    let partial_w = Tensor::empty(
        gpu,
        Shape::new(splits, 1, 1, dweight.numel()),
        "conv-transpose dweight partial sums",
    )?;
    let partial_b = Tensor::empty(
        gpu,
        Shape::new(splits, 1, 1, c_out),
        "conv-transpose dbias partial sums",
    )?;
    let blocks = i.c.div_ceil(BW_BLOCK) * c_out.div_ceil(BW_BLOCK);
    let mut params = Params::new(i, c_out, blocks);
    params.rows_per_split = rows_per_split as u32;
    let [x, y, _] = gpu.grid_1d(blocks as u64, BW_WORKGROUP);
    gpu.dispatch(
        &BACKWARD_WEIGHT,
        &[("WG_BW", f64::from(BW_WORKGROUP))],
        &params,
        &[
            inp.buffer(),
            dout.buffer(),
            partial_w.buffer(),
            partial_b.buffer(),
        ],
        [x, y, splits as u32],
    )?;
    add_split_sums(gpu, &partial_w, splits, dweight)?;
    add_split_sums(gpu, &partial_b, splits, dbias)?;
    Ok(dinp)
}
