//! `unet predict`: probability maps, masks and overlays of images of any size, tile by
//! tile; for K > 2 classes every class's probability, the class map and a colour overlay.
//! Two classes and K classes go through the same batch path (shards, manifests, reruns,
//! atomic PNG or TIFF outputs: [`unet_wgpu::batch`]).

use std::path::{Path, PathBuf};

use clap::Args;
use unet_wgpu::batch::classes::class_overlay_figure;
use unet_wgpu::data::{Grid, Sample};
use unet_wgpu::infer::{class_map, TileOptions};
use unet_wgpu::model::Arch;
use unet_wgpu::report::write_overlay_figure_png;
use unet_wgpu::train::checkpoint;
use unet_wgpu::train::checkpoint::write_atomically;
use unet_wgpu::{AdapterChoice, Error, Result};

use super::args::HeadsArg;
use super::open_gpu;
use super::predict_batch::{self, BatchArgs};

#[derive(Args)]
pub struct PredictArgs {
    #[arg(long, required_unless_present = "merge_report")]
    checkpoint: Option<PathBuf>,
    /// Images to predict (PNG or TIFF, any size, multi-page stacks page by page), folders
    /// holding them, or quoted globs ("data/**/*.tif").
    #[arg(required_unless_present = "merge_report")]
    inputs: Vec<PathBuf>,
    #[arg(long, default_value = "predictions")]
    out: PathBuf,
    /// Input tile size (default: 572 for a depth-5 network, 188 otherwise).
    #[arg(long)]
    tile: Option<usize>,
    /// Tiles per forward pass (default: as many as the device's limits allow, up to 8).
    #[arg(long)]
    batch: Option<usize>,
    /// Foreground probability above which a pixel is a cell in the mask and overlay (two
    /// classes; with K > 2 every pixel takes its most probable class).
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// The architecture the checkpoint must hold (it is read from the checkpoint anyway).
    #[arg(long)]
    arch: Option<Arch>,
    /// U-Net++ with deep supervision: predict with the sub-network of head X(0,M) only.
    #[arg(long, value_name = "M")]
    prune: Option<usize>,
    /// U-Net++ with deep supervision: last (the deepest head that runs) or average (the
    /// mean of the probabilities of every head that runs).
    #[arg(long, value_enum, default_value = "last")]
    heads: HeadsArg,
    /// Average the prediction over the image's 8 flips and quarter turns (test-time
    /// augmentation: 8x the time, smoother maps; the paper's ISBI entry averaged 7
    /// rotated versions).
    #[arg(long)]
    tta: bool,
    /// Many images, shards, reruns and manifests (issue 19).
    #[command(flatten)]
    many: BatchArgs,
}

pub fn run(choice: AdapterChoice, args: PredictArgs) -> Result<()> {
    if !args.many.merge_report.is_empty() {
        return predict_batch::merge_report(&args.many.merge_report);
    }
    let checkpoint_path = args.checkpoint.clone().expect("clap requires --checkpoint");
    let gpu = open_gpu(choice)?;
    let trainer = checkpoint::load(&gpu, &checkpoint_path)?;
    let model = &trainer.model;
    let config = model.config();
    if let Some(arch) = args.arch.filter(|&arch| arch != config.arch) {
        return Err(Error::Config(format!(
            "{} holds a {} network, not {arch}: leave out --arch or pass --arch {}",
            checkpoint_path.display(),
            config.arch,
            config.arch
        )));
    }
    let tile = args.tile.unwrap_or_else(|| config.default_tile());
    let mut options = TileOptions::fitting(&gpu, model, tile)?;
    if let Some(batch) = args.batch {
        options.batch = batch;
    }
    options.heads = args.heads.heads(args.prune);
    options.average_symmetries = args.tta;
    model.check_heads(options.heads)?;
    let data = checkpoint::read_data_spec(&checkpoint_path)?;
    predict_batch::run(
        &gpu,
        model,
        options,
        &args.many,
        checkpoint_path,
        &args.inputs,
        args.out.clone(),
        args.threshold,
        data,
    )?;
    // Set by the tile size and batch, not the image size (a test checks it).
    let peak = gpu.pool_stats().peak_bytes_held;
    eprintln!(
        "GPU memory: peak {:.1} MiB held by the engine ({peak} bytes)",
        peak as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// The overlay figure of a dataset sample's prediction `maps`: two classes as before
/// (predicted background red, true boundaries green), K classes in colour with the true
/// class borders.
pub fn write_sample_overlay(sample: &Sample, maps: &[Grid<f32>], path: &Path) -> Result<()> {
    let gray = sample.image.display_gray();
    if maps.len() == 2 {
        let truth = sample.labels.map(|l| u8::from(l != 0));
        return write_overlay_figure_png(path, &gray, &maps[1], 0.5, Some(&truth));
    }
    let figure = class_overlay_figure(&gray, &class_map(maps), maps.len(), Some(&sample.classes))?;
    let mut bytes = Vec::new();
    figure
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::Config(format!("could not encode a PNG: {e}")))?;
    write_atomically(path, &bytes)
}
