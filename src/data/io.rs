//! Reading PNG, TIFF, JPEG and BMP files (8- or 16-bit, gray or RGB, multi-page TIFF stacks) and writing
//! PNG, 16-bit label PNG and NumPy `.npy` files.
//!
//! Files are recognised by their first bytes, not by their extension. Every file is first decoded
//! into a [`RawPage`] (the stored integer samples), then turned into what the caller asked for:
//! an intensity image ([`RawPage::to_gray`]) or mask values ([`RawPage::to_mask_values`]).

use std::io::{Cursor, Write};
use std::path::Path;

use super::error::{DataError, Result};
use super::grid::{GrayImage, Grid, LabelImage};
use super::image::Image;
use super::spec::{ChannelMode, StackMode};

/// One decoded page exactly as stored: `channels` interleaved integer samples per pixel.
#[derive(Clone, Debug)]
pub struct RawPage {
    pub width: usize,
    pub height: usize,
    /// 1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA.
    pub channels: usize,
    /// 8, 16 or 32.
    pub bit_depth: u32,
    /// The samples of an 8- or 16-bit page (empty for 32 bits).
    pub samples: Vec<u16>,
    /// The samples of a 32-bit page (unsigned integers or floats, exact in f64).
    pub wide: Option<Wide>,
}

/// The samples of a 32-bit TIFF page.
#[derive(Clone, Debug, PartialEq)]
pub struct Wide {
    pub values: Vec<f64>,
    /// IEEE floats (taken as intensities as they are), rather than unsigned integers
    /// (divided by 2^32 - 1).
    pub float: bool,
}

impl RawPage {
    fn format_name(&self) -> String {
        let kind = match self.channels {
            1 => "gray",
            2 => "gray+alpha",
            3 => "RGB",
            _ => "RGBA",
        };
        format!("{}-bit {kind}", self.bit_depth)
    }

    /// Intensities in [0, 1]: 8-bit values / 255, 16-bit values / 65535. Colour is converted to
    /// luma with the Rec. 709 weights (0.2126 R + 0.7152 G + 0.0722 B, as the `image` crate
    /// does); alpha is ignored.
    pub fn to_gray(&self) -> GrayImage {
        if let Some(wide) = &self.wide {
            return self.wide_plane(wide, |px| {
                if px.len() >= 3 {
                    0.2126 * px[0] + 0.7152 * px[1] + 0.0722 * px[2]
                } else {
                    px[0]
                }
            });
        }
        let max = ((1u32 << self.bit_depth) - 1) as f32;
        let c = self.channels;
        let data = self
            .samples
            .chunks_exact(c)
            .map(|px| {
                let value = if c >= 3 {
                    0.2126 * px[0] as f32 + 0.7152 * px[1] as f32 + 0.0722 * px[2] as f32
                } else {
                    px[0] as f32
                };
                (value / max).clamp(0.0, 1.0)
            })
            .collect();
        Grid {
            width: self.width,
            height: self.height,
            data,
        }
    }

    /// The channels of the page in [0, 1] (8-bit / 255, 16-bit / 65535), as `channels` asks:
    /// gray stays one channel and colour three (alpha is dropped); `Gray` turns colour into
    /// luma as [`RawPage::to_gray`], `Rgb` repeats a gray channel three times.
    pub fn to_image(&self, channels: ChannelMode) -> Image {
        let colour = self.channels >= 3;
        match (channels, colour) {
            (ChannelMode::Gray, _) | (ChannelMode::Auto, false) => self.to_gray().into(),
            (ChannelMode::Rgb, false) => {
                let gray = self.to_gray();
                Image::from_planes(&[gray.clone(), gray.clone(), gray])
            }
            (ChannelMode::Rgb, true) | (ChannelMode::Auto, true) if self.wide.is_some() => {
                let wide = self.wide.as_ref().expect("checked");
                let planes: Vec<GrayImage> =
                    (0..3).map(|k| self.wide_plane(wide, |px| px[k])).collect();
                Image::from_planes(&planes)
            }
            (ChannelMode::Rgb, true) | (ChannelMode::Auto, true) => {
                let max = ((1u32 << self.bit_depth) - 1) as f32;
                let plane = |k: usize| Grid {
                    width: self.width,
                    height: self.height,
                    data: self
                        .samples
                        .chunks_exact(self.channels)
                        .map(|px| px[k] as f32 / max)
                        .collect(),
                };
                Image::from_planes(&[plane(0), plane(1), plane(2)])
            }
        }
    }

