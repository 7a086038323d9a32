//! The U-Net's configuration, its size calculator and its layer table.

use crate::error::{Error, Result};
use crate::ops::conv2d::Padding;

/// What defines a U-Net: levels, widths, padding and dropout.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub classes: usize,
    /// Number of levels, the bottom included (paper: 5, i.e. 4 max-pools).
    pub depth: usize,
    /// Channels of the first level; each level down doubles them (paper: 64).
    pub base_channels: usize,
    /// Valid (the paper: no padding, output smaller than input) or same.
    pub padding: Padding,
    /// Dropout rate at the end of the contracting path (paper: 0.5), or none.
    pub dropout: Option<f32>,
}

impl UNetConfig {
    /// The network of the paper: 1 input channel, 2 classes, 5 levels, 64..1024 channels.
    pub const fn paper() -> UNetConfig {
        UNetConfig {
            in_channels: 1,
            classes: 2,
            depth: 5,
            base_channels: 64,
            padding: Padding::Valid,
            dropout: Some(0.5),
        }
    }

    /// A small network for slow devices and tests: 4 levels, 16..128 channels.
    pub const fn small() -> UNetConfig {
        UNetConfig {
            depth: 4,
            base_channels: 16,
            ..UNetConfig::paper()
        }
    }

    /// The preset called `name` ("paper" or "small").
    pub fn preset(name: &str) -> Result<UNetConfig> {
        match name {
            "paper" => Ok(UNetConfig::paper()),
            "small" => Ok(UNetConfig::small()),
            _ => Err(Error::Config(format!(
                "unknown config {name:?}: use paper or small"
            ))),
        }
    }

    /// Channels at `level` (0 = top): base * 2^level.
    pub fn channels(&self, level: usize) -> usize {
        self.base_channels << level
    }

    /// The total stride of the max-pools, 2^(depth-1): shifting the input by a multiple of
    /// it shifts the output by the same amount and changes nothing else.
    pub fn pooling_stride(&self) -> usize {
        1 << (self.depth - 1)
    }

    /// Pixels each 3x3 conv removes from a side length (2 when valid, 0 when same).
    fn conv_shrink(&self) -> usize {
        match self.padding {
            Padding::Valid => 2,
            Padding::Same => 0,
        }
    }

    /// Checks the configuration itself.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.depth < 1 || self.depth > 8 {
            return bad(format!("depth {} is outside 1..=8", self.depth));
        }
        if self.in_channels == 0 || self.classes < 2 || self.base_channels == 0 {
            return bad(format!(
                "need at least 1 input channel, 2 classes and 1 base channel, got {self:?}"
            ));
        }
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("dropout rate {p} is outside [0, 1)"));
            }
        }
        Ok(())
    }

    /// The side length of the output for an input tile of side `input`, following it
    /// through the network: two convs per level, a max-pool (whose input must be even)
    /// between levels on the way down, a 2x2 up-conv between levels on the way up.
    pub fn output_size(&self, input: usize) -> Option<usize> {
        let shrink = 2 * self.conv_shrink();
        let mut size = input;
        for _ in 0..self.depth - 1 {
            size = size.checked_sub(shrink).filter(|&s| s > 0 && s % 2 == 0)? / 2;
        }
        size = size.checked_sub(shrink).filter(|&s| s > 0)?;
        for _ in 0..self.depth - 1 {
            size = (2 * size).checked_sub(shrink).filter(|&s| s > 0)?;
        }
        Some(size)
    }

    /// The output size for `input`, or an error naming the nearest valid input sizes.
    pub fn check_tile(&self, input: usize) -> Result<usize> {
        self.output_size(input).ok_or_else(|| {
            let below = (1..input).rev().find(|&s| self.output_size(s).is_some());
            let above =
                (input + 1..input + (64 << self.depth)).find(|&s| self.output_size(s).is_some());
            let nearest: Vec<String> = below
                .into_iter()
                .chain(above)
                .map(|s| s.to_string())
                .collect();
            Error::Config(format!(
                "tile size {input} does not fit this network (every max-pool input must be \
                 even and every map at least one pixel); nearest valid tile sizes: {}",
                nearest.join(", ")
            ))
        })
    }

    /// The smallest input tile whose output is at least `output` pixels wide.
    pub fn input_size_for(&self, output: usize) -> usize {
        (1..)
            .find(|&s| self.output_size(s).is_some_and(|o| o >= output))
            .expect("some tile size always fits")
    }

    /// Every layer with its output shape for an `input` x `input` tile (for `unet info`).
    pub fn layers(&self, input: usize) -> Result<Vec<LayerInfo>> {
        self.validate()?;
        self.check_tile(input)?;
        let shrink = self.conv_shrink();
        let mut layers = Vec::new();
        let mut size = input;
        let mut channels = self.in_channels;
        let mut push = |name: String, kind: &'static str, c_in, c_out, k, out: usize, params| {
            let macs = (out * out * c_out * c_in * k * k) as u64;
            layers.push(LayerInfo {
                name,
                kind,
                c_in,
                c_out,
                out_size: out,
                params,
                macs,
            });
        };
        for level in 0..self.depth {
            let c = self.channels(level);
            for (conv, c_in) in [("conv1", channels), ("conv2", c)] {
                size -= shrink;
                push(
                    format!("enc{level}.{conv}"),
                    "conv3x3+relu",
                    c_in,
                    c,
                    3,
                    size,
                    conv_params(c_in, c, 3),
                );
            }
            channels = c;
            if level + 1 < self.depth {
                size /= 2;
            }
        }
        for level in (0..self.depth - 1).rev() {
            let c = self.channels(level);
            size *= 2;
            push(
                format!("dec{level}.up"),
                "upconv2x2",
                channels,
                c,
                2,
                size,
                conv_params(channels, c, 2),
            );
            // The first conv sees the skip (c channels) concatenated with the up-conv's c.
            for (conv, c_in) in [("conv1", 2 * c), ("conv2", c)] {
                size -= shrink;
                push(
                    format!("dec{level}.{conv}"),
                    "conv3x3+relu",
                    c_in,
                    c,
                    3,
                    size,
                    conv_params(c_in, c, 3),
                );
            }
            channels = c;
        }
        push(
            "head".into(),
            "conv1x1",
            channels,
            self.classes,
            1,
            size,
            conv_params(channels, self.classes, 1),
        );
        Ok(layers)
    }

    /// The number of trainable parameters (31,030,658 for the paper's network).
    pub fn parameter_count(&self) -> usize {
        let tile = self.input_size_for(1);
        self.layers(tile)
            .map(|l| l.iter().map(|l| l.params).sum())
            .unwrap_or(0)
    }
}

fn conv_params(c_in: usize, c_out: usize, k: usize) -> usize {
    c_in * c_out * k * k + c_out
}

/// One row of the layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    pub kind: &'static str,
    pub c_in: usize,
    pub c_out: usize,
    /// Side length of the layer's output.
    pub out_size: usize,
    pub params: usize,
    /// Multiply-adds of the forward pass for one tile (FLOPs = 2 * MACs).
    pub macs: u64,
}
