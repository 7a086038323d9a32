//! Training: the step (forward, loss, backward, SGD) and checkpoints.

pub mod checkpoint;
pub mod run;
pub mod trainer;

pub use trainer::{warmup_factor, Batch, Trainer};
