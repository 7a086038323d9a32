//! A shard's manifest: what it was asked to predict, what it wrote, with which checkpoint and
//! settings, and how long it took. Two files per shard in the output folder:
//!
//! - `manifest-shard-K-of-N.jsonl`, a journal: one [`Record`] per line, appended (and synced)
//!   right after an input's outputs are renamed into place. It is the done marker: an input
//!   is complete when a record with the run's settings says so and every output it lists
//!   exists. A line cut short by a kill is ignored.
//! - `manifest-shard-K-of-N.json`, the summary ([`Manifest`]): written (atomically) when a
//!   run starts and ends, with every record and a line per run.
//!
//! `unet predict --merge-report` reads both for every shard ([`merge`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::shard::Shard;
use crate::error::{Error, Result};

pub const VERSION: u32 = 1;

/// One input's outcome in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The input's path as given (after expanding folders and globs).
    pub input: String,
    /// The files written, by name, in the output folder.
    pub outputs: Vec<String>,
    pub pages: usize,
    pub width: usize,
    pub height: usize,
    /// Pixels of all pages, in millions.
    pub megapixels: f64,
    /// The [`Settings::fingerprint`] the outputs were made with.
    pub settings: String,
    /// Which of the shard's runs (from 1) predicted it.
    pub run: usize,
    pub read_s: f64,
    pub predict_s: f64,
    pub write_s: f64,
    /// Why the input could not be predicted (it is tried again on the next run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run of a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub started_unix_s: u64,
    pub wall_s: f64,
    /// Inputs predicted in this run, inputs skipped as complete, inputs that failed.
    pub predicted: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Pages (images) predicted and their pixels.
    pub images: usize,
    pub megapixels: f64,
    pub images_per_s: f64,
    pub megapixels_per_s: f64,
    /// Whether reading and writing ran on their own threads beside the GPU work.
    pub overlap: bool,
    pub gpu_peak_bytes: u64,
}

/// What makes two predictions of an input the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub checkpoint: String,
    pub checkpoint_sha256: String,
    pub tile: usize,
    pub heads: String,
    pub tta: bool,
    pub threshold: f32,
    pub format: String,
    pub outputs: Vec<String>,
}

impl Settings {
    /// Everything that changes the output files (not the batch, which does not, nor the
    /// checkpoint's path, only its contents).
    pub fn fingerprint(&self) -> String {
        format!(
            "sha256:{} tile:{} heads:{} tta:{} threshold:{} format:{} outputs:{}",
            self.checkpoint_sha256,
            self.tile,
            self.heads,
            self.tta,
            self.threshold,
            self.format,
            self.outputs.join(",")
        )
    }
}

/// A shard's summary file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub shard: Shard,
    /// Inputs of all shards together, and the SHA-256 of their sorted list (one path per
    /// line): shards of one job agree on both.
    pub total_inputs: usize,
    pub inputs_sha256: String,
    /// This shard's inputs.
    pub assigned: Vec<String>,
    pub settings: Settings,
    /// The latest record of each input, sorted by input.
    pub records: Vec<Record>,
    pub runs: Vec<RunSummary>,
}

impl Manifest {
    pub fn path(dir: &Path, shard: Shard) -> PathBuf {
        dir.join(shard.manifest_name())
    }

    pub fn journal_path(dir: &Path, shard: Shard) -> PathBuf {
        dir.join(format!("{}l", shard.manifest_name()))
    }

