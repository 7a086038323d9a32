//! Centre-crop and concatenate (U-Net's skip connection): the contracting path's map
//! `skip` [N, Cs, Hs, Ws] is cropped to the up-sampled map `up` [N, Cu, H, W] and the two
//! are concatenated on channels, skip first: out [N, Cs + Cu, H, W].
//!
//! The crop window starts at ((Hs - H) / 2, (Ws - W) / 2), rounded down: when a size
//! difference is odd, the window sits one pixel nearer the top (or left) edge than the
//! bottom (or right) one. (In the paper's U-Net every difference is even.)
//!
//! The forward keeps nothing: the backward needs only the skip tensor's shape, which the
//! caller passes back in.
//!
//! # Gradients in U-Net
//! The backward *writes* both `dskip` and `dup`. In U-Net the skip tensor also feeds the
//! max-pool of its own level, so its full gradient is the sum of both paths: call this
//! backward first (it writes `dskip`, zeros outside the crop window), then
//! [`super::max_pool::backward_add`] with the same tensor as its `dinp`, which adds the
//! pooling path's gradient into it.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

use super::WORKGROUP_SIZE;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Elements the launch covers: out (forward), skip (backward_skip) or up (backward_up).
    total: u32,
    skip_c: u32,
    up_c: u32,
    /// The output's (and up's) H and W.
    h: u32,
    w: u32,
    skip_h: u32,
    skip_w: u32,
    off_y: u32,
    off_x: u32,
}

const FORWARD: Kernel = Kernel {
    shader: shader!("crop_concat.wgsl"),
    entry: "forward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

const BACKWARD_SKIP: Kernel = Kernel {
    shader: shader!("crop_concat.wgsl"),
    entry: "backward_skip",
    bindings: &[Access::Read, Access::ReadWrite],
};

const BACKWARD_UP: Kernel = Kernel {
    shader: shader!("crop_concat.wgsl"),
    entry: "backward_up",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// The shapes of one crop-and-concatenate, checked to fit together.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    skip: Shape,
    up: Shape,
}

impl Geometry {
    fn new(op: &'static str, skip: Shape, up: Shape) -> Result<Geometry> {
        if skip.n != up.n {
            return Err(Error::shape(
                op,
                format!(
                    "skip {skip} and up-sampled {up} have different batch sizes ({} vs {})",
                    skip.n, up.n
                ),
            ));
        }
        if skip.h < up.h || skip.w < up.w {
            return Err(Error::shape(
                op,
                format!(
                    "skip {skip} is smaller than the up-sampled {up} it is cropped to: \
                     its height and width must be at least the up-sampled ones"
                ),
            ));
        }
        Ok(Geometry { skip, up })
    }

    /// The crop window's top-left corner (y, x) in the skip tensor:
    /// ((Hs - H) / 2, (Ws - W) / 2), rounded down.
    fn offset(&self) -> (usize, usize) {
        ((self.skip.h - self.up.h) / 2, (self.skip.w - self.up.w) / 2)
    }

    /// [N, Cs + Cu, H, W].
    fn out_shape(&self) -> Shape {
        self.up.with_c(self.skip.c + self.up.c)
    }

    fn params(&self, total: usize) -> Params {
        let (off_y, off_x) = self.offset();
        Params {
            total: total as u32,
            skip_c: self.skip.c as u32,
            up_c: self.up.c as u32,
            h: self.up.h as u32,
            w: self.up.w as u32,
            skip_h: self.skip.h as u32,
            skip_w: self.skip.w as u32,
            off_y: off_y as u32,
            off_x: off_x as u32,
        }
    }
}

/// out = concat_channels(centre_crop(skip, H, W), up): [N, Cs + Cu, H, W].
pub fn forward(gpu: &Gpu, skip: &Tensor, up: &Tensor) -> Result<Tensor> {
    let geo = Geometry::new("crop-concat", skip.shape(), up.shape())?;
    let out = Tensor::empty(gpu, geo.out_shape(), "crop-concat out")?;
    gpu.dispatch(
        &FORWARD,
        &[],
        &geo.params(out.numel()),
        &[skip.buffer(), up.buffer(), out.buffer()],
        gpu.grid_1d(out.numel() as u64, WORKGROUP_SIZE),
    )?;
    Ok(out)
}

/// Splits `dout` [N, Cs + Cu, H, W] into `dskip` (shape `skip_shape`: the first Cs channels
/// of `dout` placed in the crop window, zeros elsewhere) and `dup` (the last Cu channels).
/// Writes both; see the module notes for how U-Net adds the max-pool path into `dskip`.
pub fn backward(gpu: &Gpu, dout: &Tensor, skip_shape: Shape) -> Result<(Tensor, Tensor)> {
    const OP: &str = "crop-concat backward";
    let out = dout.shape();
    if out.c <= skip_shape.c {
        return Err(Error::shape(
            OP,
            format!(
                "dout {out} must have more channels than the skip tensor {skip_shape}: \
                 the up-sampled channels follow the skip ones"
            ),
        ));
    }
    let geo = Geometry::new(OP, skip_shape, out.with_c(out.c - skip_shape.c))?;

    let dskip = Tensor::empty(gpu, geo.skip, "crop-concat dskip")?;
    gpu.dispatch(
        &BACKWARD_SKIP,
        &[],
        &geo.params(dskip.numel()),
        &[dout.buffer(), dskip.buffer()],
        gpu.grid_1d(dskip.numel() as u64, WORKGROUP_SIZE),
    )?;
    let dup = Tensor::empty(gpu, geo.up, "crop-concat dup")?;
    gpu.dispatch(
        &BACKWARD_UP,
        &[],
        &geo.params(dup.numel()),
        &[dout.buffer(), dup.buffer()],
        gpu.grid_1d(dup.numel() as u64, WORKGROUP_SIZE),
    )?;
    Ok((dskip, dup))
}
