//! Writing an input's outputs (probability map, mask, overlay) as bands of its prediction
//! arrive: PNG for one page of a practical size (the map is gathered, then encoded), tiled
//! TIFF for stacks and large images (streamed: at most 256 rows of a page are held).
//! Every file is written under a hidden temporary name and renamed into place when whole;
//! then the input's record is appended to the shard's journal, its done marker. A run
//! killed mid-write leaves only temporary files; the rerun predicts that input again and
//! writes (truncating) and renames the same temporary names, so none is left over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;

use super::manifest::{append_journal, Manifest, Record};
use crate::data::tiff_out::{Samples, TiledTiffWriter};
use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::report::{write_mask_png, write_overlay_png, write_probability_png};

/// One page of more pixels than this is written as TIFF, not PNG (under `--format auto`):
/// 8192 x 8192. A PNG is encoded whole in memory and most viewers refuse larger ones.
pub const PNG_MAX_PIXELS: usize = 1 << 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum OutputKind {
    /// Foreground probability, 16-bit gray (0..65535).
    Prob,
    /// Foreground where the probability is above --threshold, 8-bit (255 / 0).
    Mask,
    /// The image in gray, predicted background tinted red, 8-bit RGB.
    Overlay,
}

impl OutputKind {
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Prob => "prob",
            OutputKind::Mask => "mask",
            OutputKind::Overlay => "overlay",
        }
    }

    fn samples(self) -> Samples {
        match self {
            OutputKind::Prob => Samples::Gray16,
            OutputKind::Mask => Samples::Gray8,
            OutputKind::Overlay => Samples::Rgb8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatChoice {
    /// PNG for one page up to 8192 x 8192 pixels, tiled TIFF for stacks and larger images.
    Auto,
    Png,
    Tiff,
}

impl FormatChoice {
    pub fn name(self) -> &'static str {
        match self {
            FormatChoice::Auto => "auto",
            FormatChoice::Png => "png",
            FormatChoice::Tiff => "tiff",
        }
    }

    /// Whether an input of `pages` pages of `width x height` is written as TIFF.
    pub fn tiff_for(self, input: &Path, pages: usize, width: usize, height: usize) -> Result<bool> {
        match self {
            FormatChoice::Tiff => Ok(true),
            FormatChoice::Auto => Ok(pages > 1 || width * height > PNG_MAX_PIXELS),
            FormatChoice::Png if pages > 1 => Err(Error::Config(format!(
                "{} is a stack of {pages} pages and PNG holds one: use --format auto or tiff",
                input.display()
            ))),
            FormatChoice::Png => Ok(false),
        }
    }
}

/// The name of an input's output of `kind`: `STEM_KIND.png` or `STEM_KIND.tif`.
pub fn output_name(stem: &str, kind: OutputKind, tiff: bool) -> String {
    format!(
        "{stem}_{}.{}",
        kind.name(),
        if tiff { "tif" } else { "png" }
    )
}

/// The stem an input's outputs are named after (its file name without the extension).
pub fn stem_of(input: &Path) -> String {
    input
        .file_stem()
        .map_or("image".into(), |s| s.to_string_lossy().into_owned())
}

/// The hidden name an output is written under before it is renamed into place.
pub fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// What the writer is told, in order: for each input `Begin`, then per page `Page`, its
/// `Band`s top to bottom and `EndPage`, then `End`; or `Failed` alone.
pub enum Job {
    Begin {
        input: PathBuf,
        pages: usize,
        width: usize,
        height: usize,
        tiff: bool,
        read_s: f64,
    },
    Page(Arc<GrayImage>),
    /// Foreground probabilities of rows `y..` of the page.
    Band {
        y: usize,
        foreground: Grid<f32>,
    },
    EndPage,
    End {
        predict_s: f64,
    },
    Failed {
        input: PathBuf,
        error: String,
        read_s: f64,
    },
}

/// What the writer needs beyond the jobs.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub out: PathBuf,
    pub kinds: Vec<OutputKind>,
    pub threshold: f32,
    /// The settings fingerprint and run number its records carry.
    pub settings: String,
    pub run: usize,
}

/// Writes the outputs of one input after another and keeps the shard's manifest.
pub struct Writer {
    config: WriterConfig,
    pub manifest: Manifest,
    current: Option<Current>,
}

struct Current {
    record: Record,
    tiff: bool,
    write_s: f64,
    /// Final paths, each with its TIFF writer (TIFF) or nothing (PNG, written at EndPage).
    files: Vec<(OutputKind, PathBuf, Option<TiledTiffWriter>)>,
    /// The page being written and, for PNG, its whole foreground map.
    image: Option<Arc<GrayImage>>,
    map: Option<Grid<f32>>,
}

impl Writer {
    pub fn new(config: WriterConfig, manifest: Manifest) -> Writer {
        Writer {
            config,
            manifest,
            current: None,
        }
    }

