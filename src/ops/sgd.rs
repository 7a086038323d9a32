//! SGD with momentum (the paper's optimiser, momentum 0.99), PyTorch's formulation:
//!
//! ```text
//! g' = g + weight_decay * p
//! v  = momentum * v + g'
//! p  = p - lr * v
//! ```
//!
//! One pass, in place on the parameter and its velocity. The velocity starts at zero
//! (`Tensor::zeros`), which makes the first step `v = g'`, as in PyTorch. The step does
//! not zero the gradient: the caller zeroes its accumulators with `Tensor::zero` before
//! the next backward (parameter gradients accumulate, see `ops`).

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::Tensor;

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

/// param (read-write), grad (read), velocity (read-write).
const SGD_STEP: Kernel = Kernel {
    shader: shader!("sgd.wgsl"),
    entry: "sgd_step",
    bindings: &[Access::ReadWrite, Access::Read, Access::ReadWrite],
};

/// The optimiser's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate, > 0.
    pub lr: f32,
    /// In [0, 1).
    pub momentum: f32,
    /// L2 penalty added to the gradient, >= 0.
    pub weight_decay: f32,
}

impl Default for Sgd {
    /// Momentum 0.99 as in the paper; no weight decay (the paper mentions none).
    ///
    /// The paper gives no learning rate. 0.01 is the usual starting point for SGD with
    /// momentum on a pixel-mean loss such as ours; note that with momentum 0.99 the
    /// steady-state step is lr / (1 - momentum) = 100 * lr times the gradient, so lower
    /// `lr` first if training diverges.
    fn default() -> Sgd {
        Sgd {
            lr: 0.01,
            momentum: 0.99,
            weight_decay: 0.0,
        }
    }
}

impl Sgd {
    /// Checks the hyperparameters: lr > 0 and finite, 0 <= momentum < 1,
    /// weight_decay >= 0 and finite.
    pub fn validate(&self) -> Result<()> {
        let problem = if !(self.lr.is_finite() && self.lr > 0.0) {
            Some(format!(
                "learning rate {} must be finite and > 0: give --lr a value such as 0.001",
                self.lr
            ))
        } else if !(0.0..1.0).contains(&self.momentum) {
            Some(format!(
                "momentum {} must be in [0, 1): give --momentum a value such as the paper's 0.99",
                self.momentum
            ))
        } else if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            Some(format!(
                "weight decay {} must be finite and >= 0: give --weight-decay 0 or a small \
                 positive value",
                self.weight_decay
            ))
        } else {
            None
        };
        match problem {
            Some(msg) => Err(Error::shape("sgd", msg)),
            None => Ok(()),
        }
    }

    /// One update of `param` and `velocity` in place from `grad` (all the same shape).
    /// Records the work; nothing is read back.
    pub fn step(&self, gpu: &Gpu, param: &Tensor, grad: &Tensor, velocity: &Tensor) -> Result<()> {
        self.validate()?;
        for (what, t) in [("gradient", grad), ("velocity", velocity)] {
            if t.shape() != param.shape() {
                return Err(Error::shape(
                    "sgd",
                    format!(
                        "{what} has shape {} but the parameter has {}",
                        t.shape(),
                        param.shape()
                    ),
                ));
            }
        }
        let params = Params {
            total: param.numel() as u32,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
        };
        let grid = gpu.grid_1d(param.numel() as u64, WORKGROUP_SIZE);
        gpu.dispatch(
            &SGD_STEP,
            &[],
            &params,
            &[param.buffer(), grad.buffer(), velocity.buffer()],
            grid,
        )
    }
}
