//! 2-D convolution, k x k, stride 1, with bias and an optional fused ReLU.
//!
//! Weights are PyTorch's Conv2d layout `[C_out, C_in, k, k]`, bias `[C_out]`.
//! The forward keeps nothing beyond its own output: with a fused ReLU, the backward reads
//! the ReLU's derivative off `out` (out > 0), so the caller passes `out` back in.
//!
//! Backward is two launchers, so that a layer whose input needs no gradient (the first
//! conv of the network) skips [`backward_input`]:
//! - [`backward_input`] **writes** dinp;
//! - [`backward_params`] **accumulates** into dweight and dbias;
//! - [`backward`] runs the second and, if asked, the first in one call (what a model
//!   layer uses): on variant 2 both then read one padded copy of g = dout * relu'(out).
//!
//! Three implementations ([`ConvAlgo`]) sit behind the same launchers, one file each:
//! - variant 1, `direct.rs` ([`ConvAlgo::Direct`], `shaders/conv2d.wgsl`): one invocation
//!   per output value, the simple reference;
//! - variant 2, `gemm.rs` ([`ConvAlgo::Gemm`], `shaders/conv2d_gemm.wgsl`): an implicit GEMM
//!   with register tiles whose subgroups share the input window by shuffles, built for
//!   CPU-like devices (lavapipe), where loads are the cost;
//! - variant 3, `tiled.rs` ([`ConvAlgo::Tiled`], `shaders/conv2d_tiled.wgsl`): the
//!   GPU-class implicit GEMM, workgroup tiles staged through workgroup memory, no subgroup
//!   operations, so it runs on every backend (GL and WebGPU included).
//!
//! All are deterministic: the weight gradients of variants 2 and 3 split their pixel
//! reduction into slices whose partial sums a second pass adds in a fixed order.
//! The 2x2 up-convolution (`ops::conv_transpose`) runs on the GEMM variants too, as three
//! 1x1 GEMMs; [`upconv_forward`] and [`upconv_backward`] are its entry points here.
//!
//! [`forward`], [`backward_input`] and [`backward_params`] run [`ConvAlgo::Auto`]: the
//! device's default, or where autotuning is on ([`autotune`]) the variant and tiles timed
//! fastest for the shape; the `*_with` functions take the variant (benchmarks, tests).

pub mod autotune;
mod direct;
mod gemm;
mod tiled;

pub use gemm::GemmTiles;
pub use tiled::TiledTiles;

use self::autotune::{Problem, TunedPass};
use std::borrow::Borrow;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{Shape, Tensor};

/// Which implementation runs a convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// The device's default: variant 2 on CPU devices with subgroup operations (lavapipe,
    /// for which it is built), variant 3 everywhere else; or, with autotuning on
    /// ([`autotune`]), the choice timed fastest for the shape.
    #[default]
    Auto,
    /// Variant 1: direct, one invocation per output value (`shaders/conv2d.wgsl`).
    Direct,
    /// Variant 2: the subgroup implicit GEMM (`shaders/conv2d_gemm.wgsl`) with the default
    /// tiles for the device. Kernels larger than [`GemmTiles::MAX_KERNEL`], and devices
    /// without usable subgroup operations, run variant 1.
    Gemm,
    /// Variant 2 with explicit tile sizes (for tuning); an error where they cannot run.
    GemmTiled(GemmTiles),
    /// Variant 3: the workgroup-tiled implicit GEMM (`shaders/conv2d_tiled.wgsl`) with the
    /// default tiles for each pass's size.
    Tiled,
    /// Variant 3 with explicit tile sizes; an error where they cannot run.
    TiledWith(TiledTiles),
}

impl ConvAlgo {
    /// A short name for reports: "direct", "gemm" or "tiled" (what actually runs).
    pub fn name(&self) -> &'static str {
        match self {
            ConvAlgo::Direct => "direct",
            ConvAlgo::Auto => "auto",
            ConvAlgo::Gemm | ConvAlgo::GemmTiled(_) => "gemm",
            ConvAlgo::Tiled | ConvAlgo::TiledWith(_) => "tiled",
        }
    }

    /// What runs a k x k convolution with this choice on `gpu`. Explicit tiles that cannot
    /// run there are an error.
    fn variant(&self, gpu: &Gpu, kernel: usize) -> Result<Variant> {
        let refuse = |what: String, why: String| {
            Error::Config(format!(
                "conv2d: {what} cannot run a {kernel}x{kernel} kernel on {}: {why}; use \
                 ConvAlgo::Auto for the device's default",
                gpu.info().name
            ))
        };
        Ok(match self {
            ConvAlgo::Direct => Variant::Direct,
            ConvAlgo::Auto => {
                let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu;
                match GemmTiles::for_device(gpu, kernel) {
                    Some(tiles) if cpu => Variant::Gemm(tiles),
                    _ => Variant::Tiled(None),
                }
            }
            ConvAlgo::Gemm => {
                GemmTiles::for_device(gpu, kernel).map_or(Variant::Direct, Variant::Gemm)
            }
            ConvAlgo::GemmTiled(tiles) => match tiles.check(gpu, kernel) {
                Ok(()) => Variant::Gemm(*tiles),
                Err(why) => return Err(refuse(format!("GEMM tiles {tiles:?}"), why)),
            },
            ConvAlgo::Tiled => Variant::Tiled(None),
            ConvAlgo::TiledWith(tiles) => match tiles.check(gpu) {
                Ok(()) => Variant::Tiled(Some(*tiles)),
                Err(why) => return Err(refuse(format!("tiled-GEMM tiles {tiles:?}"), why)),
            },
        })
    }
}

