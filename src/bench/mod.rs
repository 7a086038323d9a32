//! Benchmarks of the engine's kernels, as a library: the `unet bench kernels` command and
//! `cargo bench` both call into it.

pub mod kernels;
pub mod ops;
pub mod step;