    /// One plane of a 32-bit page: `pick` of each pixel's samples, as intensities (floats
    /// as stored, not clamped; unsigned integers / (2^32 - 1)).
    fn wide_plane(&self, wide: &Wide, pick: impl Fn(&[f64]) -> f64) -> GrayImage {
        let scale = if wide.float { 1.0 } else { u32::MAX as f64 };
        Grid {
            width: self.width,
            height: self.height,
            data: wide
                .values
                .chunks_exact(self.channels)
                .map(|px| (pick(px) / scale) as f32)
                .collect(),
        }
    }

    /// The colours of an RGB(A) page as `0xRRGGBB` (8-bit; 16-bit samples keep their high
    /// byte), or the values of a gray page: a mask drawn in colours.
    pub fn to_rgb_values(&self, path: &Path) -> Result<LabelImage> {
        if self.channels < 3 || self.wide.is_some() {
            return Err(DataError::InvalidConfig {
                what: "mask",
                reason: format!(
                    "{}: --class-values lists colours but the mask is {}; list gray levels instead",
                    path.display(),
                    self.format_name()
                ),
            });
        }
        let shift = self.bit_depth - 8;
        Ok(Grid {
            width: self.width,
            height: self.height,
            data: self
                .samples
                .chunks_exact(self.channels)
                .map(|px| {
                    let b = |k: usize| (px[k] >> shift) as u32;
                    b(0) << 16 | b(1) << 8 | b(2)
                })
                .collect(),
        })
    }

