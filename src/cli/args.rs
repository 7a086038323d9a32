//! Argument groups several commands share: how masks are stored, the weight map's
//! parameters, and the network's architecture flags.

use clap::{Args, ValueEnum};
use unet_wgpu::data::{MaskFormat, WeightMapConfig};
use unet_wgpu::model::{Arch, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::Result;

#[derive(Clone, Copy, ValueEnum)]
pub enum MaskKind {
    /// Two values: --foreground marks cells, the other value everything else.
    Binary,
    /// Each cell its own integer, background 0.
    Instance,
}

#[derive(Args, Clone)]
pub struct MaskArgs {
    /// How masks are stored.
    #[arg(long, value_enum, default_value = "binary")]
    mask: MaskKind,
    /// In binary masks, the value that marks cells (ISBI 2012: 255 = cell interior).
    #[arg(long, default_value_t = 255)]
    foreground: u32,
    /// Binary masks of inverted polarity: cells are 0 and the rest is --foreground's value.
    #[arg(long)]
    invert: bool,
}

impl MaskArgs {
    pub fn format(&self) -> MaskFormat {
        match (self.mask, self.invert) {
            (MaskKind::Instance, _) => MaskFormat::Instance,
            (MaskKind::Binary, false) => MaskFormat::Binary {
                foreground: self.foreground,
                background: 0,
            },
            (MaskKind::Binary, true) => MaskFormat::Binary {
                foreground: 0,
                background: self.foreground,
            },
        }
    }
}

#[derive(Args, Clone)]
pub struct WeightArgs {
    /// Height of the weight map's border term (the paper: 10).
    #[arg(long, default_value_t = 10.0)]
    w0: f32,
    /// Width of the border term in pixels (the paper: 5).
    #[arg(long, default_value_t = 5.0)]
    sigma: f32,
}

impl WeightArgs {
    pub fn config(&self) -> WeightMapConfig {
        WeightMapConfig {
            w0: self.w0,
            sigma: self.sigma,
            ..WeightMapConfig::default()
        }
    }
}

#[derive(Args, Clone)]
pub struct ArchArgs {
    /// unet (Ronneberger et al. 2015) or unetpp (U-Net++, Zhou et al. 2018: nested skips)
    /// [default: unet]
    #[arg(long)]
    arch: Option<Arch>,
    /// Convolution padding: valid (the U-Net paper) or same (the U-Net++ default).
    #[arg(long, value_enum)]
    padding: Option<PaddingArg>,
    /// U-Net++: one head on the last top node only, instead of a head on every one.
    #[arg(long)]
    no_deep_supervision: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PaddingArg {
    Valid,
    Same,
}

impl ArchArgs {
    /// `preset` in the chosen architecture, padding and supervision.
    pub fn apply(&self, preset: UNetConfig) -> Result<UNetConfig> {
        let mut config = preset.with_arch(self.arch.unwrap_or_default());
        match self.padding {
            Some(PaddingArg::Valid) => config.padding = Padding::Valid,
            Some(PaddingArg::Same) => config.padding = Padding::Same,
            None => {}
        }
        if self.no_deep_supervision {
            config.deep_supervision = false;
        }
        config.validate()?;
        Ok(config)
    }

    /// Whether any of these flags was given (a resumed run must not be asked for another
    /// network than its checkpoint's).
    pub fn given(&self) -> bool {
        self.arch.is_some() || self.padding.is_some() || self.no_deep_supervision
    }
}
