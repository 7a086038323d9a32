//! One shard's prediction run: a reader thread decodes the next input while the main thread
//! predicts the current one on the GPU (the GPU objects stay on the thread that made them)
//! and a writer thread encodes the last one; bounded channels between them keep at most one
//! decoded input waiting and a few bands in flight.
//!
//! Host memory, in bytes per pixel of an input page: 4 for the decoded image (f32) while it
//! is predicted, plus, while the reader decodes the next input, that input's file bytes and
//! 2 (raw samples) + 4 (f32); up to one more decoded input waits in the channel. PNG
//! outputs add 4 (the gathered map; for K > 2 classes 4 K, every class's) then 6 (encoded
//! planes); TIFF outputs add nothing that grows with the image height (256 rows per output
//! page). GPU memory: one batch of tiles. Two classes and K classes run the same way; only
//! what is written differs (see [`super::outputs`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::manifest::{load_all, Manifest, Record, RunSummary, Settings};
use super::outputs::{output_names, stem_of, FormatChoice, Job, OutputKind, Writer, WriterConfig};
use super::shard::Shard;
use crate::data::{pages_to_image, read_pages, DataSpec, Image, StackMode};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::infer::{band_tile_rows, plan, predict, predict_bands, TileOptions};
use crate::model::Network;

/// How a shard runs.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    pub out: PathBuf,
    pub shard: Shard,
    /// Predict inputs again even when their outputs are complete.
    pub overwrite: bool,
    /// Read and write on threads beside the GPU work (off: one after another, to measure).
    pub overlap: bool,
    pub format: FormatChoice,
    pub kinds: Vec<OutputKind>,
    pub threshold: f32,
    pub checkpoint: PathBuf,
    /// How inputs are read and normalised: the checkpoint's [`DataSpec`].
    pub data: DataSpec,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub assigned: usize,
    pub summary: RunSummary,
    /// Inputs that could not be read or predicted, with why.
    pub failed: Vec<(String, String)>,
    pub manifest: PathBuf,
}

/// Where a run stands: called once before the first input and after each one.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Inputs handled of those to do in this run (the rest were complete).
    pub handled: usize,
    pub todo: usize,
    /// Pages predicted and their megapixels.
    pub pages: usize,
    pub megapixels: f64,
    /// The input just handled, with its outputs as `STEM_{prob,mask}.png` (K > 2:
    /// `STEM_{prob_0,...,class,overlay}.png`), or why it failed; none before the first.
    pub last: Option<(PathBuf, std::result::Result<String, String>)>,
}

