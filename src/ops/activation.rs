//! ReLU backward (for a ReLU not fused into a conv) and dropout.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::Tensor;

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    seed: u32,
    drop_threshold: u32,
    scale: f32,
}

const RELU_BACKWARD: Kernel = Kernel {
    shader: shader!("activation.wgsl"),
    entry: "relu_backward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

const DROPOUT: Kernel = Kernel {
    shader: shader!("activation.wgsl"),
    entry: "dropout",
    bindings: &[Access::Read, Access::ReadWrite],
};

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!("shapes differ: {} vs {}", a.shape(), b.shape()),
        ));
    }
    Ok(())
}

/// dinp = dout * (out > 0), where `out` is the ReLU's output. Writes `dinp`.
pub fn relu_backward(gpu: &Gpu, out: &Tensor, dout: &Tensor) -> Result<Tensor> {
    same_shape("relu backward", out, dout)?;
    let dinp = Tensor::empty(gpu, out.shape(), "relu dinp")?;
    let params = Params {
        total: out.numel() as u32,
        seed: 0,
        drop_threshold: 0,
        scale: 1.0,
    };
    let grid = gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE);
    gpu.dispatch(
        &RELU_BACKWARD,
        &[],
        &params,
        &[out.buffer(), dout.buffer(), dinp.buffer()],
        grid,
    )?;
    Ok(dinp)
}

/// What dropout's backward needs: the mask is a pure function of (seed, element index),
/// so only the seed and the rate are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    pub seed: u32,
    /// The probability of dropping an element.
    pub p: f32,
}

impl DropoutMask {
    pub fn new(seed: u32, p: f32) -> Result<DropoutMask> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::shape(
                "dropout",
                format!("rate {p} is outside [0, 1)"),
            ));
        }
        Ok(DropoutMask { seed, p })
    }

    /// Elements whose hash falls below this are dropped: p * 2^32.
    fn drop_threshold(&self) -> u32 {
        (f64::from(self.p) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32
    }

    /// Whether element `i` is kept: the host mirror of `keep` in activation.wgsl.
    pub fn keeps(&self, i: u32) -> bool {
        pcg(i ^ pcg(self.seed)) >= self.drop_threshold()
    }

    /// The factor a kept element is multiplied by, 1 / (1 - p).
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }

    fn apply(&self, gpu: &Gpu, src: &Tensor, name: &str) -> Result<Tensor> {
        let dst = Tensor::empty(gpu, src.shape(), name)?;
        let params = Params {
            total: src.numel() as u32,
            seed: self.seed,
            drop_threshold: self.drop_threshold(),
            scale: self.scale(),
        };
        let grid = gpu.grid_1d(src.numel() as u64, WORKGROUP_SIZE);
        gpu.dispatch(&DROPOUT, &[], &params, &[src.buffer(), dst.buffer()], grid)?;
        Ok(dst)
    }
}

/// out = inp * keep / (1 - p).
pub fn dropout_forward(gpu: &Gpu, inp: &Tensor, mask: DropoutMask) -> Result<Tensor> {
    mask.apply(gpu, inp, "dropout out")
}

/// dinp = dout * keep / (1 - p), with the forward's mask. Writes `dinp`.
pub fn dropout_backward(gpu: &Gpu, dout: &Tensor, mask: DropoutMask) -> Result<Tensor> {
    mask.apply(gpu, dout, "dropout dinp")
}

/// PCG hash, the same as `pcg` in activation.wgsl.
fn pcg(x: u32) -> u32 {
    let state = x.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}