    /// The stored values of a single-channel page, unscaled (a mask); `path` names it in errors.
    pub fn to_mask_values(&self, path: &Path) -> Result<LabelImage> {
        if self.channels != 1 {
            return Err(DataError::MaskNotGray {
                path: path.to_path_buf(),
                format: self.format_name(),
            });
        }
        if let Some(wide) = &self.wide {
            let mut data = Vec::with_capacity(wide.values.len());
            for &v in &wide.values {
                if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
                    return Err(DataError::UnsupportedFormat {
                        path: path.to_path_buf(),
                        format: format!(
                            "a 32-bit mask holding {v}, not a whole number (save masks as \
                             integers)"
                        ),
                    });
                }
                data.push(v as u32);
            }
            return Ok(Grid {
                width: self.width,
                height: self.height,
                data,
            });
        }
        Ok(Grid {
            width: self.width,
            height: self.height,
            data: self.samples.iter().map(|&v| v as u32).collect(),
        })
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DataError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

fn decode_error(path: &Path, reason: impl ToString) -> DataError {
    DataError::Decode {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn is_tiff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") || is_big_tiff(bytes)
}

/// BigTIFF (64-bit offsets, for files over 4 GiB), as `unet predict` writes large outputs.
fn is_big_tiff(bytes: &[u8]) -> bool {
    bytes.starts_with(b"II+\0") || bytes.starts_with(b"MM\0+")
}

/// Reads every page of a PNG (always one page) or TIFF (one or more pages) file.
pub fn read_pages(path: &Path) -> Result<Vec<RawPage>> {
    decode_pages(&read_bytes(path)?, path)
}

/// Decodes the bytes of a PNG or TIFF file (the fuzz target's entry point); `path` only
/// names the file in errors.
pub fn decode_pages(bytes: &[u8], path: &Path) -> Result<Vec<RawPage>> {
    let pages = if is_png(bytes) {
        vec![decode_png(path, bytes)?]
    } else if is_tiff(bytes) {
        decode_tiff(path, bytes)?
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        vec![decode_with_image(path, bytes, image::ImageFormat::Jpeg)?]
    } else if bytes.starts_with(b"BM") {
        vec![decode_with_image(path, bytes, image::ImageFormat::Bmp)?]
    } else {
        return Err(decode_error(path, "unknown file signature"));
    };
    if pages.is_empty() || pages.iter().any(|p| p.width == 0 || p.height == 0) {
        return Err(DataError::EmptyImage {
            path: path.to_path_buf(),
        });
    }
    Ok(pages)
}

/// Reads the first page of `path` as one intensity image in [0, 1].
pub fn read_image(path: &Path) -> Result<GrayImage> {
    Ok(read_pages(path)?[0].to_gray())
}

/// Reads all pages of `path` (e.g. the ISBI `train-volume.tif`) as intensity images in [0, 1].
pub fn read_stack(path: &Path) -> Result<Vec<GrayImage>> {
    Ok(read_pages(path)?.iter().map(RawPage::to_gray).collect())
}

/// Reads the image `path` with `channels` channels: its first page, or with
/// [`StackMode::Channels`] every page of a stack as one channel each (gray pages of one size).
pub fn read_image_channels(path: &Path, channels: ChannelMode, stack: StackMode) -> Result<Image> {
    let pages = read_pages(path)?;
    pages_to_image(&pages, path, channels, stack)
}

/// [`read_image_channels`] of decoded pages.
pub fn pages_to_image(
    pages: &[RawPage],
    path: &Path,
    channels: ChannelMode,
    stack: StackMode,
) -> Result<Image> {
    if stack == StackMode::Pages || pages.len() == 1 {
        return Ok(pages[0].to_image(channels));
    }
    let planes: Vec<GrayImage> = pages.iter().map(RawPage::to_gray).collect();
    if planes.iter().any(|p| p.size() != planes[0].size()) {
        return Err(DataError::InvalidConfig {
            what: "stack",
            reason: format!(
                "{}: --stack channels needs pages of one size; this stack's differ",
                path.display()
            ),
        });
    }
    Ok(Image::from_planes(&planes))
}

fn decode_png(path: &Path, bytes: &[u8]) -> Result<RawPage> {
    decode_with_image(path, bytes, image::ImageFormat::Png)
}

/// One page decoded by the `image` crate (PNG, JPEG, BMP).
fn decode_with_image(path: &Path, bytes: &[u8], format: image::ImageFormat) -> Result<RawPage> {
    use image::DynamicImage as D;
    let decoded =
        image::load_from_memory_with_format(bytes, format).map_err(|e| decode_error(path, e))?;
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let page = |channels, bit_depth, samples: Vec<u16>| RawPage {
        width,
        height,
        channels,
        bit_depth,
        samples,
        wide: None,
    };
    let widen = |v: &[u8]| v.iter().map(|&s| s as u16).collect::<Vec<u16>>();
    Ok(match decoded {
        D::ImageLuma8(b) => page(1, 8, widen(&b)),
        D::ImageLumaA8(b) => page(2, 8, widen(&b)),
        D::ImageRgb8(b) => page(3, 8, widen(&b)),
        D::ImageRgba8(b) => page(4, 8, widen(&b)),
        D::ImageLuma16(b) => page(1, 16, b.into_raw()),
        D::ImageLumaA16(b) => page(2, 16, b.into_raw()),
        D::ImageRgb16(b) => page(3, 16, b.into_raw()),
        D::ImageRgba16(b) => page(4, 16, b.into_raw()),
        other => {
            return Err(DataError::UnsupportedFormat {
                path: path.to_path_buf(),
                format: format!("{:?}", other.color()),
            })
        }
    })
}

fn decode_tiff(path: &Path, bytes: &[u8]) -> Result<Vec<RawPage>> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;

    check_tiff_text_entries(path, bytes)?;
    // The decoder refuses pages over 256 MiB by default (a 16,384 x 16,384 8-bit page is
    // 256 MiB): allow pages up to 16 times the file, which an uncompressed or ordinarily
    // compressed image never exceeds, while a corrupt header claiming a huge page is
    // still refused before it is allocated.
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = limits
        .decoding_buffer_size
        .max(bytes.len().saturating_mul(16));
    let mut decoder = Decoder::new(Cursor::new(bytes))
        .map_err(|e| decode_error(path, e))?
        .with_limits(limits);
    let mut pages = Vec::new();
    loop {
        let (width, height) = decoder.dimensions().map_err(|e| decode_error(path, e))?;
        let color = decoder.colortype().map_err(|e| decode_error(path, e))?;
        let unsupported = || DataError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: format!("TIFF {color:?} (page {})", pages.len()),
        };
        let (channels, bit_depth) = match color {
            ColorType::Gray(b) => (1, b),
            ColorType::GrayA(b) => (2, b),
            ColorType::RGB(b) => (3, b),
            ColorType::RGBA(b) => (4, b),
            _ => return Err(unsupported()),
        };
        let wide = |values: Vec<f64>, float| Some(Wide { values, float });
        let (samples, wide): (Vec<u16>, Option<Wide>) =
            match decoder.read_image().map_err(|e| decode_error(path, e))? {
                DecodingResult::U8(v) if bit_depth == 8 => {
                    (v.into_iter().map(u16::from).collect(), None)
                }
                DecodingResult::U16(v) if bit_depth == 16 => (v, None),
                DecodingResult::U32(v) if bit_depth == 32 => (
                    Vec::new(),
                    wide(v.into_iter().map(f64::from).collect(), false),
                ),
                DecodingResult::F32(v) if bit_depth == 32 => (
                    Vec::new(),
                    wide(v.into_iter().map(f64::from).collect(), true),
                ),
                _ => return Err(unsupported()),
            };
        let (width, height) = (width as usize, height as usize);
        let stored = wide.as_ref().map_or(samples.len(), |w| w.values.len());
        if stored != width * height * channels {
            return Err(decode_error(path, "pixel data shorter than the image size"));
        }
        pages.push(RawPage {
            width,
            height,
            channels,
            bit_depth: bit_depth as u32,
            samples,
            wide,
        });
        if !decoder.more_images() {
            break;
        }
        decoder.next_image().map_err(|e| decode_error(path, e))?;
    }
    Ok(pages)
}

