//! Exported models run elsewhere and predict what the engine predicts: the ONNX graph of a
//! checkpoint, run by tract (no Python), gives the engine's own probabilities to 1e-4 for
//! the U-Net (valid padding), U-Net++ (same and valid padding, each head choice), and a
//! multi-channel, multi-class network, on a tile larger than the smallest (the graph's H
//! and W are symbolic).

mod common;

use std::path::{Path, PathBuf};

use rand::Rng;
use tract_onnx::prelude::*;
use unet_wgpu::export::onnx::{onnx_model, OnnxModel, OPSET};
use unet_wgpu::export::Geometry;
use unet_wgpu::model::{Arch, Heads, Network, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{checkpoint, Trainer};
use unet_wgpu::{Gpu, Shape, Tensor};

/// A tiny network of `config` with He weights and random biases (so no bias is trivially
/// zero), saved as a checkpoint in a scratch folder.
pub fn tiny_checkpoint(gpu: &Gpu, config: UNetConfig, name: &str) -> PathBuf {
    let model = Network::new(gpu, config, 7).unwrap();
    let mut rng = common::rng(11);
    for p in model.params().iter().filter(|p| p.name.ends_with(".bias")) {
        let values: Vec<f32> = (0..p.shape().numel())
            .map(|_| rng.random_range(-0.2..0.2))
            .collect();
        p.value.write(gpu, &values).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("unet-export-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.safetensors");
    checkpoint::save(gpu, &Trainer::new(model, Sgd::default(), 1), &path).unwrap();
    path
}

fn tiny(arch: Arch, padding: Padding) -> UNetConfig {
    UNetConfig {
        depth: 3,
        base_channels: 4,
        padding,
        ..UNetConfig::small().with_arch(arch)
    }
}

fn export(path: &Path, heads: Heads) -> OnnxModel {
    let bytes = std::fs::read(path).unwrap();
    onnx_model(&checkpoint::parse(&bytes, path).unwrap(), heads).unwrap()
}

/// The exported model run by tract on `input` [1, C, side, side].
fn run_tract(model: &OnnxModel, input: &[f32], c: usize, side: usize) -> (Vec<usize>, Vec<f32>) {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model.bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact([1, c, side, side]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let tensor = Tensor4::from_shape_vec((1, c, side, side), input.to_vec()).unwrap();
    let out = plan
        .run(tvec!(tract_onnx::prelude::Tensor::from(tensor).into()))
        .unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    (view.shape().to_vec(), view.iter().copied().collect())
}

type Tensor4 = tract_ndarray::Array4<f32>;

/// Exports the checkpoint of `config`, runs it with tract and with the engine on one random
/// tile (the smallest valid side plus one step), and compares the probabilities.
fn check_matches_engine(gpu: &Gpu, config: UNetConfig, heads: Heads, name: &str) {
    let path = tiny_checkpoint(gpu, config, name);
    let model = export(&path, heads);
    let g = Geometry::of(&config);
    let side = g.min + g.step;
    let c = config.in_channels;
    let mut rng = common::rng(3);
    let input: Vec<f32> = (0..c * side * side).map(|_| rng.random()).collect();

    let trainer = checkpoint::load(gpu, &path).unwrap();
    let tile = Tensor::from_slice(gpu, Shape::new(1, c, side, side), &input, "tile").unwrap();
    let want = trainer.model.probabilities(gpu, tile, heads).unwrap();
    let want_shape = want.shape();
    let want = want.to_vec(gpu).unwrap();

    let (shape, got) = run_tract(&model, &input, c, side);
    let out = side - 2 * g.margin;
    assert_eq!(shape, [1, config.classes, out, out], "{name}: output shape");
    assert_eq!(
        (want_shape.c, want_shape.h, want_shape.w),
        (config.classes, out, out)
    );
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4,
        "{name}: tract and the engine differ by up to {worst}"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn unet_valid_runs_in_tract_like_the_engine() {
    let gpu = common::gpu();
    check_matches_engine(
        &gpu,
        tiny(Arch::UNet, Padding::Valid),
        Heads::default(),
        "unet",
    );
}

#[test]
fn a_multi_channel_multi_class_unet_runs_in_tract_like_the_engine() {
    let gpu = common::gpu();
    let config = UNetConfig {
        in_channels: 2,
        classes: 3,
        ..tiny(Arch::UNet, Padding::Valid)
    };
    check_matches_engine(&gpu, config, Heads::default(), "unet-2-3");
}

#[test]
fn unetpp_same_runs_in_tract_like_the_engine_with_each_head_choice() {
    let gpu = common::gpu();
    let config = tiny(Arch::UNetPlusPlus, Padding::Same);
    for (heads, name) in [
        (Heads::default(), "pp-last"),
        (
            Heads {
                prune: None,
                average: true,
            },
            "pp-average",
        ),
        (
            Heads {
                prune: Some(1),
                average: false,
            },
            "pp-pruned",
        ),
    ] {
        check_matches_engine(&gpu, config, heads, name);
    }
}

#[test]
fn unetpp_valid_runs_in_tract_like_the_engine() {
    let gpu = common::gpu();
    let config = tiny(Arch::UNetPlusPlus, Padding::Valid);
    let heads = Heads {
        prune: None,
        average: true,
    };
    check_matches_engine(&gpu, config, heads, "pp-valid");
}

#[test]
fn the_graph_says_its_opset_sizes_and_output() {
    let gpu = common::gpu();
    let config = tiny(Arch::UNet, Padding::Valid);
    let path = tiny_checkpoint(&gpu, config, "meta");
    let model = export(&path, Heads::default());
    let g = Geometry::of(&config);
    // The geometry is what the network takes: min + k * step and nothing else.
    for side in g.min - g.step..g.min + 4 * g.step {
        let valid = side >= g.min && (side - g.min).is_multiple_of(g.step);
        assert_eq!(config.output_size(side).is_some(), valid, "side {side}");
        if valid {
            assert_eq!(config.output_size(side), Some(side - 2 * g.margin));
        }
    }
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &model.bytes[..])
        .unwrap();
    assert_eq!(proto.opset_import[0].version, OPSET);
    let meta: std::collections::HashMap<_, _> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta["input_min_size"], g.min.to_string());
    assert_eq!(meta["input_size_step"], g.step.to_string());
    assert_eq!(meta["output_margin"], g.margin.to_string());
    assert!(proto.doc_string.contains("class probabilities"));
    let graph = proto.graph.as_ref().unwrap();
    let ops: std::collections::HashSet<&str> =
        graph.node.iter().map(|n| n.op_type.as_str()).collect();
    for op in [
        "Conv",
        "Relu",
        "MaxPool",
        "ConvTranspose",
        "Slice",
        "Concat",
        "Softmax",
    ] {
        assert!(ops.contains(op), "no {op} in {ops:?}");
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// The named file of a package.
fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not in the package"))
        .1
}

#[test]
fn a_bioimageio_package_holds_its_files_and_reproduces_its_test_output() {
    use unet_wgpu::data::parse_npy;
    use unet_wgpu::export::bioimageio::{export_bioimageio, read_package, PackageInfo};
    let gpu = common::gpu();
    let config = tiny(Arch::UNet, Padding::Valid);
    let path = tiny_checkpoint(&gpu, config, "bioimageio");
    let dir = path.parent().unwrap();
    let info = PackageInfo {
        name: Some("tiny U-Net (test)".into()),
        authors: vec!["A Tester".into()],
        license: "MIT".into(),
    };
    let folder = dir.join("package");
    let zip = dir.join("package.zip");
    export_bioimageio(&gpu, &path, Heads::default(), &info, &folder).unwrap();
    export_bioimageio(&gpu, &path, Heads::default(), &info, &zip).unwrap();
    let files = read_package(&folder).unwrap();
    assert_eq!(
        files,
        read_package(&zip).unwrap(),
        "the zip holds the folder's files"
    );
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    for name in [
        "bioimageio.yaml",
        "model.onnx",
        "test_input.npy",
        "test_output.npy",
        "sample_input.png",
        "sample_output.png",
        "cover.png",
        "README.md",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // No temporary folder is left beside the package.
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let yaml = String::from_utf8(file(&files, "bioimageio.yaml").to_vec()).unwrap();
    let g = Geometry::of(&config);
    for line in [
        "type: \"model\"".to_string(),
        "format_version: \"0.5.4\"".into(),
        "opset_version: 17".into(),
        format!("min: {}", g.min),
        format!("step: {}", g.step),
        format!("offset: -{}", 2 * g.margin),
        "id: \"scale_linear\"".into(),
        "doi: \"10.1007/978-3-319-24574-4_28\"".into(),
        "license: \"MIT\"".into(),
        "documentation: \"README.md\"".into(),
    ] {
        assert!(yaml.contains(&line), "no {line:?} in\n{yaml}");
    }
    assert!(
        yaml.starts_with("type: \"model\"\nformat_version:"),
        "{yaml}"
    );
    // Every file's hash in the description is the file's.
    for (name, bytes) in files.iter().filter(|f| f.0 != "bioimageio.yaml") {
        if ["README.md", "cover.png"].contains(&name.as_str()) {
            continue;
        }
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            yaml.contains(&hash),
            "{name}'s sha256 is not in the description"
        );
    }
    let readme = String::from_utf8(file(&files, "README.md").to_vec()).unwrap();
    assert!(readme.contains("\n# Validation\n"), "{readme}");

    // The test tensors re-imported: 8-bit values in, the engine's probabilities out.
    let (in_shape, raw) = parse_npy(file(&files, "test_input.npy")).unwrap();
    let (out_shape, want) = parse_npy(file(&files, "test_output.npy")).unwrap();
    let side = in_shape[2];
    assert_eq!(in_shape, [1, 1, side, side]);
    assert_eq!(out_shape, [1, 2, side - 2 * g.margin, side - 2 * g.margin]);
    assert!(raw
        .iter()
        .all(|&v| v.fract() == 0.0 && (0.0..=255.0).contains(&v)));
    // The preprocessing the description states (x / 255), then the engine and the
    // exported graph: both give the packaged output.
    let scaled: Vec<f32> = raw.iter().map(|v| v / 255.0).collect();
    let trainer = checkpoint::load(&gpu, &path).unwrap();
    let tile = Tensor::from_slice(&gpu, Shape::new(1, 1, side, side), &scaled, "t").unwrap();
    let engine = trainer
        .model
        .probabilities(&gpu, tile, Heads::default())
        .unwrap()
        .to_vec(&gpu)
        .unwrap();
    assert_eq!(engine, want, "the engine reproduces test_output.npy");
    let onnx = OnnxModel {
        bytes: file(&files, "model.onnx").to_vec(),
        ..export(&path, Heads::default())
    };
    let (_, got) = run_tract(&onnx, &scaled, 1, side);
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "the packaged ONNX differs by {worst}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_normalised_checkpoint_exports_its_normalisation_as_preprocessing() {
    use unet_wgpu::data::normalize::percentile;
    use unet_wgpu::data::{parse_npy, DataSpec, Normalize};
    use unet_wgpu::export::bioimageio::{export_bioimageio, read_package, PackageInfo};
    let gpu = common::gpu();
    let config = UNetConfig {
        in_channels: 2,
        classes: 3,
        ..tiny(Arch::UNet, Padding::Valid)
    };
    let plain = tiny_checkpoint(&gpu, config, "bioimageio-normalised");
    let dir = plain.parent().unwrap().to_path_buf();
    let path = dir.join("normalised.safetensors");
    let trainer = checkpoint::load(&gpu, &plain).unwrap();
    let spec = DataSpec {
        normalize: Normalize::Percentile {
            low: 1.0,
            high: 99.8,
        },
        ..DataSpec::legacy(2, 3)
    };
    checkpoint::save_with_data(&gpu, &trainer, Some(&spec), None, &path).unwrap();
    let info = PackageInfo {
        name: Some("tiny normalised U-Net".into()),
        authors: vec!["A Tester".into()],
        license: "MIT".into(),
    };
    let folder = dir.join("package");
    export_bioimageio(&gpu, &path, Heads::default(), &info, &folder).unwrap();
    let files = read_package(&folder).unwrap();
    let yaml = String::from_utf8(file(&files, "bioimageio.yaml").to_vec()).unwrap();
    for line in [
        "id: \"scale_range\"",
        "min_percentile: 1",
        "max_percentile: 99.8",
        "eps: 1e-6",
    ] {
        assert!(yaml.contains(line), "no {line:?} in\n{yaml}");
    }
    // The zoo's runtimes take a step's statistics from the input as given, so no
    // division by 255 may come before the normalisation.
    assert!(!yaml.contains("scale_linear"), "{yaml}");
    // The stated preprocessing by hand, on the 8-bit values:
    // (x - p1) / (p99.8 - p1 + 1e-6) per channel; the engine on that gives the packaged
    // output.
    let (in_shape, raw) = parse_npy(file(&files, "test_input.npy")).unwrap();
    let (_, want) = parse_npy(file(&files, "test_output.npy")).unwrap();
    let side = in_shape[2];
    let plane = side * side;
    let mut input = Vec::new();
    for c in 0..2 {
        let x = &raw[c * plane..(c + 1) * plane];
        let mut sorted = x.to_vec();
        sorted.sort_by(f32::total_cmp);
        let (lo, hi) = (percentile(&sorted, 1.0), percentile(&sorted, 99.8));
        input.extend(x.iter().map(|v| (v - lo) * (1.0 / (hi - lo + 1e-6))));
    }
    let tile = Tensor::from_slice(&gpu, Shape::new(1, 2, side, side), &input, "t").unwrap();
    let engine = trainer
        .model
        .probabilities(&gpu, tile, Heads::default())
        .unwrap()
        .to_vec(&gpu)
        .unwrap();
    let worst = engine
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-6,
        "the normalised input reproduces test_output.npy ({worst})"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