    pub fn handle(&mut self, job: Job) -> Result<()> {
        let start = Instant::now();
        match job {
            Job::Begin {
                input,
                pages,
                width,
                height,
                tiff,
                read_s,
            } => self.begin(input, pages, width, height, tiff, read_s)?,
            Job::Page(image) => {
                let current = self.current_mut()?;
                let (w, h) = (image.width, image.height);
                if !current.tiff {
                    current.map = Some(Grid::filled(w, h, 0.0));
                }
                for (_, _, file) in current.files.iter_mut() {
                    if let Some(file) = file {
                        file.begin_page(w, h)?;
                    }
                }
                current.image = Some(image);
            }
            Job::Band { y, foreground } => self.band(y, &foreground)?,
            Job::EndPage => self.end_page()?,
            Job::End { predict_s } => {
                self.current_mut()?.record.predict_s = predict_s;
                self.end(start)?;
                return Ok(());
            }
            Job::Failed {
                input,
                error,
                read_s,
            } => {
                let record = Record {
                    input: input.display().to_string(),
                    outputs: Vec::new(),
                    pages: 0,
                    width: 0,
                    height: 0,
                    megapixels: 0.0,
                    settings: self.config.settings.clone(),
                    run: self.config.run,
                    read_s,
                    predict_s: 0.0,
                    write_s: 0.0,
                    error: Some(error),
                };
                self.commit(record)?;
            }
        }
        if let Some(current) = self.current.as_mut() {
            current.write_s += start.elapsed().as_secs_f64();
        }
        Ok(())
    }

    fn current_mut(&mut self) -> Result<&mut Current> {
        self.current
            .as_mut()
            .ok_or_else(|| Error::Config("the writer got a page before its input (a bug)".into()))
    }

    fn begin(
        &mut self,
        input: PathBuf,
        pages: usize,
        width: usize,
        height: usize,
        tiff: bool,
        read_s: f64,
    ) -> Result<()> {
        let stem = stem_of(&input);
        let mut files = Vec::new();
        for &kind in &self.config.kinds {
            let path = self.config.out.join(output_name(&stem, kind, tiff));
            let writer = if tiff {
                let bytes = (pages * width * height * kind.samples().bytes()) as u64;
                Some(TiledTiffWriter::create(
                    &temporary(&path),
                    kind.samples(),
                    bytes,
                )?)
            } else {
                None
            };
            files.push((kind, path, writer));
        }
        let record = Record {
            input: input.display().to_string(),
            outputs: files
                .iter()
                .map(|(kind, _, _)| output_name(&stem, *kind, tiff))
                .collect(),
            pages,
            width,
            height,
            megapixels: (pages * width * height) as f64 / 1e6,
            settings: self.config.settings.clone(),
            run: self.config.run,
            read_s,
            predict_s: 0.0,
            write_s: 0.0,
            error: None,
        };
        self.current = Some(Current {
            record,
            tiff,
            write_s: 0.0,
            files,
            image: None,
            map: None,
        });
        Ok(())
    }

    fn band(&mut self, y: usize, foreground: &Grid<f32>) -> Result<()> {
        let threshold = self.config.threshold;
        let current = self.current_mut()?;
        if let Some(map) = current.map.as_mut() {
            let w = map.width;
            map.data[y * w..(y + foreground.height) * w].copy_from_slice(&foreground.data);
            return Ok(());
        }
        let image = current.image.clone().expect("a page before its bands");
        let rows = &image.data[y * image.width..(y + foreground.height) * image.width];
        for (kind, _, file) in current.files.iter_mut() {
            let bytes = encode_rows(*kind, rows, &foreground.data, threshold);
            file.as_mut().expect("TIFF output").write_rows(&bytes)?;
        }
        Ok(())
    }

    fn end_page(&mut self) -> Result<()> {
        let threshold = self.config.threshold;
        let current = self.current_mut()?;
        let image = current.image.take().expect("a page before its end");
        if let Some(map) = current.map.take() {
            for (kind, path, _) in &current.files {
                match kind {
                    OutputKind::Prob => write_probability_png(path, &map)?,
                    OutputKind::Mask => write_mask_png(path, &map, threshold)?,
                    OutputKind::Overlay => write_overlay_png(path, &image, &map, threshold, None)?,
                }
            }
        } else {
            for (_, _, file) in current.files.iter_mut() {
                file.as_mut().expect("TIFF output").end_page()?;
            }
        }
        Ok(())
    }

    /// Finishes the TIFF files, renames them into place, and records the input as done.
    fn end(&mut self, start: Instant) -> Result<()> {
        let mut current = self.current.take().expect("an input to end");
        for (_, path, file) in current.files.drain(..) {
            if let Some(file) = file {
                file.finish()?;
                std::fs::rename(temporary(&path), &path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            }
        }
        current.record.write_s = current.write_s + start.elapsed().as_secs_f64();
        self.commit(current.record)
    }

    fn commit(&mut self, record: Record) -> Result<()> {
        let journal = Manifest::journal_path(&self.config.out, self.manifest.shard);
        append_journal(&journal, &record)?;
        self.manifest.add(record);
        Ok(())
    }
}

/// A band's rows of one output: `rows` of the image and their foreground probabilities,
/// encoded as the PNG writers in [`crate::report`] encode them.
fn encode_rows(kind: OutputKind, image: &[f32], prob: &[f32], threshold: f32) -> Vec<u8> {
    match kind {
        OutputKind::Prob => prob
            .iter()
            .flat_map(|&p| ((p.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes())
            .collect(),
        OutputKind::Mask => prob
            .iter()
            .map(|&p| if p > threshold { 255 } else { 0 })
            .collect(),
        OutputKind::Overlay => image
            .iter()
            .zip(prob)
            .flat_map(|(&v, &p)| {
                let g = (v.clamp(0.0, 1.0) * 255.0) as u8;
                if p <= threshold {
                    [g / 2 + 127, g / 2, g / 2]
                } else {
                    [g, g, g]
                }
            })
            .collect(),
    }
}
