//! Centre-crop and concatenate (U-Net's skip connection): each part [N, C_k, H_k, W_k] is
//! centre-cropped to H x W and the parts are concatenated on channels, in order:
//! out [N, C_0 + C_1 + ..., H, W]. U-Net concatenates two parts, the contracting path's
//! map and the up-sampled one ([`forward`]); U-Net++ concatenates every earlier node of a
//! level with the up-sampled one ([`forward_parts`]); a crop alone is a concatenation of
//! one part ([`crop`]).
//!
//! A part's crop window starts at ((H_k - H) / 2, (W_k - W) / 2), rounded down: when a size
//! difference is odd, the window sits one pixel nearer the top (or left) edge than the
//! bottom (or right) one. (In the paper's U-Net every difference is even.)
//!
//! The forward keeps nothing: the backward needs only the parts' shapes, which the caller
//! passes back in.
//!
//! # Gradients
//! The backward *writes* each part's gradient: `dout`'s channels of that part placed in
//! its crop window, zeros elsewhere. In U-Net the skip tensor also feeds the max-pool of
//! its own level, so its full gradient is the sum of both paths: call this backward first,
//! then [`super::max_pool::backward_add`] with the skip's gradient as its `dinp`.

use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Kernel};
use crate::shader;
use crate::tensor::{Shape, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// Rows the launch covers: of the part's crop window (place) or of the part (take).
    total: u32,
    part_c: u32,
    part_h: u32,
    part_w: u32,
    out_c: u32,
    h: u32,
    w: u32,
    /// The first of the part's channels in the concatenation.
    c0: u32,
    off_y: u32,
    off_x: u32,
}

/// part -> its channels of out.
/// Rows per workgroup (`ROWS` in the shader).
const ROWS_PER_WORKGROUP: u32 = 8;

