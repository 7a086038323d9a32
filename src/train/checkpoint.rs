//! Checkpoints: one safetensors file holding the weights under PyTorch-style names (so
//! they load into a PyTorch U-Net as a state_dict), the SGD momentum buffers under
//! `optimizer.momentum.<name>`, and in the header's metadata the format version, the
//! network's config, the optimiser's settings and learning-rate schedule, the step and the
//! seed: everything needed to resume training exactly; with them how the data was read
//! ([`DataSpec`]) and, for a run of `unet train`, where it came from ([`DataSource`]).
//! Files are written atomically: to a temporary file in the same folder, flushed to disk,
//! then renamed over the old one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::schedule::LrSchedule;
use super::trainer::Trainer;
use crate::data::{DataSpec, MaskFormat, WeightMapConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Network, UNetConfig};
use crate::ops::sgd::Sgd;
use crate::tensor::Shape;

pub const FORMAT: &str = "unet-wgpu";
/// Bumped whenever the layout of a checkpoint changes; newer files are refused.
pub const FORMAT_VERSION: u32 = 1;
const MOMENTUM_PREFIX: &str = "optimizer.momentum.";
/// The metadata key of the [`DataSpec`] (absent in checkpoints from before it).
pub const DATA_KEY: &str = "data";
/// The metadata key of the [`DataSource`] (absent in checkpoints from before it, and in
/// those of runs not started by `unet train`).
pub const SOURCE_KEY: &str = "source";

/// Where a run's images came from, as `unet train` was told, so that `train --resume`
/// trains on the same images, split the same way, without being told again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSource {
    /// `--data`: a folder (its absolute path) or `synthetic[:STYLE]`.
    pub data: String,
    /// `--val`, where it was given: a folder (absolute) or `synthetic[:STYLE]`.
    pub val: Option<String>,
    /// The images held out from the end of `data` for validation (`--holdout`, or a
    /// folder's default share); None where `val` is given, or where synthetic data
    /// validates on images made apart.
    pub holdout: Option<usize>,
    /// How the training tiles were cut (None in checkpoints from before it was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TileDraw>,
}

/// How a run of `unet train` cut its training tiles, so that `train --resume` cuts the
/// same ones and ends where an unbroken run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileDraw {
    /// The input tile's side (`--tile`).
    pub tile: usize,
    /// Tiles per step (`--batch`).
    pub batch: usize,
    /// Whether the tiles were augmented (no `--no-augment`).
    pub augment: bool,
}

/// PyTorch's shape for a parameter: biases are 1-D, weights 4-D.
fn torch_shape(shape: Shape) -> Vec<usize> {
    if shape == Shape::vector(shape.w) {
        vec![shape.w]
    } else {
        vec![shape.n, shape.c, shape.h, shape.w]
    }
}

/// Writes `trainer` (weights, momentum, config, step, seed) to `path`, atomically.
pub fn save(gpu: &Gpu, trainer: &Trainer, path: &Path) -> Result<()> {
    save_with_data(gpu, trainer, None, None, path)
}

/// [`save`], with what the network was trained on (channels, normalisation, classes)
/// under the metadata key `data` (without it the file reads as [`DataSpec::legacy`]), and
/// where those images came from under `source`.
pub fn save_with_data(
    gpu: &Gpu,
    trainer: &Trainer,
    data: Option<&DataSpec>,
    source: Option<&DataSource>,
    path: &Path,
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for p in trainer.model.params() {
        let shape = torch_shape(p.shape());
        let values = p.value.to_vec(gpu)?;
        // Never replace a good checkpoint with the weights of a run that has diverged.
        if !values.iter().all(|v| v.is_finite()) {
            return Err(Error::NonFiniteParameter {
                step: trainer.step,
                name: p.name.clone(),
            });
        }
        let value: Vec<u8> = bytemuck::cast_slice(&values).to_vec();
        let velocity: Vec<u8> = bytemuck::cast_slice(&p.velocity.to_vec(gpu)?).to_vec();
        tensors.push((p.name.clone(), shape.clone(), value));
        tensors.push((format!("{MOMENTUM_PREFIX}{}", p.name), shape, velocity));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes match");
            (name.as_str(), view)
        })
        .collect::<Vec<_>>();
    let config = trainer.model.config();
    let arch = config.arch.name().to_string();
    let config = serde_json::to_string(config).expect("config serialises");
    let sgd = &trainer.sgd;
    let mut metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("arch", arch),
        ("config", config),
        ("step", trainer.step.to_string()),
        ("seed", trainer.seed.to_string()),
        ("lr", sgd.lr.to_string()),
        ("momentum", sgd.momentum.to_string()),
        ("weight_decay", sgd.weight_decay.to_string()),
    ]
    .into_iter()
    .chain(trainer.schedule.to_metadata(sgd.lr))
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(data) = data {
        let json = serde_json::to_string(data).expect("the data spec serialises");
        metadata.insert(DATA_KEY.to_string(), json);
    }
    if let Some(source) = source {
        let json = serde_json::to_string(source).expect("the data source serialises");
        metadata.insert(SOURCE_KEY.to_string(), json);
    }
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| checkpoint_error(path, format!("could not serialise: {e}")))?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file in the same folder, flushed to disk, renamed over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| checkpoint_error(path, "not a file path".into()))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn checkpoint_error(path: &Path, msg: String) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        msg,
    }
}

