//! `unet predict` over many images and in shards: the flags of issue 19 (added to
//! `PredictArgs` by flattening [`BatchArgs`]), the progress bar, the run's closing line and
//! `--merge-report`. The work itself is in `unet_wgpu::batch`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use unet_wgpu::batch::{
    self, merge, BatchOptions, FormatChoice, OutputKind, Progress, RunReport, Shard,
};
use unet_wgpu::data::DataSpec;
use unet_wgpu::infer::TileOptions;
use unet_wgpu::model::Network;
use unet_wgpu::{Error, Gpu, Result};

#[derive(Args, Clone)]
pub struct BatchArgs {
    /// Predict shard K of N: the inputs whose index in the sorted list is K modulo N
    /// (round robin), so N jobs with K = 0..N-1 cover every input once.
    #[arg(long, value_name = "K/N", conflicts_with = "shard_from_env")]
    shard: Option<String>,
    /// Take K and N from the scheduler: SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN)
    /// and SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX (Kubernetes) with --shards N.
    #[arg(long)]
    shard_from_env: bool,
    /// The shard count N for --shard-from-env (required with JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Predict inputs again even when their outputs are complete (default: skip them).
    #[arg(long)]
    overwrite: bool,
    /// Read, predict and write one after another instead of reading and writing on their
    /// own threads beside the GPU work (to measure what the overlap gains).
    #[arg(long)]
    no_overlap: bool,
    /// Output format: auto (PNG up to 8192 x 8192 pixels, tiled TIFF for stacks and
    /// larger images), png or tiff.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatChoice,
    /// Which outputs to write, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "prob,mask,overlay"
    )]
    outputs: Vec<OutputKind>,
    /// Sum the manifests in these output folders and list what is missing (no prediction).
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with_all = ["checkpoint", "inputs"])]
    pub merge_report: Vec<PathBuf>,
}

impl BatchArgs {
    fn shard(&self) -> Result<Shard> {
        if self.shard_from_env {
            return Shard::from_env(|name| std::env::var(name).ok(), self.shards);
        }
        match &self.shard {
            Some(text) => Shard::parse(text),
            None => Ok(Shard::ALL),
        }
    }
}

/// Predicts this shard's share of `inputs` into `out` with a progress bar, then prints the
/// throughput.
#[allow(clippy::too_many_arguments)]
pub fn run(
    gpu: &Gpu,
    model: &Network,
    tiles: TileOptions,
    args: &BatchArgs,
    checkpoint: PathBuf,
    inputs: &[PathBuf],
    out: PathBuf,
    threshold: f32,
    data: DataSpec,
) -> Result<()> {
    let shard = args.shard()?;
    let inputs = batch::expand(inputs)?;
    let mut kinds = args.outputs.clone();
    kinds.sort();
    kinds.dedup();
    let options = BatchOptions {
        out,
        shard,
        overwrite: args.overwrite,
        overlap: !args.no_overlap,
        format: args.format,
        kinds,
        threshold,
        checkpoint,
        data,
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} inputs, {elapsed_precise} (ETA {eta}) {msg}",
        )
        .expect("a valid template"),
    );
    let start = Instant::now();
    let out = options.out.display().to_string();
    let report = batch::run_shard(gpu, model, tiles, &options, &inputs, &mut |p: Progress| {
        match &p.last {
            Some((input, Ok(outputs))) => {
                bar.suspend(|| println!("{} -> {out}/{outputs}", input.display()))
            }
            Some((input, Err(why))) => {
                bar.suspend(|| eprintln!("{}: failed: {why}", input.display()))
            }
            None => {}
        }
        bar.set_length(p.todo as u64);
        bar.set_position(p.handled as u64);
        let s = start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{:.2} images/s, {:.2} MP/s",
            p.pages as f64 / s,
            p.megapixels / s
        ));
    });
    bar.finish_and_clear();
    let report = report?;
    print_report(shard, &report);
    if let Some((input, why)) = report.failed.first() {
        return Err(Error::Config(format!(
            "{} of {} inputs of shard {shard} failed (first: {input}: {why}); they are listed in {} and are tried again when the shard is run again",
            report.failed.len(),
            report.assigned,
            report.manifest.display()
        )));
    }
    Ok(())
}

fn print_report(shard: Shard, report: &RunReport) {
    let s = &report.summary;
    println!(
        "shard {shard}: {} inputs, {} predicted ({} images, {:.2} MP), {} already complete, {} failed; \
         {:.1} s: {:.2} images/s, {:.2} MP/s{}; manifest {}",
        report.assigned,
        s.predicted,
        s.images,
        s.megapixels,
        s.skipped,
        s.failed,
        s.wall_s,
        s.images_per_s,
        s.megapixels_per_s,
        if s.overlap { "" } else { " (no overlap)" },
        report.manifest.display()
    );
}

/// `--merge-report DIR...`: the shards' totals and what is missing; an error if anything is.
pub fn merge_report(dirs: &[PathBuf]) -> Result<()> {
    let report = merge(dirs)?;
    let Some(count) = report.shard_count else {
        return Err(Error::Config(format!(
            "no shard manifests (manifest-shard-K-of-N.json) in {}: give the --out folders of the shards",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        )));
    };
    println!(
        "{} of {count} shards reported; {} of {} inputs done ({} images, {:.2} MP, {:.1} s of shard time)",
        report.present.len(),
        report.done,
        report.total_inputs,
        report.images,
        report.megapixels,
        report.predict_s
    );
    for k in &report.absent {
        println!(
            "shard {k}/{count}: no manifest (its {} inputs were never started): run it",
            Shard::new(*k, count).map_or(0, |s| s.share(report.total_inputs))
        );
    }
    for input in &report.missing {
        println!("missing: {input}");
    }
    for (input, why) in &report.failed {
        println!("failed: {input}: {why}");
    }
    for conflict in &report.conflicts {
        println!("conflict: {conflict}");
    }
    if report.complete() {
        println!("complete");
        return Ok(());
    }
    let left = report.total_inputs - report.done;
    Err(Error::Config(format!(
        "{left} of {} inputs are not done ({} missing, {} failed, {} shards without a manifest, {} conflicts): rerun those shards; each skips what it finished",
        report.total_inputs,
        report.missing.len(),
        report.failed.len(),
        report.absent.len(),
        report.conflicts.len()
    )))
}
