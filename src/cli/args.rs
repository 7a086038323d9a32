//! Argument groups several commands share: how masks are stored, the weight map's
//! parameters, and the network's architecture flags.

use clap::{Args, ValueEnum};
use unet_wgpu::data::labels::DEFAULT_BOUNDARY_WIDTH;
use unet_wgpu::data::{
    parse_class_values, ChannelMode, ClassValue, LabelSpec, LoadOptions, MaskFormat, Normalize,
    StackMode, WeightMapConfig, DEFAULT_NORMALIZE,
};
use unet_wgpu::model::{Arch, Heads, UNetConfig};
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

/// K classes: how label values become classes, and unlabelled pixels.
#[derive(Args, Clone)]
pub struct LabelArgs {
    /// K classes: masks store class indices 0..K-1 (8- or 16-bit), or the values of
    /// --class-values; with --mask instance, 3 = background/interior/boundary
    /// [default: 2, binary or instance masks as --mask says]
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// The stored value of each class, in class order: gray levels (0,128,255) or colours
    /// of RGB masks (#000000,#ff0000,#00ff00).
    #[arg(long, value_name = "V,V,...")]
    pub class_values: Option<String>,
    /// Map mask values that match no class (anti-aliased edges) to the nearest class value
    /// instead of stopping with an error; says how many pixels changed.
    #[arg(long)]
    pub snap: bool,
    /// A stored mask value marking unlabelled pixels: weight 0 in the loss, left out of
    /// every metric.
    #[arg(long, value_name = "V")]
    pub ignore_index: Option<u32>,
    /// With --mask instance --classes 3: the boundary class's width in pixels.
    #[arg(long, value_name = "PX", default_value_t = DEFAULT_BOUNDARY_WIDTH)]
    pub boundary_width: usize,
}

impl LabelArgs {
    /// The synthetic cells these flags ask for: three classes in colour, or today's.
    pub fn wants_colour_cells(&self, images: &ImageArgs) -> bool {
        self.classes == Some(3) && images.channels == ChannelMode::Rgb
    }

    /// How masks are read, with `masks`' format.
    pub fn spec(&self, masks: &MaskArgs) -> Result<LabelSpec> {
        let format = masks.format();
        let values: Option<Vec<ClassValue>> =
            match &self.class_values {
                Some(text) => Some(parse_class_values(text).map_err(|e| {
                    unet_wgpu::Error::Config(format!("--class-values {text:?}: {e}"))
                })?),
                None => None,
            };
        let class_mask = self.class_values.is_some()
            || (self.classes.is_some() && format != MaskFormat::Instance);
        let spec = LabelSpec {
            format,
            classes: self.classes.unwrap_or(2),
            values,
            class_mask,
            snap: self.snap,
            ignore: self.ignore_index,
            boundary_width: self.boundary_width,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// How images are read into channels and normalised.
#[derive(Args, Clone)]
pub struct ImageArgs {
    /// Input channels: auto (gray 1, RGB 3), 1 (colour turned into gray) or 3 (gray
    /// repeated).
    #[arg(long, value_enum, default_value = "auto")]
    pub channels: ChannelMode,
    /// Multi-page TIFFs: pages (separate images) or channels (one image, a page per
    /// channel).
    #[arg(long, value_enum, default_value = "pages")]
    pub stack: StackMode,
    /// Per image and channel: none (8-bit / 255, 16-bit / 65535), min-max, percentile
    /// (1..99.8, as csbdeep), percentile:LOW,HIGH, or z-score.
    #[arg(long, default_value_t = DEFAULT_NORMALIZE)]
    pub normalize: Normalize,
}

impl ImageArgs {
    /// How a dataset folder is read.
    pub fn load_options(&self, labels: &LabelArgs, masks: &MaskArgs) -> Result<LoadOptions> {
        Ok(LoadOptions {
            labels: labels.spec(masks)?,
            channels: self.channels,
            stack: self.stack,
            normalize: self.normalize,
        })
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

/// U-Net++ with deep supervision: which heads predict.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeadsArg {
    Last,
    Average,
}

impl HeadsArg {
    /// These heads of the network pruned to `prune` (or whole).
    pub fn heads(self, prune: Option<usize>) -> Heads {
        Heads {
            prune,
            average: self == HeadsArg::Average,
        }
    }
}
