//! Prediction at scale: many images (folders, globs, multi-page stacks), split into shards
//! that a scheduler runs as separate jobs (Slurm job arrays, Kubernetes Indexed Jobs), with
//! atomic outputs, reruns that skip what is complete, and a manifest per shard.
//!
//! [`inputs`] expands and sorts the inputs, [`shard`] picks a job's share, [`run`] predicts
//! it (reader and writer threads beside the GPU work), [`outputs`] writes the files and
//! [`manifest`] records what was done.

pub mod classes;
pub mod inputs;
pub mod manifest;
pub mod outputs;
pub mod run;
pub mod shard;

pub use inputs::expand;
pub use manifest::{merge, Manifest, MergedReport, Record};
pub use outputs::{FormatChoice, OutputKind};
pub use run::{read_input, run_shard, BatchOptions, Progress, RunReport};
pub use shard::Shard;
