//! The file loaders on hostile inputs, beside the fuzz targets (`fuzz/`): each input must
//! give an error (or a good result), never a panic, a hang or an unbounded allocation.
//! Any input a fuzzer finds a bug with is kept here as a test, so that its fix cannot
//! quietly come undone. Also the seeds
//! the fuzzers start from.

mod common;

use std::path::Path;

use common::tiny_config;
use unet_wgpu::data::{decode_pages, mask_to_labels, MaskFormat};
use unet_wgpu::model::{Arch, Network, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{checkpoint, Trainer};

/// The bytes of a freshly initialised checkpoint of `config`.
fn checkpoint_bytes(config: UNetConfig) -> Vec<u8> {
    let gpu = common::gpu();
    let model = Network::new(&gpu, config, 3).unwrap();
    // Tests run in parallel threads of one process: each call gets its own file.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("unet-fuzz-ckpt-{}-{call}", std::process::id());
    let path = std::env::temp_dir().join(name);
    checkpoint::save(&gpu, &Trainer::new(model, Sgd::default(), 3), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

/// The image loader's whole path, as the fuzz target runs it.
fn load_image_bytes(bytes: &[u8]) {
    let path = Path::new("regression");
    let Ok(pages) = decode_pages(bytes, path) else {
        return;
    };
    for page in &pages {
        assert_eq!(page.to_gray().data.len(), page.width * page.height);
        if let Ok(values) = page.to_mask_values(path) {
            let _ = mask_to_labels(&values, MaskFormat::BINARY_255, path);
        }
    }
}

/// Headers cut short or lying about the image: each must be an error.
#[test]
fn image_headers_cut_short_are_errors() {
    let png_magic = b"\x89PNG\r\n\x1a\n".to_vec();
    let tiff_le = b"II*\0".to_vec();
    // A little-endian TIFF whose first directory offset points far past the end.
    let tiff_bad_offset = b"II*\0\xff\xff\xff\x7f".to_vec();
    for (what, bytes) in [
        ("nothing", Vec::new()),
        ("PNG magic only", png_magic),
        ("TIFF magic only", tiff_le),
        ("TIFF with a bad offset", tiff_bad_offset),
    ] {
        assert!(
            decode_pages(&bytes, Path::new(what)).is_err(),
            "{what} decoded"
        );
        load_image_bytes(&bytes);
    }
}

/// A little-endian classic TIFF with one image directory of `(tag, type, count, value)`
/// entries.
fn tiff_with_entries(entries: &[(u16, u16, u32, u32)]) -> Vec<u8> {
    let mut bytes = b"II*\0".to_vec();
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for &(tag, kind, count, value) in entries {
        bytes.extend_from_slice(&tag.to_le_bytes());
        bytes.extend_from_slice(&kind.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

/// Found by the `image_loader` fuzz target: a TIFF whose strip offsets are a text entry
/// of 2^31 bytes made the `tiff` crate print a stray `dbg!` line on stderr before its
/// error, so `unet` wrote two lines. The loader now refuses the file first.
#[test]
fn a_tiff_text_entry_larger_than_the_file_is_one_clean_error() {
    let (short, long, ascii) = (3u16, 4u16, 2u16);
    let bytes = tiff_with_entries(&[
        (256, short, 1, 4),           // width
        (257, short, 1, 4),           // height
        (258, short, 1, 8),           // bits per sample
        (262, short, 1, 1),           // photometric: black is zero
        (273, ascii, 0x7fff_ffff, 8), // strip offsets, as 2 GiB of text
        (278, short, 1, 4),           // rows per strip
        (279, long, 1, 16),           // strip byte counts
    ]);
    let err = decode_pages(&bytes, Path::new("bomb.tif")).unwrap_err();
    assert!(
        err.to_string()
            .contains("a TIFF text entry claims 2147483647 bytes"),
        "{err}"
    );
    let dir = common::cli::scratch("fuzz-tiff-text");
    let file = dir.join("bomb.tif");
    std::fs::write(&file, &bytes).unwrap();
    let out = dir.join("w.png");
    let output = common::cli::unet(&[
        "weightmap",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let line = common::cli::clean_failure(&output);
    assert!(
        line.contains("bomb.tif is not a readable PNG or TIFF"),
        "{line}"
    );
    // weightmap prints nothing else: the error must be the only line on stderr.
    let stderr = common::cli::text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_checkpoint_check_knows_every_parameter_of_the_model() {
    let gpu = common::gpu();
    for config in [
        tiny_config(),
        UNetConfig::small(),
        UNetConfig {
            in_channels: 3,
            classes: 4,
            depth: 3,
            base_channels: 5,
            padding: Padding::Same,
            dropout: Some(0.5),
            ..UNetConfig::small()
        },
        UNetConfig::small().with_arch(Arch::UNetPlusPlus),
        UNetConfig {
            padding: Padding::Valid,
            deep_supervision: false,
            ..tiny_config().with_arch(Arch::UNetPlusPlus)
        },
    ] {
        let model = Network::new(&gpu, config, 1).unwrap();
        let mut from_model: Vec<(String, Vec<usize>)> = model
            .params()
            .iter()
            .map(|p| {
                let s = p.shape();
                let shape = if p.name.ends_with(".bias") {
                    vec![s.w]
                } else {
                    vec![s.n, s.c, s.h, s.w]
                };
                (p.name.clone(), shape)
            })
            .collect();
        let mut expected = checkpoint::expected_params(&config).unwrap();
        expected.sort();
        from_model.sort();
        assert_eq!(expected, from_model, "{config:?}");
    }
}

#[test]
fn a_good_checkpoint_parses_without_a_gpu_and_every_prefix_is_refused() {
    let bytes = checkpoint_bytes(tiny_config());
    let file = checkpoint::parse(&bytes, Path::new("good")).unwrap();
    assert_eq!(file.config, tiny_config());
    assert_eq!((file.step, file.seed), (0, 3));
    // Every truncation is an error (a few hundred lengths, spread over the file).
    for len in (0..bytes.len()).step_by(bytes.len() / 300 + 1) {
        assert!(
            checkpoint::parse(&bytes[..len], Path::new("cut")).is_err(),
            "{len}"
        );
    }
}

/// A checkpoint whose config claims a network far larger than its tensors must be
/// refused by `parse`, before `load` would try to build (and allocate) that network; a
/// width whose doubling overflows must be refused without overflowing.
#[test]
fn a_config_larger_than_the_file_is_refused_before_building_the_network() {
    let bytes = checkpoint_bytes(tiny_config());
    let (header_len, header) = header_of(&bytes);
    // The config is a JSON string inside the JSON header, so its quotes are escaped.
    for (from, to) in [
        (r#"\"base_channels\":2"#, r#"\"base_channels\":1000000000"#),
        (
            r#"\"base_channels\":2"#,
            r#"\"base_channels\":18446744073709551615"#,
        ),
        (r#"\"depth\":2"#, r#"\"depth\":8"#),
    ] {
        let edited = header.replace(from, to);
        assert_ne!(edited, header, "{from} is in the header");
        let file = with_header(&bytes, header_len, &edited);
        let err = checkpoint::parse(&file, Path::new("big"))
            .err()
            .unwrap_or_else(|| panic!("{to} accepted"));
        let message = err.to_string();
        assert!(
            message.contains("does not fit") || message.contains("impossible config"),
            "{to}: {message}"
        );
    }
}

/// The JSON header of a safetensors file: its length and text.
fn header_of(bytes: &[u8]) -> (usize, String) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (len, String::from_utf8(bytes[8..8 + len].to_vec()).unwrap())
}

/// `bytes` with its header replaced by `header` (padded with spaces to a multiple of 8
/// bytes, as safetensors writes it, and its length field updated).
fn with_header(bytes: &[u8], old_len: usize, header: &str) -> Vec<u8> {
    let padded = format!("{header:<width$}", width = header.len().next_multiple_of(8));
    let mut out = (padded.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(padded.as_bytes());
    out.extend_from_slice(&bytes[8 + old_len..]);
    out
}

/// Writes the seed corpora the fuzz targets start from (`fuzz/seeds/`): small PNGs and
/// TIFFs in every supported format, and a tiny checkpoint. Run it by hand:
/// `cargo test --test fuzz_regressions -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_fuzz_seeds() {
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let (images, checkpoints) = (root.join("image_loader"), root.join("checkpoint_loader"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&checkpoints).unwrap();
    let f = |x: u32, y: u32| ((x * 37 + y * 11) % 256) as u8;
    ImageBuffer::from_fn(9, 7, |x, y| Luma([f(x, y)]))
        .save(images.join("gray8.png"))
        .unwrap();
    ImageBuffer::from_fn(9, 7, |x, y| Luma([u16::from(f(x, y)) * 257]))
        .save(images.join("gray16.png"))
        .unwrap();
    ImageBuffer::from_fn(9, 7, |x, y| LumaA([f(x, y), 255]))
        .save(images.join("gray_alpha.png"))
        .unwrap();
    ImageBuffer::from_fn(9, 7, |x, y| Rgb([f(x, y), 3, 200]))
        .save(images.join("rgb8.png"))
        .unwrap();
    ImageBuffer::from_fn(9, 7, |x, y| Rgba([f(x, y), 3, 200, 9]))
        .save(images.join("rgba8.png"))
        .unwrap();
    ImageBuffer::from_fn(9, 7, |x, y| {
        Luma([if (x + y) % 3 == 0 { 255u8 } else { 0 }])
    })
    .save(images.join("mask.tif"))
    .unwrap();
    // A two-page 16-bit TIFF stack.
    let file = std::fs::File::create(images.join("stack16.tif")).unwrap();
    let mut tiff = tiff::encoder::TiffEncoder::new(file).unwrap();
    for page in 0..2u16 {
        let data: Vec<u16> = (0..6 * 5).map(|i| i * 1000 + page).collect();
        tiff.write_image::<tiff::encoder::colortype::Gray16>(6, 5, &data)
            .unwrap();
    }
    std::fs::write(
        checkpoints.join("tiny.safetensors"),
        checkpoint_bytes(tiny_config()),
    )
    .unwrap();
}