/// Refuses a TIFF with a text (ASCII) entry larger than the file or the decoder's buffer
/// limit. Such a file is corrupt, and the `tiff` crate (0.11.3) reports that case with a
/// stray `dbg!` line on stderr before its error (found by the `image_loader` fuzz target),
/// which would break the program's one-line error. Walks the chain of image directories
/// of a classic TIFF (not a BigTIFF); anything malformed is left for the decoder to report.
fn check_tiff_text_entries(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_big_tiff(bytes) {
        return Ok(()); // its directories have another layout; left to the decoder
    }
    const ASCII: u16 = 2;
    const ENTRY_BYTES: usize = 12;
    let limit = bytes
        .len()
        .min(tiff::decoder::Limits::default().decoding_buffer_size);
    let big_endian = bytes.starts_with(b"MM");
    let read = |at: usize, n: usize| -> Option<u32> {
        let b = bytes.get(at..at.checked_add(n)?)?;
        let be = b.iter().fold(0u32, |v, &x| (v << 8) | u32::from(x));
        let le = b.iter().rev().fold(0u32, |v, &x| (v << 8) | u32::from(x));
        Some(if big_endian { be } else { le })
    };
    let mut visited = std::collections::HashSet::new();
    let mut next = read(4, 4);
    while let Some(ifd) = next.filter(|&o| o != 0 && visited.insert(o)) {
        let ifd = ifd as usize;
        let Some(entries) = read(ifd, 2) else { break };
        for i in 0..entries as usize {
            let entry = ifd + 2 + i * ENTRY_BYTES;
            let (Some(kind), Some(count)) = (read(entry + 2, 2), read(entry + 4, 4)) else {
                break;
            };
            if kind == u32::from(ASCII) && count as usize > limit {
                return Err(decode_error(
                    path,
                    format!(
                        "a TIFF text entry claims {count} bytes, more than the file's {}",
                        bytes.len()
                    ),
                ));
            }
        }
        next = read(ifd + 2 + entries as usize * ENTRY_BYTES, 4);
    }
    Ok(())
}

