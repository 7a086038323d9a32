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
    count_first: u32,
    _pad: u32,
}

const SUM_SPLITS: Kernel = Kernel {
    shader: shader!("sum_splits.wgsl"),
    entry: "sum_splits",
    bindings: &[Access::Read, Access::ReadWrite], // partial, dst
};
const SUM_SPLITS_PAIR: Kernel = Kernel {
    shader: shader!("sum_splits.wgsl"),
    entry: "sum_splits_pair",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite], // partial, dst, dst2
};

/// dst[e] += sum over s of partial[s * dst.numel() + e], for `splits` slices. Accumulates.
pub(crate) fn add_split_sums(
    gpu: &Gpu,
    partial: &Tensor,
    splits: usize,
    dst: &Tensor,
) -> Result<()> {
    let params = check(partial, splits, dst.numel())?;
    let grid = gpu.grid_1d(params.count as u64, WORKGROUP_SIZE);
    let buffers = [partial.buffer(), dst.buffer()];
    gpu.dispatch(&SUM_SPLITS, &[], &params, &buffers, grid)
}

/// [`add_split_sums`] of two results reduced together, each split's partial sums holding
/// `first`'s values and then `second`'s: one pass instead of two. Accumulates.
pub(crate) fn add_split_sums_pair(
    gpu: &Gpu,
    partial: &Tensor,
    splits: usize,
    [first, second]: [&Tensor; 2],
) -> Result<()> {
    let mut params = check(partial, splits, first.numel() + second.numel())?;
    params.count_first = first.numel() as u32;
    let grid = gpu.grid_1d(params.count as u64, WORKGROUP_SIZE);
    let buffers = [partial.buffer(), first.buffer(), second.buffer()];
    gpu.dispatch(&SUM_SPLITS_PAIR, &[], &params, &buffers, grid)
}

/// The params for `splits` slices of `count` values each, checked against `partial`.
fn check(partial: &Tensor, splits: usize, count: usize) -> Result<Params> {
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
    Ok(Params {
        count: count as u32,
        splits: splits as u32,
        count_first: count as u32,
        _pad: 0,
    })
}
