//! A checkpoint as a BioImage Model Zoo package (model spec 0.5): what Fiji (deepImageJ),
//! ilastik, QuPath, napari and `bioimageio.core` open.
//!
//! ```text
//! bioimageio.yaml    the description: axes, valid sizes, preprocessing, weights, tests
//! model.onnx         the network (see [`super::onnx`]), softmax probabilities out
//! test_input.npy     float32 [1, C, S, S], 8-bit intensities 0..255 (before preprocessing)
//! test_output.npy    float32 [1, K, S - 2 margin, ...], the engine's own probabilities
//! cover.png          the test input with the predicted foreground drawn over it
//! sample_*.png       the test input and output as images, for people to look at
//! README.md          what the model is, how to use it, and a "# Validation" section
//! ```
//!
//! Preprocessing says exactly what the engine does to an 8-bit image when it reads it.
//! Without normalisation that is `data::RawPage::to_gray`'s division by 255 (`scale_linear`,
//! gain 1/255), which keeps it in [0, 1] (`clip` states it). With normalisation it is the
//! checkpoint's normalisation alone, applied to the stored 8-bit values: the zoo's runtimes
//! (`bioimageio.core`) compute a step's statistics on the input as given, before any step
//! runs, so a `scale_linear` ahead of a `zero_mean_unit_variance` would be normalised with
//! the raw image's mean and deviation. Every normalisation is affine, so normalising the
//! stored values equals normalising them divided by 255 (up to the epsilon). The test
//! output is computed by the engine on the GPU from the stated preprocessing, so a consumer
//! that reproduces it has run the same network. A folder is written to a
//! temporary folder beside it and renamed into place; a `.zip` is written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::onnx::{onnx_model, OnnxModel, INPUT, OPSET, OUTPUT};
use super::{describe, read_checkpoint, Geometry};
use crate::data::normalize::EPS as NORMALIZE_EPS;
use crate::data::{npy_bytes, synthetic_dataset, Grid, SynthConfig};
use crate::data::{Image, Normalize};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Arch, Heads, UNetConfig};
use crate::ops::conv2d::Padding;
use crate::report::square_overlay_png;
use crate::tensor::{Shape, Tensor};
use crate::train::checkpoint::{self, write_atomically};

/// The spec version the package follows.
pub const FORMAT_VERSION: &str = "0.5.4";
/// The description's file name in the package.
pub const DESCRIPTION: &str = "bioimageio.yaml";

/// Who made the model and under what terms: the fields of the description a person must
/// choose.
#[derive(Clone, Debug)]
pub struct PackageInfo {
    /// Letters, digits, spaces, `_+-()` only, 5 to 128 characters (the spec's rule);
    /// `None`: "U-Net (unet-wgpu)" or "U-Net++ (unet-wgpu)".
    pub name: Option<String>,
    pub authors: Vec<String>,
    /// An SPDX license identifier for the weights, e.g. `MIT` or `CC-BY-4.0`.
    pub license: String,
}

/// What a package holds, for the caller to report.
pub struct Package {
    pub files: Vec<(String, Vec<u8>)>,
    pub onnx: OnnxModel,
    /// The side length of the test input.
    pub test_side: usize,
}

/// Exports the checkpoint at `checkpoint` as a package at `out`: a folder, or a zip file
/// when `out` ends in `.zip`. The test output is computed on `gpu`.
pub fn export_bioimageio(
    gpu: &Gpu,
    checkpoint: &Path,
    heads: Heads,
    info: &PackageInfo,
    out: &Path,
) -> Result<Package> {
    if let Some(name) = &info.name {
        check_name(name)?;
    }
    let bytes = read_checkpoint(checkpoint)?;
    let onnx = onnx_model(&checkpoint::parse(&bytes, checkpoint)?, heads)?;
    let name = info.name.clone().unwrap_or_else(|| {
        match onnx.config.arch {
            Arch::UNet => "U-Net (unet-wgpu)",
            Arch::UNetPlusPlus => "U-Net++ (unet-wgpu)",
        }
        .to_string()
    });
    let package = package(gpu, checkpoint, onnx, heads, info, &name)?;
    let is_zip = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    match is_zip {
        true => write_atomically(out, &zip_bytes(&package.files, out)?)?,
        false => write_folder(out, &package.files)?,
    }
    Ok(package)
}

/// The spec's rule for names.
fn check_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+- ()".contains(c);
    if (5..=128).contains(&name.len()) && name.chars().all(allowed) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--name {name:?}: a BioImage Model Zoo name has 5 to 128 letters, digits, spaces \
         or _+-() characters"
    )))
}

