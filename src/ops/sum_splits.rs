//! The second pass of a split reduction: `dst += partial[0] + partial[1] + ...`, the
//! slices' partial sums added in slice order (deterministic, no atomics). The weight
//! gradients cut their reduction over pixels into slices, so that no invocation walks a
//! whole image (GPU watchdogs end long-running dispatches) and more workgroups run.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::Tensor;

use super::WORKGROUP_SIZE;

/// Mirrors `struct Params` in `shaders/sum_splits.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    splits: u32,
}

const SUM_SPLITS: Kernel = Kernel {
    shader: shader!("sum_splits.wgsl"),
    entry: "sum_splits",
    bindings: &[Access::Read, Access::ReadWrite], // partial, dst
};

/// dst[e] += sum over s of partial[s * dst.numel() + e], for `splits` slices. Accumulates.
pub(crate) fn add_split_sums(
    gpu: &Gpu,
    partial: &Tensor,
    splits: usize,
    dst: &Tensor,
) -> Result<()> {
    let count = dst.numel();
    if partial.numel() != splits * count {
        return Err(Error::shape(
            "sum of split reductions",
            format!(
                "{splits} partial sums of {count} elements need {} values, not {}",
                splits * count,
                partial.numel()
            ),
        ));
    }
    let params = Params {
        count: count as u32,
        splits: splits as u32,
    };
    let grid = gpu.grid_1d(count as u64, WORKGROUP_SIZE);
    gpu.dispatch(
        &SUM_SPLITS,
        &[],
        &params,
        &[partial.buffer(), dst.buffer()],
        grid,
    )
}
