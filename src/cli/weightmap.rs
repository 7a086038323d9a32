//! `unet weightmap`: the paper's weight map of a mask, as a PNG and optionally as .npy.

use std::path::PathBuf;

use clap::Args;
use unet_wgpu::data::read_mask;
use unet_wgpu::Result;

use super::args::{MaskArgs, WeightArgs};

#[derive(Args)]
pub struct WeightmapArgs {
    /// The mask to compute the weight map of.
    #[arg(value_name = "MASK")]
    mask_file: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    npy: Option<PathBuf>,
    #[command(flatten)]
    weights: WeightArgs,
    #[command(flatten)]
    masks: MaskArgs,
}

pub fn run(args: WeightmapArgs) -> Result<()> {
    let labels = read_mask(&args.mask_file, args.masks.format())?;
    let map = unet_wgpu::data::weight_map(&labels, &args.weights.config())?;
    unet_wgpu::data::write_weight_map_png(&args.out, &map)?;
    if let Some(npy) = &args.npy {
        unet_wgpu::data::write_weight_map_npy(npy, &map)?;
    }
    let max = map.data.iter().copied().fold(f32::MIN, f32::max);
    println!(
        "{}: {}x{}, weights up to {max:.2}",
        args.out.display(),
        map.width,
        map.height
    );
    Ok(())
}
