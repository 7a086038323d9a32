//! Data augmentation: one randomly sampled [`Transform`] applied jointly to an image, its labels
//! and its weight map, so that all three stay aligned.
//!
//! A transform is a map from destination pixels `p` (the output canvas, `w x h`, centre `c`) to
//! source coordinates in the input image (centred on `s`):
//!
//! ```text
//! src(p) = s + shift + R(theta) * F * (p + e(p) - c)
//! ```
//!
//! * `e(p)`: the elastic displacement of the paper: random vectors on a coarse `g x g` grid of
//!   nodes spanning the canvas (g = 3, each component ~ N(0, 10 px)), interpolated to every pixel
//!   by bicubic (Catmull-Rom) interpolation;
//! * `F`: optional horizontal/vertical flips, `R(theta)`: rotation about the canvas centre;
//! * `shift`: a translation.
//!
//! The image is sampled bicubically; labels and weights by nearest neighbour (labels must stay
//! in their label set, and a weight stays tied to the class of its pixel). Anything that falls
//! outside the source is mirrored ([`super::mirror`]). Finally the image's gray values change:
//!
//! ```text
//! v -> clamp( (clamp(v, 0, 1)^gamma - 0.5) * contrast + 0.5 + brightness, 0, 1 ).
//! ```

use rand::Rng;
use rand_distr::StandardNormal;

use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage, WeightMap};
use super::mirror::reflect_index;

/// What to randomise and how strongly. A strength of 0 (or `false`) switches a part off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Random horizontal and vertical flips (each with probability 1/2).
    pub flip: bool,
    /// Rotation angle uniform in `[-max, max]` degrees.
    pub max_rotation_deg: f32,
    /// Translation uniform in `[-max, max]` pixels along each axis.
    pub max_shift_px: f32,
    /// Standard deviation of the elastic displacement vectors in pixels (10 in the paper).
    pub elastic_std_px: f32,
    /// Number of elastic grid nodes along each axis (3 in the paper); at least 2.
    pub elastic_grid: usize,
    /// Contrast factor uniform in `[1 - contrast, 1 + contrast]`.
    pub contrast: f32,
    /// Brightness offset uniform in `[-brightness, brightness]` (intensities are in [0, 1]).
    pub brightness: f32,
    /// `ln(gamma)` uniform in `[-gamma, gamma]`.
    pub gamma: f32,
}

