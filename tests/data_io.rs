//! Reading PNG and TIFF files, datasets on disk, and every error case. Test files are made in a
//! temporary folder with the `image` and `tiff` crates.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgb};
use unet_wgpu::data::{read_image, read_stack, DataError, Dataset, MaskFormat};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unet-data-io-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save_gray8(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn save_gray16(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u16) {
    ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

#[test]
fn reads_8_and_16_bit_gray_png_and_tiff() {
    let dir = temp_dir("gray");
    for ext in ["png", "tif"] {
        let p8 = dir.join(format!("g8.{ext}"));
        save_gray8(&p8, 4, 3, |x, y| (x * 60 + y) as u8);
        let img = read_image(&p8).unwrap();
        assert_eq!(img.size(), (4, 3));
        assert_eq!(img.get(3, 2), 182.0 / 255.0, "{ext}");

        let p16 = dir.join(format!("g16.{ext}"));
        save_gray16(&p16, 5, 2, |x, y| (x * 16000 + y) as u16);
        let img = read_image(&p16).unwrap();
        assert_eq!(img.size(), (5, 2));
        assert_eq!(img.get(4, 1), 64001.0 / 65535.0, "{ext}");
        assert_eq!(img.get(0, 0), 0.0);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reads_rgb_as_luma() {
    let dir = temp_dir("rgb");
    for ext in ["png", "tif"] {
        let p8 = dir.join(format!("c8.{ext}"));
        ImageBuffer::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgb([255u8, 0, 0])
            } else {
                Rgb([0, 255, 255])
            }
        })
        .save(&p8)
        .unwrap();
        let img = read_image(&p8).unwrap();
        assert!((img.get(0, 0) - 0.2126).abs() < 1e-6, "{ext}");
        assert!((img.get(1, 0) - (0.7152 + 0.0722)).abs() < 1e-6, "{ext}");

        let p16 = dir.join(format!("c16.{ext}"));
        ImageBuffer::from_fn(1, 1, |_, _| Rgb([65535u16, 65535, 0]))
            .save(&p16)
            .unwrap();
        let img = read_image(&p16).unwrap();
        assert!((img.get(0, 0) - (0.2126 + 0.7152)).abs() < 1e-6, "{ext}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reads_every_page_of_a_multi_page_tiff() {
    use tiff::encoder::{colortype, TiffEncoder};
    let dir = temp_dir("stack");
    let path = dir.join("stack.tif");
    let mut encoder = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
    for page in 0..3u8 {
        let data: Vec<u8> = (0..6).map(|i| page * 50 + i).collect();
        encoder
            .write_image::<colortype::Gray8>(3, 2, &data)
            .unwrap();
    }
    drop(encoder);
    let pages = read_stack(&path).unwrap();
    assert_eq!(pages.len(), 3);
    for (p, page) in pages.iter().enumerate() {
        assert_eq!(page.size(), (3, 2));
        assert_eq!(page.get(2, 1), (p as f32 * 50.0 + 5.0) / 255.0);
    }
    assert_eq!(
        read_image(&path).unwrap(),
        pages[0],
        "a single read gives the first page"
    );

    // Stacks as a dataset: binary mask pages, foreground 255.
    let masks = dir.join("masks.tif");
    let mut encoder = TiffEncoder::new(std::fs::File::create(&masks).unwrap()).unwrap();
    for _ in 0..3 {
        encoder
            .write_image::<colortype::Gray8>(3, 2, &[255, 0, 255, 255, 0, 255])
            .unwrap();
    }
    drop(encoder);
    let dataset = Dataset::from_tiff_stacks(&path, &masks, MaskFormat::BINARY_255).unwrap();
    assert_eq!(dataset.len(), 3);
    assert_eq!(dataset.samples()[1].labels.data, [1, 0, 2, 1, 0, 2]);

    let short = dir.join("short.tif");
    save_gray8(&short, 3, 2, |_, _| 0);
    let err = Dataset::from_tiff_stacks(&path, &short, MaskFormat::BINARY_255).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::StackLengthMismatch {
                image_pages: 3,
                mask_pages: 1,
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `dir/images` and `dir/labels` with the named 6x4 pairs: image gray, mask from `mask_value`.
fn make_dataset(dir: &Path, stems: &[&str], mask_value: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    for stem in stems {
        save_gray8(
            &dir.join("images").join(format!("{stem}.png")),
            6,
            4,
            |x, _| x as u8 * 40,
        );
        save_gray8(
            &dir.join("labels").join(format!("{stem}.png")),
            6,
            4,
            &mask_value,
        );
    }
}

#[test]
fn opens_a_folder_with_binary_and_instance_masks() {
    let dir = temp_dir("folder");
    // Two cells (columns 0..=1 and 4..=5) separated by background in columns 2..=3.
    make_dataset(
        &dir,
        &["b", "a"],
        |x, _| if x == 2 || x == 3 { 0 } else { 255 },
    );
    std::fs::write(dir.join("images").join("notes.txt"), "ignored").unwrap();
    let dataset = Dataset::open(&dir, MaskFormat::BINARY_255).unwrap();
    assert_eq!(dataset.len(), 2);
    assert_eq!(dataset.samples()[0].name, "a", "sorted by stem");
    let labels = &dataset.samples()[0].labels;
    assert_eq!(labels.row(0), [1, 1, 0, 0, 2, 2]);
    assert_eq!(labels.row(3), [1, 1, 0, 0, 2, 2]);

    // Inverted polarity: 0 marks the cells, so the middle columns become one cell.
    let inverted = Dataset::open(&dir, MaskFormat::BINARY_INVERTED_255).unwrap();
    assert_eq!(inverted.samples()[0].labels.row(0), [0, 0, 1, 1, 0, 0]);

    // Instance labels are taken as they are (here the values 0 and 255).
    let instance = Dataset::open(&dir, MaskFormat::Instance).unwrap();
    assert_eq!(
        instance.samples()[1].labels.row(2),
        [255, 255, 0, 0, 255, 255]
    );

    // Weight maps are cached: the same allocation comes back.
    let first = dataset.weight_map(0).unwrap() as *const _;
    assert_eq!(first, dataset.weight_map(0).unwrap() as *const _);
    assert!(matches!(
        dataset.weight_map(5),
        Err(DataError::IndexOutOfRange { index: 5, len: 2 })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = read_image(Path::new("/no/such/file.png")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/file.png"), "{err}");
}

#[test]
fn not_an_image_and_truncated_files_are_decode_errors() {
    let dir = temp_dir("bad");
    let text = dir.join("text.png");
    std::fs::write(&text, "this is not a picture").unwrap();
    let err = read_image(&text).unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("text.png"), "{err}");

    for ext in ["png", "tif"] {
        let full = dir.join(format!("full.{ext}"));
        save_gray8(&full, 32, 32, |x, y| (x ^ y) as u8);
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.join(format!("cut.{ext}"));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_image(&cut).unwrap_err();
        assert!(matches!(err, DataError::Decode { .. }), "{ext}: {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn size_mismatch_names_both_files_and_sizes() {
    let dir = temp_dir("mismatch");
    make_dataset(&dir, &["01"], |_, _| 255);
    save_gray8(&dir.join("labels").join("01.png"), 5, 4, |_, _| 255);
    let err = Dataset::open(&dir, MaskFormat::BINARY_255).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{message}");
    assert!(
        message.contains("images/01.png") && message.contains("labels/01.png"),
        "{message}"
    );
    assert!(
        message.contains("6x4") && message.contains("5x4"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unexpected_mask_values_are_reported_with_their_position() {
    let dir = temp_dir("values");
    make_dataset(
        &dir,
        &["07"],
        |x, y| if (x, y) == (3, 2) { 128 } else { 255 },
    );
    let err = Dataset::open(&dir, MaskFormat::BINARY_255).unwrap_err();
    match &err {
        DataError::UnexpectedMaskValue { value, x, y, .. } => {
            assert_eq!((*value, *x, *y), (128, 3, 2))
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("labels/07.png"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn rgb_mask_is_rejected() {
    let dir = temp_dir("rgbmask");
    make_dataset(&dir, &["x"], |_, _| 0);
    ImageBuffer::from_fn(6, 4, |_, _| Rgb([0u8, 0, 0]))
        .save(dir.join("labels").join("x.png"))
        .unwrap();
    let err = Dataset::open(&dir, MaskFormat::Instance).unwrap_err();
    assert!(matches!(err, DataError::MaskNotGray { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn empty_and_unmatched_datasets_are_errors() {
    let dir = temp_dir("empty");
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    let err = Dataset::open(&dir, MaskFormat::ISBI).unwrap_err();
    assert!(matches!(err, DataError::EmptyDataset { .. }), "{err}");

    make_dataset(&dir, &["both"], |_, _| 0);
    save_gray8(&dir.join("images").join("lonely.png"), 6, 4, |_, _| 0);
    save_gray8(&dir.join("labels").join("orphan.png"), 6, 4, |_, _| 0);
    let err = Dataset::open(&dir, MaskFormat::ISBI).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::Unmatched { .. }), "{message}");
    assert!(
        message.contains("lonely.png") && message.contains("orphan.png"),
        "{message}"
    );
    assert!(!message.contains("both.png"), "{message}");

    let err = Dataset::open(&dir.join("nowhere"), MaskFormat::ISBI).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The ISBI 2012 training pairs, found through `UNET_ISBI_DIR` (default `../shared/data/isbi2012`).
#[test]
fn isbi_training_pairs_load() {
    let root = std::env::var("UNET_ISBI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/isbi2012"));
    let train = root.join("train");
    if !train.join("images").is_dir() {
        eprintln!(
            "skipped: ISBI data not found at {}, set UNET_ISBI_DIR",
            root.display()
        );
        return;
    }
    let dataset = Dataset::open(&train, MaskFormat::ISBI).unwrap();
    assert_eq!(dataset.len(), 25);
    for sample in dataset.samples() {
        assert_eq!(sample.image.size(), (512, 512), "{}", sample.name);
        let cells = sample.labels.data.iter().max().copied().unwrap_or(0);
        assert!(cells > 20, "{}: only {cells} cells", sample.name);
        let membrane =
            sample.labels.data.iter().filter(|&&l| l == 0).count() as f32 / (512.0 * 512.0);
        assert!(
            (0.1..0.4).contains(&membrane),
            "{}: membrane fraction {membrane}",
            sample.name
        );
    }
    let weights = dataset.weight_map(0).unwrap();
    assert!(weights.data.iter().all(|w| w.is_finite() && *w > 0.0));
    let (w_background, _) = unet_wgpu::data::class_weights(&dataset.samples()[0].labels, true);
    let max = weights.data.iter().copied().fold(0.0, f32::max);
    assert!(
        max > w_background + 1.0,
        "the border term should show: max {max}"
    );
}
