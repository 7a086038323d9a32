//! K classes and C channels on the CPU: normalisations, label reading (class indices,
//! class values, snapping, ignored pixels, instances as three classes), the K-class weight
//! map and the K-class metrics against hand-made cases with known answers; and the loss
//! with ignored pixels (weight 0) on the GPU against an f64 reference and finite
//! differences.

mod common;

use std::path::Path;

use common::*;
use unet_wgpu::data::labels::{class_objects, instance_classes, LabelSpec};
use unet_wgpu::data::normalize::{percentile, EPS};
use unet_wgpu::data::{
    class_weight_map, k_class_weights, parse_class_values, weight_map, ClassBalance, ClassValue,
    DataError, Grid, Image, MaskFormat, Normalize, RawPage, TileSampler, TileSpec, WeightMapConfig,
    IGNORE,
};
use unet_wgpu::metrics::ConfusionMatrix;
use unet_wgpu::ops::loss::softmax_cross_entropy;
use unet_wgpu::Shape;

fn gray_page(width: usize, height: usize, values: &[u16]) -> RawPage {
    RawPage {
        width,
        height,
        channels: 1,
        bit_depth: 8,
        samples: values.to_vec(),
        wide: None,
    }
}

fn class_spec(classes: usize, values: Option<&str>) -> LabelSpec {
    LabelSpec {
        classes,
        values: values.map(|v| parse_class_values(v).unwrap()),
        class_mask: true,
        ..LabelSpec::two_class(MaskFormat::BINARY_255)
    }
}

#[test]
fn normalizations_match_hand_computed_values() {
    // One channel 0, 1, ..., 10 (as if read from 8-bit values / 255, scaled by 10 here).
    let values: Vec<f32> = (0..=10).map(|v| v as f32).collect();
    let image = |v: &[f32]| {
        Image::from(Grid {
            width: v.len(),
            height: 1,
            data: v.to_vec(),
        })
    };
    let mut none = image(&values);
    Normalize::None.apply(&mut none);
    assert_eq!(none.data, values);

    let mut minmax = image(&values);
    Normalize::MinMax.apply(&mut minmax);
    for (got, v) in minmax.data.iter().zip(&values) {
        assert!((got - v / (10.0 + EPS)).abs() < 1e-6, "{got} {v}");
    }

    // NumPy: np.percentile(range(11), [10, 90]) = [1, 9]; 25 -> 2.5.
    assert_eq!(percentile(&values, 10.0), 1.0);
    assert_eq!(percentile(&values, 90.0), 9.0);
    assert_eq!(percentile(&values, 25.0), 2.5);
    let mut pct = image(&values);
    Normalize::Percentile {
        low: 10.0,
        high: 90.0,
    }
    .apply(&mut pct);
    assert!((pct.data[1] - 0.0).abs() < 1e-6 && (pct.data[9] - 1.0).abs() < 1e-5);
    assert!(
        (pct.data[0] + 0.125).abs() < 1e-5,
        "no clipping: {}",
        pct.data[0]
    );

    // Mean 5, population std sqrt(10).
    let mut z = image(&values);
    Normalize::ZScore.apply(&mut z);
    let std = 10f32.sqrt();
    assert!((z.data[0] + 5.0 / (std + EPS)).abs() < 1e-5);
    assert!((z.data[5]).abs() < 1e-6);
}

