//! Variant 1: the direct convolution (`shaders/conv2d.wgsl`), one invocation per output
//! value (or input value, or weight element): the simple reference every faster variant is
//! checked against. The bias gradient, a plain reduction over pixels, serves every variant.

use crate::error::Result;
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::super::WORKGROUP_SIZE;
use super::Conv2d;

use Access::{Read, ReadWrite};

/// Mirrors `struct Params` in `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    k: u32,
    pad: u32,
    out_h: u32,
    out_w: u32,
    relu: u32,
    total: u32,
    _pad0: u32,
}

impl Params {
    fn new(conv: &Conv2d, inp: Shape, out: Shape, total: usize) -> Params {
        Params {
            n: inp.n as u32,
            c_in: inp.c as u32,
            h: inp.h as u32,
            w: inp.w as u32,
            c_out: out.c as u32,
            k: conv.kernel as u32,
            pad: conv.pad() as u32,
            out_h: out.h as u32,
            out_w: out.w as u32,
            relu: u32::from(conv.relu),
            total: total as u32,
            _pad0: 0,
        }
    }
}

const FORWARD: Kernel = Kernel {
    shader: shader!("conv2d.wgsl"),
    entry: "forward",
    bindings: &[Read, Read, Read, ReadWrite], // inp, weight, bias, out
};
const BACKWARD_INPUT: Kernel = Kernel {
    shader: shader!("conv2d.wgsl"),
    entry: "backward_input",
    bindings: &[Read, Read, Read, ReadWrite], // out, dout, weight, dinp
};
const BACKWARD_WEIGHT: Kernel = Kernel {
    shader: shader!("conv2d.wgsl"),
    entry: "backward_weight",
    bindings: &[Read, Read, Read, ReadWrite], // out, dout, inp, dweight
};
const BACKWARD_BIAS: Kernel = Kernel {
    shader: shader!("conv2d.wgsl"),
    entry: "backward_bias",
    bindings: &[Read, Read, ReadWrite], // out, dout, dbias
};

/// out = conv(inp) + bias (ReLU if fused), one invocation per output value.
pub(super) fn forward(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let params = Params::new(conv, inp.shape(), out.shape(), out.numel());
    let grid = gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE);
    let buffers = [inp.buffer(), weight.buffer(), bias.buffer(), out.buffer()];
    gpu.dispatch(&FORWARD, &[], &params, &buffers, grid)
}

/// dinp (written), one invocation per input value.
pub(super) fn backward_input(
    gpu: &Gpu,
    conv: &Conv2d,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dinp: &Tensor,
) -> Result<()> {
    let params = Params::new(conv, dinp.shape(), out.shape(), dinp.numel());
    let grid = gpu.grid_1d(dinp.numel() as u64, WORKGROUP_SIZE);
    let buffers = [out.buffer(), dout.buffer(), weight.buffer(), dinp.buffer()];
    gpu.dispatch(&BACKWARD_INPUT, &[], &params, &buffers, grid)
}

/// dweight += ..., one workgroup per weight element reducing over the pixels.
pub(super) fn backward_weight(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
) -> Result<()> {
    let params = Params::new(conv, inp.shape(), out.shape(), dweight.numel());
    let grid = gpu.grid_1d(dweight.numel() as u64, 1);
    let buffers = [out.buffer(), dout.buffer(), inp.buffer(), dweight.buffer()];
    gpu.dispatch(&BACKWARD_WEIGHT, &[], &params, &buffers, grid)
}

/// dbias[co] += sum over pixels of dout * relu'(out) (relu' only where `conv` has a ReLU;
/// `out` is then the forward's output): one workgroup per channel. Every variant uses it.
pub(super) fn backward_bias(
    gpu: &Gpu,
    conv: &Conv2d,
    inp_shape: Shape,
    out: &Tensor,
    dout: &Tensor,
    dbias: &Tensor,
) -> Result<()> {
    let params = Params::new(conv, inp_shape, dout.shape(), dbias.numel());
    let buffers = [out.buffer(), dout.buffer(), dbias.buffer()];
    let channels = dout.shape().c as u32;
    gpu.dispatch(&BACKWARD_BIAS, &[], &params, &buffers, [channels, 1, 1])
}
