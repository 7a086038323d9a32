//! Writing images too large for PNG as tiled TIFF, fed one band of rows at a time, so an
//! image is never held whole: the writer keeps at most [`TILE`] rows of each open page
//! (one, or several fed together, such as a page per class of a K-class prediction).
//!
//! Why a writer of our own: the `tiff` crate (0.11) writes BigTIFF but only in strips
//! through its `ImageEncoder`; tiles need its low-level `DirectoryEncoder`, which borrows
//! the encoder for a whole page and so cannot be fed across calls. The format is small:
//! a header, the tiles' bytes, then one directory (IFD) per page, linked in order.
//!
//! Layout: little-endian, uncompressed, 256 x 256 tiles (the last tile column and row are
//! padded with zeros, as TIFF requires), chunky samples. Classic TIFF (32-bit offsets) when
//! the file is sure to stay under 4 GiB, BigTIFF (64-bit offsets) otherwise; the `tiff`
//! crate, libtiff, tifffile and Fiji read both.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};

/// Tile side in pixels (a multiple of 16, as TIFF requires).
pub const TILE: usize = 256;

/// What one pixel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Samples {
    Gray8,
    /// Stored little-endian.
    Gray16,
    Rgb8,
}

impl Samples {
    pub fn channels(self) -> usize {
        match self {
            Samples::Rgb8 => 3,
            _ => 1,
        }
    }

    pub fn bits(self) -> u16 {
        match self {
            Samples::Gray16 => 16,
            _ => 8,
        }
    }

    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        self.channels() * self.bits() as usize / 8
    }
}

/// A tiled TIFF being written: pages one after another, each fed in rows, top to bottom;
/// or several pages at once ([`TiledTiffWriter::begin_pages`]), fed in turn band by band
/// (their tiles interleave in the file, which TIFF allows: a directory lists its page's
/// tile offsets).
pub struct TiledTiffWriter {
    path: PathBuf,
    file: BufWriter<File>,
    big: bool,
    samples: Samples,
    /// Where the last "next directory" offset sits (the header's, then each page's).
    next_ifd_field: u64,
    /// The pages open now (empty between pages).
    pages: Vec<Page>,
}

struct Page {
    width: usize,
    height: usize,
    /// Rows received but not yet cut into tiles (fewer than TILE).
    pending: Vec<u8>,
    rows_done: usize,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

impl TiledTiffWriter {
    /// Creates `path` for pages of `samples`; `max_bytes` bounds the pixel bytes of all
    /// pages together and chooses classic TIFF (under 4 GiB with room for tile padding
    /// and directories) or BigTIFF.
    pub fn create(path: &Path, samples: Samples, max_bytes: u64) -> Result<Self> {
        let file = File::create(path).map_err(|source| io_error("create", path, source))?;
        let big = max_bytes.saturating_mul(2).saturating_add(1 << 24) >= u64::from(u32::MAX);
        let mut writer = TiledTiffWriter {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            big,
            samples,
            next_ifd_field: if big { 8 } else { 4 },
            pages: Vec::new(),
        };
        let header: &[u8] = if big {
            b"II\x2b\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        } else {
            b"II\x2a\x00\x00\x00\x00\x00"
        };
        writer.write(header)?;
        Ok(writer)
    }

    /// Whether the file is a BigTIFF.
    pub fn is_big(&self) -> bool {
        self.big
    }

    /// Starts a page of `width` x `height` pixels (the previous one must be finished).
    pub fn begin_page(&mut self, width: usize, height: usize) -> Result<()> {
        self.begin_pages(1, width, height)
    }

    /// Starts `count` pages of `width` x `height` pixels at once (the previous ones must
    /// be finished); they are fed with [`TiledTiffWriter::write_rows_to`] and stored in
    /// this order.
    pub fn begin_pages(&mut self, count: usize, width: usize, height: usize) -> Result<()> {
        if !self.pages.is_empty() || count == 0 || width == 0 || height == 0 {
            return Err(self.usage("begin a page while one is open, or an empty page"));
        }
        self.pages = (0..count)
            .map(|_| Page {
                width,
                height,
                pending: Vec::with_capacity(TILE * width * self.samples.bytes()),
                rows_done: 0,
                offsets: Vec::new(),
                counts: Vec::new(),
            })
            .collect();
        Ok(())
    }

