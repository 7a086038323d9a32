//! `unet export`: a checkpoint as a file other tools run: an ONNX graph, or a BioImage
//! Model Zoo package (Fiji/deepImageJ, ilastik, QuPath, napari, Python).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use unet_wgpu::export::bioimageio::{export_bioimageio, PackageInfo};
use unet_wgpu::export::onnx::{export_onnx, OnnxModel};
use unet_wgpu::{AdapterChoice, Result};

use super::args::HeadsArg;
use super::open_gpu;

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// onnx: one .onnx file (opset 17) whose output is class probabilities; bioimageio: a
    /// BioImage Model Zoo package (spec 0.5) with the ONNX weights, test tensors computed
    /// on the GPU, a cover and a README.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The file to write (onnx), or the package's folder (bioimageio; a name ending in
    /// .zip writes a zip archive).
    #[arg(long)]
    out: PathBuf,
    /// U-Net++ with deep supervision: export the sub-network of head X(0,M) only.
    #[arg(long, value_name = "M")]
    prune: Option<usize>,
    /// U-Net++ with deep supervision: last (the deepest head exported) or average (the
    /// mean of the probabilities of every head exported).
    #[arg(long, value_enum, default_value = "last")]
    heads: HeadsArg,
    /// bioimageio: the model's name (letters, digits, spaces, _+-()) [default: "U-Net
    /// (unet-wgpu)" or "U-Net++ (unet-wgpu)"].
    #[arg(long)]
    name: Option<String>,
    /// bioimageio: an author of the model (repeat for several) [default: $USER].
    #[arg(long = "author")]
    authors: Vec<String>,
    /// bioimageio: the licence of the weights, an SPDX identifier.
    #[arg(long, default_value = "CC-BY-4.0")]
    license: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Onnx,
    Bioimageio,
}

pub fn run(choice: AdapterChoice, args: ExportArgs) -> Result<()> {
    let heads = args.heads.heads(args.prune);
    match args.format {
        ExportFormat::Onnx => {
            let model = export_onnx(&args.checkpoint, heads, &args.out)?;
            report(&model, &args.out.display().to_string());
        }
        ExportFormat::Bioimageio => {
            // The test output is the engine's own prediction: this format needs the GPU.
            let gpu = open_gpu(choice)?;
            let info = PackageInfo {
                name: args.name.clone(),
                authors: match args.authors.is_empty() {
                    true => vec![std::env::var("USER").unwrap_or("unet-wgpu user".into())],
                    false => args.authors.clone(),
                },
                license: args.license.clone(),
            };
            let package = export_bioimageio(&gpu, &args.checkpoint, heads, &info, &args.out)?;
            report(&package.onnx, &args.out.display().to_string());
            let names: Vec<&str> = package.files.iter().map(|f| f.0.as_str()).collect();
            eprintln!(
                "package: {} (test tile {side}x{side})",
                names.join(", "),
                side = package.test_side
            );
        }
    }
    Ok(())
}

fn report(model: &OnnxModel, out: &str) {
    let g = model.geometry;
    println!("{out}: {}", model.doc);
    eprintln!(
        "input sides {} + k * {}, output margin {} pixels per side",
        g.min, g.step, g.margin
    );
}
