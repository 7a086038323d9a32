//! The tiled TIFF writer: pages fed in uneven bands read back exactly, as classic TIFF and
//! as BigTIFF, gray and RGB, through the `tiff` crate's decoder.

use unet_wgpu::data::read_pages;
use unet_wgpu::data::tiff_out::{Samples, TiledTiffWriter, TILE};

fn scratch() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("unet-tiff-out-{}", std::process::id()))
}

fn write_and_read(samples: Samples, force_big: bool) {
    let dir = scratch();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{samples:?}-{force_big}.tif"));
    // Sizes that do not divide the tile, and one under a tile, in bands of 1..=37 rows.
    let pages = [(TILE + 45, TILE + 13), (7, 5), (TILE * 2, 3)];
    let max = if force_big { u64::MAX } else { 1 << 20 };
    let mut writer = TiledTiffWriter::create(&path, samples, max).unwrap();
    assert_eq!(writer.is_big(), force_big);
    let mut want = Vec::new();
    for (p, &(w, h)) in pages.iter().enumerate() {
        let bytes: Vec<u8> = (0..w * h * samples.bytes())
            .map(|i| (i * 31 + p * 7 + i / 253) as u8)
            .collect();
        writer.begin_page(w, h).unwrap();
        let row = w * samples.bytes();
        let mut y = 0;
        let mut band = 1;
        while y < h {
            let rows = band.min(h - y);
            writer
                .write_rows(&bytes[y * row..(y + rows) * row])
                .unwrap();
            y += rows;
            band = band % 37 + 5;
        }
        writer.end_page().unwrap();
        want.push(bytes);
    }
    writer.finish().unwrap();
    let read = read_pages(&path).unwrap();
    assert_eq!(read.len(), pages.len());
    for ((page, &(w, h)), bytes) in read.iter().zip(&pages).zip(&want) {
        assert_eq!((page.width, page.height), (w, h));
        assert_eq!(page.channels, samples.channels());
        let got: Vec<u8> = match samples {
            Samples::Gray16 => page.samples.iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => page.samples.iter().map(|&v| v as u8).collect(),
        };
        assert!(
            got == *bytes,
            "{samples:?} big={force_big} {w}x{h}: pixels differ"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn classic_and_big_tiled_tiffs_read_back_exactly() {
    for samples in [Samples::Gray8, Samples::Gray16, Samples::Rgb8] {
        for big in [false, true] {
            write_and_read(samples, big);
        }
    }
    std::fs::remove_dir(scratch()).unwrap();
}