/// Every file of the package, the description last.
fn package(
    gpu: &Gpu,
    checkpoint: &Path,
    onnx: OnnxModel,
    heads: Heads,
    info: &PackageInfo,
    name: &str,
) -> Result<Package> {
    let config = onnx.config;
    let g = onnx.geometry;
    // A test tile well above the smallest, so the cover shows something.
    let side = g.fit(g.min.max(2 * g.margin + 128));
    let (input8, gray) = test_image(side)?;
    let c = config.in_channels;
    // Every input channel gets the gray image (the engine reads images as one channel).
    let raw: Vec<f32> = (0..c).flat_map(|_| input8.iter().copied()).collect();
    // The stated preprocessing (module notes): the checkpoint's normalisation of the 8-bit
    // values, or without one the engine's division by 255.
    let normalize = checkpoint::read_data_spec(checkpoint)?.normalize;
    let mut scaled = Image {
        width: side,
        height: side,
        channels: c,
        data: raw.clone(),
    };
    match normalize {
        Normalize::None => scaled.data.iter_mut().for_each(|v| *v /= 255.0),
        _ => drop(normalize.apply(&mut scaled)),
    }
    let scaled = scaled.data;

    let trainer = checkpoint::load(gpu, checkpoint)?;
    let tile = Tensor::from_slice(gpu, Shape::new(1, c, side, side), &scaled, "test input")?;
    let probs = trainer.model.probabilities(gpu, tile, heads)?;
    let out_shape = probs.shape();
    let probs = probs.to_vec(gpu)?;

    let out_side = side - 2 * g.margin;
    let foreground = Grid {
        width: out_side,
        height: out_side,
        data: probs[out_side * out_side..2 * out_side * out_side].to_vec(),
    };
    let centre = crop(&gray, g.margin, out_side);
    let cover = square_overlay_png(&centre, &foreground, 0.5, None)?;

    let mut files = vec![
        ("model.onnx".to_string(), onnx.bytes.clone()),
        (
            "test_input.npy".to_string(),
            npy_bytes(&[1, c, side, side], &raw),
        ),
        (
            "test_output.npy".to_string(),
            npy_bytes(
                &[out_shape.n, out_shape.c, out_shape.h, out_shape.w],
                &probs,
            ),
        ),
        ("cover.png".to_string(), cover),
        ("sample_input.png".to_string(), sample_input(&input8, side)?),
        (
            "sample_output.png".to_string(),
            sample_output(&probs, config.classes, out_side)?,
        ),
        (
            "README.md".to_string(),
            readme(&config, heads, g, name, side, normalize).into_bytes(),
        ),
    ];
    let yaml = to_yaml(&description(
        &config, heads, g, info, name, onnx.step, &files, normalize,
    ));
    files.push((DESCRIPTION.to_string(), yaml.into_bytes()));
    Ok(Package {
        files,
        onnx,
        test_side: side,
    })
}

/// The test input as an 8-bit gray PNG (for people: the zoo shows sample tensors).
fn sample_input(values: &[f32], side: usize) -> Result<Vec<u8>> {
    let pixels = values.iter().map(|&v| v as u8).collect();
    let image = image::GrayImage::from_raw(side as u32, side as u32, pixels).expect("sizes match");
    encode(image::DynamicImage::ImageLuma8(image))
}

/// The test output for people: the foreground probability of a two-class model as a
/// 16-bit gray PNG (0..65535), or the most probable class of each pixel (8-bit) otherwise.
fn sample_output(probs: &[f32], classes: usize, side: usize) -> Result<Vec<u8>> {
    let plane = side * side;
    if classes == 2 {
        let pixels = probs[plane..2 * plane]
            .iter()
            .map(|&p| (p.clamp(0.0, 1.0) * 65535.0).round() as u16)
            .collect();
        let image = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
            side as u32,
            side as u32,
            pixels,
        )
        .expect("sizes match");
        return encode(image::DynamicImage::ImageLuma16(image));
    }
    let pixels = (0..plane)
        .map(|i| {
            (0..classes)
                .max_by(|&a, &b| probs[a * plane + i].total_cmp(&probs[b * plane + i]))
                .unwrap_or(0) as u8
        })
        .collect();
    let image = image::GrayImage::from_raw(side as u32, side as u32, pixels).expect("sizes match");
    encode(image::DynamicImage::ImageLuma8(image))
}

fn encode(image: image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Config(format!("could not encode a PNG: {e}")))?;
    Ok(bytes)
}

