//! 2-D convolution, k x k, stride 1, with bias and an optional fused ReLU.
//!
//! Weights are PyTorch's Conv2d layout `[C_out, C_in, k, k]`, bias `[C_out]`.
//! The forward keeps nothing beyond its own output: with a fused ReLU, the backward reads
//! the ReLU's derivative off `out` (out > 0), so the caller passes `out` back in.
//!
//! Backward is two launchers, so that a layer whose input needs no gradient (the first
//! conv of the network) skips [`backward_input`]:
//! - [`backward_input`] **writes** dinp;
//! - [`backward_params`] **accumulates** into dweight and dbias.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::WORKGROUP_SIZE;

/// Zero padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// No padding: the output shrinks by k - 1 (the paper's U-Net).
    Valid,
    /// (k - 1) / 2 on every side: the output keeps the input's size (U-Net++).
    Same,
}

/// A convolution's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    pub kernel: usize,
    pub padding: Padding,
    /// Apply max(x, 0) to the output, and its derivative in the backward.
    pub relu: bool,
}

impl Conv2d {
    /// Zero padding on each side, in pixels.
    pub fn pad(&self) -> usize {
        match self.padding {
            Padding::Valid => 0,
            Padding::Same => (self.kernel - 1) / 2,
        }
    }

    /// The output height for an input of height `h`, if there is one.
    pub fn out_size(&self, size: usize) -> Option<usize> {
        (size + 2 * self.pad() + 1)
            .checked_sub(self.kernel)
            .filter(|&s| s > 0)
    }

    /// The weight shape for `c_in` -> `c_out` channels: `[C_out, C_in, k, k]`.
    pub fn weight_shape(&self, c_in: usize, c_out: usize) -> Shape {
        Shape::new(c_out, c_in, self.kernel, self.kernel)
    }

    /// The output shape for `inp`, with `c_out` channels.
    pub fn out_shape(&self, inp: Shape, c_out: usize) -> Result<Shape> {
        match (self.out_size(inp.h), self.out_size(inp.w)) {
            (Some(h), Some(w)) => Ok(Shape::new(inp.n, c_out, h, w)),
            _ => Err(Error::shape(
                "conv2d",
                format!(
                    "input {inp} is smaller than the {k}x{k} kernel with padding {p}",
                    k = self.kernel,
                    p = self.pad()
                ),
            )),
        }
    }

    /// Multiply-adds of the forward pass (the backward's two passes cost the same each).
    pub fn macs(&self, inp: Shape, c_out: usize) -> Result<u64> {
        let out = self.out_shape(inp, c_out)?;
        Ok((out.numel() * inp.c * self.kernel * self.kernel) as u64)
    }

    fn params(&self, inp: Shape, out: Shape, total: usize) -> Params {
        Params {
            n: inp.n as u32,
            c_in: inp.c as u32,
            h: inp.h as u32,
            w: inp.w as u32,
            c_out: out.c as u32,
            k: self.kernel as u32,
            pad: self.pad() as u32,
            out_h: out.h as u32,
            out_w: out.w as u32,
            relu: u32::from(self.relu),
            total: total as u32,
            _pad0: 0,
        }
    }

    /// Checks `weight` against `inp` and returns the output shape.
    fn check(&self, inp: &Tensor, weight: &Tensor) -> Result<Shape> {
        if self.kernel == 0 || (self.padding == Padding::Same && self.kernel.is_multiple_of(2)) {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "kernel size {} with {:?} padding",
                    self.kernel, self.padding
                ),
            ));
        }
        let c_out = weight.shape().n;
        let expected = self.weight_shape(inp.shape().c, c_out);
        if weight.shape() != expected {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "weight {} does not fit input {} (expected {expected})",
                    weight.shape(),
                    inp.shape()
                ),
            ));
        }
        self.out_shape(inp.shape(), c_out)
    }
}

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

use Access::{Read, ReadWrite};

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

fn check_len(what: &str, t: &Tensor, len: usize) -> Result<()> {
    if t.numel() != len {
        return Err(Error::shape(
            "conv2d",
            format!(
                "{what} has shape {} but {len} elements are needed",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// out = conv(inp, weight) + bias, then ReLU if fused.
pub fn forward(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    let out_shape = conv.check(inp, weight)?;
    check_len("bias", bias, out_shape.c)?;
    let out = Tensor::empty(gpu, out_shape, "conv2d out")?;
    let params = conv.params(inp.shape(), out_shape, out_shape.numel());
    let grid = gpu.grid_1d(out_shape.numel() as u64, WORKGROUP_SIZE);
    let buffers = [inp.buffer(), weight.buffer(), bias.buffer(), out.buffer()];
    gpu.dispatch(&FORWARD, &[], &params, &buffers, grid)?;
    Ok(out)
}

/// The gradient with respect to the input. Writes dinp.
pub fn backward_input(
    gpu: &Gpu,
    conv: &Conv2d,
    inp_shape: Shape,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
) -> Result<Tensor> {
    let out_shape = check_backward(conv, inp_shape, weight, out, dout)?;
    let dinp = Tensor::empty(gpu, inp_shape, "conv2d dinp")?;
    let params = conv.params(inp_shape, out_shape, inp_shape.numel());
    let grid = gpu.grid_1d(inp_shape.numel() as u64, WORKGROUP_SIZE);
    let buffers = [out.buffer(), dout.buffer(), weight.buffer(), dinp.buffer()];
    gpu.dispatch(&BACKWARD_INPUT, &[], &params, &buffers, grid)?;
    Ok(dinp)
}

/// The gradients with respect to weight and bias. Accumulates into dweight and dbias.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
) -> Result<()> {
    let c_out = out.shape().c;
    let weight_shape = conv.weight_shape(inp.shape().c, c_out);
    check_len("dweight", dweight, weight_shape.numel())?;
    check_len("dbias", dbias, c_out)?;
    let out_shape = conv.out_shape(inp.shape(), c_out)?;
    check_same("out", out, out_shape)?;
    check_same("dout", dout, out_shape)?;

    let params = conv.params(inp.shape(), out_shape, weight_shape.numel());
    // One workgroup per weight element.
    let grid = gpu.grid_1d(weight_shape.numel() as u64, 1);
    let buffers = [out.buffer(), dout.buffer(), inp.buffer(), dweight.buffer()];
    gpu.dispatch(&BACKWARD_WEIGHT, &[], &params, &buffers, grid)?;

    // One workgroup per output channel.
    let buffers = [out.buffer(), dout.buffer(), dbias.buffer()];
    gpu.dispatch(&BACKWARD_BIAS, &[], &params, &buffers, [c_out as u32, 1, 1])
}

fn check_same(what: &str, t: &Tensor, shape: Shape) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::shape(
            "conv2d backward",
            format!(
                "{what} has shape {} but the forward's output is {shape}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

fn check_backward(
    conv: &Conv2d,
    inp_shape: Shape,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
) -> Result<Shape> {
    let c_out = weight.shape().n;
    if weight.shape() != conv.weight_shape(inp_shape.c, c_out) {
        return Err(Error::shape(
            "conv2d backward",
            format!("weight {} does not fit input {inp_shape}", weight.shape()),
        ));
    }
    let out_shape = conv.out_shape(inp_shape, c_out)?;
    check_same("out", out, out_shape)?;
    check_same("dout", dout, out_shape)?;
    Ok(out_shape)
}
