//! Labels for K classes: how the values stored in a mask file become one class per pixel
//! (and, for the weight map's border term, objects), plus unlabelled pixels.
//!
//! * **Binary** and **instance** masks ([`MaskFormat`]) work as before: class 1 = cell
//!   (label > 0), class 0 = background.
//! * **Class masks** (`--classes K`): the stored value of a pixel is its class index
//!   0..K-1, or, with `--class-values`, the position of its value (a gray level or an
//!   `#rrggbb` colour) in that list. A value that maps to no class is an error naming the
//!   file, the pixel, the value and the values the file holds; with `snap` it is mapped to
//!   the nearest listed value instead (absolute difference; Euclidean distance in RGB) and
//!   the pixels changed are counted. Objects for the border term are the 4-connected
//!   components of each foreground class.
//! * **Instance masks as three classes** (`--mask instance --classes 3`): background 0,
//!   interior 1, boundary 2, where an instance pixel is boundary when a pixel of another id
//!   (or background) lies within `boundary_width` pixels (4-connected steps) of it. The
//!   border term uses the instances themselves.
//! * `ignore`: a stored value that marks unlabelled pixels, class [`IGNORE`]; they get weight
//!   0 in the loss and are left out of every metric.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{DataError, Result};
use super::grid::{Grid, LabelImage};
use super::io::RawPage;
use super::mask::{connected_components, mask_to_labels, MaskFormat};

/// The class of an unlabelled pixel.
pub const IGNORE: u8 = u8::MAX;

/// The most classes a class map holds (u8, with [`IGNORE`] kept free).
pub const MAX_CLASSES: usize = 255;

/// A stored mask value that stands for a class: a gray level or an RGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassValue {
    Gray(u32),
    Rgb([u8; 3]),
}

impl FromStr for ClassValue {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(hex) = s.strip_prefix('#') {
            let bad = || format!("class value {s:?}: a colour is #rrggbb, e.g. #ff0000");
            if hex.len() != 6 {
                return Err(bad());
            }
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
            return Ok(ClassValue::Rgb([byte(0)?, byte(2)?, byte(4)?]));
        }
        s.parse().map(ClassValue::Gray).map_err(|_| {
            format!("class value {s:?}: give a non-negative integer (a gray level) or #rrggbb")
        })
    }
}

impl fmt::Display for ClassValue {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ClassValue::Gray(v) => write!(f, "{v}"),
            ClassValue::Rgb([r, g, b]) => write!(f, "#{r:02x}{g:02x}{b:02x}"),
        }
    }
}

/// Parses `0,128,255` or `#000000,#ff0000`.
pub fn parse_class_values(s: &str) -> std::result::Result<Vec<ClassValue>, String> {
    s.split(',').map(str::parse).collect()
}

/// How a mask file is read into classes.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSpec {
    /// How the stored values are read when there are two classes (today's formats), and
    /// whether they are instances (for `Instance` with 3 classes).
    pub format: MaskFormat,
    /// K; 2 with a binary or instance format is today's behaviour.
    pub classes: usize,
    /// The stored values of the classes, in class order (class masks only); `None`: the
    /// value is the class index.
    pub values: Option<Vec<ClassValue>>,
    /// Values are read as class indices or `values` (a class mask), rather than `format`.
    pub class_mask: bool,
    /// Map values that match no class to the nearest one.
    pub snap: bool,
    /// A stored value marking unlabelled pixels.
    pub ignore: Option<u32>,
    /// Boundary width for instance masks read as three classes, in pixels.
    pub boundary_width: usize,
}

/// The default boundary of instance masks read as three classes.
pub const DEFAULT_BOUNDARY_WIDTH: usize = 2;

impl LabelSpec {
    /// Today's two-class reading of `format`.
    pub fn two_class(format: MaskFormat) -> LabelSpec {
        LabelSpec {
            format,
            classes: 2,
            values: None,
            class_mask: false,
            snap: false,
            ignore: None,
            boundary_width: DEFAULT_BOUNDARY_WIDTH,
        }
    }

    /// Whether instance masks are read as background, interior and a boundary class of
    /// `boundary_width` pixels.
    pub fn boundary_classes(&self) -> bool {
        !self.class_mask && self.format == MaskFormat::Instance && self.classes == 3
    }