/// A synthetic cell image of `side` x `side`, quantised to 8 bits: the 0..255 values (the
/// package's raw test input) and the same as intensities in [0, 1].
fn test_image(side: usize) -> Result<(Vec<f32>, Grid<f32>)> {
    let data = synthetic_dataset(1, side, side, 2015, &SynthConfig::default())?;
    let image = &data.samples()[0].image;
    let values: Vec<f32> = image
        .data
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round())
        .collect();
    let gray = Grid {
        width: side,
        height: side,
        data: values.iter().map(|&v| v / 255.0).collect(),
    };
    Ok((values, gray))
}

/// The `side` x `side` window of `image` starting `offset` pixels in.
fn crop(image: &Grid<f32>, offset: usize, side: usize) -> Grid<f32> {
    let data = (0..side)
        .flat_map(|y| {
            let row = (y + offset) * image.width + offset;
            image.data[row..row + side].iter().copied()
        })
        .collect();
    Grid {
        width: side,
        height: side,
        data,
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_entry(files: &[(String, Vec<u8>)], name: &str) -> Value {
    let bytes = &files
        .iter()
        .find(|(n, _)| n == name)
        .expect("the file is in the package")
        .1;
    json!({ "source": name, "sha256": sha256(bytes) })
}

fn class_names(classes: usize) -> Vec<String> {
    match classes {
        2 => vec!["background".into(), "foreground".into()],
        k => (0..k).map(|i| format!("class{i}")).collect(),
    }
}

/// The smallest input the description states, and the output's halo.
///
/// The output is smaller than the input by the valid convolutions' margin on each side
/// (the output size's offset from the input's). With same padding it has the input's size,
/// but its border sees zero padding: a halo of the margin the same network would have with
/// valid padding tells tiling consumers how much to overlap, and the spec wants the
/// smallest output to outlast its halo on both sides, so the minimum rises to fit it.
fn described_sizes(config: &UNetConfig, g: Geometry) -> (usize, usize) {
    let halo = match config.padding {
        Padding::Valid => 0,
        Padding::Same => {
            Geometry::of(&UNetConfig {
                padding: Padding::Valid,
                ..*config
            })
            .margin
        }
    };
    (g.fit(2 * halo + 1), halo)
}

/// The checkpoint's normalisation as a preprocessing step of the spec (0.5), per sample
/// and channel (reduced over the axes y and x): `scale_range` (percentiles; min-max is
/// percentiles 0 and 100) or `zero_mean_unit_variance`, each with the engine's epsilon.
fn normalization_step(normalize: Normalize) -> Option<Value> {
    // f32 as the decimal it was written as (99.8, not 99.80000305175781).
    let decimal = |v: f32| v.to_string().parse::<f64>().unwrap_or(f64::from(v));
    let eps = decimal(NORMALIZE_EPS);
    let range = |low: f32, high: f32| {
        json!({ "id": "scale_range", "kwargs": {
            "axes": ["y", "x"],
            "min_percentile": decimal(low),
            "max_percentile": decimal(high),
            "eps": eps,
        } })
    };
    match normalize {
        Normalize::None => None,
        Normalize::MinMax => Some(range(0.0, 100.0)),
        Normalize::Percentile { low, high } => Some(range(low, high)),
        Normalize::ZScore => Some(json!({ "id": "zero_mean_unit_variance", "kwargs": {
            "axes": ["y", "x"],
            "eps": eps,
        } })),
    }
}

/// The model description, as the spec's fields.
#[allow(clippy::too_many_arguments)]
fn description(
    config: &UNetConfig,
    heads: Heads,
    g: Geometry,
    info: &PackageInfo,
    name: &str,
    step: u64,
    files: &[(String, Vec<u8>)],
    normalize: Normalize,
) -> Value {
    // The normalisation alone, or the division by 255 (module notes).
    let preprocessing = match normalization_step(normalize) {
        Some(step) => vec![step],
        None => vec![
            json!({ "id": "scale_linear", "kwargs": { "gain": 1.0 / 255.0, "offset": 0.0 } }),
            json!({ "id": "clip", "kwargs": { "min": 0.0, "max": 1.0 } }),
        ],
    };
    let channels: Vec<String> = match config.in_channels {
        1 => vec!["gray".into()],
        c => (0..c).map(|i| format!("channel{i}")).collect(),
    };
    let (min_input, halo) = described_sizes(config, g);
    let space_in = |id: &str| json!({ "type": "space", "id": id, "size": { "min": min_input, "step": g.step } });
    let space_out = |id: &str| {
        let mut axis = json!({
            "type": "space",
            "id": id,
            "size": { "tensor_id": INPUT, "axis_id": id, "offset": -2 * g.margin as i64 },
        });
        if halo > 0 {
            axis["halo"] = json!(halo);
        }
        axis
    };
    json!({
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": format!(
            "{}. Trained with unet-wgpu (a from-scratch wgpu/WGSL engine). Outputs class \
             probabilities (softmax over channels).",
            describe(config, heads)
        ),
        "authors": info.authors.iter().map(|a| json!({ "name": a })).collect::<Vec<_>>(),
        "cite": citations(config),
        "license": info.license,
        "tags": tags(config),
        "documentation": "README.md",
        "covers": ["cover.png"],
        "inputs": [{
            "id": INPUT,
            "description": "intensities as stored in an 8-bit image (0..255)",
            "axes": [
                { "type": "batch" },
                { "type": "channel", "channel_names": channels },
                space_in("y"),
                space_in("x"),
            ],
            "test_tensor": file_entry(files, "test_input.npy"),
            "sample_tensor": file_entry(files, "sample_input.png"),
            "data": { "type": "float32", "range": [0.0, 255.0] },
            "preprocessing": preprocessing,
        }],
        "outputs": [{
            "id": OUTPUT,
            "description": "class probabilities (softmax over channels)",
            "axes": [
                { "type": "batch" },
                { "type": "channel", "channel_names": class_names(config.classes) },
                space_out("y"),
                space_out("x"),
            ],
            "test_tensor": file_entry(files, "test_output.npy"),
            "sample_tensor": file_entry(files, "sample_output.png"),
            "data": { "type": "float32", "range": [0.0, 1.0] },
        }],
        "weights": {
            "onnx": {
                "source": "model.onnx",
                "sha256": sha256(&files[0].1),
                "opset_version": OPSET,
            },
        },
        "config": {
            "unet_wgpu": {
                "version": env!("CARGO_PKG_VERSION"),
                "network": serde_json::to_value(config).expect("config serialises"),
                "checkpoint_step": step,
                "input_min_size": g.min,
                "input_size_step": g.step,
                "output_margin": g.margin,
            },
        },
    })
}

fn tags(config: &UNetConfig) -> Vec<&'static str> {
    let mut tags = vec!["segmentation", "semantic-segmentation", "2d", "unet"];
    if config.arch == Arch::UNetPlusPlus {
        tags.push("unetpp");
    }
    tags.extend(["pixel-classification", "onnx", "unet-wgpu"]);
    tags
}

