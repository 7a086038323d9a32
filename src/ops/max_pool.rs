//! 2x2 max-pool with stride 2 (U-Net's down-sampling step).
//!
//! The forward keeps, for backward, the index of the winning element of every window
//! ([`MaxPoolSaved::argmax`]) and the input's shape. The backward routes each output
//! gradient to the element that won its window: one thread per window, which reads dout
//! and argmax once and writes the window's four input gradients (windows do not overlap,
//! so no atomics).
//!
//! Every max-pool input must have an even height and width; an odd one is an error, never
//! a silent truncation (in U-Net it means the tile size is not valid).

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Elements the launch covers: output elements, i.e. windows (forward and backward).
    total: u32,
    inp_h: u32,
    inp_w: u32,
    out_h: u32,
    out_w: u32,
}

impl Params {
    fn new(inp: Shape, total: usize) -> Params {
        let out = out_shape(inp);
        Params {
            total: total as u32,
            inp_h: inp.h as u32,
            inp_w: inp.w as u32,
            out_h: out.h as u32,
            out_w: out.w as u32,
        }
    }
}

const FORWARD: Kernel = Kernel {
    shader: shader!("max_pool.wgsl"),
    entry: "forward",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};

const BACKWARD: Kernel = Kernel {
    shader: shader!("max_pool.wgsl"),
    entry: "backward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

const BACKWARD_ADD: Kernel = Kernel {
    shader: shader!("max_pool.wgsl"),
    entry: "backward_add",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

/// What the forward keeps for the backward.
#[derive(Debug)]
pub struct MaxPoolSaved {
    /// u32, [N, C, H/2, W/2]: which of the window's four elements won, numbered in
    /// row-major order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
    /// (k = 2a + b for the element at row offset a, column offset b). On a tie the
    /// first maximum in that order wins.
    pub argmax: Tensor,
    /// [N, C, H, W]: the shape of the forward's input, which the backward's `dinp` has.
    pub inp_shape: Shape,
}

/// The output shape for an input of shape `inp` (whose H and W are even): [N, C, H/2, W/2].
pub fn out_shape(inp: Shape) -> Shape {
    Shape::new(inp.n, inp.c, inp.h / 2, inp.w / 2)
}

fn check_even(inp: Shape) -> Result<()> {
    if !inp.h.is_multiple_of(2) || !inp.w.is_multiple_of(2) {
        return Err(Error::shape(
            "max-pool",
            format!(
                "input {inp} has an odd height or width, but every max-pool input must have an \
                 even size: choose a valid tile size (for the paper's U-Net, e.g. 572x572)"
            ),
        ));
    }
    Ok(())
}

/// out[n, c, i, j] = max of the 2x2 window inp[n, c, 2i..2i+2, 2j..2j+2], and the argmax
/// the backward needs.
pub fn forward(gpu: &Gpu, inp: &Tensor) -> Result<(Tensor, MaxPoolSaved)> {
    let inp_shape = inp.shape();
    check_even(inp_shape)?;
    let out = Tensor::empty(gpu, out_shape(inp_shape), "max-pool out")?;
    let argmax = Tensor::empty_u32(gpu, out.shape(), "max-pool argmax")?;
    gpu.dispatch(
        &FORWARD,
        &[],
        &Params::new(inp_shape, out.numel()),
        &[inp.buffer(), out.buffer(), argmax.buffer()],
        gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE),
    )?;
    Ok((out, MaxPoolSaved { argmax, inp_shape }))
}

/// dinp[n, c, y, x] = dout[n, c, y/2, x/2] where (y, x) won its window, else 0.
/// Writes `dinp`.
pub fn backward(gpu: &Gpu, dout: &Tensor, saved: &MaxPoolSaved) -> Result<Tensor> {
    check_dout(dout, saved)?;
    let dinp = Tensor::empty(gpu, saved.inp_shape, "max-pool dinp")?;
    launch_backward(gpu, &BACKWARD, dout, saved, &dinp)?;
    Ok(dinp)
}

/// As [`backward`], but adds into `dinp` (`dinp += ...`): for an input that also feeds
/// another path (a U-Net skip connection) whose gradient was written into `dinp` first.
pub fn backward_add(gpu: &Gpu, dout: &Tensor, saved: &MaxPoolSaved, dinp: &Tensor) -> Result<()> {
    check_dout(dout, saved)?;
    if dinp.shape() != saved.inp_shape {
        return Err(Error::shape(
            "max-pool backward",
            format!(
                "dinp has shape {} but the forward's input had {}",
                dinp.shape(),
                saved.inp_shape
            ),
        ));
    }
    launch_backward(gpu, &BACKWARD_ADD, dout, saved, dinp)
}

fn check_dout(dout: &Tensor, saved: &MaxPoolSaved) -> Result<()> {
    let want = out_shape(saved.inp_shape);
    if dout.shape() != want {
        return Err(Error::shape(
            "max-pool backward",
            format!(
                "dout has shape {} but the forward's output had {want}",
                dout.shape()
            ),
        ));
    }
    Ok(())
}

fn launch_backward(
    gpu: &Gpu,
    kernel: &Kernel,
    dout: &Tensor,
    saved: &MaxPoolSaved,
    dinp: &Tensor,
) -> Result<()> {
    gpu.dispatch(
        kernel,
        &[],
        &Params::new(saved.inp_shape, dout.numel()),
        &[dout.buffer(), saved.argmax.buffer(), dinp.buffer()],
        gpu.grid_1d(dout.numel() as u64, WORKGROUP_SIZE),
    )
}
