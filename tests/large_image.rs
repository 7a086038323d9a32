//! The large-image proof (issue 19): a generated 16,384 x 16,384 image predicted in bands on
//! the engine holds the GPU memory a 512 x 512 image holds, and equals, piece by piece, one
//! pass of the network over each piece with its context; its probabilities stream into a
//! tiled TIFF that reads back the same. Too slow for CI on lavapipe (minutes to hours), so
//! ignored; run it once with
//!
//! ```text
//! cargo test --release --test large_image -- --ignored --nocapture
//! UNET_LARGE_SIDE=4096 cargo test --release --test large_image -- --ignored --nocapture
//! ```

mod common;

use std::time::Instant;

use common::*;
use unet_wgpu::data::tiff_out::{Samples, TiledTiffWriter};
use unet_wgpu::data::{crop_mirrored, read_pages, Grid};
use unet_wgpu::infer::{band_tile_rows, plan, predict_bands, TileOptions};
use unet_wgpu::model::{Heads, Network, UNetConfig};
use unet_wgpu::Shape;

/// A depth-3, 4..16-channel U-Net with random weights: the property does not depend on
/// training, and a small network keeps the 268-megapixel run within reach of lavapipe.
const NET: UNetConfig = UNetConfig {
    depth: 3,
    base_channels: 4,
    dropout: None,
    ..UNetConfig::paper()
};

fn texture(side: usize) -> Grid<f32> {
    Grid::from_fn(side, side, |x, y| {
        let v =
            ((x * 7 + y * 13) % 256) ^ ((x / 5 + y / 3) % 2 * 90) ^ ((x / 97 + y / 61) % 3 * 40);
        (v % 256) as f32 / 255.0
    })
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[test]
#[ignore = "minutes to hours on lavapipe: run with --ignored (UNET_LARGE_SIDE sets the side)"]
fn a_16384_square_image_predicts_in_bands_in_the_gpu_memory_of_a_512_one() {
    let side: usize = std::env::var("UNET_LARGE_SIDE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384);
    let gpu = gpu();
    let model = Network::new(&gpu, NET, 19).unwrap();
    let mut options = TileOptions::fitting(&gpu, &model, NET.input_size_for(228)).unwrap();
    options.heads = Heads::default();
    let tile_out = NET.check_tile(options.tile).unwrap();
    println!(
        "network depth {} base {}, tile {} -> {tile_out}, batch {}",
        NET.depth, NET.base_channels, options.tile, options.batch
    );

    // The small image first: its peak is the engine's for one batch of these tiles.
    let small = texture(512);
    let rows = band_tile_rows(
        &plan(&model, 512, 512, options.tile).unwrap(),
        options.batch,
    );
    predict_bands(&gpu, &model, &small, options, rows, |_| Ok(())).unwrap();
    let small_peak = gpu.pool_stats();
    println!(
        "512 x 512: GPU pool peak held {} bytes, in use {} bytes",
        small_peak.peak_bytes_held, small_peak.peak_bytes_in_use
    );

    let image = texture(side);
    let plan = plan(&model, side, side, options.tile).unwrap();
    let rows = band_tile_rows(&plan, options.batch);
    // Pieces of 256 x 256 output at the corners, the edges' middles and the centre, aligned
    // to the pooling stride; each gathered from the bands as they pass.
    let piece = 256;
    let stride = NET.pooling_stride();
    let at = |f: usize| (f * (side - piece) / 2) / stride * stride;
    let origins: Vec<(usize, usize)> = (0..3)
        .flat_map(|j| (0..3).map(move |i| (at(i), at(j))))
        .collect();
    let mut pieces = vec![vec![f32::NAN; piece * piece]; origins.len()];
    let dir = std::env::temp_dir().join(format!("unet-large-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tiff_path = dir.join("large_prob.tif");
    let bytes = (side * side * 2) as u64;
    let mut tiff = TiledTiffWriter::create(&tiff_path, Samples::Gray16, bytes).unwrap();
    tiff.begin_page(side, side).unwrap();
    let (mut bands, mut max_band_rows) = (0, 0);
    let start = Instant::now();
    predict_bands(&gpu, &model, &image, options, rows, |band| {
        bands += 1;
        max_band_rows = max_band_rows.max(band.height);
        let fg = &band.maps[1];
        for (&(x0, y0), out) in origins.iter().zip(pieces.iter_mut()) {
            for y in y0.max(band.y)..(y0 + piece).min(band.y + band.height) {
                let src = (y - band.y) * side + x0;
                out[(y - y0) * piece..][..piece].copy_from_slice(&fg.data[src..src + piece]);
            }
        }
        let encoded: Vec<u8> = fg
            .data
            .iter()
            .flat_map(|&p| ((p.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes())
            .collect();
        tiff.write_rows(&encoded)?;
        Ok(())
    })
    .unwrap();
    tiff.end_page().unwrap();
    tiff.finish().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let large_peak = gpu.pool_stats();
    let mp = (side * side) as f64 / 1e6;
    println!(
        "{side} x {side}: {bands} bands of up to {max_band_rows} rows, {} tiles, {seconds:.1} s \
         ({:.3} MP/s); GPU pool peak held {} bytes, in use {} bytes; host peak RSS {:.0} MiB \
         ({:.2} bytes per pixel, the image alone 4); TIFF {} bytes",
        plan.tiles.len(),
        mp / seconds,
        large_peak.peak_bytes_held,
        large_peak.peak_bytes_in_use,
        peak_rss_mib(),
        peak_rss_mib() * (1 << 20) as f64 / (side * side) as f64,
        std::fs::metadata(&tiff_path).unwrap().len()
    );
    assert_eq!(
        large_peak.peak_bytes_held, small_peak.peak_bytes_held,
        "the large image needed more GPU memory than the small one"
    );

    // Each piece against one pass over it with its context (mirrored at the borders).
    let whole_in = NET.input_size_for(piece);
    let whole_out = NET.check_tile(whole_in).unwrap();
    let margin = ((whole_in - whole_out) / 2) as isize;
    for (&(x0, y0), got) in origins.iter().zip(&pieces) {
        let input = crop_mirrored(
            &image,
            x0 as isize - margin,
            y0 as isize - margin,
            whole_in,
            whole_in,
        );
        let input = upload(&gpu, Shape::new(1, 1, whole_in, whole_in), &input.data);
        let probs = model
            .probabilities(&gpu, input, Heads::default())
            .unwrap()
            .to_vec(&gpu)
            .unwrap();
        let plane = &probs[whole_out * whole_out..];
        let want: Vec<f64> = (0..piece * piece)
            .map(|i| f64::from(plane[(i / piece) * whole_out + i % piece]))
            .collect();
        assert_close(&format!("piece at ({x0}, {y0})"), got, &want, 1e-5, 1e-5);
    }
    println!("{} pieces equal one pass over each", origins.len());

    // The TIFF holds the pieces' probabilities.
    let page = read_pages(&tiff_path).unwrap().remove(0);
    assert_eq!((page.width, page.height, page.bit_depth), (side, side, 16));
    for (&(x0, y0), got) in origins.iter().zip(&pieces) {
        for (i, &p) in got.iter().enumerate() {
            let (x, y) = (x0 + i % piece, y0 + i / piece);
            let want = (p.clamp(0.0, 1.0) * 65535.0).round() as u16;
            assert_eq!(page.samples[y * side + x], want, "TIFF at ({x}, {y})");
        }
    }
    drop(page);
    std::fs::remove_dir_all(&dir).unwrap();
    println!("the tiled TIFF reads back the same");
}
