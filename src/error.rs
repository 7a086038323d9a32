//! The library's one error type. Every message names what failed, the shapes or files
//! involved, and what the user can do about it.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found ({detail}). Install a Vulkan, Metal or DX12 driver; on a machine \
         without a GPU install Mesa's software Vulkan driver (Debian/Ubuntu: \
         `apt-get install mesa-vulkan-drivers`)"
    )]
    NoAdapter { detail: String },

    #[error(
        "no GPU adapter matches {wanted:?}; available adapters: {available}. Pick one with \
         --adapter (or UNET_ADAPTER), or leave it unset for the best one"
    )]
    AdapterNotFound { wanted: String, available: String },

    #[error("unknown GPU backend {0:?}: use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),

    #[error(
        "could not open the GPU device on {adapter}: {reason}. Update the GPU driver, or \
         pick another adapter with --adapter (see `unet info`)"
    )]
    RequestDevice { adapter: String, reason: String },

    /// A network configuration or tile size that cannot work.
    #[error("{0}")]
    Config(String),

    #[error(
        "the loss became {loss} at step {step}: training diverged. Lower the learning rate \
         (--lr) and resume from the last checkpoint"
    )]
    Diverged { step: u64, loss: f32 },

    #[error(
        "the network collapsed at step {step}: {reason}. Training stopped; the run folder \
         keeps its last checkpoint ({saved}). Start again with {remedies}; \
         --no-collapse-check trains on regardless",
        remedies = crate::train::health::REMEDIES
    )]
    Collapsed {
        step: u64,
        reason: String,
        saved: String,
    },

    #[error(
        "{pixels} pixels of the batch at step {step} have labels that are not class indices \
         0..K-1: check the masks (and --classes / --foreground) and start again"
    )]
    InvalidLabels { step: u64, pixels: u64 },

    #[error(
        "parameter `{name}` is no longer finite at step {step}: training diverged, so no \
         checkpoint was written over the last good one. Lower the learning rate (--lr) and \
         resume from it"
    )]
    NonFiniteParameter { step: u64, name: String },

    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },

    #[error("{path}: {source}; {}", crate::data::error::io_advice(source))]
    Io {
        path: String,
        source: std::io::Error,
    },

    /// Bad input data: a missing or corrupt image, mismatched sizes, unexpected mask values.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),

    /// Bad metric input.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),

    /// Operands of an op do not fit together, or a shape is not allowed.
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },

    #[error(
        "tensor `{name}` needs {bytes} bytes but this device allows at most {limit} bytes per \
         buffer: use a smaller tile or batch"
    )]
    TooLarge {
        name: String,
        bytes: u64,
        limit: u64,
    },

    #[error("GPU out of memory allocating `{name}` ({bytes} bytes): use a smaller tile or batch")]
    OutOfMemory { name: String, bytes: u64 },

    #[error(
        "GPU memory limit reached allocating `{name}` ({bytes} bytes; the engine holds {held} \
         of the {limit} bytes UNET_GPU_MEMORY_LIMIT allows): use a smaller tile or batch, or \
         raise the limit"
    )]
    MemoryLimit {
        name: String,
        bytes: u64,
        held: u64,
        limit: u64,
    },

    #[error(
        "GPU error: {0}. Run the command again; if it recurs, try a smaller tile or another \
         adapter (--adapter), and report it with the command you ran"
    )]
    Device(String),

    #[error("GPU device lost ({0}). Restart the program; if it recurs, use a smaller tile")]
    DeviceLost(String),

    #[error("the GPU did not finish within {0:?}; set UNET_GPU_TIMEOUT_S to wait longer")]
    Timeout(Duration),
}

impl Error {
    /// A shape error for `op`, built from a formatted message.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Error {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
}