/// A checkpoint read and checked on the host, no GPU needed: its settings, and tensors
/// whose names, dtypes and shapes fit the network its config describes, so building that
/// network from it cannot fail for the file's sake.
pub struct CheckpointFile<'a> {
    pub config: UNetConfig,
    pub sgd: Sgd,
    pub schedule: LrSchedule,
    pub step: u64,
    pub seed: u64,
    /// How images are read and normalised, and the classes.
    pub data: DataSpec,
    /// Where the training images came from, if `unet train` said.
    pub source: Option<DataSource>,
    tensors: SafeTensors<'a>,
}

impl CheckpointFile<'_> {
    /// The values of parameter `name` (e.g. `enc0.conv1.weight`), row-major in PyTorch's
    /// layout; [`parse`] has checked that every parameter of the config is there.
    pub fn param(&self, name: &str) -> Result<Vec<f32>> {
        let view = self.tensors.tensor(name).map_err(|e| Error::Checkpoint {
            path: String::new(),
            msg: format!("`{name}`: {e} (not a parameter of this network)"),
        })?;
        Ok(bytemuck::pod_collect_to_vec(view.data()))
    }
}

/// Reads a checkpoint written by [`save`] and rebuilds the trainer on `gpu`.
pub fn load(gpu: &Gpu, path: &Path) -> Result<Trainer> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file = parse(&bytes, path)?;
    let model = Network::new(gpu, file.config, 0)?;
    for p in model.params() {
        for (name, target) in [
            (p.name.clone(), &p.value),
            (format!("{MOMENTUM_PREFIX}{}", p.name), &p.velocity),
        ] {
            // `parse` checked every name and shape the config implies.
            let view = file.tensors.tensor(&name).map_err(|e| {
                checkpoint_error(
                    path,
                    format!("`{name}`: {e} (the model and the checkpoint check disagree: a bug)"),
                )
            })?;
            target.write(gpu, &bytemuck::pod_collect_to_vec(view.data()))?;
        }
    }
    let mut trainer = Trainer::new(model, file.sgd, file.seed);
    trainer.step = file.step;
    trainer.schedule = file.schedule;
    Ok(trainer)
}

/// The [`DataSpec`] of the checkpoint at `path` (read and checked on the host).
pub fn read_data_spec(path: &Path) -> Result<DataSpec> {
    Ok(read_run_data(path)?.data)
}

/// What `train --resume` reads from a checkpoint before it loads the weights: the
/// network, how the data was read, where it came from, and the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunData {
    /// The network.
    pub config: UNetConfig,
    pub data: DataSpec,
    pub source: Option<DataSource>,
    /// The run's seed (its synthetic images, augmentation and tile order).
    pub seed: u64,
}

/// The [`RunData`] of the checkpoint at `path` (read and checked on the host).
pub fn read_run_data(path: &Path) -> Result<RunData> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file = parse(&bytes, path)?;
    Ok(RunData {
        config: file.config,
        data: file.data,
        source: file.source,
        seed: file.seed,
    })
}

