//! y += alpha * x: the sum of a tensor's gradients from several paths (U-Net++'s dense
//! skip connections), and the average of several heads' outputs.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::Tensor;

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    alpha: f32,
}

const AXPY: Kernel = Kernel {
    shader: shader!("axpy.wgsl"),
    entry: "axpy",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// y[i] += alpha * x[i] for every element; `x` and `y` must have the same shape.
pub fn axpy(gpu: &Gpu, y: &Tensor, alpha: f32, x: &Tensor) -> Result<()> {
    if x.shape() != y.shape() {
        return Err(Error::shape(
            "axpy",
            format!("x {} and y {} differ in shape", x.shape(), y.shape()),
        ));
    }
    let params = Params {
        total: y.numel() as u32,
        alpha,
    };
    let grid = gpu.grid_1d(y.numel() as u64, WORKGROUP_SIZE);
    gpu.dispatch(&AXPY, &[], &params, &[x.buffer(), y.buffer()], grid)
}
