//! Fill a tensor with one value (tests poison outputs with NaN through it).

use crate::error::Result;
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::Tensor;

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    value_bits: u32,
}

const FILL: Kernel = Kernel {
    shader: shader!("fill.wgsl"),
    entry: "fill",
    bindings: &[Access::ReadWrite],
};

/// out[i] = value for every element of `out` (f32 bits, whatever the tensor's type).
pub fn fill(gpu: &Gpu, out: &Tensor, value: f32) -> Result<()> {
    let params = Params {
        total: out.numel() as u32,
        value_bits: value.to_bits(),
    };
    let grid = gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE);
    gpu.dispatch(&FILL, &[], &params, &[out.buffer()], grid)
}