/// The implementation a [`ConvAlgo`] resolves to on a device.
#[derive(Clone, Copy, Debug)]
enum Variant {
    Direct,
    Gemm(GemmTiles),
    /// Explicit tiles, or None for each pass's default.
    Tiled(Option<TiledTiles>),
}

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

/// out = conv(inp, weight) + bias, then ReLU if fused. Runs the default variant.
pub fn forward(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    forward_with(gpu, ConvAlgo::default(), conv, inp, weight, bias)
}

/// The gradient with respect to the input. Writes dinp. Runs the default variant.
pub fn backward_input(
    gpu: &Gpu,
    conv: &Conv2d,
    inp_shape: Shape,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
) -> Result<Tensor> {
    backward_input_with(gpu, ConvAlgo::default(), conv, inp_shape, weight, out, dout)
}

/// The gradients with respect to weight and bias. Accumulates into dweight and dbias.
/// Runs the default variant.
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
    backward_params_with(
        gpu,
        ConvAlgo::default(),
        conv,
        inp,
        out,
        dout,
        dweight,
        dbias,
    )
}

/// [`forward`] with the variant `algo`.
pub fn forward_with(
    gpu: &Gpu,
    algo: ConvAlgo,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<Tensor> {
    let out_shape = conv.check(inp, weight)?;
    check_len("bias", bias, out_shape.c)?;
    let problem = Problem::conv(TunedPass::Forward, conv, inp.shape(), out_shape.c);
    let algo = autotune::resolve(gpu, algo, &problem)?;
    let out = Tensor::empty(gpu, out_shape, "conv2d out")?;
    match algo.variant(gpu, conv.kernel)? {
        Variant::Direct => direct::forward(gpu, conv, inp, weight, bias, &out)?,
        Variant::Gemm(tiles) => gemm::forward(gpu, tiles, conv, inp, weight, bias, &out)?,
        Variant::Tiled(tiles) => tiled::forward(gpu, tiles, conv, inp, weight, bias, &out)?,
    }
    Ok(out)
}

/// [`backward_input`] with the variant `algo`.
pub fn backward_input_with(
    gpu: &Gpu,
    algo: ConvAlgo,
    conv: &Conv2d,
    inp_shape: Shape,
    weight: &Tensor,
    out: &Tensor,
    dout: &Tensor,
) -> Result<Tensor> {
    let out_shape = check_backward(conv, inp_shape, weight, out, dout)?;
    let problem = Problem::conv(TunedPass::BackwardInput, conv, inp_shape, out_shape.c);
    let algo = autotune::resolve(gpu, algo, &problem)?;
    let empty = || Tensor::empty(gpu, inp_shape, "conv2d dinp");
    Ok(match algo.variant(gpu, conv.kernel)? {
        Variant::Direct => {
            let dinp = empty()?;
            direct::backward_input(gpu, conv, weight, out, dout, &dinp)?;
            dinp
        }
        Variant::Gemm(tiles) => {
            let input = gemm::InputGrad {
                tiles,
                weight,
                inp_shape,
            };
            let dinp = gemm::backward(gpu, conv, out, dout, Some(input), None)?;
            dinp.expect("dinp was asked for")
        }
        Variant::Tiled(t) => {
            let dinp = empty()?;
            tiled::backward_input(gpu, t, conv, weight, out, dout, &dinp)?;
            dinp
        }
    })
}

/// [`backward_params`] with the variant `algo`.
#[allow(clippy::too_many_arguments)]
pub fn backward_params_with(
    gpu: &Gpu,
    algo: ConvAlgo,
    conv: &Conv2d,
    inp: &Tensor,
    out: &Tensor,
    dout: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
) -> Result<()> {
    check_params(conv, inp, out, dout, dweight, dbias)?;
    let problem = Problem::conv(TunedPass::BackwardParams, conv, inp.shape(), out.shape().c);
    let algo = autotune::resolve(gpu, algo, &problem)?;

    match algo.variant(gpu, conv.kernel)? {
        Variant::Direct => direct::backward_weight(gpu, conv, inp, out, dout, dweight)?,
        // Variant 2 sums dbias in the same reduction as dweight.
        Variant::Gemm(tiles) => {
            let grads = gemm::ParamGrads {
                tiles,
                inp,
                dweight,
                dbias,
            };
            return gemm::backward(gpu, conv, out, dout, None, Some(grads)).map(drop);
        }
        Variant::Tiled(t) => tiled::backward_weight(gpu, t, conv, inp, out, dout, dweight)?,
    }
    // dbias is a plain reduction over pixels.
    direct::backward_bias(gpu, conv, inp.shape(), out, dout, dbias)
}

/// [`backward_params`] and, where `need_dinp`, [`backward_input`] (dinp returned) in one
/// call: where both passes run variant 2 they read one padded copy of g = dout * relu'(out)
/// instead of making one each. Runs the default variant.
///
/// `dout` may be given by value (the model's gradients are): it is then dropped once it
/// has been read, before the passes' other tensors are made, so that a planned step
/// (`Gpu::plan_memory`) can give its buffer to them.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    conv: &Conv2d,
    inp: &Tensor,
    weight: &Tensor,
    out: &Tensor,
    dout: impl Borrow<Tensor>,
    [dweight, dbias]: [&Tensor; 2],
    need_dinp: bool,
) -> Result<Option<Tensor>> {
    let d = dout.borrow();
    check_params(conv, inp, out, d, dweight, dbias)?;
    check_backward(conv, inp.shape(), weight, out, d)?;
    let gemm_tiles = |pass| -> Result<Option<GemmTiles>> {
        let problem = Problem::conv(pass, conv, inp.shape(), out.shape().c);
        let algo = autotune::resolve(gpu, ConvAlgo::Auto, &problem)?;
        Ok(match algo.variant(gpu, conv.kernel)? {
            Variant::Gemm(tiles) => Some(tiles),
            _ => None,
        })
    };
    let params_tiles = gemm_tiles(TunedPass::BackwardParams)?;
    let input_tiles = if need_dinp {
        gemm_tiles(TunedPass::BackwardInput)?
    } else {
        None
    };
    let (Some(params_tiles), Some(input_tiles)) = (params_tiles, input_tiles) else {
        backward_params(gpu, conv, inp, out, d, dweight, dbias)?;
        return match need_dinp {
            true => backward_input(gpu, conv, inp.shape(), weight, out, d).map(Some),
            false => Ok(None),
        };
    };
    let input = gemm::InputGrad {
        tiles: input_tiles,
        weight,
        inp_shape: inp.shape(),
    };
    let grads = gemm::ParamGrads {
        tiles: params_tiles,
        inp,
        dweight,
        dbias,
    };
    gemm::backward(gpu, conv, out, dout, Some(input), Some(grads))
}