#[test]
fn normalization_is_per_channel_and_parses() {
    let a = Grid {
        width: 2,
        height: 1,
        data: vec![0.0, 1.0],
    };
    let b = Grid {
        width: 2,
        height: 1,
        data: vec![10.0, 30.0],
    };
    let mut image = Image::from_planes(&[a, b]);
    let affines = Normalize::MinMax.apply(&mut image);
    assert_eq!(affines.len(), 2);
    assert!((image.plane(1)[1] - 1.0).abs() < 1e-6 && image.plane(1)[0] == 0.0);
    assert!((image.plane(0)[1] - 1.0).abs() < 1e-5);
    for text in [
        "none",
        "min-max",
        "z-score",
        "percentile",
        "percentile:2,98",
    ] {
        let parsed: Normalize = text.parse().unwrap();
        assert_eq!(parsed.to_string().parse::<Normalize>().unwrap(), parsed);
    }
    assert_eq!(
        "percentile".parse::<Normalize>().unwrap(),
        Normalize::Percentile {
            low: 1.0,
            high: 99.8
        }
    );
    for bad in ["percentile:99,1", "median", "percentile:1"] {
        assert!(bad.parse::<Normalize>().is_err(), "{bad}");
    }
    assert_eq!(
        Normalize::default(),
        Normalize::ZScore,
        "the default (see DEFAULT_NORMALIZE)"
    );
}

#[test]
fn class_masks_read_indices_values_and_ignored_pixels() {
    let page = gray_page(3, 2, &[0, 1, 2, 2, 255, 0]);
    let spec = LabelSpec {
        ignore: Some(255),
        ..class_spec(3, None)
    };
    let labels = spec.read(&page, Path::new("m.png")).unwrap();
    assert_eq!(labels.classes.data, vec![0, 1, 2, 2, IGNORE, 0]);
    assert!(labels.objects_by_class);
    // Class 1 is one object, class 2's pixels (2,0),(0,1) are not 4-connected: two.
    let ids: std::collections::BTreeSet<u32> = labels
        .instances
        .data
        .iter()
        .copied()
        .filter(|&i| i > 0)
        .collect();
    assert_eq!(ids.len(), 3, "{:?}", labels.instances.data);

    let page = gray_page(3, 1, &[0, 128, 255]);
    let read = class_spec(3, Some("0,128,255"))
        .read(&page, Path::new("m.png"))
        .unwrap();
    assert_eq!(read.classes.data, vec![0, 1, 2]);
}

#[test]
fn a_value_of_no_class_names_file_pixel_value_and_the_values_held() {
    let page = gray_page(3, 1, &[0, 130, 255]);
    let err = class_spec(3, Some("0,128,255"))
        .read(&page, Path::new("labels/a.png"))
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::UnknownClassValue { .. }));
    for part in ["labels/a.png", "130", "x=1, y=0", "0, 130, 255", "--snap"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // Out of range for --classes without values.
    let err = class_spec(2, None)
        .read(&gray_page(2, 1, &[0, 7]), Path::new("b.png"))
        .unwrap_err();
    assert!(err.to_string().contains("label value 7"), "{err}");
    // --snap maps to the nearest value and counts the pixels.
    let snapped = LabelSpec {
        snap: true,
        ..class_spec(3, Some("0,128,255"))
    }
    .read(&gray_page(4, 1, &[0, 130, 250, 60]), Path::new("c.png"))
    .unwrap();
    assert_eq!(snapped.classes.data, vec![0, 1, 2, 0]);
    assert_eq!(snapped.snapped, 3);
}

#[test]
fn colour_masks_map_through_rgb_class_values() {
    let page = RawPage {
        width: 2,
        height: 1,
        channels: 3,
        bit_depth: 8,
        samples: vec![0, 0, 0, 255, 0, 0],
        wide: None,
    };
    let spec = class_spec(2, Some("#000000,#ff0000"));
    assert_eq!(
        spec.values.as_deref().unwrap()[1],
        ClassValue::Rgb([255, 0, 0])
    );
    let labels = spec.read(&page, Path::new("rgb.png")).unwrap();
    assert_eq!(labels.classes.data, vec![0, 1]);
}

#[test]
fn k_must_be_at_least_two_and_fit_the_format() {
    for spec in [
        class_spec(1, None),
        class_spec(3, Some("0,255")),
        LabelSpec {
            classes: 4,
            ..LabelSpec::two_class(MaskFormat::Instance)
        },
    ] {
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("--class"), "{err}");
    }
}

