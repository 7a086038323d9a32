//! Benchmarks of the engine's kernels, a training step and a long soak, as a library: the
//! `unet bench` commands and `cargo bench` call into it.

pub mod kernels;
pub mod ops;
pub mod soak;
pub mod step;