/// Parses and checks the bytes of a checkpoint (the fuzz target's entry point); `path`
/// only names the file in errors.
pub fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<CheckpointFile<'a>> {
    let bad = |msg: String| checkpoint_error(path, msg);
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(format!(
            "not a valid safetensors file ({e}); it may be truncated or corrupt: use an \
             earlier copy or train again"
        ))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        meta.get(key).ok_or_else(|| {
            bad(format!(
                "no `{key}` in its metadata: not a unet-wgpu checkpoint (give a file written \
                 by `unet train`)"
            ))
        })
    };
    if field("format")? != FORMAT {
        return Err(bad(
            "not a unet-wgpu checkpoint (give a file written by `unet train`)".into(),
        ));
    }
    let version: u32 = field("format_version")?
        .parse()
        .map_err(|_| bad("bad format_version: the file is corrupt".into()))?;
    if version > FORMAT_VERSION {
        return Err(bad(format!(
            "written by a newer unet-wgpu (format {version}, this one reads up to \
             {FORMAT_VERSION}): upgrade unet-wgpu"
        )));
    }
    let arch = field("arch")?;
    let config: UNetConfig = serde_json::from_str(field("config")?)
        .map_err(|e| bad(format!("unreadable config ({e}): the file is corrupt")))?;
    config.validate().map_err(|e| {
        bad(format!(
            "holds an impossible config ({e}): the file is corrupt"
        ))
    })?;
    if arch != config.arch.name() {
        return Err(bad(format!(
            "its metadata says arch {arch} but its config is a {}: the file is corrupt",
            config.arch
        )));
    }
    let number = |key: &str| -> Result<f64> {
        field(key)?
            .parse()
            .map_err(|_| bad(format!("`{key}` is not a number: the file is corrupt")))
    };
    let sgd = Sgd {
        lr: number("lr")? as f32,
        momentum: number("momentum")? as f32,
        weight_decay: number("weight_decay")? as f32,
    };
    let whole = |key: &str| -> Result<u64> {
        field(key)?.parse().map_err(|_| {
            bad(format!(
                "`{key}` is not a whole number: the file is corrupt"
            ))
        })
    };
    let (step, seed) = (whole("step")?, whole("seed")?);
    let schedule = LrSchedule::from_metadata(|key| meta.get(key).cloned()).map_err(|e| {
        bad(format!(
            "unreadable learning-rate schedule ({e}): the file is corrupt"
        ))
    })?;
    let expected = expected_params(&config).ok_or_else(|| {
        bad(format!(
            "its config {config:?} describes no network that fits a tile: the file is corrupt"
        ))
    })?;
    check_tensors(&tensors, &expected, path)?;
    let data = match meta.get(DATA_KEY) {
        None => DataSpec::legacy(config.in_channels, config.classes),
        Some(json) => serde_json::from_str::<DataSpec>(json).map_err(|e| {
            bad(format!(
                "unreadable `{DATA_KEY}` ({e}): the file is corrupt"
            ))
        })?,
    };
    let source = match meta.get(SOURCE_KEY) {
        None => None,
        Some(json) => Some(serde_json::from_str::<DataSource>(json).map_err(|e| {
            bad(format!(
                "unreadable `{SOURCE_KEY}` ({e}): the file is corrupt"
            ))
        })?),
    };
    if (data.channels, data.classes) != (config.in_channels, config.classes) {
        return Err(bad(format!(
            "its data has {} channel(s) and {} classes but its network {} and {}: the file \
             is corrupt",
            data.channels, data.classes, config.in_channels, config.classes
        )));
    }
    Ok(CheckpointFile {
        config,
        sgd,
        schedule,
        step,
        seed,
        data,
        source,
        tensors,
    })
}

/// The name and PyTorch shape of every parameter of the network `config` describes, read
/// off its layer table (a test checks they are the built network's); `None` when the
/// config fits no tile.
pub fn expected_params(config: &UNetConfig) -> Option<Vec<(String, Vec<usize>)>> {
    let layers = config.layers(config.input_size_for(1)).ok()?;
    Some(
        layers
            .iter()
            .flat_map(|l| {
                [
                    (format!("{}.weight", l.name), l.weight_shape.to_vec()),
                    (format!("{}.bias", l.name), vec![l.c_out]),
                ]
            })
            .collect(),
    )
}