    /// Appends whole rows of the open page: `bytes` holds a multiple of one row's
    /// `width x samples.bytes()` bytes (16-bit samples little-endian).
    pub fn write_rows(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_rows_to(0, bytes)
    }

    /// Appends whole rows to open page `index` (of those [`TiledTiffWriter::begin_pages`]
    /// began), as [`TiledTiffWriter::write_rows`].
    pub fn write_rows_to(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        let mut pages = std::mem::take(&mut self.pages);
        let result = match pages.get_mut(index) {
            Some(page) => self.append_rows(page, bytes),
            None => Err(self.usage("write rows before a page")),
        };
        self.pages = pages;
        result
    }

    fn append_rows(&mut self, page: &mut Page, bytes: &[u8]) -> Result<()> {
        let row = page.width * self.samples.bytes();
        let rows = bytes.len() / row;
        if !bytes.len().is_multiple_of(row)
            || page.rows_done + page.pending.len() / row + rows > page.height
        {
            return Err(self.usage("write rows that are not whole or past the page's end"));
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let want = TILE * row - page.pending.len();
            let take = want.min(rest.len());
            page.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if page.pending.len() == TILE * row {
                self.flush_tile_row(page)?;
            }
        }
        Ok(())
    }

    /// Ends the open page (or pages): writes their last tiles and their directories.
    pub fn end_page(&mut self) -> Result<()> {
        if self.pages.is_empty() {
            return Err(self.usage("end a page before one"));
        }
        let mut pages = std::mem::take(&mut self.pages);
        for page in &mut pages {
            if !page.pending.is_empty() {
                self.flush_tile_row(page)?;
            }
            if page.rows_done != page.height {
                return Err(self.usage("end a page before all its rows were written"));
            }
        }
        for page in &pages {
            self.write_directory(page)?;
        }
        Ok(())
    }

    /// Finishes the file and flushes it to disk (`sync_all`, so a rename after this puts a
    /// complete file in place).
    pub fn finish(mut self) -> Result<()> {
        if !self.pages.is_empty() {
            return Err(self.usage("finish with a page open"));
        }
        let path = self.path.clone();
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|source| io_error("write", &path, source))
    }

    /// Cuts the pending rows (TILE of them, or the page's last few) into tiles and writes them.
    fn flush_tile_row(&mut self, page: &mut Page) -> Result<()> {
        let bpp = self.samples.bytes();
        let row = page.width * bpp;
        let rows = page.pending.len() / row;
        let mut tile = vec![0u8; TILE * TILE * bpp];
        for tx in (0..page.width).step_by(TILE) {
            let cols = TILE.min(page.width - tx);
            tile.fill(0);
            for y in 0..rows {
                let src = y * row + tx * bpp;
                tile[y * TILE * bpp..][..cols * bpp]
                    .copy_from_slice(&page.pending[src..src + cols * bpp]);
            }
            self.align()?;
            page.offsets.push(self.position()?);
            page.counts.push(tile.len() as u64);
            self.write(&tile)?;
        }
        page.rows_done += rows;
        page.pending.clear();
        Ok(())
    }

