//! `unet info`: the GPU adapters, the chosen one's limits, and a network's layer table.

use clap::Args;
use unet_wgpu::gpu::autotune::{default_cache_path, TuneMode};
use unet_wgpu::gpu::{describe_short, list_adapters};
use unet_wgpu::model::{LayerInfo, UNetConfig};
use unet_wgpu::ops::conv2d::autotune::{Problem, TunedPass};
use unet_wgpu::ops::conv2d::{Conv2d, Padding};
use unet_wgpu::{AdapterChoice, Gpu, Result, Shape};

use super::args::ArchArgs;

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
    let tile = args.tile.unwrap_or_else(|| config.default_tile());
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
    print_autotune(&gpu, &config, &layers)
}

/// What the autotuner's cache holds for each layer's passes on this device, with the
/// timings that chose it (nothing is timed here).
fn print_autotune(gpu: &Gpu, config: &UNetConfig, layers: &[LayerInfo]) -> Result<()> {
    let mode = TuneMode::from_env(TuneMode::default_for(gpu.info()))?;
    let cache = default_cache_path();
    gpu.set_autotune(TuneMode::Cached, cache.clone());
    let tuner = gpu.autotune();
    let where_ = cache.map_or("no cache folder".to_string(), |p| p.display().to_string());
    println!(
        "\nautotune: UNET_AUTOTUNE={} (off | cached | on), {} choices for this device in \
         {where_}",
        mode.name(),
        tuner.cached().len()
    );
    for l in layers {
        for problem in layer_problems(config, l) {
            let key = problem.key();
            let Some(t) = tuner.cached().get(&key) else {
                continue;
            };
            println!(
                "  {:<12} {:<16} {:<22} ms: {}",
                l.name,
                problem.pass.name(),
                t.choice,
                t.timings_text()
            );
        }
    }
    Ok(())
}

/// The tuned passes of a layer of the table, for a batch of one tile.
fn layer_problems(config: &UNetConfig, l: &LayerInfo) -> Vec<Problem> {
    let [_, _, k, _] = l.weight_shape;
    if l.kind.starts_with("upconv") {
        let inp = Shape::new(1, l.c_in, l.out_size / 2, l.out_size / 2);
        return [TunedPass::UpForward, TunedPass::UpBackward]
            .map(|p| Problem::upconv(p, inp, l.c_out))
            .to_vec();
    }
    let padding = if k == 1 {
        Padding::Valid
    } else {
        config.padding
    };
    let conv = Conv2d {
        kernel: k,
        padding,
        relu: k != 1,
    };
    let side = l.out_size + 2 * (k / 2) - 2 * conv.pad();
    let inp = Shape::new(1, l.c_in, side, side);
    [
        TunedPass::Forward,
        TunedPass::BackwardInput,
        TunedPass::BackwardParams,
    ]
    .map(|p| Problem::conv(p, &conv, inp, l.c_out))
    .to_vec()
}
