//! Writing an input's outputs (probability map, mask, overlay; for K > 2 classes the
//! probability of every class, the class map and a colour overlay, see [`super::classes`])
//! as bands of its prediction arrive: PNG for one page of a practical size (the maps are
//! gathered, then encoded), tiled TIFF for stacks and large images (streamed: at most 256
//! rows of each page are held; K > 2 probabilities are one TIFF with a page per class of
//! each input page, fed together).
//! Every file is written under a hidden temporary name and renamed into place when whole;
//! then the input's record is appended to the shard's journal, its done marker. A run
//! killed mid-write leaves only temporary files; the rerun predicts that input again and
//! writes (truncating) and renames the same temporary names, so none is left over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;

use super::classes::{class_map_png, class_overlay_png, overlay_pixel, prob16};
use super::manifest::{append_journal, Manifest, Record};
use crate::data::tiff_out::{Samples, TiledTiffWriter};
use crate::data::{GrayImage, Grid};
use crate::error::{Error, Result};
use crate::infer::class_map;
use crate::report::{write_mask_png, write_overlay_png, write_probability_png};
use crate::train::checkpoint::write_atomically;

/// One page of more pixels than this is written as TIFF, not PNG (under `--format auto`):
/// 8192 x 8192. A PNG is encoded whole in memory and most viewers refuse larger ones.
pub const PNG_MAX_PIXELS: usize = 1 << 26;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum OutputKind {
    /// Probabilities, 16-bit gray (0..65535): of the foreground (2 classes), of every
    /// class (K > 2: STEM_prob_C.png per class C, or one STEM_prob.tif, a page per class).
    Prob,
    /// 2 classes: foreground where the probability is above --threshold, 8-bit (255 / 0);
    /// K > 2: the class map STEM_class, 8-bit class indices (the most probable class).
    #[value(alias = "class")]
    Mask,
    /// The image in gray, 8-bit RGB: 2 classes, predicted background tinted red; K > 2,
    /// every class but 0 in its colour (PNG with a legend).
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

    /// The TIFF pages of this output per input page, for a network of `classes` classes:
    /// a page per class for K > 2 probabilities, else one.
    fn planes(self, classes: usize) -> usize {
        match self {
            OutputKind::Prob if classes > 2 => classes,
            _ => 1,
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

/// The files of an input's output of `kind` from a network of `classes` classes:
/// two classes, `STEM_KIND.png` or `STEM_KIND.tif`; K > 2, `STEM_prob_C.png` for every class
/// C (or one `STEM_prob.tif`), `STEM_class.*` (the class map, `--outputs mask`) and
/// `STEM_overlay.*`.
pub fn output_names(stem: &str, kind: OutputKind, tiff: bool, classes: usize) -> Vec<String> {
    let ext = if tiff { "tif" } else { "png" };
    match (kind, classes > 2) {
        (_, false) => vec![format!("{stem}_{}.{ext}", kind.name())],
        (OutputKind::Prob, true) if !tiff => (0..classes)
            .map(|k| format!("{stem}_prob_{k}.png"))
            .collect(),
        (OutputKind::Prob, true) => vec![format!("{stem}_prob.tif")],
        (OutputKind::Mask, true) => vec![format!("{stem}_class.{ext}")],
        (OutputKind::Overlay, true) => vec![format!("{stem}_overlay.{ext}")],
    }
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
    /// The probabilities of every class of rows `y..` of the page.
    Band {
        y: usize,
        maps: Vec<Grid<f32>>,
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
    /// The network's classes K.
    pub classes: usize,
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
    files: Vec<Output>,
    /// The page being written and, for PNG, its maps gathered whole (see [`kept`]).
    image: Option<Arc<GrayImage>>,
    maps: Option<Vec<Grid<f32>>>,
}

/// One output of the input being written.
struct Output {
    kind: OutputKind,
    /// Its final paths: one, or for PNG probabilities of K > 2 classes one per class.
    paths: Vec<PathBuf>,
    /// The TIFF being streamed (TIFF), or none (PNG, written at EndPage).
    tiff: Option<TiledTiffWriter>,
}

/// The maps an output needs of a prediction's class `maps`: two classes, the foreground
/// alone; K > 2, every class's.
fn kept(maps: &[Grid<f32>]) -> &[Grid<f32>] {
    match maps.len() {
        2 => &maps[1..],
        _ => maps,
    }
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
                let classes = self.config.classes;
                let current = self.current_mut()?;
                let (w, h) = (image.width, image.height);
                if !current.tiff {
                    let kept = if classes == 2 { 1 } else { classes };
                    current.maps = Some(vec![Grid::filled(w, h, 0.0); kept]);
                }
                for output in current.files.iter_mut() {
                    if let Some(file) = output.tiff.as_mut() {
                        file.begin_pages(output.kind.planes(classes), w, h)?;
                    }
                }
                current.image = Some(image);
            }
            Job::Band { y, maps } => self.band(y, &maps)?,
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
        let classes = self.config.classes;
        let mut files = Vec::new();
        let mut names = Vec::new();
        for &kind in &self.config.kinds {
            let kind_names = output_names(&stem, kind, tiff, classes);
            let paths: Vec<PathBuf> = kind_names.iter().map(|n| self.config.out.join(n)).collect();
            let writer = if tiff {
                let planes = pages * kind.planes(classes);
                let bytes = (planes * width * height * kind.samples().bytes()) as u64;
                Some(TiledTiffWriter::create(
                    &temporary(&paths[0]),
                    kind.samples(),
                    bytes,
                )?)
            } else {
                None
            };
            names.extend(kind_names);
            files.push(Output {
                kind,
                paths,
                tiff: writer,
            });
        }
        let record = Record {
            input: input.display().to_string(),
            outputs: names,
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
            maps: None,
        });
        Ok(())
    }

    fn band(&mut self, y: usize, maps: &[Grid<f32>]) -> Result<()> {
        let threshold = self.config.threshold;
        let current = self.current_mut()?;
        if let Some(whole) = current.maps.as_mut() {
            for (whole, band) in whole.iter_mut().zip(kept(maps)) {
                let w = whole.width;
                whole.data[y * w..(y + band.height) * w].copy_from_slice(&band.data);
            }
            return Ok(());
        }
        let image = current.image.clone().expect("a page before its bands");
        let band_rows = maps[0].height;
        let rows = &image.data[y * image.width..(y + band_rows) * image.width];
        for output in current.files.iter_mut() {
            let planes = encode_rows(output.kind, rows, maps, threshold);
            let file = output.tiff.as_mut().expect("TIFF output");
            for (k, bytes) in planes.iter().enumerate() {
                file.write_rows_to(k, bytes)?;
            }
        }
        Ok(())
    }

    fn end_page(&mut self) -> Result<()> {
        let threshold = self.config.threshold;
        let current = self.current_mut()?;
        let image = current.image.take().expect("a page before its end");
        if let Some(maps) = current.maps.take() {
            for output in &current.files {
                write_png(output, &image, &maps, threshold)?;
            }
        } else {
            for output in current.files.iter_mut() {
                output.tiff.as_mut().expect("TIFF output").end_page()?;
            }
        }
        Ok(())
    }

    /// Finishes the TIFF files, renames them into place, and records the input as done.
    fn end(&mut self, start: Instant) -> Result<()> {
        let mut current = self.current.take().expect("an input to end");
        for output in current.files.drain(..) {
            if let Some(file) = output.tiff {
                let path = &output.paths[0];
                file.finish()?;
                std::fs::rename(temporary(path), path).map_err(|source| Error::Io {
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

/// One page's PNG file(s) of `output`, from the page's gathered maps (see [`kept`]).
fn write_png(output: &Output, image: &GrayImage, maps: &[Grid<f32>], threshold: f32) -> Result<()> {
    let path = &output.paths[0];
    if let [foreground] = maps {
        return match output.kind {
            OutputKind::Prob => write_probability_png(path, foreground),
            OutputKind::Mask => write_mask_png(path, foreground, threshold),
            OutputKind::Overlay => write_overlay_png(path, image, foreground, threshold, None),
        };
    }
    match output.kind {
        OutputKind::Prob => output
            .paths
            .iter()
            .zip(maps)
            .try_for_each(|(path, map)| write_probability_png(path, map)),
        OutputKind::Mask => write_atomically(path, &class_map_png(&class_map(maps))?),
        OutputKind::Overlay => write_atomically(path, &class_overlay_png(image, maps)?),
    }
}

/// A band's rows of one output, one byte string per TIFF page (a page per class for
/// K > 2 probabilities): `image` rows and the probabilities of every class, encoded as
/// the PNG writers encode them (the K > 2 overlay without its legend).
fn encode_rows(
    kind: OutputKind,
    image: &[f32],
    maps: &[Grid<f32>],
    threshold: f32,
) -> Vec<Vec<u8>> {
    let prob16_bytes = |map: &Grid<f32>| -> Vec<u8> {
        map.data
            .iter()
            .flat_map(|&p| prob16(p).to_le_bytes())
            .collect()
    };
    if let [_, foreground] = maps {
        let prob = &foreground.data;
        return vec![match kind {
            OutputKind::Prob => prob16_bytes(foreground),
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
        }];
    }
    match kind {
        OutputKind::Prob => maps.iter().map(prob16_bytes).collect(),
        OutputKind::Mask => vec![class_map(maps).data],
        OutputKind::Overlay => vec![image
            .iter()
            .zip(&class_map(maps).data)
            .flat_map(|(&v, &c)| overlay_pixel(v, c))
            .collect()],
    }
}
