//! The `unet` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use unet_wgpu::gpu::{describe_short, list_adapters};
use unet_wgpu::model::UNetConfig;
use unet_wgpu::{AdapterChoice, Gpu, Result};

#[derive(Parser)]
#[command(
    name = "unet",
    version,
    about = "The U-Net on a from-scratch wgpu engine"
)]
struct Cli {
    /// Use the GPU adapter whose name contains this text (see `unet info`).
    #[arg(long, global = true, env = "UNET_ADAPTER")]
    adapter: Option<String>,
    /// Restrict to one backend: vulkan, metal, dx12 or gl.
    #[arg(long, global = true, env = "UNET_BACKEND")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List GPU adapters, show the chosen one and its limits, and a network's layer table.
    #[command(
        after_help = "Examples:\n  unet info\n  unet info --config paper --tile 572\n  \
                            unet info --adapter llvmpipe"
    )]
    Info {
        /// Network preset: paper or small.
        #[arg(long, default_value = "paper")]
        config: String,
        /// Input tile size for the layer table (default: the preset's usual tile).
        #[arg(long)]
        tile: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let choice = AdapterChoice {
        name: cli.adapter,
        backend: cli.backend,
    };
    match cli.command {
        Command::Info { config, tile } => info(choice, &config, tile),
    }
}

fn info(choice: AdapterChoice, preset: &str, tile: Option<usize>) -> Result<()> {
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

    let config = UNetConfig::preset(preset)?;
    let tile = tile.unwrap_or(if preset == "paper" { 572 } else { 188 });
    let layers = config.layers(tile)?;
    println!(
        "{preset} U-Net on a {tile}x{tile} tile (output {}):",
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