impl Default for AugmentConfig {
    /// The paper's augmentations: shifts, any rotation, flips, elastic deformation on a 3x3
    /// grid with 10 px standard deviation, and moderate gray-value changes.
    fn default() -> Self {
        Self {
            flip: true,
            max_rotation_deg: 180.0,
            max_shift_px: 16.0,
            elastic_std_px: 10.0,
            elastic_grid: 3,
            contrast: 0.2,
            brightness: 0.1,
            gamma: 0.2,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all: every sampled transform is the identity.
    pub fn none() -> Self {
        Self {
            flip: false,
            max_rotation_deg: 0.0,
            max_shift_px: 0.0,
            elastic_std_px: 0.0,
            elastic_grid: 3,
            contrast: 0.0,
            brightness: 0.0,
            gamma: 0.0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let strengths = [
            ("max_rotation_deg", self.max_rotation_deg),
            ("max_shift_px", self.max_shift_px),
            ("elastic_std_px", self.elastic_std_px),
            ("contrast", self.contrast),
            ("brightness", self.brightness),
            ("gamma", self.gamma),
        ];
        for (name, value) in strengths {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(DataError::InvalidConfig {
                    what: "augment config",
                    reason: format!("{name} = {value} must be finite and >= 0"),
                });
            }
        }
        if self.elastic_grid < 2 {
            return Err(DataError::InvalidConfig {
                what: "augment config",
                reason: format!("elastic_grid = {} must be at least 2", self.elastic_grid),
            });
        }
        Ok(())
    }
}

/// Displacement vectors `(dx, dy)` on a `size x size` grid of nodes spanning the canvas, row
/// by row (node `(i, j)` sits at `x = i (w-1)/(size-1)`, `y = j (h-1)/(size-1)`).
#[derive(Clone, Debug, PartialEq)]
pub struct DisplacementGrid {
    pub size: usize,
    pub vectors: Vec<(f32, f32)>,
}

impl DisplacementGrid {
    /// The same vector at every node: a pure translation of the sampling positions.
    pub fn constant(size: usize, dx: f32, dy: f32) -> Self {
        Self {
            size,
            vectors: vec![(dx, dy); size * size],
        }
    }

    /// The per-pixel displacement field for a `w x h` canvas, by bicubic interpolation of the
    /// nodes (separable: along x within each node row, then along y).
    pub fn field(&self, w: usize, h: usize) -> Vec<(f32, f32)> {
        let g = self.size;
        let along_x: Vec<_> = (0..w).map(|x| grid_taps(x, w, g)).collect();
        // rows[j][x]: node row j interpolated at column x.
        let rows: Vec<Vec<(f32, f32)>> = (0..g)
            .map(|j| {
                along_x
                    .iter()
                    .map(|taps| {
                        taps.iter().fold((0.0, 0.0), |acc, &(i, wt)| {
                            let v = self.vectors[j * g + i];
                            (acc.0 + wt * v.0, acc.1 + wt * v.1)
                        })
                    })
                    .collect()
            })
            .collect();
        let mut field = Vec::with_capacity(w * h);
        for y in 0..h {
            let taps = grid_taps(y, h, g);
            field.extend((0..w).map(|x| {
                taps.iter().fold((0.0, 0.0), |acc, &(j, wt)| {
                    let v = rows[j][x];
                    (acc.0 + wt * v.0, acc.1 + wt * v.1)
                })
            }));
        }
        field
    }
}

/// Catmull-Rom (Keys, a = -0.5) cubic convolution kernel. It interpolates (1 at 0, 0 at the
/// other integers) and its four weights always sum to 1, so constants are reproduced exactly.
#[inline]
fn cubic_weight(t: f32) -> f32 {
    const A: f32 = -0.5;
    let t = t.abs();
    if t <= 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A
    } else {
        0.0
    }
}

/// The four weights of a cubic interpolation at fractional offset `t` in [0, 1).
#[inline]
fn cubic_weights(t: f32) -> [f32; 4] {
    [
        cubic_weight(t + 1.0),
        cubic_weight(t),
        cubic_weight(1.0 - t),
        cubic_weight(2.0 - t),
    ]
}

/// Node indices (edge nodes repeated) and weights for pixel `p` of an axis of `n` pixels
/// spanned by `g` nodes.
fn grid_taps(p: usize, n: usize, g: usize) -> [(usize, f32); 4] {
    let u = if n > 1 {
        p as f32 * (g - 1) as f32 / (n - 1) as f32
    } else {
        0.0
    };
    let base = (u.floor() as isize).min(g as isize - 1);
    let w = cubic_weights(u - base as f32);
    let node = |k: isize| (base + k).clamp(0, g as isize - 1) as usize;
    [
        (node(-1), w[0]),
        (node(0), w[1]),
        (node(1), w[2]),
        (node(2), w[3]),
    ]
}

/// One sampled augmentation. [`Transform::identity`] changes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub flip_x: bool,
    pub flip_y: bool,
    pub rotation_rad: f32,
    /// `(dx, dy)` in pixels.
    pub shift: (f32, f32),
    pub elastic: Option<DisplacementGrid>,
    pub contrast: f32,
    pub brightness: f32,
    pub gamma: f32,
}

impl Transform {
    pub fn identity() -> Self {
        Self {
            flip_x: false,
            flip_y: false,
            rotation_rad: 0.0,
            shift: (0.0, 0.0),
            elastic: None,
            contrast: 1.0,
            brightness: 0.0,
            gamma: 1.0,
        }
    }

    /// Draws a transform from `config` (which must have passed [`AugmentConfig::validate`]).
    pub fn sample(config: &AugmentConfig, rng: &mut impl Rng) -> Self {
        let mut uniform = |max: f32| {
            if max > 0.0 {
                rng.random_range(-max..=max)
            } else {
                0.0
            }
        };
        let rotation_rad = uniform(config.max_rotation_deg).to_radians();
        let shift = (uniform(config.max_shift_px), uniform(config.max_shift_px));
        let contrast = 1.0 + uniform(config.contrast);
        let brightness = uniform(config.brightness);
        let gamma = uniform(config.gamma).exp();
        let (flip_x, flip_y) = if config.flip {
            (rng.random_bool(0.5), rng.random_bool(0.5))
        } else {
            (false, false)
        };
        let elastic = (config.elastic_std_px > 0.0).then(|| {
            let g = config.elastic_grid;
            let mut normal = || rng.sample::<f32, _>(StandardNormal) * config.elastic_std_px;
            DisplacementGrid {
                size: g,
                vectors: (0..g * g).map(|_| (normal(), normal())).collect(),
            }
        });
        Self {
            flip_x,
            flip_y,
            rotation_rad,
            shift,
            elastic,
            contrast,
            brightness,
            gamma,
        }
    }

