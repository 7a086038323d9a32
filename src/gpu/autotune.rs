//! The store behind autotuning: which implementation an op chose for a shape on this
//! device, and where that choice lives on disk. The timing itself is the op's business
//! (`ops::conv2d::autotune`); this module only keeps choices, keyed by op and shape, for
//! one device, and reads and writes the files.
//!
//! A cache file holds choices for many devices: `devices` maps a device key (adapter,
//! driver, backend, subgroup sizes: [`device_key`]) to a map from an op's shape key to
//! its [`Tuned`] choice. Two files may be in use at once:
//! - the user's cache (`UNET_AUTOTUNE_CACHE`, else `$XDG_CACHE_HOME/unet-wgpu/autotune.json`,
//!   else `~/.cache/unet-wgpu/autotune.json`), so that later runs start at once;
//! - a training run's `autotune.json` in its run folder, whose choices win over the cache,
//!   so that a resumed run computes with the same kernels (the same sums) as before.
//!
//! Every new choice is written to both at once, atomically (a temporary file renamed over
//! the old one, merged with what another process may have written meanwhile). A file that
//! cannot be read or parsed is a one-line warning and is treated as empty; the next write
//! replaces it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Names the format of the files; a file of another version is ignored (and rebuilt), so
/// that choices timed with other kernels are not reused.
const FORMAT: &str = concat!("unet-wgpu autotune 1, crate ", env!("CARGO_PKG_VERSION"));

/// The name of the choices file in a training run's folder.
pub const RUN_FILE: &str = "autotune.json";

/// `UNET_AUTOTUNE`: whether ops time their implementations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TuneMode {
    /// Every op runs its default implementation (the library's default, and the tests').
    #[default]
    Off,
    /// Use the choices in the files; a shape without one runs the default, nothing is timed.
    Cached,
    /// Use the choices in the files; time the candidates for a shape without one.
    On,
}

impl TuneMode {
    pub fn parse(s: &str) -> Result<TuneMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "false" => Ok(TuneMode::Off),
            "cached" => Ok(TuneMode::Cached),
            "on" | "1" | "true" => Ok(TuneMode::On),
            other => Err(Error::Config(format!(
                "UNET_AUTOTUNE={other:?}: use off, cached or on"
            ))),
        }
    }

    /// The command line's mode where `UNET_AUTOTUNE` is not set: on for GPUs, off for CPU
    /// devices (lavapipe), where tuning a network takes minutes and the default kernels are
    /// those built for it.
    pub fn default_for(info: &wgpu::AdapterInfo) -> TuneMode {
        if info.device_type == wgpu::DeviceType::Cpu {
            TuneMode::Off
        } else {
            TuneMode::On
        }
    }

    /// `UNET_AUTOTUNE`, or `default` where it is not set.
    pub fn from_env(default: TuneMode) -> Result<TuneMode> {
        match std::env::var("UNET_AUTOTUNE") {
            Ok(s) if !s.trim().is_empty() => TuneMode::parse(&s),
            _ => Ok(default),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            TuneMode::Off => "off",
            TuneMode::Cached => "cached",
            TuneMode::On => "on",
        }
    }
}

/// The user's cache file: `UNET_AUTOTUNE_CACHE`, else under `$XDG_CACHE_HOME` or
/// `~/.cache`; None where none of these is set.
pub fn default_cache_path() -> Option<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = env("UNET_AUTOTUNE_CACHE") {
        return Some(PathBuf::from(path));
    }
    let base = env("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("unet-wgpu").join("autotune.json"))
}

/// The key of a device in the files: adapter, backend, driver and subgroup sizes (lavapipe
/// at another vector width is another device for the kernels).
pub fn device_key(info: &wgpu::AdapterInfo, subgroups: Option<super::Subgroups>) -> String {
    let subgroups = subgroups.map_or("none".to_string(), |s| s.to_string());
    format!(
        "{} | {:?} | {} {} | subgroups {subgroups}",
        info.name, info.backend, info.driver, info.driver_info
    )
}

/// One choice: the candidate that won, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// The implementation, as the op names it (e.g. `tiled 64x64x16`).
    pub choice: String,
    /// Each candidate timed, with its median milliseconds, fastest first (for the fastest
    /// and the untuned choice, their medians in the head-to-head that decided between them).
    #[serde(default)]
    pub timings: Vec<(String, f64)>,
}

impl Tuned {
    /// The timings as one line: `tiled 64x64x16 1.200, gemm 2.310, ...` (ms).
    pub fn timings_text(&self) -> String {
        let each: Vec<String> = self
            .timings
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.3}"))
            .collect();
        each.join(", ")
    }
}

/// Where the choice an op used came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Timed in this process.
    Tuned,
    /// The user's cache file.
    Cache,
    /// The training run's folder (it wins over the cache).
    RunFolder,
}

/// A choice an op made in this process.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub key: String,
    pub tuned: Tuned,
    pub source: Source,
}

#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    format: String,
    devices: BTreeMap<String, BTreeMap<String, Tuned>>,
}