type OnProgress<'a> = &'a mut dyn FnMut(Progress);

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Predicts this shard's share of `inputs` (all shards' inputs, sorted) into `batch.out`.
pub fn run_shard(
    gpu: &Gpu,
    model: &Network,
    tiles: TileOptions,
    batch: &BatchOptions,
    inputs: &[PathBuf],
    progress: OnProgress,
) -> Result<RunReport> {
    let started = Instant::now();
    check_unique_stems(inputs)?;
    let out = &batch.out;
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.display().to_string(),
        source,
    })?;
    let settings = Settings {
        checkpoint: batch.checkpoint.display().to_string(),
        checkpoint_sha256: sha256_file(&batch.checkpoint)?,
        tile: tiles.tile,
        heads: format!("{:?}", tiles.heads),
        tta: tiles.average_symmetries,
        threshold: batch.threshold,
        format: batch.format.name().into(),
        outputs: batch.kinds.iter().map(|k| k.name().into()).collect(),
    };
    let fingerprint = settings.fingerprint();
    let mine: Vec<&PathBuf> = (0..inputs.len())
        .filter(|&i| batch.shard.owns(i))
        .map(|i| &inputs[i])
        .collect();

    // Complete inputs, by any shard's journal (a rerun may use another shard count).
    let mut done: HashMap<String, Record> = HashMap::new();
    if !batch.overwrite {
        for manifest in load_all(out)? {
            for r in manifest.records {
                let whole = r.error.is_none()
                    && r.settings == fingerprint
                    && r.outputs.iter().all(|o| out.join(o).is_file());
                if whole {
                    done.insert(r.input.clone(), r);
                }
            }
        }
    }

    let previous = Manifest::load(out, batch.shard)?;
    let mut manifest = Manifest {
        version: super::manifest::VERSION,
        shard: batch.shard,
        total_inputs: inputs.len(),
        inputs_sha256: hex(&Sha256::digest(
            inputs
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect::<String>()
                .as_bytes(),
        )),
        assigned: mine.iter().map(|p| p.display().to_string()).collect(),
        settings: settings.clone(),
        records: Vec::new(),
        runs: previous.as_ref().map_or(Vec::new(), |m| m.runs.clone()),
    };
    for r in previous.into_iter().flat_map(|m| m.records) {
        manifest.add(r);
    }
    // A complete input found through another shard's journal is recorded here too.
    for p in &mine {
        if let Some(r) = done.get(&p.display().to_string()) {
            manifest.add(r.clone());
        }
    }
    manifest.save(out)?;
    // A killed run left records but no summary line: count it all the same.
    let last_record_run = manifest.records.iter().map(|r| r.run).max().unwrap_or(0);
    let run = manifest.runs.len().max(last_record_run) + 1;

    let todo: Vec<PathBuf> = mine
        .iter()
        .filter(|p| !done.contains_key(&p.display().to_string()))
        .map(|p| (*p).clone())
        .collect();
    let skipped = mine.len() - todo.len();
    progress(Progress {
        todo: todo.len(),
        ..Progress::default()
    });
    let config = WriterConfig {
        out: out.clone(),
        kinds: batch.kinds.clone(),
        threshold: batch.threshold,
        classes: model.config().classes,
        settings: fingerprint,
        run,
    };
    let writer = Writer::new(config, manifest);
    let (mut writer, stats) = if batch.overlap {
        predict_overlapped(gpu, model, tiles, batch, todo, writer, progress)?
    } else {
        predict_in_turn(gpu, model, tiles, batch, todo, writer, progress)?
    };

    let wall_s = started.elapsed().as_secs_f64();
    let failed: Vec<(String, String)> = writer
        .manifest
        .records
        .iter()
        .filter(|r| r.run == run && r.error.is_some())
        .map(|r| (r.input.clone(), r.error.clone().unwrap_or_default()))
        .collect();
    let summary = RunSummary {
        started_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(wall_s as u64),
        wall_s,
        predicted: stats.inputs - failed.len(),
        skipped,
        failed: failed.len(),
        images: stats.pages,
        megapixels: stats.megapixels,
        images_per_s: stats.pages as f64 / wall_s,
        megapixels_per_s: stats.megapixels / wall_s,
        overlap: batch.overlap,
        gpu_peak_bytes: gpu.pool_stats().peak_bytes_held,
    };
    writer.manifest.runs.push(summary.clone());
    writer.manifest.save(out)?;
    Ok(RunReport {
        assigned: mine.len(),
        summary,
        failed,
        manifest: Manifest::path(out, batch.shard),
    })
}

/// Two inputs with one stem would write the same outputs.
fn check_unique_stems(inputs: &[PathBuf]) -> Result<()> {
    let mut seen: HashMap<String, &PathBuf> = HashMap::new();
    for input in inputs {
        if let Some(other) = seen.insert(stem_of(input), input) {
            return Err(Error::Config(format!(
                "{} and {} would both write {}_*: rename one, or predict them into separate --out folders",
                other.display(),
                input.display(),
                stem_of(input)
            )));
        }
    }
    Ok(())
}

/// An input read and decoded (or why not), with the seconds it took.
struct Decoded {
    input: PathBuf,
    pages: std::result::Result<Vec<Image>, String>,
    read_s: f64,
}