    /// Adds `record`, replacing an earlier one of the same input.
    pub fn add(&mut self, record: Record) {
        match self
            .records
            .binary_search_by(|r| r.input.as_str().cmp(&record.input))
        {
            Ok(i) => self.records[i] = record,
            Err(i) => self.records.insert(i, record),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a manifest serialises");
        crate::train::checkpoint::write_atomically(&Self::path(dir, self.shard), json.as_bytes())
    }

    /// The shard's summary with the journal's records folded in, if it has either.
    pub fn load(dir: &Path, shard: Shard) -> Result<Option<Manifest>> {
        let path = Self::path(dir, shard);
        let mut manifest = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Manifest>(&bytes).map_err(|e| {
                Error::Config(format!(
                    "{} is not a manifest of `unet predict` ({e}): move it away or pass another --out",
                    path.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        if let Some(manifest) = manifest.as_mut() {
            for record in read_journal(&Self::journal_path(dir, shard))? {
                manifest.add(record);
            }
        }
        Ok(manifest)
    }
}

/// The journal's records, in order; a last line cut short (a killed run) is skipped.
pub fn read_journal(path: &Path) -> Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Appends `record` to the journal at `path` and syncs it (the input's done marker).
pub fn append_journal(path: &Path, record: &Record) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut line = serde_json::to_string(record).expect("a record serialises");
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// Every shard manifest in `dir` (summaries with their journals), by shard.
pub fn load_all(dir: &Path) -> Result<Vec<Manifest>> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut shards = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(source)),
    };
    for entry in entries {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(shard) = parse_manifest_name(&name) {
            shards.push(shard);
        }
    }
    shards.sort_by_key(|s| (s.count, s.index));
    let mut manifests = Vec::new();
    for shard in shards {
        manifests.extend(Manifest::load(dir, shard)?);
    }
    Ok(manifests)
}

fn parse_manifest_name(name: &str) -> Option<Shard> {
    let rest = name
        .strip_prefix("manifest-shard-")?
        .strip_suffix(".json")?;
    let (k, n) = rest.split_once("-of-")?;
    Shard::new(k.parse().ok()?, n.parse().ok()?).ok()
}

/// The shards' manifests summed: what `--merge-report` prints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergedReport {
    pub shard_count: Option<usize>,
    pub total_inputs: usize,
    /// Shards with a manifest, and those without one.
    pub present: Vec<usize>,
    pub absent: Vec<usize>,
    pub done: usize,
    pub images: usize,
    pub megapixels: f64,
    /// GPU-side time summed over the shards' records (reading, predicting, writing).
    pub predict_s: f64,
    /// Inputs of present shards with no complete record, and those that failed (input, why).
    pub missing: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Disagreements between shards (another input list, checkpoint or shard count).
    pub conflicts: Vec<String>,
}

impl MergedReport {
    pub fn complete(&self) -> bool {
        self.absent.is_empty()
            && self.missing.is_empty()
            && self.failed.is_empty()
            && self.conflicts.is_empty()
            && self.shard_count.is_some()
    }
}

/// Sums the manifests of every folder in `dirs` (shards may write to one folder or each to
/// its own). An input counts as done when its record has no error, the shard's settings,
/// and every output it lists exists in the folder.
pub fn merge(dirs: &[PathBuf]) -> Result<MergedReport> {
    let mut report = MergedReport::default();
    let mut first: Option<(String, String)> = None;
    for dir in dirs {
        for manifest in load_all(dir)? {
            let count = manifest.shard.count;
            match report.shard_count {
                None => report.shard_count = Some(count),
                Some(n) if n != count => report.conflicts.push(format!(
                    "{} is shard {} but another manifest has {n} shards",
                    Manifest::path(dir, manifest.shard).display(),
                    manifest.shard
                )),
                Some(_) => {}
            }
            let identity = (
                manifest.inputs_sha256.clone(),
                manifest.settings.fingerprint(),
            );
            match &first {
                None => first = Some(identity),
                Some(f) if *f != identity => report.conflicts.push(format!(
                    "shard {} ran over another input list or with other settings (checkpoint sha256 {})",
                    manifest.shard, manifest.settings.checkpoint_sha256
                )),
                Some(_) => {}
            }
            if report.present.contains(&manifest.shard.index) {
                report
                    .conflicts
                    .push(format!("shard {} has two manifests", manifest.shard));
                continue;
            }
            report.present.push(manifest.shard.index);
            report.total_inputs = report.total_inputs.max(manifest.total_inputs);
            let fingerprint = manifest.settings.fingerprint();
            let records: BTreeMap<&str, &Record> = manifest
                .records
                .iter()
                .map(|r| (r.input.as_str(), r))
                .collect();
            for input in &manifest.assigned {
                match records.get(input.as_str()) {
                    Some(r) if r.error.is_some() => report
                        .failed
                        .push((input.clone(), r.error.clone().unwrap_or_default())),
                    Some(r)
                        if r.settings == fingerprint
                            && r.outputs.iter().all(|o| dir.join(o).is_file()) =>
                    {
                        report.done += 1;
                        report.images += r.pages;
                        report.megapixels += r.megapixels;
                        report.predict_s += r.read_s + r.predict_s + r.write_s;
                    }
                    _ => report.missing.push(input.clone()),
                }
            }
        }
    }
    if let Some(n) = report.shard_count {
        report.present.sort_unstable();
        report.absent = (0..n).filter(|k| !report.present.contains(k)).collect();
    }
    Ok(report)
}
