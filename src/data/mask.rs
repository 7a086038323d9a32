//! Masks: turning the stored values of a mask file into instance labels (one id per cell,
//! 0 = background), and splitting a binary mask into cells by connected components.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{DataError, Result};
use super::grid::{Grid, LabelImage};
use super::io::read_pages;

/// How to read the values stored in a mask file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskFormat {
    /// Exactly two values: `foreground` marks cells, `background` marks everything else
    /// (membrane, gaps). Cells are then separated by 4-connected components, see
    /// [`connected_components`]. Any other value is an error.
    Binary { foreground: u32, background: u32 },
    /// Each cell carries its own integer, background is 0. Any value is allowed.
    Instance,
}

impl MaskFormat {
    /// White cells on black: foreground 255, background 0. This is also the ISBI 2012
    /// convention, where 255 = cell interior and 0 = membrane.
    pub const BINARY_255: MaskFormat = MaskFormat::Binary {
        foreground: 255,
        background: 0,
    };
    /// The ISBI 2012 labels: 255 = cell interior (foreground), 0 = membrane.
    pub const ISBI: MaskFormat = Self::BINARY_255;
    /// Black cells on white ("inverted polarity"): foreground 0, background 255.
    pub const BINARY_INVERTED_255: MaskFormat = MaskFormat::Binary {
        foreground: 0,
        background: 255,
    };
}

/// As the flags that ask for it say: `binary, cells 0, background 65535` or `instance`.
impl fmt::Display for MaskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskFormat::Binary {
                foreground,
                background,
            } => write!(f, "binary, cells {foreground}, background {background}"),
            MaskFormat::Instance => write!(f, "instance"),
        }
    }
}

/// Turns stored mask values into instance labels; `path` names the file in errors.
pub fn mask_to_labels(values: &LabelImage, format: MaskFormat, path: &Path) -> Result<LabelImage> {
    match format {
        MaskFormat::Instance => Ok(values.clone()),
        MaskFormat::Binary {
            foreground,
            background,
        } => {
            if foreground == background {
                return Err(DataError::InvalidConfig {
                    what: "mask format",
                    reason: format!("foreground and background are both {foreground}"),
                });
            }
            let mut is_cell = Vec::with_capacity(values.data.len());
            for (i, &v) in values.data.iter().enumerate() {
                if v != foreground && v != background {
                    return Err(DataError::UnexpectedMaskValue {
                        path: path.to_path_buf(),
                        value: v,
                        x: i % values.width,
                        y: i / values.width,
                        expected: format!("{{{foreground} (cell), {background} (background)}}"),
                    });
                }
                is_cell.push(v == foreground);
            }
            let binary = Grid {
                width: values.width,
                height: values.height,
                data: is_cell,
            };
            Ok(connected_components(&binary))
        }
    }
}

/// Labels the 4-connected components of the `true` pixels: 1, 2, ... in raster order of their
/// first pixel; `false` pixels get 0.
///
/// 4-connectivity (left, right, up, down; not diagonal) is the right choice for cell masks
/// whose separating membranes are thin: a one-pixel diagonal line of membrane separates two
/// cells under 4-connectivity but would be crossed under 8-connectivity.
pub fn connected_components(binary: &Grid<bool>) -> LabelImage {
    let (w, h) = binary.size();
    let mut labels = Grid::filled(w, h, 0u32);
    let mut next_id = 0u32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !binary.data[start] || labels.data[start] != 0 {
            continue;
        }
        next_id += 1;
        labels.data[start] = next_id;
        stack.push(start);
        // Flood fill with an explicit stack: no recursion depth limit on large cells.
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            for j in neighbours.into_iter().flatten() {
                if binary.data[j] && labels.data[j] == 0 {
                    labels.data[j] = next_id;
                    stack.push(j);
                }
            }
        }
    }
    labels
}

/// The class of each pixel for a two-class network: 1 = cell (label > 0), 0 = background.
pub fn foreground_classes(labels: &LabelImage) -> Grid<u8> {
    labels.map(|id| u8::from(id > 0))
}

/// Reads the mask file `path` (its first page) as instance labels in `format`.
pub fn read_mask(path: &Path, format: MaskFormat) -> Result<LabelImage> {
    let values = read_pages(path)?[0].to_mask_values(path)?;
    mask_to_labels(&values, format, path)
}
