//! The ops: one module per op, with its forward and backward launchers side by side and
//! one `#[repr(C)]` `Params` struct mirrored by `struct Params` in its WGSL file.
//!
//! # Vocabulary
//! - `inp`, `out`: an op's input and output activations; `weight`, `bias`: its parameters.
//! - `dout`: the gradient of the loss with respect to `out`; `dinp`, `dweight`, `dbias`:
//!   the gradients the backward computes.
//! - Shapes are NCHW: `N` batch, `C` channels, `H` height, `W` width (`C_in`, `C_out`
//!   where an op changes the channel count).
//!
//! # The gradient rule
//! Parameter gradients **accumulate** (`dweight += ...`), so a caller zeroes them once
//! per step and several backward calls may add into them. Activation gradients are
//! **written** (`dinp = ...`), except where a tensor feeds two places (a U-Net skip
//! connection): there the second path adds into the gradient the first wrote. Each
//! backward says which rule it follows.
//!
//! # Launch hygiene
//! Every kernel guards its index against the element count, so a grid rounded up with
//! `div_ceil` is safe, and 1-D grids are folded into 2-D past 65,535 workgroups
//! ([`crate::gpu::Gpu::grid_1d`]).

pub mod activation;
pub mod axpy;
pub mod conv2d;
pub mod conv_transpose;
pub mod crop_concat;
pub mod fill;
pub mod loss;
pub mod max_pool;
pub mod sgd;
mod sum_splits;

/// Threads per workgroup of the element-wise kernels.
pub const WORKGROUP_SIZE: u32 = 256;
