//! Training: the step (forward, loss, backward, SGD), learning-rate schedules and
//! checkpoints.

pub mod checkpoint;
pub mod health;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use schedule::{warmup_factor, LrSchedule, Schedule};
pub use trainer::{Batch, Trainer};
