//! The layers both networks are built from — a convolution and a 2x2 up-convolution, each
//! with its parameters — and their seeded initialisation.

use std::borrow::Borrow;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::param::{he_normal, Param};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::conv2d::{self, Conv2d, Padding};
use crate::ops::conv_transpose;
use crate::tensor::{Shape, Tensor};

/// A convolution with its parameters.
pub(crate) struct ConvLayer {
    pub conv: Conv2d,
    pub weight: Param,
    pub bias: Param,
}

/// The 2x2 stride-2 up-convolution into a level from the level below.
pub(crate) struct UpLayer {
    pub weight: Param,
    pub bias: Param,
}

/// The 3x3 convolution + ReLU of every level.
pub(crate) fn conv3x3(padding: Padding) -> Conv2d {
    Conv2d {
        kernel: 3,
        padding,
        relu: true,
    }
}

/// The 1x1 convolution that maps features to class scores.
pub(crate) const HEAD: Conv2d = Conv2d {
    kernel: 1,
    padding: Padding::Valid,
    relu: false,
};

impl ConvLayer {
    pub fn params(&self) -> [&Param; 2] {
        [&self.weight, &self.bias]
    }

    pub fn forward(&self, gpu: &Gpu, inp: &Tensor) -> Result<Tensor> {
        conv2d::forward(gpu, &self.conv, inp, &self.weight.value, &self.bias.value)
    }

    /// Accumulates the parameter gradients and returns dinp. A `dout` given by value is
    /// dropped as soon as it has been read (see [`conv2d::backward`]).
    pub fn backward(
        &self,
        gpu: &Gpu,
        inp: &Tensor,
        out: &Tensor,
        dout: impl Borrow<Tensor>,
    ) -> Result<Tensor> {
        Ok(self
            .backward_with(gpu, inp, out, dout, true)?
            .expect("dinp was asked for"))
    }

    /// Accumulates the parameter gradients; returns dinp if `need_dinp`.
    pub fn backward_with(
        &self,
        gpu: &Gpu,
        inp: &Tensor,
        out: &Tensor,
        dout: impl Borrow<Tensor>,
        need_dinp: bool,
    ) -> Result<Option<Tensor>> {
        let (w, b) = (&self.weight, &self.bias);
        let grads = [&w.grad, &b.grad];
        conv2d::backward(gpu, &self.conv, inp, &w.value, out, dout, grads, need_dinp)
    }
}

impl UpLayer {
    pub fn params(&self) -> [&Param; 2] {
        [&self.weight, &self.bias]
    }

    pub fn forward(&self, gpu: &Gpu, below: &Tensor) -> Result<Tensor> {
        conv_transpose::forward(gpu, below, &self.weight.value, &self.bias.value)
    }

    /// Accumulates the parameter gradients and returns dbelow.
    pub fn backward(&self, gpu: &Gpu, below: &Tensor, dup: &Tensor) -> Result<Tensor> {
        let (w, b) = (&self.weight, &self.bias);
        conv_transpose::backward(gpu, below, &w.value, dup, &w.grad, &b.grad)
    }
}

/// Parameter initialisation from one seeded random stream: He-initialised weights
/// (std sqrt(2 / fan_in)) and zero biases.
pub(crate) struct Init<'a> {
    gpu: &'a Gpu,
    rng: ChaCha8Rng,
}

impl Init<'_> {
    pub fn new(gpu: &Gpu, seed: u64) -> Init<'_> {
        Init {
            gpu,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn he(&mut self, name: String, shape: Shape, fan_in: usize) -> Result<Param> {
        let values = he_normal(&mut self.rng, shape.numel(), fan_in);
        Param::new(self.gpu, name, shape, &values)
    }

    fn zeros(&mut self, name: String, len: usize) -> Result<Param> {
        Param::new(self.gpu, name, Shape::vector(len), &vec![0.0; len])
    }

    /// `{name}.weight` and `{name}.bias` of a convolution from `c_in` to `c_out` channels.
    pub fn conv(
        &mut self,
        name: &str,
        conv: Conv2d,
        c_in: usize,
        c_out: usize,
    ) -> Result<ConvLayer> {
        let fan_in = conv.kernel * conv.kernel * c_in;
        let weight_shape = conv.weight_shape(c_in, c_out);
        Ok(ConvLayer {
            conv,
            weight: self.he(format!("{name}.weight"), weight_shape, fan_in)?,
            bias: self.zeros(format!("{name}.bias"), c_out)?,
        })
    }

    /// `{name}.weight` and `{name}.bias` of a 2x2 up-convolution from `c_in` to `c_out`.
    pub fn up(&mut self, name: &str, c_in: usize, c_out: usize) -> Result<UpLayer> {
        // Each output of a stride-2 2x2 up-conv sees one tap per input channel, so its
        // fan-in is C_in.
        Ok(UpLayer {
            weight: self.he(
                format!("{name}.weight"),
                conv_transpose::weight_shape(c_in, c_out),
                c_in,
            )?,
            bias: self.zeros(format!("{name}.bias"), c_out)?,
        })
    }
}