/// Checks the tensors of [`backward_params`].
fn check_params(
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
    check_same("dout", dout, out_shape)
}

// ---- The up-convolution on the GEMM kernels ----------------------------------------------

/// The up-convolution's GEMMs as convolutions: 1x1, no padding, no ReLU.
const UPCONV_GEMM: Conv2d = Conv2d {
    kernel: 1,
    padding: Padding::Valid,
    relu: false,
};

/// out = up-conv(inp) + bias on a GEMM variant, `out` of shape [N, C_out, 2H, 2W]; false
/// (nothing run) where `algo` resolves to variant 1, which `ops::conv_transpose` runs itself.
pub(crate) fn upconv_forward(
    gpu: &Gpu,
    algo: ConvAlgo,
    inp: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
) -> Result<bool> {
    let problem = Problem::upconv(TunedPass::UpForward, inp.shape(), out.shape().c);
    let algo = autotune::resolve(gpu, algo, &problem)?;
    match algo.variant(gpu, UPCONV_GEMM.kernel)? {
        Variant::Direct => return Ok(false),
        Variant::Gemm(t) => gemm::upconv_forward(gpu, t, inp, weight, bias, out)?,
        Variant::Tiled(t) => tiled::upconv_forward(gpu, t, inp, weight, bias, out)?,
    }
    Ok(true)
}

/// Writes dinp and accumulates dweight and dbias of the up-convolution on a GEMM variant;
/// false (nothing run) where `algo` resolves to variant 1.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upconv_backward(
    gpu: &Gpu,
    algo: ConvAlgo,
    inp: &Tensor,
    weight: &Tensor,
    dout: &Tensor,
    dinp: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
) -> Result<bool> {
    let problem = Problem::upconv(TunedPass::UpBackward, inp.shape(), dout.shape().c);
    let algo = autotune::resolve(gpu, algo, &problem)?;
    match algo.variant(gpu, UPCONV_GEMM.kernel)? {
        Variant::Direct => return Ok(false),
        Variant::Gemm(t) => gemm::upconv_backward(gpu, t, inp, weight, dout, dinp, dweight)?,
        Variant::Tiled(t) => tiled::upconv_backward(gpu, t, inp, weight, dout, dinp, dweight)?,
    }
    // dbias[co] += sum of dout over its pixels: the conv's bias reduction, without ReLU.
    direct::backward_bias(gpu, &UPCONV_GEMM, inp.shape(), dout, dout, dbias)?;
    Ok(true)
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