/// The U-Net paper always; the U-Net++ paper for a U-Net++.
fn citations(config: &UNetConfig) -> Value {
    let mut cite = vec![json!({
        "text": "Ronneberger, O., Fischer, P., Brox, T.: U-Net: Convolutional Networks for \
                 Biomedical Image Segmentation. MICCAI 2015 (arXiv:1505.04597)",
        "doi": "10.1007/978-3-319-24574-4_28",
    })];
    if config.arch == Arch::UNetPlusPlus {
        cite.push(json!({
            "text": "Zhou, Z., Rahman Siddiquee, M. M., Tajbakhsh, N., Liang, J.: UNet++: A \
                     Nested U-Net Architecture for Medical Image Segmentation. DLMIA 2018",
            "doi": "10.1007/978-3-030-00889-5_1",
        }));
    }
    Value::Array(cite)
}

fn readme(
    config: &UNetConfig,
    heads: Heads,
    g: Geometry,
    name: &str,
    side: usize,
    normalize: Normalize,
) -> String {
    let (preprocessing, by_hand) = match normalize {
        Normalize::None => (
            "The preprocessing divides by 255, as the engine does when it reads an 8-bit \
             image (a 16-bit image is divided by 65535 instead: scale such data to 0..255 \
             first)."
                .to_string(),
            "an image scaled to [0, 1]".to_string(),
        ),
        n => (
            format!(
                "The preprocessing normalises each channel of each image (unet-wgpu's \
                 `--normalize {n}`, as the network was trained), so 16-bit values work as well."
            ),
            format!("each channel of an image normalised the same way (`{n}`)"),
        ),
    };
    let out = side - 2 * g.margin;
    let (min, halo) = described_sizes(config, g);
    let margin = match g.margin {
        0 => "The output has the input's size.".to_string(),
        m => format!(
            "The output is the input's centre, {m} pixels in from every side (valid \
             convolutions): mirror-pad an image by {m} pixels to predict all of it."
        ),
    } + &match halo {
        0 => String::new(),
        h => format!(
            " Its outer {h} pixels see the convolutions' zero padding (the halo): tiles \
             should overlap by that much."
        ),
    };
    format!(
        "# {name}\n\n{what}, trained with unet-wgpu (a from-scratch \
         wgpu/WGSL U-Net engine) and exported by `unet export --format bioimageio`.\n\n\
         ## Input and output\n\n\
         - `{INPUT}`: float32 `[batch, {c}, y, x]`, the values of an 8-bit image (0..255). \
         {preprocessing}\n\
         - y and x: {min} + k * {step} pixels (k = 0, 1, 2, ...).\n\
         - `{OUTPUT}`: float32 `[batch, {k}, y', x']`, class probabilities (a softmax over \
         the channels, summing to 1 per pixel). {margin}\n\n\
         ## Use\n\n\
         Fiji with deepImageJ, ilastik, QuPath and napari open this package directly. In \
         Python, `bioimageio.core` runs it, or run `model.onnx` with onnxruntime on \
         {by_hand}.\n\n\
         # Validation\n\n\
         `test_input.npy` is a synthetic cell image of {side} x {side} pixels and \
         `test_output.npy` the probabilities the unet-wgpu engine itself computed for it \
         on the GPU ({k} x {out} x {out}). unet-wgpu's tests run the exported ONNX graph \
         with tract and match the engine's probabilities to 1e-4; `bioimageio test` \
         checks that a runtime reproduces `test_output.npy` from `test_input.npy`. The \
         network has not been validated on data here: judge it on your own images with \
         ground truth (`unet eval` computes pixel, Rand and warping errors).\n",
        name = name,
        what = describe(config, heads),
        c = config.in_channels,
        k = config.classes,
        step = g.step,
    )
}

