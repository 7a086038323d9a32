//! A trainable parameter: its value, its gradient accumulator and its momentum buffer.

use rand::Rng;
use rand_distr::{Distribution, Normal};

use crate::error::Result;
use crate::gpu::Gpu;
use crate::tensor::{Shape, Tensor};

pub struct Param {
    /// PyTorch-style name, e.g. `enc0.conv1.weight`.
    pub name: String,
    pub value: Tensor,
    /// dLoss/dvalue, accumulated by the backward; zeroed before each step.
    pub grad: Tensor,
    /// SGD's momentum buffer.
    pub velocity: Tensor,
}

impl Param {
    /// A parameter holding `values`, with zero gradient and zero momentum. All three
    /// live as long as the model, so their buffers are their exact sizes.
    pub fn new(gpu: &Gpu, name: String, shape: Shape, values: &[f32]) -> Result<Param> {
        Ok(Param {
            value: Tensor::lasting_from_slice(gpu, shape, values, &name)?,
            grad: Tensor::lasting_zeros(gpu, shape, &format!("{name} grad"))?,
            velocity: Tensor::lasting_zeros(gpu, shape, &format!("{name} momentum"))?,
            name,
        })
    }

    pub fn shape(&self) -> Shape {
        self.value.shape()
    }
}

/// He initialisation (the paper's): Gaussian with std sqrt(2 / fan_in), where fan_in is
/// k * k * C_in, the inputs that feed one output.
pub fn he_normal(rng: &mut impl Rng, len: usize, fan_in: usize) -> Vec<f32> {
    let normal = Normal::new(0.0, (2.0 / fan_in as f64).sqrt()).expect("std is positive");
    (0..len).map(|_| normal.sample(rng) as f32).collect()
}
