//! Models that travel: a checkpoint as an ONNX graph ([`onnx`]) and as a BioImage Model Zoo
//! package ([`bioimageio`]), for the tools bio-image analysts already use (Fiji with
//! deepImageJ, ilastik, QuPath, napari, Python with onnxruntime). Both read the checkpoint
//! on the host: exporting needs no GPU.

pub mod bioimageio;
pub mod onnx;

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{Arch, Heads, UNetConfig};
use crate::ops::conv2d::Padding;

/// Which input sizes a network takes and how much smaller its output is.
///
/// Every side length `min + k * step` (k = 0, 1, 2, ...) is a valid input, and no other is;
/// the output is the input's centre, `margin` pixels in from every side (0 with same
/// padding), so the output of an `H` x `W` input is `(H - 2 margin)` x `(W - 2 margin)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub min: usize,
    pub step: usize,
    pub margin: usize,
}

impl Geometry {
    pub fn of(config: &UNetConfig) -> Geometry {
        let min = config.input_size_for(1);
        let out = config.output_size(min).expect("input_size_for fits");
        Geometry {
            min,
            // The max-pools' total stride: the size before each pool must stay even.
            step: config.pooling_stride(),
            margin: (min - out) / 2,
        }
    }

    /// The smallest valid input of side at least `size`.
    pub fn fit(&self, size: usize) -> usize {
        match size.checked_sub(self.min) {
            None => self.min,
            Some(extra) => self.min + extra.div_ceil(self.step) * self.step,
        }
    }
}

/// A checkpoint file's bytes, read for export.
pub fn read_checkpoint(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The heads of `config` that predict under `heads`, as top-node levels j of X(0,j):
/// every head up to the pruned level when averaging, the deepest of them otherwise.
pub fn predicting_heads(config: &UNetConfig, heads: Heads) -> Vec<usize> {
    let top = heads.prune.unwrap_or(config.depth - 1);
    let running: Vec<usize> = config.head_levels().filter(|&j| j <= top).collect();
    match heads.average {
        true => running,
        false => running.last().copied().into_iter().collect(),
    }
}

/// One line on the network, for doc strings and descriptions.
pub fn describe(config: &UNetConfig, heads: Heads) -> String {
    let padding = match config.padding {
        Padding::Valid => "valid",
        Padding::Same => "same",
    };
    let name = match config.arch {
        Arch::UNet => "U-Net (Ronneberger et al. 2015)",
        Arch::UNetPlusPlus => "U-Net++ (Zhou et al. 2018)",
    };
    let mut line = format!(
        "{name} of depth {}, {} base channels, {padding} padding, {} input channel(s), {} classes",
        config.depth, config.base_channels, config.in_channels, config.classes
    );
    if config.arch == Arch::UNetPlusPlus {
        let levels = predicting_heads(config, heads);
        let list: Vec<String> = levels.iter().map(|j| format!("X(0,{j})")).collect();
        line += &match (heads.average, heads.prune) {
            (true, _) => format!(
                "; probabilities averaged over the heads on {}",
                list.join(", ")
            ),
            (false, Some(m)) => format!("; pruned to the sub-network of head X(0,{m})"),
            (false, None) => format!("; the head on {}", list.join(", ")),
        };
    }
    line
}
