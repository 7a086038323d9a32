//! The U-Net's configuration, its size calculator and its layer table.

use crate::error::{Error, Result};
use crate::ops::conv2d::Padding;

/// The network's architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Arch {
    /// Ronneberger et al. 2015: one skip connection per level.
    #[default]
    #[serde(rename = "unet")]
    UNet,
    /// Zhou et al. 2018: nested, dense skip pathways ([`super::UNetPlusPlus`]).
    #[serde(rename = "unetpp")]
    UNetPlusPlus,
}

impl Arch {
    /// The name used on the command line and in checkpoints: `unet` or `unetpp`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::UNet => "unet",
            Arch::UNetPlusPlus => "unetpp",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = Error;

    fn from_str(name: &str) -> Result<Arch> {
        match name {
            "unet" => Ok(Arch::UNet),
            "unetpp" => Ok(Arch::UNetPlusPlus),
            _ => Err(Error::Config(format!(
                "unknown architecture {name:?}: use unet or unetpp"
            ))),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What defines a network: architecture, levels, widths, padding and dropout.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UNetConfig {
    /// U-Net or U-Net++ (checkpoints written before U-Net++ existed have no such field and
    /// hold U-Nets).
    #[serde(default)]
    pub arch: Arch,
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
    /// U-Net++ only: a 1x1 head on every top node X(0,j), j >= 1, with the heads' losses
    /// averaged (deep supervision); without it, one head on the last top node.
    #[serde(default)]
    pub deep_supervision: bool,
}

impl UNetConfig {
    /// The network of the paper: 1 input channel, 2 classes, 5 levels, 64..1024 channels.
    pub const fn paper() -> UNetConfig {
        UNetConfig {
            arch: Arch::UNet,
            in_channels: 1,
            classes: 2,
            depth: 5,
            base_channels: 64,
            padding: Padding::Valid,
            dropout: Some(0.5),
            deep_supervision: false,
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

    /// This config's levels and widths in architecture `arch`. U-Net++ takes the
    /// original's defaults: same padding and deep supervision.
    pub fn with_arch(self, arch: Arch) -> UNetConfig {
        match arch {
            Arch::UNet => UNetConfig {
                arch,
                deep_supervision: false,
                ..self
            },
            Arch::UNetPlusPlus => UNetConfig {
                arch,
                padding: Padding::Same,
                deep_supervision: true,
                ..self
            },
        }
    }

    /// The top nodes X(0,j) that carry a head, in order: for U-Net++ with deep supervision
    /// j = 1..depth-1, otherwise only the last (depth - 1, which for a U-Net is its one
    /// head on the top decoder level).
    pub fn head_levels(&self) -> std::ops::RangeInclusive<usize> {
        let last = self.depth - 1;
        match self.deep_supervision {
            true => 1..=last,
            false => last..=last,
        }
    }

    /// Checks that U-Net++ can predict with the sub-network of head X(0,`top`): `top` is
    /// a level 1..=depth-1 that carries a head (any, with deep supervision; otherwise
    /// only the last).
    pub fn check_prune(&self, top: usize) -> Result<()> {
        let last = self.depth - 1;
        if !(1..=last).contains(&top) {
            return Err(Error::Config(format!(
                "cannot prune this U-Net++ to {top}: use 1..={last}"
            )));
        }
        if !self.head_levels().any(|j| j <= top) {
            return Err(Error::Config(format!(
                "this U-Net++ was trained without deep supervision, so only its full \
                 network (--prune {last}) has a head"
            )));
        }
        Ok(())
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
        // Far beyond any network that fits a device, and small enough that no size
        // computed from them overflows.
        const MAX_CHANNELS: usize = 1 << 12;
        if self.in_channels.max(self.classes).max(self.base_channels) > MAX_CHANNELS {
            return bad(format!(
                "input channels, classes and base channels must each be at most \
                 {MAX_CHANNELS}, got {self:?}"
            ));
        }
        if self.arch == Arch::UNetPlusPlus && self.depth < 2 {
            return bad(
                "U-Net++ needs depth 2 or more: its nested nodes sit between levels".into(),
            );
        }
        if self.arch == Arch::UNet && self.deep_supervision {
            return bad(
                "deep supervision needs U-Net++'s nested top nodes: use --arch unetpp".into(),
            );
        }
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("dropout rate {p} is outside [0, 1)"));
            }
        }
        Ok(())
    }

    /// The paper's tile (572) for a network of depth 5 or more, 188 otherwise, or with
    /// same padding the next size the network takes (576, 192): what training and
    /// prediction use unless told otherwise.
    pub fn default_tile(&self) -> usize {
        let tile = if self.depth >= 5 { 572 } else { 188 };
        (tile..)
            .find(|&t| self.output_size(t).is_some())
            .expect("some tile size fits")
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

    /// Every layer with its output shape for an `input` x `input` tile (for `unet info`),
    /// in the order the forward runs them.
    pub fn layers(&self, input: usize) -> Result<Vec<LayerInfo>> {
        self.validate()?;
        let out = self.check_tile(input)?;
        let mut table = LayerTable::default();
        let shrink = 2 * self.conv_shrink(); // two convs per node
                                             // Side length of every node of the contracting path.
        let mut encoder = vec![input - shrink];
        for _ in 1..self.depth {
            encoder.push(encoder.last().unwrap() / 2 - shrink);
        }
        let mut channels_in = self.in_channels;
        let mut encoder_node = |table: &mut LayerTable, name: &str, level: usize| {
            let c = self.channels(level);
            table.conv_pair(name, channels_in, c, encoder[level], self.conv_shrink());
            channels_in = c;
        };
        match self.arch {
            Arch::UNet => {
                for level in 0..self.depth {
                    encoder_node(&mut table, &format!("enc{level}"), level);
                }
                let mut size = encoder[self.depth - 1];
                for level in (0..self.depth - 1).rev() {
                    let (c, below) = (self.channels(level), self.channels(level + 1));
                    size = 2 * size - shrink;
                    // The first conv sees the skip (c channels) concatenated with the up's c.
                    table.up_node(
                        &format!("dec{level}"),
                        below,
                        2 * c,
                        c,
                        size,
                        self.conv_shrink(),
                    );
                }
                table.head("head", self.channels(0), self.classes, out);
            }
            Arch::UNetPlusPlus => {
                // sizes[i][j] = side of X(i,j) = 2 * side of X(i+1, j-1) - shrink.
                let mut sizes: Vec<Vec<usize>> = encoder.iter().map(|&s| vec![s]).collect();
                for diagonal in 0..self.depth {
                    encoder_node(&mut table, &format!("x{diagonal}_0"), diagonal);
                    for j in 1..=diagonal {
                        let i = diagonal - j;
                        let size = 2 * sizes[i + 1][j - 1] - shrink;
                        sizes[i].push(size);
                        let (c, below) = (self.channels(i), self.channels(i + 1));
                        // X(i,0..j-1) and the up-sampled X(i+1,j-1): (j + 1) * c channels.
                        let name = format!("x{i}_{j}");
                        table.up_node(&name, below, (j + 1) * c, c, size, self.conv_shrink());
                    }
                }
                for j in self.head_levels() {
                    table.head(&format!("x0_{j}.head"), self.channels(0), self.classes, out);
                }
            }
        }
        Ok(table.layers)
    }

    /// The number of trainable parameters (31,030,658 for the paper's network).
    pub fn parameter_count(&self) -> usize {
        let tile = self.input_size_for(1);
        self.layers(tile)
            .map(|l| l.iter().map(|l| l.params).sum())
            .unwrap_or(0)
    }
}

const UPCONV: &str = "upconv2x2";

/// The layer table under construction.
#[derive(Default)]
struct LayerTable {
    layers: Vec<LayerInfo>,
}

impl LayerTable {
    /// A k x k layer whose every output reads `taps` input pixels per input channel.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        name: String,
        kind: &'static str,
        c_in: usize,
        c_out: usize,
        k: usize,
        taps: usize,
        out: usize,
    ) {
        // PyTorch's layouts: Conv2d [C_out, C_in, k, k], ConvTranspose2d [C_in, C_out, k, k].
        let weight_shape = match kind {
            UPCONV => [c_in, c_out, k, k],
            _ => [c_out, c_in, k, k],
        };
        self.layers.push(LayerInfo {
            name,
            kind,
            c_in,
            c_out,
            out_size: out,
            weight_shape,
            params: c_in * c_out * k * k + c_out,
            macs: (out * out * c_out * c_in * taps) as u64,
        });
    }

    /// `{node}.conv1` and `{node}.conv2`, 3x3 + ReLU, ending at side `out`.
    fn conv_pair(&mut self, node: &str, c_in: usize, c: usize, out: usize, shrink: usize) {
        self.push(
            format!("{node}.conv1"),
            "conv3x3+relu",
            c_in,
            c,
            3,
            9,
            out + shrink,
        );
        self.push(format!("{node}.conv2"), "conv3x3+relu", c, c, 3, 9, out);
    }

    /// A node fed by an up-convolution from `below` channels: `{node}.up`, then its two
    /// convs (the first over `cat` concatenated channels), ending at side `out`.
    fn up_node(
        &mut self,
        node: &str,
        below: usize,
        cat: usize,
        c: usize,
        out: usize,
        shrink: usize,
    ) {
        // Stride 2: each output pixel sees one of the 2x2 taps per input channel.
        self.push(
            format!("{node}.up"),
            UPCONV,
            below,
            c,
            2,
            1,
            out + 2 * shrink,
        );
        self.push(
            format!("{node}.conv1"),
            "conv3x3+relu",
            cat,
            c,
            3,
            9,
            out + shrink,
        );
        self.push(format!("{node}.conv2"), "conv3x3+relu", c, c, 3, 9, out);
    }

    fn head(&mut self, name: &str, c_in: usize, classes: usize, out: usize) {
        self.push(name.to_string(), "conv1x1", c_in, classes, 1, 1, out);
    }
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
    /// The weight's shape as PyTorch stores it (the bias is [c_out]).
    pub weight_shape: [usize; 4],
    pub params: usize,
    /// Multiply-adds of the forward pass for one tile (FLOPs = 2 * MACs).
    pub macs: u64,
}
