//! `unet info`: the GPU adapters, the chosen one's limits, and a network's layer table.

use clap::Args;
use unet_wgpu::gpu::{describe_short, list_adapters};
use unet_wgpu::model::UNetConfig;
use unet_wgpu::{AdapterChoice, Gpu, Result};

use super::args::ArchArgs;
use super::default_tile;

#[derive(Args)]
pub struct InfoArgs {
    /// Network preset: paper or small.
    #[arg(long, default_value = "paper")]
    config: String,
    /// Input tile size for the layer table (default: 572 for paper, 188 for small).
    #[arg(long)]
    tile: Option<usize>,
    #[command(flatten)]
    arch: ArchArgs,
}

pub fn run(choice: AdapterChoice, args: InfoArgs) -> Result<()> {
    println!("adapters:");
    let all = AdapterChoice {
        name: None,
        backend: choice.backend.clone(),
    };
    for adapter in list_adapters(&all)? {
        println!("  {}", describe_short(&adapter));
    }
    let gpu = Gpu::new(choice)?;
    println!("chosen:\n  {}\n", gpu.describe().replace('\n', "\n  "));
    if let Some(note) = gpu.slow_path_note() {
        eprintln!("{note}\n");
    }

    let config = args.arch.apply(UNetConfig::preset(&args.config)?)?;
    let tile = args.tile.unwrap_or_else(|| default_tile(&config));
    let layers = config.layers(tile)?;
    println!(
        "{} {} on a {tile}x{tile} tile (output {}):",
        args.config,
        config.arch,
        config.check_tile(tile)?
    );
    println!(
        "  {:<12} {:<13} {:>6} {:>6} {:>6} {:>11} {:>9}",
        "layer", "kind", "c_in", "c_out", "size", "params", "GFLOP"
    );
    for l in &layers {
        // FLOPs = 2 * multiply-adds.
        let gflop = 2.0 * l.macs as f64 / 1e9;
        println!(
            "  {:<12} {:<13} {:>6} {:>6} {:>6} {:>11} {:>9.2}",
            l.name, l.kind, l.c_in, l.c_out, l.out_size, l.params, gflop
        );
    }
    let params: usize = layers.iter().map(|l| l.params).sum();
    let gflop: f64 = layers.iter().map(|l| 2.0 * l.macs as f64 / 1e9).sum();
    println!("  total: {params} parameters, {gflop:.1} GFLOP forward");
    Ok(())
}