#[test]
fn instances_become_background_interior_and_boundary() {
    // Two 3x3 cells side by side with a background column between them... and touching.
    let ids = [
        1, 1, 1, 2, 2, 2, 0, //
        1, 1, 1, 2, 2, 2, 0, //
        1, 1, 1, 2, 2, 2, 0, //
    ];
    let labels = Grid {
        width: 7,
        height: 3,
        data: ids.to_vec(),
    };
    let classes = instance_classes(&labels, 1);
    #[rustfmt::skip]
    let want = vec![
        1, 1, 2, 2, 1, 2, 0,
        1, 1, 2, 2, 1, 2, 0,
        1, 1, 2, 2, 1, 2, 0,
    ];
    assert_eq!(classes.data, want, "the image edge is no boundary");
    let spec = LabelSpec {
        classes: 3,
        boundary_width: 1,
        ..LabelSpec::two_class(MaskFormat::Instance)
    };
    let page = gray_page(7, 3, &ids.map(|v| v as u16));
    let read = spec.read(&page, Path::new("i.png")).unwrap();
    assert_eq!(read.classes.data, want);
    assert_eq!(read.instances, labels);
}

#[test]
fn k_class_weights_balance_every_class_present() {
    // 6 pixels: class 0 x3, class 1 x2, class 2 x1, one ignored.
    let classes = Grid {
        width: 7,
        height: 1,
        data: vec![0, 0, 0, 1, 1, 2, IGNORE],
    };
    let w = k_class_weights(&classes, 3, true);
    // N / (K' N_c) with N = 6, K' = 3.
    assert_eq!(w, vec![6.0 / 9.0, 1.0, 2.0]);
    let mean: f32 = [0, 0, 0, 1, 1, 2].iter().map(|&c| w[c]).sum::<f32>() / 6.0;
    assert!((mean - 1.0).abs() < 1e-6);
    assert_eq!(k_class_weights(&classes, 4, false), vec![1.0; 4]);
    let config = WeightMapConfig {
        w0: 0.0,
        ..WeightMapConfig::default()
    };
    let map = class_weight_map(&class_objects(&classes), &classes, 3, true, &config);
    assert_eq!(map.data[6], 0.0, "an ignored pixel weighs nothing");
    assert_eq!(map.data[5], 2.0);
}

#[test]
fn two_class_weight_map_is_the_papers() {
    let dataset = unet_wgpu::data::synthetic_dataset(1, 64, 48, 3, &Default::default()).unwrap();
    let s = &dataset.samples()[0];
    let classes = s.labels.map(|l| u8::from(l > 0));
    for balance in [ClassBalance::Paper, ClassBalance::Total] {
        let config = WeightMapConfig {
            balance,
            ..WeightMapConfig::default()
        };
        assert_eq!(
            class_weight_map(&s.labels, &classes, 2, false, &config),
            weight_map(&s.labels, &config).unwrap(),
            "{balance}"
        );
    }
}

#[test]
fn total_balance_gives_every_class_present_the_same_weight_and_ignored_pixels_none() {
    // Objects of class 1 on both sides of a class-2 pixel: the border term lands on it.
    let classes = Grid {
        width: 8,
        height: 1,
        data: vec![1u8, 2, 1, 0, 0, 0, 0, IGNORE],
    };
    let objects = class_objects(&classes);
    let with = |balance| WeightMapConfig {
        balance,
        ..WeightMapConfig::default()
    };
    let plain = class_weight_map(&objects, &classes, 3, true, &with(ClassBalance::Off));
    let total = class_weight_map(&objects, &classes, 3, true, &with(ClassBalance::Total));
    assert!(
        plain.data[1] > 1.5,
        "the border term is on the class-2 pixel"
    );
    assert_eq!(total.data[7], 0.0, "an ignored pixel weighs nothing");
    // 7 labelled pixels, 3 classes: each class totals 7 / 3, shared in the plain map's ratios.
    for class in 0..3u8 {
        let pixels: Vec<usize> = (0..7).filter(|&i| classes.data[i] == class).collect();
        let sum: f32 = pixels.iter().map(|&i| total.data[i]).sum();
        assert!((sum - 7.0 / 3.0).abs() < 1e-5, "class {class}: {sum}");
        let plain_sum: f32 = pixels.iter().map(|&i| plain.data[i]).sum();
        for &i in &pixels {
            let expected = plain.data[i] / plain_sum * 7.0 / 3.0;
            assert!((total.data[i] - expected).abs() < 1e-5, "pixel {i}");
        }
    }
}