    /// Checks the combination (K >= 2, one value per class, what instances can become).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(DataError::InvalidConfig {
                what: "labels",
                reason,
            })
        };
        if self.classes < 2 || self.classes > MAX_CLASSES {
            return bad(format!(
                "--classes {} must be between 2 and {MAX_CLASSES}: a segmentation needs a \
                 background and at least one other class",
                self.classes
            ));
        }
        if let Some(values) = &self.values {
            if values.len() != self.classes {
                return bad(format!(
                    "--class-values lists {} value(s) for --classes {}: give one value per class",
                    values.len(),
                    self.classes
                ));
            }
            let kinds: BTreeSet<bool> = values
                .iter()
                .map(|v| matches!(v, ClassValue::Rgb(_)))
                .collect();
            if kinds.len() > 1 {
                return bad("--class-values mixes gray levels and colours: use one kind".into());
            }
            let distinct: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
            if distinct.len() != values.len() {
                return bad("--class-values lists a value twice".into());
            }
        }
        if !self.class_mask {
            let instance = self.format == MaskFormat::Instance;
            if self.classes != 2 && !(instance && self.classes == 3) {
                return bad(format!(
                    "--classes {} with binary or instance masks: binary masks have 2 classes, \
                     instance masks 2 (cell/background) or 3 (background/interior/boundary)",
                    self.classes
                ));
            }
            if self.classes == 3 && self.boundary_width == 0 {
                return bad("--boundary-width must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Reads a decoded mask page: instance labels (objects) and classes.
    pub fn read(&self, page: &RawPage, path: &Path) -> Result<Labels> {
        if self.class_mask {
            return self.read_class_mask(page, path);
        }
        let values = page.to_mask_values(path)?;
        let ignored: Vec<bool> = values
            .data
            .iter()
            .map(|&v| Some(v) == self.ignore)
            .collect();
        let mut clean = values.clone();
        for (v, &ig) in clean.data.iter_mut().zip(&ignored) {
            if ig {
                // Any value the format accepts; the pixel's class is IGNORE below.
                *v = match self.format {
                    MaskFormat::Binary { background, .. } => background,
                    MaskFormat::Instance => 0,
                };
            }
        }
        let instances = mask_to_labels(&clean, self.format, path)?;
        let mut classes = if self.boundary_classes() {
            instance_classes(&instances, self.boundary_width)
        } else {
            instances.map(|id| u8::from(id > 0))
        };
        for (c, &ig) in classes.data.iter_mut().zip(&ignored) {
            if ig {
                *c = IGNORE;
            }
        }
        Ok(Labels {
            instances,
            classes,
            objects_by_class: false,
            snapped: 0,
        })
    }

    fn read_class_mask(&self, page: &RawPage, path: &Path) -> Result<Labels> {
        let rgb = matches!(self.values.as_deref(), Some([ClassValue::Rgb(_), ..]));
        let stored = if rgb {
            page.to_rgb_values(path)?
        } else {
            page.to_mask_values(path)?
        };
        let show = |v: u32| {
            if rgb {
                ClassValue::Rgb([(v >> 16) as u8, (v >> 8) as u8, v as u8]).to_string()
            } else {
                v.to_string()
            }
        };
        let targets: Vec<u32> = match &self.values {
            Some(values) => values
                .iter()
                .map(|v| match *v {
                    ClassValue::Gray(g) => g,
                    ClassValue::Rgb([r, g, b]) => (r as u32) << 16 | (g as u32) << 8 | b as u32,
                })
                .collect(),
            None => (0..self.classes as u32).collect(),
        };
        let mut snapped = 0;
        let mut classes = Grid::filled(stored.width, stored.height, 0u8);
        for (i, &v) in stored.data.iter().enumerate() {
            if Some(v) == self.ignore {
                classes.data[i] = IGNORE;
                continue;
            }
            if let Some(k) = targets.iter().position(|&t| t == v) {
                classes.data[i] = k as u8;
                continue;
            }
            if !self.snap {
                let found: BTreeSet<u32> = stored.data.iter().copied().collect();
                let mut listed: Vec<String> = found.iter().take(16).map(|&v| show(v)).collect();
                if found.len() > 16 {
                    listed.push(format!("... ({} distinct)", found.len()));
                }
                return Err(DataError::UnknownClassValue {
                    path: path.to_path_buf(),
                    value: show(v),
                    x: i % stored.width,
                    y: i / stored.width,
                    expected: format!(
                        "{{{}}}",
                        targets
                            .iter()
                            .map(|&t| show(t))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    found: listed.join(", "),
                });
            }
            let distance = |t: u32| -> u64 {
                if rgb {
                    (0..3)
                        .map(|s| {
                            let d = ((v >> (8 * s)) & 255) as i64 - ((t >> (8 * s)) & 255) as i64;
                            (d * d) as u64
                        })
                        .sum()
                } else {
                    (v as i64 - t as i64).unsigned_abs()
                }
            };
            let nearest = (0..targets.len())
                .min_by_key(|&k| distance(targets[k]))
                .expect("at least two classes");
            classes.data[i] = nearest as u8;
            snapped += 1;
        }
        Ok(Labels {
            instances: class_objects(&classes),
            classes,
            objects_by_class: true,
            snapped,
        })
    }
}

/// A mask read into classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Labels {
    /// Objects (0 = none): instances, or the components of each foreground class.
    pub instances: LabelImage,
    /// 0..K-1, or [`IGNORE`].
    pub classes: Grid<u8>,
    /// The objects are components of one class each (class masks), rather than instances
    /// that may span several classes.
    pub objects_by_class: bool,
    /// Pixels whose value was snapped to the nearest class value.
    pub snapped: usize,
}

/// The 4-connected components of each foreground class (1..K-1), numbered across classes.
pub fn class_objects(classes: &Grid<u8>) -> LabelImage {
    let mut objects = Grid::filled(classes.width, classes.height, 0u32);
    let present: BTreeSet<u8> = classes.data.iter().copied().collect();
    let mut next = 0u32;
    for &c in present.iter().filter(|&&c| c != 0 && c != IGNORE) {
        let components = connected_components(&classes.map(|v| v == c));
        let mut most = 0;
        for (o, &id) in objects.data.iter_mut().zip(&components.data) {
            if id > 0 {
                *o = next + id;
                most = most.max(id);
            }
        }
        next += most;
    }
    objects
}

/// Background 0, interior 1, boundary 2 of instance labels: an instance pixel is boundary
/// when a pixel of another id (background included; outside the image is not) lies within
/// `width` 4-connected steps.
pub fn instance_classes(instances: &LabelImage, width: usize) -> Grid<u8> {
    let (w, h) = instances.size();
    let r = width as isize;
    Grid::from_fn(w, h, |x, y| {
        let id = instances.get(x, y);
        if id == 0 {
            return 0;
        }
        for dy in -r..=r {
            let reach = r - dy.abs();
            for dx in -reach..=reach {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    continue;
                }
                if instances.get(nx as usize, ny as usize) != id {
                    return 2;
                }
            }
        }
        1
    })
}