fn create_file(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let io_error = |source| DataError::Io {
        action: "create",
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(io_error)
}

/// An encoder's error as a write error, keeping the I/O error's kind (a full disk) if any.
fn write_error(path: &Path, e: image::ImageError) -> DataError {
    let source = match e {
        image::ImageError::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
    DataError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    }
}

fn too_large(path: &Path) -> DataError {
    DataError::InvalidConfig {
        what: "image size",
        reason: format!("{} is too large to write as PNG", path.display()),
    }
}

/// Creates `path`, lets `encode` write into it, and flushes it, so that a failed write (a
/// full disk) is an error rather than lost when the buffered writer drops.
fn write_png(
    path: &Path,
    encode: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> image::ImageResult<()>,
) -> Result<()> {
    let mut file = create_file(path)?;
    encode(&mut file).map_err(|e| write_error(path, e))?;
    file.flush().map_err(|source| DataError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes intensities in [0, 1] as an 8-bit gray PNG (values are clamped, then rounded).
pub fn write_gray_png(path: &Path, image: &GrayImage) -> Result<()> {
    let bytes: Vec<u8> = image
        .data
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let buffer = image::GrayImage::from_raw(image.width as u32, image.height as u32, bytes)
        .ok_or_else(|| too_large(path))?;
    write_png(path, |file| buffer.write_to(file, image::ImageFormat::Png))
}

/// Writes an image of 1 or 3 channels in [0, 1] as an 8-bit gray or RGB PNG (clamped, then
/// rounded); other channel counts write the first channel.
pub fn write_image_png(path: &Path, image: &Image) -> Result<()> {
    if image.channels != 3 {
        return write_gray_png(path, &image.channel(0));
    }
    let n = image.width * image.height;
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|i| [0, 1, 2].map(|c| byte(image.data[c * n + i])))
        .collect();
    let buffer = image::RgbImage::from_raw(image.width as u32, image.height as u32, bytes)
        .ok_or_else(|| too_large(path))?;
    write_png(path, |file| buffer.write_to(file, image::ImageFormat::Png))
}

/// Writes instance labels as a 16-bit gray PNG (ids above 65535 are an error).
pub fn write_label_png(path: &Path, labels: &LabelImage) -> Result<()> {
    let mut values = Vec::with_capacity(labels.data.len());
    for &v in &labels.data {
        values.push(u16::try_from(v).map_err(|_| DataError::InvalidConfig {
            what: "label image",
            reason: format!(
                "label {v} does not fit in a 16-bit PNG ({})",
                path.display()
            ),
        })?);
    }
    let buffer = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
        labels.width as u32,
        labels.height as u32,
        values,
    )
    .ok_or_else(|| too_large(path))?;
    write_png(path, |file| buffer.write_to(file, image::ImageFormat::Png))
}

/// Writes a float plane as a NumPy `.npy` file (format version 1.0): shape `(H, W)`, dtype
/// `<f4` (little-endian f32), C order. `np.load(path)` reads it back.
pub fn write_npy(path: &Path, grid: &Grid<f32>) -> Result<()> {
    let mut file = create_file(path)?;
    let bytes = npy_bytes(&[grid.height, grid.width], &grid.data);
    let io = |source| DataError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    file.write_all(&bytes).map_err(io)?;
    file.flush().map_err(io)
}

/// An f32 array of any `shape` (C order) as the bytes of a NumPy `.npy` file, format 1.0:
/// the header (see [`npy_header`]), then the values as little-endian f32.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape");
    let mut bytes = npy_header(shape);
    bytes.reserve(data.len() * 4);
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

/// Reads the bytes of a `.npy` file that [`npy_bytes`] writes (format 1.0, `<f4`, C order):
/// its shape and values; anything else is an error saying what it is.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return Err("not a version 1.0 .npy file".into());
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let dict = bytes
        .get(10..10 + len)
        .and_then(|d| std::str::from_utf8(d).ok())
        .ok_or("truncated .npy header")?;
    if !dict.contains("'descr': '<f4'") || !dict.contains("'fortran_order': False") {
        return Err(format!("not little-endian f32 in C order: {dict}"));
    }
    let shape_text = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or("no shape in the .npy header")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|e| format!("shape {shape_text:?}: {e}"))
        })
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let body = &bytes[10 + len..];
    if body.len() != 4 * shape.iter().product::<usize>() {
        return Err(format!("{} data bytes for shape {shape:?}", body.len()));
    }
    let data = body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, data))
}

/// The `.npy` v1.0 header: magic, version, header length (u16 LE), then a Python dict literal
/// padded with spaces and a newline so that magic + length + dict is a multiple of 64 bytes.
fn npy_header(shape: &[usize]) -> Vec<u8> {
    // A Python tuple: `(5,)` for one dimension, `(2, 3)` for more.
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let dict = format!("{dict}{}\n", " ".repeat(padding));
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header
}