#[test]
fn border_term_separates_objects_of_one_class_across_another() {
    // Class 1 | class 2 | class 1 in one row: the middle pixel is 1 px from each object.
    let classes = Grid {
        width: 3,
        height: 1,
        data: vec![1u8, 2, 1],
    };
    let objects = class_objects(&classes);
    assert_eq!(objects.data, vec![1, 3, 2]);
    let config = WeightMapConfig {
        balance: ClassBalance::Off,
        ..WeightMapConfig::default()
    };
    let map = class_weight_map(&objects, &classes, 3, true, &config);
    let (w0, sigma) = (config.w0, config.sigma);
    let term = w0 * (-(2.0f32 * 2.0) / (2.0 * sigma * sigma)).exp();
    assert!((map.data[1] - (1.0 + term)).abs() < 1e-5, "{:?}", map.data);
    assert_eq!(map.data[0], 1.0, "an object's own pixels get no term");
}

#[test]
fn confusion_matrix_scores_a_hand_made_case() {
    // truth 0 0 1 1 2 2 X, pred 0 1 1 1 2 0 2 (X ignored).
    let truth = [0, 0, 1, 1, 2, 2, IGNORE];
    let pred = [0, 1, 1, 1, 2, 0, 2];
    let mut m = ConfusionMatrix::new(4);
    m.add(&truth, &pred).unwrap();
    assert_eq!(m.get(0, 1), 1);
    assert_eq!(m.get(2, 0), 1);
    // class 1: TP 2, FP 1, FN 0 -> IoU 2/3, Dice 4/5.
    assert!((m.iou(1).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.dice(1).unwrap() - 0.8).abs() < 1e-12);
    // class 2: TP 1, FP 0, FN 1 -> IoU 1/2, Dice 2/3.
    assert!((m.iou(2).unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(m.iou(3), None, "absent from truth and prediction");
    assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
    let r = m.report();
    assert!((r.mean_foreground_iou.unwrap() - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    assert!((r.mean_foreground_dice.unwrap() - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    assert_eq!(r.confusion[0], vec![1, 1, 0, 0]);
    assert!(r.table().contains("confusion"));
    assert!(m.add(&[0], &[4]).is_err(), "a class >= K is an error");
}

#[test]
fn tiles_keep_one_geometry_for_every_channel_and_drop_ignored_pixels() {
    let base = unet_wgpu::data::synthetic_dataset(1, 40, 40, 9, &Default::default()).unwrap();
    let s = &base.samples()[0];
    let gray = s.image.channel(0);
    let half = gray.map(|v| v * 0.5);
    let mut classes = s.classes.clone();
    for c in classes.data.iter_mut().take(200) {
        *c = IGNORE;
    }
    let sample = unet_wgpu::data::Sample::new(
        "two-channel".into(),
        Image::from_planes(&[gray, half]),
        s.labels.clone(),
        classes,
    );
    let data = base.with_samples(vec![sample]).unwrap();
    let augment = unet_wgpu::data::AugmentConfig {
        contrast: 0.0,
        brightness: 0.0,
        gamma: 0.0,
        ..Default::default()
    };
    let sampler = TileSampler::new(TileSpec::new(40, 20).unwrap(), augment, 3).unwrap();
    for k in 0..4 {
        let tile = sampler.tile(&data, k).unwrap();
        assert_eq!(tile.image.channels, 2);
        // Channel 1 is channel 0 halved wherever channel 0 was not clamped to [0, 1]
        // (bicubic sampling overshoots a little at sharp edges).
        let mut compared = 0;
        for (a, b) in tile.image.plane(0).iter().zip(tile.image.plane(1)) {
            if *a > 0.0 && *a < 1.0 {
                assert!((a * 0.5 - b).abs() < 1e-5, "{a} {b}");
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared}");
        assert!(tile.classes.data.iter().all(|&c| c < 2));
    }
    // A tile whose window covers the ignored rows: their weight is 0.
    let whole = TileSampler::new(
        TileSpec::new(40, 40).unwrap(),
        unet_wgpu::data::AugmentConfig::none(),
        1,
    )
    .unwrap()
    .tile(&data, 0)
    .unwrap();
    assert!(whole.weights.data[..200].iter().all(|&w| w == 0.0));
    assert!(whole.weights.data[200..].iter().all(|&w| w > 0.0));
}

/// f64 loss of the labelled pixels only (weight 0 elsewhere), over all P pixels.
fn loss_ref(shape: Shape, z: &[f64], labels: &[f64], w: &[f64]) -> f64 {
    common::reference::weighted_cross_entropy(shape, z, labels, w)
}

#[test]
fn ignored_pixels_add_nothing_to_the_loss_or_its_gradient() {
    let gpu = gpu();
    let shape = Shape::new(1, 3, 4, 5);
    let mut r = rng(17);
    let logits: Vec<f32> = random_vec(&mut r, shape.numel())
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    let pixels = shape.plane();
    // Classes 0..3; every third pixel ignored: class 0 (a valid index) with weight 0, as
    // the tiles carry them.
    let labels: Vec<f32> = (0..pixels).map(|i| (i % 3) as f32).collect();
    let weights: Vec<f32> = (0..pixels)
        .map(|i| {
            if i % 3 == 1 {
                0.0
            } else {
                1.0 + (i % 5) as f32
            }
        })
        .collect();
    let labels: Vec<f32> = labels
        .iter()
        .zip(&weights)
        .map(|(&l, &w)| if w == 0.0 { 0.0 } else { l })
        .collect();
    let out = softmax_cross_entropy(
        &gpu,
        &upload(&gpu, shape, &logits),
        &upload(&gpu, shape.with_c(1), &labels),
        &upload(&gpu, shape.with_c(1), &weights),
    )
    .unwrap();
    let loss = out.loss.to_vec(&gpu).unwrap();
    assert_eq!(loss[1], 0.0, "ignored pixels are not invalid labels");
    let (z, l, w) = (to_f64(&logits), to_f64(&labels), to_f64(&weights));
    let want = loss_ref(shape, &z, &l, &w);
    assert_close("loss with ignored pixels", &loss[..1], &[want], 1e-6, 1e-4);
    // Finite differences of the reference against the GPU gradient.
    let numeric = numeric_grad(|z| loss_ref(shape, z, &l, &w), &z, 1e-5);
    let grad = out.dlogits.to_vec(&gpu).unwrap();
    assert_close("dlogits with ignored pixels", &grad, &numeric, 1e-6, 1e-3);
    for i in (0..pixels).filter(|i| i % 3 == 1) {
        for k in 0..3 {
            assert_eq!(grad[k * pixels + i], 0.0, "pixel {i} is ignored");
        }
    }
}

#[test]
fn images_keep_their_channels_in_every_format() {
    use unet_wgpu::data::{read_image_channels, ChannelMode, StackMode};
    let dir = common::cli::scratch("channels");
    let rgb = image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([10 * x as u8, 20 * y as u8, 200]));
    for ext in ["png", "bmp", "jpg", "tif"] {
        let path = dir.join(format!("rgb.{ext}"));
        rgb.save(&path).unwrap();
        let image = read_image_channels(&path, ChannelMode::Auto, StackMode::Pages).unwrap();
        assert_eq!((image.channels, image.size()), (3, (8, 6)), "{ext}");
        // JPEG is lossy; the others give the stored values back.
        let tolerance = if ext == "jpg" { 12.0 / 255.0 } else { 1e-6 };
        let blue = image.plane(2);
        assert!(
            blue.iter().all(|v| (v - 200.0 / 255.0).abs() <= tolerance),
            "{ext}"
        );
        let gray = read_image_channels(&path, ChannelMode::Gray, StackMode::Pages).unwrap();
        assert_eq!(
            gray.channels, 1,
            "{ext}: --channels 1 turns colour into luma"
        );
    }
    let path = dir.join("gray.png");
    image::GrayImage::from_pixel(4, 4, image::Luma([51]))
        .save(&path)
        .unwrap();
    let forced = read_image_channels(&path, ChannelMode::Rgb, StackMode::Pages).unwrap();
    assert_eq!(forced.channels, 3);
    assert!(forced.data.iter().all(|&v| (v - 0.2).abs() < 1e-6));
}

#[test]
fn a_checkpoint_without_data_reads_as_gray_without_normalisation() {
    // A checkpoint as written before the `data` field.
    let gpu = gpu();
    let trainer = unet_wgpu::train::Trainer::new(
        unet_wgpu::model::Network::new(&gpu, tiny_config(), 1).unwrap(),
        unet_wgpu::ops::sgd::Sgd {
            lr: 0.001,
            momentum: 0.99,
            weight_decay: 0.0,
        },
        1,
    );
    let dir = common::cli::scratch("legacy-checkpoint");
    let old = dir.join("old.safetensors");
    unet_wgpu::train::checkpoint::save(&gpu, &trainer, &old).unwrap();
    let spec = unet_wgpu::train::checkpoint::read_data_spec(&old).unwrap();
    assert_eq!(spec, unet_wgpu::data::DataSpec::legacy(1, 2));
    assert_eq!(spec.normalize, Normalize::None);
    let new = dir.join("new.safetensors");
    let with = unet_wgpu::data::DataSpec {
        normalize: Normalize::ZScore,
        ..spec
    };
    unet_wgpu::train::checkpoint::save_with_data(&gpu, &trainer, Some(&with), None, &new).unwrap();
    assert_eq!(
        unet_wgpu::train::checkpoint::read_data_spec(&new).unwrap(),
        with
    );
}

#[test]
fn a_stack_reads_as_channels_one_per_page() {
    use tiff::encoder::{colortype, TiffEncoder};
    use unet_wgpu::data::{read_image_channels, ChannelMode, StackMode};
    let dir = common::cli::scratch("stack-channels");
    let path = dir.join("stack.tif");
    let mut encoder = TiffEncoder::new(std::fs::File::create(&path).unwrap()).unwrap();
    for page in 0..4u8 {
        let pixels = vec![page * 50; 6 * 5];
        encoder
            .write_image::<colortype::Gray8>(6, 5, &pixels)
            .unwrap();
    }
    drop(encoder);
    let image = read_image_channels(&path, ChannelMode::Auto, StackMode::Channels).unwrap();
    assert_eq!((image.channels, image.size()), (4, (6, 5)));
    for c in 0..4 {
        let want = (c * 50) as f32 / 255.0;
        assert!(
            image.plane(c).iter().all(|&v| (v - want).abs() < 1e-6),
            "{c}"
        );
    }
    let first = read_image_channels(&path, ChannelMode::Auto, StackMode::Pages).unwrap();
    assert_eq!(first.channels, 1, "as pages, the first page alone");
}

#[test]
fn thirty_two_bit_tiffs_read_as_floats_and_integer_masks() {
    use tiff::encoder::{colortype, TiffEncoder};
    use unet_wgpu::data::{read_image_channels, read_pages, ChannelMode, StackMode};
    let dir = common::cli::scratch("tiff32");
    let float = dir.join("float.tif");
    let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    TiffEncoder::new(std::fs::File::create(&float).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32Float>(4, 3, &values)
        .unwrap();
    let image = read_image_channels(&float, ChannelMode::Auto, StackMode::Pages).unwrap();
    assert_eq!(image.data, values, "floats as stored, not clamped");
    let ints = dir.join("ids.tif");
    let ids: Vec<u32> = (0..12).map(|i| i * 100_000).collect();
    TiffEncoder::new(std::fs::File::create(&ints).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32>(4, 3, &ids)
        .unwrap();
    let page = &read_pages(&ints).unwrap()[0];
    assert_eq!(page.to_mask_values(&ints).unwrap().data, ids);
    let err = read_pages(&float).unwrap()[0]
        .to_mask_values(&float)
        .unwrap_err();
    assert!(err.to_string().contains("not a whole number"), "{err}");
}

#[test]
fn two_class_validation_leaves_unlabelled_pixels_out() {
    // A tiny untrained network's validation against labels whose left third is unlabelled
    // (class IGNORE; its instance ids say "cell", which must not count): the figures are
    // those of the labelled pixels alone, worked out here from the prediction.
    let gpu = gpu();
    let model = unet_wgpu::model::Network::new(&gpu, tiny_config(), 3).unwrap();
    let (w, h) = (30, 26);
    let mut r = rng(9);
    let image = Grid {
        width: w,
        height: h,
        data: random_vec(&mut r, w * h).iter().map(|v| v.abs()).collect(),
    };
    let labels = Grid::from_fn(w, h, |x, y| u32::from(x < w / 3 || (x + y) % 5 < 2));
    let classes = Grid::from_fn(w, h, |x, y| match x < w / 3 {
        true => IGNORE,
        false => labels.get(x, y) as u8,
    });
    let sample = unet_wgpu::data::Sample::new(
        "s".into(),
        Image::from(image.clone()),
        labels,
        classes.clone(),
    );
    let val = unet_wgpu::data::Dataset::new(vec![sample], WeightMapConfig::default()).unwrap();
    let tile = 36;
    let v = unet_wgpu::train::run::validate(&gpu, &model, &val, tile).unwrap();

    let options = unet_wgpu::infer::TileOptions {
        tile,
        batch: 1,
        heads: Default::default(),
        average_symmetries: false,
    };
    let probs = unet_wgpu::infer::predict(&gpu, &model, &Image::from(image), options).unwrap();
    let (mut wrong, mut labelled, mut cells, mut both, mut either) = (0, 0, 0, 0, 0);
    for (i, &c) in classes.data.iter().enumerate() {
        if c == IGNORE {
            continue;
        }
        let (p, t) = (probs[1].data[i] > 0.5, c == 1);
        labelled += 1;
        wrong += usize::from(p != t);
        cells += usize::from(t);
        both += usize::from(p && t);
        either += usize::from(p || t);
    }
    let f = cells as f64 / labelled as f64;
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(v.pixel_error, wrong as f64 / labelled as f64);
    close(
        v.iou,
        if either == 0 {
            1.0
        } else {
            both as f64 / either as f64
        },
    );
    close(v.one_class_pixel_error, f.min(1.0 - f));
    close(v.all_foreground_iou, f);
}

#[test]
fn a_resumed_run_must_read_its_data_as_the_checkpoint_did() {
    use unet_wgpu::data::DataSpec;
    use unet_wgpu::train::checkpoint::check_resumed_data;
    let path = Path::new("run/checkpoint.safetensors");
    let held = DataSpec {
        normalize: Normalize::ZScore,
        class_values: Some(parse_class_values("0,128,255").unwrap()),
        ignore_index: Some(7),
        ..DataSpec::legacy(1, 3)
    };
    check_resumed_data(&held, &held.clone(), path).unwrap();
    for (data, wanted) in [
        (
            DataSpec {
                normalize: Normalize::None,
                ..held.clone()
            },
            "normalisation z-score, but the data is read with none",
        ),
        (
            DataSpec {
                class_values: None,
                ..held.clone()
            },
            "class values 0,128,255, but the data is read with none",
        ),
        (
            DataSpec {
                ignore_index: None,
                ..held.clone()
            },
            "unlabelled value 7, but the data is read with none",
        ),
    ] {
        let err = check_resumed_data(&held, &data, path)
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{err}");
    }
    // A checkpoint from before the unlabelled value and the weight map reads as none.
    let old = r#"{"channels":1,"channel_mode":"gray","stack":"pages","normalize":{"kind":"none"},"classes":2,"class_values":null}"#;
    let spec: DataSpec = serde_json::from_str(old).unwrap();
    assert_eq!(spec, DataSpec::legacy(1, 2));

    // The weight map: another one is refused; a checkpoint without one accepts any.
    let paper = WeightMapConfig::default();
    let total = WeightMapConfig {
        balance: ClassBalance::Total,
        ..paper
    };
    let weighted = |map| DataSpec {
        weight_map: Some(map),
        ..held.clone()
    };
    let err = check_resumed_data(&weighted(paper), &weighted(total), path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "trained with the weight map w0 10, sigma 5, balance paper, but the data is read \
             with w0 10, sigma 5, balance total"
        ),
        "{err}"
    );
    check_resumed_data(&weighted(paper), &weighted(paper), path).unwrap();
    check_resumed_data(&held, &weighted(total), path).unwrap();
    let json = serde_json::to_string(&weighted(total)).unwrap();
    assert!(json.contains(r#""balance":"total""#), "{json}");
    assert_eq!(
        serde_json::from_str::<DataSpec>(&json).unwrap(),
        weighted(total)
    );

    // How the masks were read: the same, as the weight map.
    let read_as = |masks| DataSpec {
        masks: Some(masks),
        ..held.clone()
    };
    let err = check_resumed_data(
        &read_as(MaskFormat::BINARY_INVERTED_255),
        &read_as(MaskFormat::BINARY_255),
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "trained with masks read as binary, cells 0, background 255, but the data is read \
             with binary, cells 255, background 0"
        ),
        "{err}"
    );
    check_resumed_data(&held, &read_as(MaskFormat::Instance), path).unwrap();
    let inverted = read_as(MaskFormat::BINARY_INVERTED_255);
    let json = serde_json::to_string(&inverted).unwrap();
    assert!(
        json.contains(r#""masks":{"binary":{"foreground":0,"background":255}}"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), inverted);

    // The boundary class of instance masks read as three classes: the same again.
    let bounded = |width| DataSpec {
        boundary_width: Some(width),
        ..held.clone()
    };
    let err = check_resumed_data(&bounded(2), &bounded(3), path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trained with a boundary class of 2 px, but the data is read with 3 px"),
        "{err}"
    );
    check_resumed_data(&held, &bounded(3), path).unwrap();
    let json = serde_json::to_string(&bounded(2)).unwrap();
    assert!(json.contains(r#""boundary_width":2"#), "{json}");
    assert_eq!(serde_json::from_str::<DataSpec>(&json).unwrap(), bounded(2));

    // Masks of class indices against binary or instance values.
    let holding = |class_mask| DataSpec {
        class_mask: Some(class_mask),
        ..held.clone()
    };
    let err = check_resumed_data(&holding(true), &holding(false), path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "trained with masks holding class indices, but the data is read with binary or \
             instance values"
        ),
        "{err}"
    );
    check_resumed_data(&held, &holding(true), path).unwrap();
}