/// Checks that `file` holds every parameter and momentum buffer in `expected` as F32 of
/// the right shape; a mismatch lists the first differences.
fn check_tensors(file: &SafeTensors, expected: &[(String, Vec<usize>)], path: &Path) -> Result<()> {
    let mut mismatches = Vec::new();
    for (param, want) in expected {
        for name in [param.clone(), format!("{MOMENTUM_PREFIX}{param}")] {
            match file.tensor(&name) {
                Err(_) => mismatches.push(format!("`{name}` is missing")),
                Ok(view) if view.shape() != want.as_slice() || view.dtype() != Dtype::F32 => {
                    mismatches.push(format!(
                        "`{name}` is {:?} {:?}, the model needs F32 {want:?}",
                        view.dtype(),
                        view.shape()
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    if mismatches.is_empty() {
        return Ok(());
    }
    let n = mismatches.len();
    mismatches.truncate(5);
    Err(checkpoint_error(
        path,
        format!(
            "does not fit the network its config describes ({n} mismatches; first: {}); it \
             was probably written for another network or edited: use a checkpoint written by \
             `unet train` for this config",
            mismatches.join("; ")
        ),
    ))
}

/// The spec of `data` for a network with `in_channels` and `classes` (a training run):
/// an error that says what to do when they differ.
pub fn checked_data_spec(data: &crate::data::Dataset, config: &UNetConfig) -> Result<DataSpec> {
    let spec = data.spec();
    if spec.channels != config.in_channels || spec.classes != config.classes {
        return Err(Error::Config(format!(
            "the data has {} channel(s) and {} classes but the network takes {} and predicts \
             {}: train a new network on this data (--channels/--classes), or give data like \
             the checkpoint's",
            spec.channels, spec.classes, config.in_channels, config.classes
        )));
    }
    Ok(spec.clone())
}

/// Checks that a resumed run's `data` is read as the checkpoint's (`held`) was: the same
/// normalisation, classes, class values, unlabelled value, weight map and mask format.
/// (The command line takes the checkpoint's values where no flag was given, see `unet train --resume`.)
pub fn check_resumed_data(held: &DataSpec, data: &DataSpec, path: &Path) -> Result<()> {
    let differs = |what: &str, held: String, data: String| {
        Err(Error::Config(format!(
            "{} was trained with {what} {held}, but the data is read with {data}: read it as \
             the checkpoint's was, or start a new run in another folder",
            path.display()
        )))
    };
    if held.normalize != data.normalize {
        return differs(
            "normalisation",
            held.normalize.to_string(),
            data.normalize.to_string(),
        );
    }
    if held.classes != data.classes {
        return differs(
            "classes",
            held.classes.to_string(),
            data.classes.to_string(),
        );
    }
    let values = |v: &Option<Vec<crate::data::ClassValue>>| match v {
        Some(v) => v
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(","),
        None => "none".into(),
    };
    if held.class_values != data.class_values {
        return differs(
            "class values",
            values(&held.class_values),
            values(&data.class_values),
        );
    }
    let ignore = |v: Option<u32>| v.map_or("none".into(), |v| v.to_string());
    if held.ignore_index != data.ignore_index {
        return differs(
            "unlabelled value",
            ignore(held.ignore_index),
            ignore(data.ignore_index),
        );
    }
    // A checkpoint from before the weight map was stored accepts any.
    let map = |m: Option<WeightMapConfig>| {
        m.map_or("none".into(), |m| {
            format!("w0 {}, sigma {}, balance {}", m.w0, m.sigma, m.balance)
        })
    };
    if held.weight_map.is_some() && held.weight_map != data.weight_map {
        return differs("the weight map", map(held.weight_map), map(data.weight_map));
    }
    // Likewise for how the masks were read.
    let masks = |m: Option<MaskFormat>| m.map_or("no mask files".into(), |m| m.to_string());
    if held.masks.is_some() && held.masks != data.masks {
        return differs("masks read as", masks(held.masks), masks(data.masks));
    }
    let stored = |class_mask: Option<bool>| match class_mask {
        Some(true) => "class indices",
        Some(false) => "binary or instance values",
        None => "no mask files",
    };
    if held.class_mask.is_some() && held.class_mask != data.class_mask {
        return differs(
            "masks holding",
            stored(held.class_mask).into(),
            stored(data.class_mask).into(),
        );
    }
    let width = |w: Option<usize>| w.map_or("none".into(), |w| format!("{w} px"));
    if held.boundary_width.is_some() && held.boundary_width != data.boundary_width {
        return differs(
            "a boundary class of",
            width(held.boundary_width),
            width(data.boundary_width),
        );
    }
    Ok(())
}