/// The images of an input file as `spec` says (channels; a stack as pages or as
/// channels), each normalised.
pub fn read_input(input: &Path, spec: &DataSpec) -> Result<Vec<Image>> {
    let pages = read_pages(input)?;
    let mut images = match spec.stack {
        StackMode::Channels => vec![pages_to_image(
            &pages,
            input,
            spec.channel_mode,
            spec.stack,
        )?],
        StackMode::Pages => pages
            .iter()
            .map(|p| p.to_image(spec.channel_mode))
            .collect(),
    };
    for image in &mut images {
        spec.normalize.apply(image);
    }
    Ok(images)
}

fn decode(input: PathBuf, spec: &DataSpec) -> Decoded {
    let start = Instant::now();
    let pages = read_input(&input, spec).map_err(|e| e.to_string());
    Decoded {
        input,
        pages,
        read_s: start.elapsed().as_secs_f64(),
    }
}

#[derive(Default)]
struct Stats {
    todo: usize,
    inputs: usize,
    pages: usize,
    megapixels: f64,
}

/// The writer on its own thread, fed through a bounded channel.
struct WriterThread {
    jobs: Option<SyncSender<Job>>,
    handle: JoinHandle<(Writer, Result<()>)>,
}

impl WriterThread {
    fn spawn(mut writer: Writer) -> WriterThread {
        let (jobs, rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(4);
        let handle = std::thread::spawn(move || {
            for job in rx {
                if let Err(e) = writer.handle(job) {
                    return (writer, Err(e));
                }
            }
            (writer, Ok(()))
        });
        WriterThread {
            jobs: Some(jobs),
            handle,
        }
    }

    /// Whether the job was taken (false: the writer stopped on an error, see `finish`).
    fn send(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|s| s.send(job).is_ok())
    }

    fn finish(mut self) -> Result<Writer> {
        self.jobs.take();
        let (writer, result) = self
            .handle
            .join()
            .map_err(|_| Error::Config("the writer thread panicked (a bug: report it)".into()))?;
        result.map(|()| writer)
    }
}

