//! unet-wgpu: a small GPU tensor runtime on `wgpu` with hand-written WGSL kernels, and the
//! U-Net of Ronneberger, Fischer and Brox (2015) built, trained and run on it.
//!
//! Data flows one way: files -> [`data`] -> model -> train -> infer -> [`metrics`].
//! Nothing below calls back up: [`ops`] knows nothing of U-Net, the model knows nothing
//! of files.

pub mod batch;
pub mod bench;
pub mod data;
pub mod error;
pub mod export;
pub mod gpu;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod report;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{AdapterChoice, Gpu};
pub use tensor::{Shape, Tensor};
