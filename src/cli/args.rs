//! Argument groups several commands share: how masks are stored, how labels become
//! classes, how images are read, the weight map's parameters, and the network's
//! architecture flags; and how a resumed run's data flags meet its checkpoint's.

use std::path::Path;

use clap::{Args, ValueEnum};
use unet_wgpu::data::labels::DEFAULT_BOUNDARY_WIDTH;
use unet_wgpu::data::{
    parse_class_values, ChannelMode, ClassBalance, ClassValue, DataSpec, LabelSpec, LoadOptions,
    MaskFormat, Normalize, StackMode, WeightMapConfig, DEFAULT_NORMALIZE,
};
use unet_wgpu::model::{Arch, Heads, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MaskKind {
    /// Two values: --foreground marks cells, the other value everything else.
    Binary,
    /// Each cell its own integer, background 0.
    Instance,
}

#[derive(Args, Clone)]
pub struct MaskArgs {
    /// How masks are stored [default: binary; `train --resume`: the checkpoint's]
    #[arg(long, value_enum)]
    mask: Option<MaskKind>,
    /// In binary masks, the value that marks cells (ISBI 2012: 255 = cell interior)
    /// [default: 255; `train --resume`: the checkpoint's]
    #[arg(long)]
    foreground: Option<u32>,
    /// Binary masks of inverted polarity: cells are 0 and the rest is --foreground's value
    /// (`train --resume`: as the checkpoint's were read)
    #[arg(long)]
    invert: bool,
}

/// The cell value of binary masks without `--foreground`.
const DEFAULT_FOREGROUND: u32 = 255;

impl MaskArgs {
    /// These flags with `kind` in place of `--mask`, if given (`train --labels KIND`).
    pub fn with_kind(self, kind: Option<MaskKind>) -> MaskArgs {
        MaskArgs {
            mask: kind.or(self.mask),
            ..self
        }
    }

    pub fn format(&self) -> MaskFormat {
        let value = self.foreground.unwrap_or(DEFAULT_FOREGROUND);
        match (self.mask.unwrap_or(MaskKind::Binary), self.invert) {
            (MaskKind::Instance, _) => MaskFormat::Instance,
            (MaskKind::Binary, false) => MaskFormat::Binary {
                foreground: value,
                background: 0,
            },
            (MaskKind::Binary, true) => MaskFormat::Binary {
                foreground: 0,
                background: value,
            },
        }
    }

    /// A resumed run's mask flags against how its checkpoint read its masks (`held`, in
    /// the terms of these flags): left out, a flag takes the held value; given, it must
    /// equal it. `--invert` left out cannot be told from "not inverted", so it is taken
    /// over too.
    fn adopt(&mut self, held: MaskFormat, checkpoint: &Path) -> Result<()> {
        let (kind, value, inverted) = match held {
            MaskFormat::Instance => (MaskKind::Instance, None, false),
            MaskFormat::Binary {
                foreground: 0,
                background,
            } if background != 0 => (MaskKind::Binary, Some(background), true),
            MaskFormat::Binary { foreground, .. } => (MaskKind::Binary, Some(foreground), false),
        };
        adopt_flag(checkpoint, "--mask", &mut self.mask, kind, name)?;
        if let Some(value) = value {
            adopt_flag(
                checkpoint,
                "--foreground",
                &mut self.foreground,
                value,
                text,
            )?;
        }
        if self.invert && !inverted {
            return Err(resume_mismatch(checkpoint, "--invert", None, String::new()));
        }
        self.invert = inverted;
        Ok(())
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
    /// With --mask instance --classes 3: the boundary class's width in pixels [default: 2;
    /// `train --resume`: the checkpoint's]
    #[arg(long, value_name = "PX")]
    pub boundary_width: Option<usize>,
}

impl LabelArgs {
    /// The synthetic cells these flags ask for: three classes in colour, or today's.
    pub fn wants_colour_cells(&self, images: &ImageArgs) -> bool {
        self.classes == Some(3) && images.channels() == ChannelMode::Rgb
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
            boundary_width: self.boundary_width.unwrap_or(DEFAULT_BOUNDARY_WIDTH),
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// How images are read into channels and normalised (each flag left out: its default,
/// or when resuming a run, the checkpoint's).
#[derive(Args, Clone)]
pub struct ImageArgs {
    /// Input channels: auto (gray 1, RGB 3), 1 (colour turned into gray) or 3 (gray
    /// repeated) [default: auto; with --resume, the checkpoint's]
    #[arg(long, value_enum)]
    pub channels: Option<ChannelMode>,
    /// Multi-page TIFFs: pages (separate images) or channels (one image, a page per
    /// channel) [default: pages; with --resume, the checkpoint's]
    #[arg(long, value_enum)]
    pub stack: Option<StackMode>,
    /// Per image and channel: none (8-bit / 255, 16-bit / 65535), min-max, percentile
    /// (1..99.8, as csbdeep), percentile:LOW,HIGH, or z-score [default: z-score; with
    /// --resume, the checkpoint's]
    #[arg(long)]
    pub normalize: Option<Normalize>,
}

impl ImageArgs {
    pub fn channels(&self) -> ChannelMode {
        self.channels.unwrap_or_default()
    }

    pub fn normalize(&self) -> Normalize {
        self.normalize.unwrap_or(DEFAULT_NORMALIZE)
    }

    /// How a dataset folder is read.
    pub fn load_options(&self, labels: &LabelArgs, masks: &MaskArgs) -> Result<LoadOptions> {
        Ok(LoadOptions {
            labels: labels.spec(masks)?,
            channels: self.channels(),
            stack: self.stack.unwrap_or_default(),
            normalize: self.normalize(),
        })
    }
}

/// A resumed run's data and weight-map flags against what its checkpoint was trained with
/// (`held`): a flag left out takes the checkpoint's value; one that differs is an error
/// that says what to pass. (--boundary-width is not in the checkpoint: give it again.)
pub fn adopt_data_spec(
    images: &mut ImageArgs,
    labels: &mut LabelArgs,
    masks: &mut MaskArgs,
    weights: &mut WeightArgs,
    held: &DataSpec,
    checkpoint: &Path,
) -> Result<()> {
    let mismatch = |flag: &str, held: Option<String>, given: String| {
        Err(resume_mismatch(checkpoint, flag, held, given))
    };
    adopt_flag(
        checkpoint,
        "--normalize",
        &mut images.normalize,
        held.normalize,
        text,
    )?;
    adopt_flag(
        checkpoint,
        "--channels",
        &mut images.channels,
        held.channel_mode,
        name,
    )?;
    adopt_flag(checkpoint, "--stack", &mut images.stack, held.stack, name)?;
    // Two classes are binary or instance masks unless the masks held class indices: only
    // then is K = 2 taken over, and on binary masks --classes (which would read them as
    // class indices) is refused.
    match labels.classes {
        Some(k) if k != held.classes => {
            return mismatch("--classes", Some(held.classes.to_string()), k.to_string())
        }
        Some(k) if held.class_mask == Some(false) && held.masks != Some(MaskFormat::Instance) => {
            return mismatch("--classes", None, k.to_string())
        }
        None if held.classes > 2 || held.class_mask == Some(true) => {
            labels.classes = Some(held.classes)
        }
        _ => {}
    }
    let show = |values: &[ClassValue]| {
        values
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let held_values = held.class_values.as_deref().map(show);
    match (&labels.class_values, &held_values) {
        (Some(text), _) => {
            let given = parse_class_values(text).ok();
            if given.as_ref() != held.class_values.as_ref() {
                return mismatch("--class-values", held_values, text.clone());
            }
        }
        (None, Some(values)) => labels.class_values = Some(values.clone()),
        (None, None) => {}
    }
    match labels.ignore_index {
        Some(v) if Some(v) != held.ignore_index => {
            return mismatch(
                "--ignore-index",
                held.ignore_index.map(|v| v.to_string()),
                v.to_string(),
            )
        }
        _ => labels.ignore_index = held.ignore_index,
    }
    // A checkpoint from before the masks, their boundary class or the weight map were
    // stored takes the flags as given.
    if let Some(format) = held.masks {
        masks.adopt(format, checkpoint)?;
    }
    if let Some(width) = held.boundary_width {
        adopt_flag(
            checkpoint,
            "--boundary-width",
            &mut labels.boundary_width,
            width,
            text,
        )?;
    }
    if let Some(map) = held.weight_map {
        adopt_flag(checkpoint, "--w0", &mut weights.w0, map.w0, text)?;
        adopt_flag(checkpoint, "--sigma", &mut weights.sigma, map.sigma, text)?;
        adopt_flag(
            checkpoint,
            "--balance",
            &mut weights.balance,
            map.balance,
            text,
        )?;
    }
    Ok(())
}

/// A flag's value as it is typed: a value enum's name, or anything else's text.
fn name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map_or(String::new(), |p| p.get_name().to_string())
}

pub(super) fn text<T: std::fmt::Display>(v: T) -> String {
    v.to_string()
}

/// One flag of a resumed run that the checkpoint holds (`held`): left out, it takes the
/// held value; given, it must equal it.
pub(super) fn adopt_flag<T: Copy + PartialEq>(
    checkpoint: &Path,
    flag: &str,
    given: &mut Option<T>,
    held: T,
    show: impl Fn(T) -> String,
) -> Result<()> {
    match *given {
        Some(v) if v != held => Err(resume_mismatch(checkpoint, flag, Some(show(held)), show(v))),
        _ => {
            *given = Some(held);
            Ok(())
        }
    }
}

/// The error for `flag given` on resuming a checkpoint trained with `flag held` (None:
/// without the flag), saying what to pass instead. `given` is empty for a switch
/// (`--invert`), which has no value to show.
pub(super) fn resume_mismatch(
    checkpoint: &Path,
    flag: &str,
    held: Option<String>,
    given: String,
) -> Error {
    let trained = match &held {
        Some(v) => format!("with {flag} {v}"),
        None => format!("without {flag}"),
    };
    let resume = match &held {
        Some(v) => format!("pass {flag} {v} (or leave it out)"),
        None => format!("leave {flag} out"),
    };
    let asked = format!("{flag} {given}");
    Error::Config(format!(
        "{} was trained {trained}, not {}: {resume} to resume it, or start a new run in \
         another --out folder",
        checkpoint.display(),
        asked.trim_end()
    ))
}

#[derive(Args, Clone)]
pub struct WeightArgs {
    /// Height of the weight map's border term (the paper: 10) [default: 10; `train --resume`:
    /// the checkpoint's]
    #[arg(long)]
    w0: Option<f32>,
    /// Width of the border term in pixels (the paper: 5) [default: 5; `train --resume`:
    /// the checkpoint's]
    #[arg(long)]
    sigma: Option<f32>,
    /// How the weight map balances the classes: `total` (the border term, then every class
    /// scaled to the same total weight), `paper` (class-frequency weights, then the border
    /// term: on large touching cells the background then outweighs the cells) or `off`
    /// [default: total; `train --resume`: the checkpoint's]
    #[arg(long, value_name = "HOW")]
    balance: Option<ClassBalance>,
}

impl WeightArgs {
    /// The weight map these flags ask for: the paper's border term, the classes balanced
    /// after it (`total`), for every flag left out.
    pub fn config(&self) -> WeightMapConfig {
        let paper = WeightMapConfig::default();
        WeightMapConfig {
            w0: self.w0.unwrap_or(paper.w0),
            sigma: self.sigma.unwrap_or(paper.sigma),
            balance: self.balance.unwrap_or(ClassBalance::Total),
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
