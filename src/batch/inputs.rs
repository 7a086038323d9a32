//! The inputs of a prediction run: files, folders and globs, expanded, sorted and deduplicated,
//! so that every shard of a run sees the same list in the same order.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File extensions a folder is searched for (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "tif", "tiff"];

/// Every image `args` name: a file as given, a folder's PNG and TIFF files (not its
/// subfolders), a glob's matches (`*`, `?`, `[...]`, `**`; quote it so that the shell does
/// not expand it, which also avoids the shell's limit on the length of a command line).
/// Sorted by path (byte order of the path as spelled) and without duplicates.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if arg.is_dir() {
            inputs.extend(folder_images(arg)?);
        } else if text.contains(['*', '?', '[']) && !arg.exists() {
            let matches = glob_matches(&text)?;
            if matches.is_empty() {
                return Err(Error::Config(format!(
                    "the pattern {text} matches no files: check the folder and the pattern"
                )));
            }
            inputs.extend(matches);
        } else {
            if !arg.is_file() {
                return Err(Error::Io {
                    path: arg.display().to_string(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            inputs.push(arg.clone());
        }
    }
    inputs.sort();
    inputs.dedup();
    if inputs.is_empty() {
        return Err(Error::Config(
            "no images to predict: give PNG or TIFF files, folders holding them, or quoted globs"
                .into(),
        ));
    }
    Ok(inputs)
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn folder_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && is_image_name(&path) {
            found.push(path);
        }
    }
    if found.is_empty() {
        return Err(Error::Config(format!(
            "the folder {} holds no .png, .tif or .tiff files: give another folder or the files",
            dir.display()
        )));
    }
    Ok(found)
}

fn glob_matches(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern).map_err(|e| {
        Error::Config(format!(
            "the pattern {pattern} is not a valid glob ({e}): use *, ?, [abc] and **"
        ))
    })?;
    let mut found = Vec::new();
    for path in paths {
        let path = path.map_err(|e| Error::Io {
            path: e.path().display().to_string(),
            source: e.into(),
        })?;
        if path.is_file() {
            found.push(path);
        }
    }
    Ok(found)
}