/// What a file holds for `device`; a missing file is empty, an unreadable or corrupt one
/// is a warning and empty.
fn read_entries(path: &Path, device: &str) -> BTreeMap<String, Tuned> {
    match read_file(path) {
        Ok(Some(mut file)) => file.devices.remove(device).unwrap_or_default(),
        Ok(None) => BTreeMap::new(),
        Err(why) => {
            eprintln!(
                "warning: autotune file {} is unusable ({why}); it will be rebuilt",
                path.display()
            );
            BTreeMap::new()
        }
    }
}

/// The file, None where there is none or it is of another format version.
fn read_file(path: &Path) -> std::result::Result<Option<CacheFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let file: CacheFile = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok((file.format == FORMAT).then_some(file))
}

/// Adds `entries` for `device` to the file at `path` (keeping what else it holds, unless it
/// is unreadable) and writes it atomically: a temporary file of this process, renamed.
fn merge_into(path: &Path, device: &str, entries: &BTreeMap<String, Tuned>) -> Result<()> {
    let mut file = read_file(path).ok().flatten().unwrap_or_default();
    file.format = FORMAT.to_string();
    let mine = file.devices.entry(device.to_string()).or_default();
    mine.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
    let bytes = serde_json::to_vec_pretty(&file).expect("the cache serialises");
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let name = path
        .file_name()
        .map_or("autotune".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The choices of one device: the mode, the files and what was decided in this process.
#[derive(Default)]
pub struct Autotune {
    mode: TuneMode,
    device: String,
    cache: Option<PathBuf>,
    run_file: Option<PathBuf>,
    /// This device's entries of the cache and of the run folder's file.
    cached: BTreeMap<String, Tuned>,
    pinned: BTreeMap<String, Tuned>,
    /// Every choice used so far, in the order first used.
    decisions: Vec<Decision>,
}

impl Autotune {
    /// Autotuning in `mode` for `device`, with choices kept in `cache` (if any).
    pub fn new(mode: TuneMode, device: String, cache: Option<PathBuf>) -> Autotune {
        let cached = match (&cache, mode) {
            (Some(path), TuneMode::Cached | TuneMode::On) => read_entries(path, &device),
            _ => BTreeMap::new(),
        };
        Autotune {
            mode,
            device,
            cache,
            cached,
            ..Autotune::default()
        }
    }

    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_deref()
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// Keeps this process's choices in `folder`/[`RUN_FILE`] too, and prefers the choices
    /// already there (or, for a run resumed from another folder, in `resumed_from`'s) over
    /// the cache's: a resumed run runs the kernels it ran before. Choices made before this
    /// call are written there at once.
    pub fn use_run_folder(&mut self, folder: &Path, resumed_from: Option<&Path>) -> Result<()> {
        let path = folder.join(RUN_FILE);
        let own = read_entries(&path, &self.device);
        let mut pinned = match resumed_from.filter(|&r| r != folder) {
            Some(earlier) => read_entries(&earlier.join(RUN_FILE), &self.device),
            None => BTreeMap::new(),
        };
        pinned.extend(own.clone());
        for d in &self.decisions {
            pinned
                .entry(d.key.clone())
                .or_insert_with(|| d.tuned.clone());
        }
        if pinned != own {
            merge_into(&path, &self.device, &pinned)?;
        }
        self.pinned = pinned;
        self.run_file = Some(path);
        Ok(())
    }

    /// The choice for `key` from the files (run folder first), None where there is none
    /// or tuning is off. The caller checks that the choice can run here.
    pub fn lookup(&self, key: &str) -> Option<(Tuned, Source)> {
        if self.mode == TuneMode::Off {
            return None;
        }
        if let Some(d) = self.decisions.iter().find(|d| d.key == key) {
            return Some((d.tuned.clone(), d.source));
        }
        let pinned = self.pinned.get(key).map(|t| (t.clone(), Source::RunFolder));
        pinned.or_else(|| self.cached.get(key).map(|t| (t.clone(), Source::Cache)))
    }

    /// Records that `key` ran `tuned` (from `source`) and writes new choices to the files:
    /// the cache for tuned ones, the run folder for any not already there. A file that
    /// cannot be written is a warning (the choice still holds for this process).
    pub fn record(&mut self, key: &str, tuned: Tuned, source: Source) {
        if self.decisions.iter().any(|d| d.key == key) {
            return;
        }
        let entry = BTreeMap::from([(key.to_string(), tuned.clone())]);
        if let Err(e) = self.save(&entry, source == Source::Tuned) {
            eprintln!("warning: autotune choices not saved: {e}");
        }
        if source == Source::Tuned {
            self.cached.insert(key.to_string(), tuned.clone());
        }
        if self.run_file.is_some() {
            self.pinned.insert(key.to_string(), tuned.clone());
        }
        self.decisions.push(Decision {
            key: key.to_string(),
            tuned,
            source,
        });
    }

    /// Writes `entries` to the run folder's file (those not there yet) and, if `cache`,
    /// to the cache.
    fn save(&self, entries: &BTreeMap<String, Tuned>, cache: bool) -> Result<()> {
        if let (true, Some(path)) = (cache, &self.cache) {
            merge_into(path, &self.device, entries)?;
        }
        if let Some(path) = &self.run_file {
            let new: BTreeMap<String, Tuned> = entries
                .iter()
                .filter(|(k, _)| !self.pinned.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !new.is_empty() {
                merge_into(path, &self.device, &new)?;
            }
        }
        Ok(())
    }

    /// The choices used so far in this process, in the order first used.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// This device's choices in the cache file (what `unet info` lists).
    pub fn cached(&self) -> &BTreeMap<String, Tuned> {
        &self.cached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("unet-autotune-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tuned(choice: &str) -> Tuned {
        Tuned {
            choice: choice.into(),
            timings: vec![(choice.into(), 1.5), ("direct".into(), 9.0)],
        }
    }

    #[test]
    fn cache_round_trips_and_keys_separate_devices_and_shapes() {
        let path = scratch("roundtrip").join("sub").join("autotune.json");
        let mut a = Autotune::new(TuneMode::On, "device A".into(), Some(path.clone()));
        a.record(
            "conv fwd 1x8x20x20->8",
            tuned("tiled 16x64x16"),
            Source::Tuned,
        );
        a.record("conv fwd 1x8x22x22->8", tuned("direct"), Source::Tuned);
        let mut b = Autotune::new(TuneMode::On, "device B".into(), Some(path.clone()));
        b.record("conv fwd 1x8x20x20->8", tuned("gemm"), Source::Tuned);

        let a2 = Autotune::new(TuneMode::Cached, "device A".into(), Some(path.clone()));
        assert_eq!(
            a2.lookup("conv fwd 1x8x20x20->8"),
            Some((tuned("tiled 16x64x16"), Source::Cache))
        );
        assert_eq!(
            a2.lookup("conv fwd 1x8x22x22->8").unwrap().0.choice,
            "direct"
        );
        assert_eq!(a2.lookup("conv fwd 1x8x24x24->8"), None);
        let b2 = Autotune::new(TuneMode::Cached, "device B".into(), Some(path.clone()));
        assert_eq!(b2.lookup("conv fwd 1x8x20x20->8").unwrap().0.choice, "gemm");
        assert_eq!(b2.lookup("conv fwd 1x8x22x22->8"), None);
        let off = Autotune::new(TuneMode::Off, "device A".into(), Some(path));
        assert_eq!(off.lookup("conv fwd 1x8x20x20->8"), None);
    }

    #[test]
    fn a_corrupt_file_is_empty_and_rebuilt() {
        let path = scratch("corrupt").join("autotune.json");
        std::fs::write(&path, b"{\"format\": \"unet-wgpu autotune 1\", \"dev").unwrap();
        let mut a = Autotune::new(TuneMode::On, "device A".into(), Some(path.clone()));
        assert_eq!(a.lookup("k"), None);
        a.record("k", tuned("direct"), Source::Tuned);
        let again = Autotune::new(TuneMode::Cached, "device A".into(), Some(path.clone()));
        assert_eq!(again.lookup("k").unwrap().0.choice, "direct");
        // Another format version is ignored, not an error.
        std::fs::write(&path, b"{\"format\": \"old\", \"devices\": {}}").unwrap();
        let old = Autotune::new(TuneMode::Cached, "device A".into(), Some(path));
        assert_eq!(old.lookup("k"), None);
    }

    #[test]
    fn the_run_folder_wins_over_the_cache_and_keeps_every_choice() {
        let dir = scratch("run");
        let cache = dir.join("cache.json");
        let run = dir.join("run");
        let mut first = Autotune::new(TuneMode::On, "dev".into(), Some(cache.clone()));
        first.use_run_folder(&run, None).unwrap();
        first.record("k", tuned("gemm"), Source::Tuned);
        // The cache changes later (another run tuned again) ...
        let mut other = Autotune::new(TuneMode::On, "dev".into(), Some(cache.clone()));
        other.record("k2", tuned("direct"), Source::Tuned);
        merge_into(
            &cache,
            "dev",
            &BTreeMap::from([("k".into(), tuned("direct"))]),
        )
        .unwrap();
        // ... and the resumed run still sees its own choice.
        let mut resumed = Autotune::new(TuneMode::Cached, "dev".into(), Some(cache));
        resumed.use_run_folder(&run, Some(&run)).unwrap();
        assert_eq!(
            resumed.lookup("k"),
            Some((tuned("gemm"), Source::RunFolder))
        );
        assert_eq!(resumed.lookup("k2").unwrap().1, Source::Cache);
    }

    #[test]
    fn modes_parse() {
        assert_eq!(TuneMode::parse("off").unwrap(), TuneMode::Off);
        assert_eq!(TuneMode::parse(" Cached").unwrap(), TuneMode::Cached);
        assert_eq!(TuneMode::parse("on").unwrap(), TuneMode::On);
        assert!(TuneMode::parse("sometimes").is_err());
    }
}