    /// The page's directory, after its out-of-line values, linked from the previous one.
    fn write_directory(&mut self, page: &Page) -> Result<()> {
        const SHORT: u16 = 3;
        const LONG: u16 = 4;
        const LONG8: u16 = 16;
        let channels = self.samples.channels();
        let offset_type = if self.big { LONG8 } else { LONG };
        let offsets = self.array(offset_type, &page.offsets)?;
        let counts = self.array(offset_type, &page.counts)?;
        let bits = vec![u64::from(self.samples.bits()); channels];
        let bits = self.array(SHORT, &bits)?;
        let photometric = if channels == 3 { 2 } else { 1 };
        // Tags in ascending order, as TIFF requires.
        let entries: [(u16, u16, u64, Value); 11] = [
            (256, LONG, 1, Value::Inline(page.width as u64)),
            (257, LONG, 1, Value::Inline(page.height as u64)),
            (258, SHORT, channels as u64, bits),
            (259, SHORT, 1, Value::Inline(1)), // no compression
            (262, SHORT, 1, Value::Inline(photometric)),
            (277, SHORT, 1, Value::Inline(channels as u64)),
            (284, SHORT, 1, Value::Inline(1)), // chunky
            (322, LONG, 1, Value::Inline(TILE as u64)),
            (323, LONG, 1, Value::Inline(TILE as u64)),
            (324, offset_type, page.offsets.len() as u64, offsets),
            (325, offset_type, page.counts.len() as u64, counts),
        ];
        self.align()?;
        let ifd = self.position()?;
        let mut bytes = Vec::new();
        self.put_offset(
            &mut bytes,
            entries.len() as u64,
            if self.big { 8 } else { 2 },
        );
        for (tag, kind, count, value) in entries {
            bytes.extend_from_slice(&tag.to_le_bytes());
            bytes.extend_from_slice(&kind.to_le_bytes());
            self.put_offset(&mut bytes, count, if self.big { 8 } else { 4 });
            match value {
                Value::Inline(v) => {
                    let field = if self.big { 8 } else { 4 };
                    let mut inline = vec![0u8; field];
                    match kind {
                        SHORT => inline[..2].copy_from_slice(&(v as u16).to_le_bytes()),
                        LONG => inline[..4].copy_from_slice(&(v as u32).to_le_bytes()),
                        _ => inline.copy_from_slice(&v.to_le_bytes()),
                    }
                    bytes.extend_from_slice(&inline);
                }
                Value::Raw(raw) => bytes.extend_from_slice(&raw),
                Value::At(at) => self.put_offset(&mut bytes, at, if self.big { 8 } else { 4 }),
            }
        }
        let next_field = ifd + bytes.len() as u64;
        self.put_offset(&mut bytes, 0, if self.big { 8 } else { 4 });
        self.write(&bytes)?;
        // Link this directory from the previous "next directory" field.
        let mut link = Vec::new();
        self.put_offset(&mut link, ifd, if self.big { 8 } else { 4 });
        let end = self.position()?;
        self.seek(self.next_ifd_field)?;
        self.write(&link)?;
        self.seek(end)?;
        self.next_ifd_field = next_field;
        Ok(())
    }

    /// `values` of TIFF type `kind` as a directory value: inline (left-aligned) when they
    /// fit the entry's value field, else written here and pointed to.
    fn array(&mut self, kind: u16, values: &[u64]) -> Result<Value> {
        let size = match kind {
            3 => 2,
            4 => 4,
            _ => 8,
        };
        let mut raw = Vec::with_capacity(values.len() * size);
        for &v in values {
            raw.extend_from_slice(&v.to_le_bytes()[..size]);
        }
        let field = if self.big { 8 } else { 4 };
        if raw.len() <= field {
            raw.resize(field, 0);
            return Ok(Value::Raw(raw));
        }
        self.align()?;
        let at = self.position()?;
        self.write(&raw)?;
        Ok(Value::At(at))
    }

    fn put_offset(&self, bytes: &mut Vec<u8>, value: u64, size: usize) {
        bytes.extend_from_slice(&value.to_le_bytes()[..size]);
    }

    /// Pads to an even offset (TIFF's word boundary).
    fn align(&mut self) -> Result<()> {
        if self.position()? % 2 == 1 {
            self.write(&[0])?;
        }
        Ok(())
    }

    fn position(&mut self) -> Result<u64> {
        let position = self.file.stream_position();
        let position = position.map_err(|source| io_error("write", &self.path, source))?;
        if !self.big && position > u64::from(u32::MAX) {
            return Err(self.usage("grow a classic TIFF past 4 GiB"));
        }
        Ok(position)
    }

    fn seek(&mut self, to: u64) -> Result<()> {
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(to))
            .map(|_| ())
            .map_err(|source| io_error("write", path, source))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let path = &self.path;
        self.file
            .write_all(bytes)
            .map_err(|source| io_error("write", path, source))
    }

    fn usage(&self, what: &str) -> DataError {
        DataError::InvalidConfig {
            what: "tiled TIFF writer",
            reason: format!(
                "{}: asked to {what} (a bug: report it)",
                self.path.display()
            ),
        }
    }
}

/// A directory entry's value: inline, raw bytes already sized to the field, or an offset.
enum Value {
    Inline(u64),
    Raw(Vec<u8>),
    At(u64),
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