const PLACE: Kernel = Kernel {
    shader: shader!("crop_concat.wgsl"),
    entry: "place",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// dout -> dpart.
const TAKE: Kernel = Kernel {
    shader: shader!("crop_concat.wgsl"),
    entry: "take",
    bindings: &[Access::Read, Access::ReadWrite],
};

/// Where one part sits in the concatenation of shape `out`.
#[derive(Clone, Copy, Debug)]
struct Placement {
    part: Shape,
    out: Shape,
    c0: usize,
}

impl Placement {
    /// Every part's placement in the concatenation of `parts` cropped to `h` x `w`, after
    /// checking that they fit together.
    fn all(op: &'static str, parts: &[Shape], h: usize, w: usize) -> Result<Vec<Placement>> {
        let Some(first) = parts.first() else {
            return Err(Error::shape(op, "nothing to concatenate"));
        };
        let channels = parts.iter().map(|s| s.c).sum();
        let out = Shape::new(first.n, channels, h, w);
        let mut c0 = 0;
        let mut placements = Vec::with_capacity(parts.len());
        for &part in parts {
            if part.n != out.n {
                return Err(Error::shape(
                    op,
                    format!(
                        "parts {part} and {first} have different batch sizes ({} vs {})",
                        part.n, first.n
                    ),
                ));
            }
            if part.h < h || part.w < w {
                return Err(Error::shape(
                    op,
                    format!(
                        "part {part} is smaller than the {h}x{w} it is cropped to: its \
                         height and width must be at least those of the up-sampled map"
                    ),
                ));
            }
            placements.push(Placement { part, out, c0 });
            c0 += part.c;
        }
        Ok(placements)
    }

    /// Params for a launch over `rows` rows (see `ROWS` in the shader).
    fn params(&self, rows: usize) -> Params {
        let (part, out) = (self.part, self.out);
        Params {
            total: rows as u32,
            part_c: part.c as u32,
            part_h: part.h as u32,
            part_w: part.w as u32,
            out_c: out.c as u32,
            h: out.h as u32,
            w: out.w as u32,
            c0: self.c0 as u32,
            off_y: ((part.h - out.h) / 2) as u32,
            off_x: ((part.w - out.w) / 2) as u32,
        }
    }
}

/// out = concat_channels(centre_crop(parts[0]), centre_crop(parts[1]), ...), each part
/// cropped to `h` x `w`: [N, sum of the parts' C, h, w].
pub fn forward_parts(gpu: &Gpu, parts: &[&Tensor], h: usize, w: usize) -> Result<Tensor> {
    let shapes: Vec<Shape> = parts.iter().map(|t| t.shape()).collect();
    let placements = Placement::all("crop-concat", &shapes, h, w)?;
    let out = Tensor::empty(gpu, placements[0].out, "crop-concat out")?;
    for (part, placement) in parts.iter().zip(&placements) {
        let window = placement.out.with_c(placement.part.c);
        let rows = window.n * window.c * window.h;
        gpu.dispatch(
            &PLACE,
            &[],
            &placement.params(rows),
            &[part.buffer(), out.buffer()],
            gpu.grid_1d(rows as u64, ROWS_PER_WORKGROUP),
        )?;
    }
    Ok(out)
}

/// The gradient of each part, of the shapes `part_shapes`: its channels of `dout`
/// [N, sum C, H, W] placed in its crop window, zeros elsewhere.
pub fn backward_parts(gpu: &Gpu, dout: &Tensor, part_shapes: &[Shape]) -> Result<Vec<Tensor>> {
    const OP: &str = "crop-concat backward";
    let out = dout.shape();
    let placements = Placement::all(OP, part_shapes, out.h, out.w)?;
    if placements[0].out != out {
        return Err(Error::shape(
            OP,
            format!(
                "dout {out} does not match the concatenation of parts {part_shapes:?} \
                 (their channels must add up to its {})",
                out.c
            ),
        ));
    }
    placements
        .iter()
        .map(|placement| {
            let dpart = Tensor::empty(gpu, placement.part, "crop-concat dpart")?;
            let part = placement.part;
            let rows = part.n * part.c * part.h;
            gpu.dispatch(
                &TAKE,
                &[],
                &placement.params(rows),
                &[dout.buffer(), dpart.buffer()],
                gpu.grid_1d(rows as u64, ROWS_PER_WORKGROUP),
            )?;
            Ok(dpart)
        })
        .collect()
}

/// U-Net's skip connection: concat_channels(centre_crop(skip), up), [N, Cs + Cu, H, W]
/// for `up` [N, Cu, H, W].
pub fn forward(gpu: &Gpu, skip: &Tensor, up: &Tensor) -> Result<Tensor> {
    let s = up.shape();
    forward_parts(gpu, &[skip, up], s.h, s.w)
}

/// Splits `dout` [N, Cs + Cu, H, W] into `dskip` (shape `skip_shape`: the first Cs channels
/// of `dout` placed in the crop window, zeros elsewhere) and `dup` (the last Cu channels).
pub fn backward(gpu: &Gpu, dout: &Tensor, skip_shape: Shape) -> Result<(Tensor, Tensor)> {
    let out = dout.shape();
    if out.c <= skip_shape.c {
        return Err(Error::shape(
            "crop-concat backward",
            format!(
                "dout {out} must have more channels than the skip tensor {skip_shape}: \
                 the up-sampled channels follow the skip ones"
            ),
        ));
    }
    let up_shape = out.with_c(out.c - skip_shape.c);
    let mut grads = backward_parts(gpu, dout, &[skip_shape, up_shape])?;
    let dup = grads.pop().expect("two parts");
    let dskip = grads.pop().expect("two parts");
    Ok((dskip, dup))
}

/// The centre `h` x `w` window of `x`.
pub fn crop(gpu: &Gpu, x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    forward_parts(gpu, &[x], h, w)
}

/// The gradient of [`crop`]: `dout` placed in the window of a tensor of shape `shape`,
/// zeros elsewhere.
pub fn crop_backward(gpu: &Gpu, dout: &Tensor, shape: Shape) -> Result<Tensor> {
    Ok(backward_parts(gpu, dout, &[shape])?.remove(0))
}