/// A JSON value as block-style YAML: strings, numbers, booleans and nulls are written as
/// JSON scalars (a double-quoted JSON string is a valid YAML scalar), objects as
/// `key: value` lines, arrays as `- ` items.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    yaml_block(value, 0, &mut out);
    out
}

fn yaml_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        yaml_block(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        yaml_block(v, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let mut inner = String::new();
                yaml_block(item, indent + 2, &mut inner);
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key goes on the dash's line.
                        out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}-\n{inner}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        scalar_value => out.push_str(&format!("{pad}{}\n", scalar(scalar_value))),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        v => v.to_string(),
    }
}

/// The package's files as a zip archive (stored uncompressed: float weights barely
/// compress).
fn zip_bytes(files: &[(String, Vec<u8>)], out: &Path) -> Result<Vec<u8>> {
    let fail = |e: zip::result::ZipError| Error::Io {
        path: out.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in files {
            zip.start_file(name.as_str(), options).map_err(fail)?;
            zip.write_all(bytes).map_err(|source| Error::Io {
                path: out.display().to_string(),
                source,
            })?;
        }
        zip.finish().map_err(fail)?;
    }
    Ok(buffer.into_inner())
}

/// Writes `files` into a new folder `out`: first into a temporary folder beside it, then
/// renamed into place, so a failure leaves nothing behind. An existing `out` is replaced
/// only if it is an earlier package (it holds a `bioimageio.yaml`).
fn write_folder(out: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    if out.exists() && !out.join(DESCRIPTION).is_file() {
        return Err(Error::Config(format!(
            "{} exists and is not a BioImage Model Zoo package: choose another --out",
            out.display()
        )));
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::Config(format!("--out {}: not a folder name", out.display())))?
        .to_string_lossy()
        .to_string();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{name}.tmp"));
    let old = parent.join(format!(".{name}.old"));
    let result = (|| -> Result<()> {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(io(out))?;
        for (file, bytes) in files {
            write_atomically(&tmp.join(file), bytes)?;
        }
        if out.exists() {
            std::fs::rename(out, &old).map_err(io(out))?;
        }
        std::fs::rename(&tmp, out).map_err(io(out))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if old.exists() && !out.exists() {
            let _ = std::fs::rename(&old, out);
        }
    }
    result
}

/// The files of a package folder or zip, by name (for checks and tests).
pub fn read_package(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let io = |p: PathBuf| {
        move |source| Error::Io {
            path: p.display().to_string(),
            source,
        }
    };
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io(path.to_path_buf()))? {
            let entry = entry.map_err(io(path.to_path_buf()))?;
            let bytes = std::fs::read(entry.path()).map_err(io(entry.path()))?;
            files.push((entry.file_name().to_string_lossy().to_string(), bytes));
        }
        files.sort();
        return Ok(files);
    }
    let bytes = std::fs::read(path).map_err(io(path.to_path_buf()))?;
    let bad = |e: zip::result::ZipError| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(bad)?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(bad)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io(path.to_path_buf()))?;
        files.push((file.name().to_string(), bytes));
    }
    files.sort();
    Ok(files)
}