    /// Source coordinates `(x, y)` of every pixel of a `w x h` canvas whose centre maps to
    /// `source_centre` (before shift), row by row; see the module notes for the formula.
    pub fn source_coords(&self, w: usize, h: usize, source_centre: (f32, f32)) -> Vec<(f32, f32)> {
        let centre = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (sin, cos) = self.rotation_rad.sin_cos();
        let fx = if self.flip_x { -1.0 } else { 1.0 };
        let fy = if self.flip_y { -1.0 } else { 1.0 };
        let ox = source_centre.0 + self.shift.0;
        let oy = source_centre.1 + self.shift.1;
        let field = self.elastic.as_ref().map(|grid| grid.field(w, h));
        let mut coords = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (ex, ey) = field.as_ref().map_or((0.0, 0.0), |f| f[y * w + x]);
                let qx = fx * (x as f32 + ex - centre.0);
                let qy = fy * (y as f32 + ey - centre.1);
                coords.push((ox + cos * qx - sin * qy, oy + sin * qx + cos * qy));
            }
        }
        coords
    }

    /// The gray-value change of the module notes, in place.
    pub fn adjust_gray_values(&self, image: &mut GrayImage) {
        let identity = self.gamma == 1.0 && self.contrast == 1.0 && self.brightness == 0.0;
        for v in &mut image.data {
            let clamped = v.clamp(0.0, 1.0);
            *v = if identity {
                clamped
            } else {
                let g = clamped.powf(self.gamma);
                ((g - 0.5) * self.contrast + 0.5 + self.brightness).clamp(0.0, 1.0)
            };
        }
    }
}

/// Samples `image` bicubically at `coords`, mirroring outside; the result is `w x h`.
pub fn sample_bicubic(image: &GrayImage, coords: &[(f32, f32)], w: usize, h: usize) -> GrayImage {
    let (iw, ih) = image.size();
    let data = coords
        .iter()
        .map(|&(sx, sy)| {
            let (x0, y0) = (sx.floor(), sy.floor());
            let wx = cubic_weights(sx - x0);
            let wy = cubic_weights(sy - y0);
            let (x0, y0) = (x0 as isize - 1, y0 as isize - 1);
            let inside = x0 >= 0 && y0 >= 0 && x0 + 3 < iw as isize && y0 + 3 < ih as isize;
            let mut sum = 0.0;
            for (j, wyj) in wy.iter().enumerate() {
                let yy = if inside {
                    y0 as usize + j
                } else {
                    reflect_index(y0 + j as isize, ih)
                };
                let row = image.row(yy);
                let mut acc = 0.0;
                for (i, wxi) in wx.iter().enumerate() {
                    let xx = if inside {
                        x0 as usize + i
                    } else {
                        reflect_index(x0 + i as isize, iw)
                    };
                    acc += wxi * row[xx];
                }
                sum += wyj * acc;
            }
            sum
        })
        .collect();
    Grid {
        width: w,
        height: h,
        data,
    }
}

/// Samples `grid` at the nearest pixel of each of `coords`, mirroring outside.
pub fn sample_nearest<T: Copy>(
    grid: &Grid<T>,
    coords: &[(f32, f32)],
    w: usize,
    h: usize,
) -> Grid<T> {
    let data = coords
        .iter()
        .map(|&(sx, sy)| {
            let x = reflect_index(sx.round() as isize, grid.width);
            let y = reflect_index(sy.round() as isize, grid.height);
            grid.get(x, y)
        })
        .collect();
    Grid {
        width: w,
        height: h,
        data,
    }
}

/// Applies one transform jointly to an image, its labels and its weight map (all the same
/// size); the outputs have that size too, and the canvas centre maps to the image centre.
pub fn augment(
    transform: &Transform,
    image: &GrayImage,
    labels: &LabelImage,
    weights: &WeightMap,
) -> Result<(GrayImage, LabelImage, WeightMap)> {
    let (w, h) = image.size();
    if labels.size() != (w, h) || weights.size() != (w, h) || w == 0 || h == 0 {
        return Err(DataError::InvalidConfig {
            what: "augment input",
            reason: format!(
                "image {w}x{h}, labels {}x{}, weights {}x{} must be the same non-empty size",
                labels.width, labels.height, weights.width, weights.height
            ),
        });
    }
    let centre = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let coords = transform.source_coords(w, h, centre);
    let mut out_image = sample_bicubic(image, &coords, w, h);
    transform.adjust_gray_values(&mut out_image);
    Ok((
        out_image,
        sample_nearest(labels, &coords, w, h),
        sample_nearest(weights, &coords, w, h),
    ))
}