fn predict_overlapped(
    gpu: &Gpu,
    model: &Network,
    tiles: TileOptions,
    batch: &BatchOptions,
    todo: Vec<PathBuf>,
    writer: Writer,
    progress: OnProgress,
) -> Result<(Writer, Stats)> {
    let todo_count = todo.len();
    let (decoded, rx) = sync_channel::<Decoded>(1);
    let spec = batch.data.clone();
    let reader = std::thread::spawn(move || {
        for input in todo {
            if decoded.send(decode(input, &spec)).is_err() {
                break;
            }
        }
    });
    let mut stats = Stats {
        todo: todo_count,
        ..Stats::default()
    };
    let writer = WriterThread::spawn(writer);
    let mut failure = None;
    for item in rx.iter() {
        let mut sent = true;
        let result = predict_one(
            gpu,
            model,
            tiles,
            batch.format,
            item,
            &batch.kinds,
            &mut |job| {
                sent = sent && writer.send(job);
                sent
            },
        );
        match result {
            Ok(outcome) => account(&mut stats, outcome, progress),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if !sent {
            break;
        }
    }
    drop(rx);
    let _ = reader.join();
    let writer = writer.finish()?;
    failure.map_or(Ok((writer, stats)), Err)
}

fn predict_in_turn(
    gpu: &Gpu,
    model: &Network,
    tiles: TileOptions,
    batch: &BatchOptions,
    todo: Vec<PathBuf>,
    mut writer: Writer,
    progress: OnProgress,
) -> Result<(Writer, Stats)> {
    let mut stats = Stats {
        todo: todo.len(),
        ..Stats::default()
    };
    for input in todo {
        let mut error = None;
        let item = decode(input, &batch.data);
        let outcome = predict_one(
            gpu,
            model,
            tiles,
            batch.format,
            item,
            &batch.kinds,
            &mut |job| {
                if error.is_none() {
                    error = writer.handle(job).err();
                }
                error.is_none()
            },
        )?;
        if let Some(e) = error {
            return Err(e);
        }
        account(&mut stats, outcome, progress);
    }
    Ok((writer, stats))
}

fn account(stats: &mut Stats, outcome: Outcome, progress: OnProgress) {
    stats.inputs += 1;
    stats.pages += outcome.pages;
    stats.megapixels += outcome.megapixels;
    progress(Progress {
        handled: stats.inputs,
        todo: stats.todo,
        pages: stats.pages,
        megapixels: stats.megapixels,
        last: Some((outcome.input, outcome.outputs)),
    });
}

/// One input's prediction: its pages and megapixels, and its outputs or why it failed.
struct Outcome {
    input: PathBuf,
    pages: usize,
    megapixels: f64,
    outputs: std::result::Result<String, String>,
}

/// Predicts one decoded input page by page, band by band, handing the writer its jobs
/// (`emit` returns false once the writer has stopped). Returns its pages and megapixels;
/// an input that cannot be read, or has pages of different sizes, is a `Failed` job, not
/// an error (the run goes on); a GPU error is.
fn predict_one(
    gpu: &Gpu,
    model: &Network,
    tiles: TileOptions,
    format: FormatChoice,
    item: Decoded,
    kinds: &[OutputKind],
    emit: &mut dyn FnMut(Job) -> bool,
) -> Result<Outcome> {
    let start = Instant::now();
    let outcome = |pages: usize, megapixels: f64, outputs| Outcome {
        input: item.input.clone(),
        pages,
        megapixels,
        outputs,
    };
    let fail = |emit: &mut dyn FnMut(Job) -> bool, error: String| {
        emit(Job::Failed {
            input: item.input.clone(),
            error: error.clone(),
            read_s: item.read_s,
        });
        Ok(outcome(0, 0.0, Err(error)))
    };
    let pages = match item.pages {
        Ok(pages) => pages,
        Err(e) => return fail(emit, e),
    };
    let (width, height) = pages[0].size();
    if pages.iter().any(|p| p.size() != (width, height)) {
        return fail(
            emit,
            format!(
                "{}: the pages of a stack must have one size",
                item.input.display()
            ),
        );
    }
    let tiff = match format.tiff_for(&item.input, pages.len(), width, height) {
        Ok(tiff) => tiff,
        Err(e) => return fail(emit, e.to_string()),
    };
    let count = pages.len();
    emit(Job::Begin {
        input: item.input.clone(),
        pages: count,
        width,
        height,
        tiff,
        read_s: item.read_s,
    });
    for page in pages {
        if !emit(Job::Page(Arc::new(page.display_gray()))) {
            return Ok(outcome(0, 0.0, Err("not written".into())));
        }
        if tiles.average_symmetries {
            // Test-time augmentation turns the whole image: one band of all rows.
            let maps = predict(gpu, model, &page, tiles)?;
            emit(Job::Band { y: 0, maps });
        } else {
            let rows = band_tile_rows(&plan(model, width, height, tiles.tile)?, tiles.batch);
            predict_bands(gpu, model, &page, tiles, rows, |band| {
                emit(Job::Band {
                    y: band.y,
                    maps: band.maps,
                });
                Ok(())
            })?;
        }
        emit(Job::EndPage);
    }
    emit(Job::End {
        predict_s: start.elapsed().as_secs_f64(),
    });
    let stem = stem_of(&item.input);
    let ext = if tiff { "tif" } else { "png" };
    let suffixes: Vec<String> = kinds
        .iter()
        .flat_map(|&kind| output_names(&stem, kind, tiff, model.config().classes))
        .map(|name| name[stem.len() + 1..name.len() - ext.len() - 1].to_string())
        .collect();
    let outputs = format!("{stem}_{{{}}}.{ext}", suffixes.join(","));
    Ok(outcome(
        count,
        (count * width * height) as f64 / 1e6,
        Ok(outputs),
    ))
}
