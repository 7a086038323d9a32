//! Pixel-wise softmax and pixel-weighted cross-entropy, fused with its gradient.
//!
//! ```text
//! loss          = (1/P) * sum_x w(x) * -log softmax(z(x))_{l(x)},   P = N*H*W
//! dloss/dz_k(x) = w(x)/P * (p_k(x) - [k == l(x)])
//! ```
//!
//! **Normalised by the pixel count P, not by sum_x w(x).** The gradient of each pixel is
//! then w(x)/P whatever the weight map's overall scale, so a weight map that emphasises
//! cell borders (w0 = 10 in the paper) really does weigh those pixels more, instead of
//! being divided away; and it is what PyTorch computes as
//! `(w * F.cross_entropy(z, l, reduction='none')).mean()`, so losses and gradients can be
//! compared with it directly.
//!
//! **Labels** are class indices stored as f32 (integer-valued, in 0..K). A label that is
//! not an integer in 0..K is detected explicitly in the kernel (not through NaN, which
//! fast-math compilers such as Metal's need not keep): its pixel adds nothing to the loss
//! and gets zero gradients, and it is counted in the loss tensor's second element, which
//! [`crate::train::Trainer::step`] checks: corrupt labels never train silently. The data
//! module validates labels on the host before upload; this is the backstop.
//!
//! **Two passes** over the pixels (gradient, then the partial sums) rather than one fused
//! kernel, so that no kernel binds more than the 4 storage buffers WebGPU and GLES 3.1
//! guarantee.
//!
//! **Determinism.** The pixel sum uses no atomics: each workgroup of the first pass
//! reduces its terms with a fixed tree and writes one partial sum, and a second pass of
//! one workgroup adds the partials in a fixed order. The loss is bit-identical from run to
//! run on the same device, which resuming a training run relies on.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{DType, Shape, Tensor};

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// P = N*H*W.
    pixels: u32,
    /// H*W.
    plane: u32,
    /// K.
    classes: u32,
    /// The number of partial sums, for `xent_reduce`.
    partials: u32,
    /// 1/P, times the caller's scale (see [`softmax_cross_entropy_scaled`]).
    inv_pixels: f32,
}

const SOFTMAX: Kernel = Kernel {
    shader: shader!("loss.wgsl"),
    entry: "softmax",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// logits, labels, weights -> dlogits.
const XENT_GRADIENT: Kernel = Kernel {
    shader: shader!("loss.wgsl"),
    entry: "xent_gradient",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// logits, labels, weights -> partials (per workgroup: sum of terms, invalid labels).
const XENT_PARTIALS: Kernel = Kernel {
    shader: shader!("loss.wgsl"),
    entry: "xent_partials",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// partials -> loss.
const XENT_REDUCE: Kernel = Kernel {
    shader: shader!("loss.wgsl"),
    entry: "xent_reduce",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// The loss and its gradient, both left on the GPU.
#[derive(Debug)]
pub struct LossOutput {
    /// `Shape::vector(2)`: the mean weighted cross-entropy, and the number of pixels
    /// whose label is not a class index (0 for valid labels; see the module docs).
    /// Reading it back (which waits for the GPU) is the caller's choice.
    pub loss: Tensor,
    /// [N, K, H, W]: dloss/dlogits, written (not accumulated).
    pub dlogits: Tensor,
}

impl Params {
    fn new(logits: Shape) -> Params {
        Params::scaled(logits, 1.0)
    }

    fn scaled(logits: Shape, scale: f32) -> Params {
        let pixels = logits.n * logits.plane();
        Params {
            pixels: pixels as u32,
            plane: logits.plane() as u32,
            classes: logits.c as u32,
            partials: 0,
            inv_pixels: (f64::from(scale) / pixels as f64) as f32,
        }
    }
}

fn check_f32(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::shape(
            op,
            format!("{what} must be an f32 tensor, not {:?}", t.dtype()),
        ));
    }
    Ok(())
}

/// Class probabilities: probs[n, k, y, x] = softmax over k of logits[n, :, y, x].
/// Numerically stable (the largest logit is subtracted before exp).
pub fn softmax(gpu: &Gpu, logits: &Tensor) -> Result<Tensor> {
    check_f32("softmax", "logits", logits)?;
    let shape = logits.shape();
    let probs = Tensor::empty(gpu, shape, "softmax probs")?;
    let params = Params::new(shape);
    let grid = gpu.grid_1d(u64::from(params.pixels), WORKGROUP_SIZE);
    gpu.dispatch(
        &SOFTMAX,
        &[],
        &params,
        &[logits.buffer(), probs.buffer()],
        grid,
    )?;
    Ok(probs)
}

/// The fused softmax + pixel-weighted cross-entropy and its gradient (see the module
/// docs for the formula, the normalisation and invalid labels).
///
/// - `logits`: [N, K, H, W]
/// - `labels`: [N, 1, H, W], class indices as f32, integer-valued in 0..K
/// - `weights`: [N, 1, H, W], the per-pixel weight map w(x)
///
/// Shape or type mismatches are [`Error::Shape`].
pub fn softmax_cross_entropy(
    gpu: &Gpu,
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
) -> Result<LossOutput> {
    softmax_cross_entropy_scaled(gpu, logits, labels, weights, 1.0)
}

/// [`softmax_cross_entropy`] with the loss and its gradient multiplied by `scale`: one of
/// several heads whose losses are averaged (U-Net++'s deep supervision) passes
/// 1 / heads.
pub fn softmax_cross_entropy_scaled(
    gpu: &Gpu,
    logits: &Tensor,
    labels: &Tensor,
    weights: &Tensor,
    scale: f32,
) -> Result<LossOutput> {
    const OP: &str = "softmax cross-entropy";
    check_f32(OP, "logits", logits)?;
    check_f32(OP, "labels", labels)?;
    check_f32(OP, "weights", weights)?;
    let shape = logits.shape();
    let per_pixel = shape.with_c(1);
    for (what, t) in [("labels", labels), ("weights", weights)] {
        if t.shape() != per_pixel {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} have shape {}, but logits {shape} need {per_pixel} (one per pixel)",
                    t.shape()
                ),
            ));
        }
    }

    let mut params = Params::scaled(shape, scale);
    let grid = gpu.grid_1d(u64::from(params.pixels), WORKGROUP_SIZE);
    // One partial sum per workgroup of the (possibly folded) grid.
    let workgroups = grid[0] as usize * grid[1] as usize;
    params.partials = workgroups as u32;

    let dlogits = Tensor::empty(gpu, shape, "loss dlogits")?;
    // (sum of terms, invalid labels) per workgroup.
    let partials = Tensor::empty(gpu, Shape::vector(2 * workgroups), "loss partial sums")?;
    let loss = Tensor::empty(gpu, Shape::vector(2), "loss")?;
    let (z, l, w) = (logits.buffer(), labels.buffer(), weights.buffer());
    gpu.dispatch(
        &XENT_GRADIENT,
        &[],
        &params,
        &[z, l, w, dlogits.buffer()],
        grid,
    )?;
    gpu.dispatch(
        &XENT_PARTIALS,
        &[],
        &params,
        &[z, l, w, partials.buffer()],
        grid,
    )?;
    gpu.dispatch(
        &XENT_REDUCE,
        &[],
        &params,
        &[partials.buffer(), loss.buffer()],
        [1, 1, 1],
    )?;
    Ok(LossOutput { loss, dlogits })
}
