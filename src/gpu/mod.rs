//! Device choice and limits, the pipeline cache, the buffer pool and command recording.

mod adapter;
pub mod autotune;
mod context;
mod pipeline;
mod plan;
mod pool;
mod profile;
mod subgroups;

pub use adapter::{choose_adapter, describe_short, list_adapters, AdapterChoice};
pub use autotune::{TuneMode, Tuned};
pub use context::{Gpu, MAX_STORAGE_BINDINGS};
pub use pipeline::{Access, Constants, Kernel, Shader};
pub use pool::{BufferKind, Fit, PoolStats, PooledBuffer};
pub use profile::{KernelTime, Profile};
pub use subgroups::Subgroups;
