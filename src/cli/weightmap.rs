//! `unet weightmap`: the paper's weight map of a mask (for K classes with `--classes`), as
//! a PNG and optionally as .npy.

use std::path::PathBuf;

use clap::Args;
use unet_wgpu::data::{class_weight_map, read_mask, read_pages};
use unet_wgpu::Result;

use super::args::{LabelArgs, MaskArgs, WeightArgs};

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
    #[command(flatten)]
    labels: LabelArgs,
}

pub fn run(args: WeightmapArgs) -> Result<()> {
    let config = args.weights.config();
    let map = if args.labels.classes.is_some() || args.labels.ignore_index.is_some() {
        // K classes (or unlabelled pixels): the K-class map of the masks read as training
        // reads them.
        config.validate()?;
        let spec = args.labels.spec(&args.masks)?;
        let page = &read_pages(&args.mask_file)?[0];
        let labels = spec.read(page, &args.mask_file)?;
        class_weight_map(
            &labels.instances,
            &labels.classes,
            spec.classes,
            labels.objects_by_class,
            &config,
        )
    } else {
        let labels = read_mask(&args.mask_file, args.masks.format())?;
        unet_wgpu::data::weight_map(&labels, &config)?
    };
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
