//! The synthetic cell generator and the prefetching tile stream.

use std::sync::Arc;

use unet_wgpu::data::weights::nearest_two_cell_distances;
use unet_wgpu::data::{
    synthetic_dataset, synthetic_sample, write_dataset, AugmentConfig, Dataset, MaskFormat,
    SynthConfig, TileSampler, TileSpec, TileStream,
};

#[test]
fn synthetic_images_are_deterministic_per_seed() {
    let config = SynthConfig::default();
    let a = synthetic_sample(64, 48, 11, &config).unwrap();
    let b = synthetic_sample(64, 48, 11, &config).unwrap();
    let c = synthetic_sample(64, 48, 12, &config).unwrap();
    assert_eq!(a.image, b.image);
    assert_eq!(a.labels, b.labels);
    assert_ne!(a.labels, c.labels);
    assert!(a.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
    // Odd sizes work too.
    for (w, h) in [(1, 1), (3, 70), (70, 3)] {
        let s = synthetic_sample(w, h, 5, &config).unwrap();
        assert_eq!(s.image.size(), (w, h));
        assert_eq!(s.labels.size(), (w, h));
    }
}

#[test]
fn synthetic_images_hold_touching_and_separate_cells() {
    let sample = synthetic_sample(160, 160, 3, &SynthConfig::default()).unwrap();
    let labels = &sample.labels;
    let cells = *labels.data.iter().max().unwrap() as usize;
    assert!(cells >= 10, "only {cells} cells");
    let foreground =
        labels.data.iter().filter(|&&l| l > 0).count() as f32 / labels.data.len() as f32;
    assert!(
        (0.3..0.9).contains(&foreground),
        "foreground fraction {foreground}"
    );

    // For a pixel inside a cell, d2 is its distance to the nearest *other* cell; the smallest
    // d2 over a cell's pixels is the cell's gap to its neighbours.
    let (_, d2) = nearest_two_cell_distances(labels, 30.0);
    let mut gap = vec![f32::INFINITY; cells + 1];
    for (&l, &d) in labels.data.iter().zip(&d2.data) {
        if l > 0 {
            gap[l as usize] = gap[l as usize].min(d);
        }
    }
    let touching = gap[1..].iter().filter(|&&g| g <= 3.0).count();
    let separate = gap[1..].iter().filter(|&&g| g >= 5.0).count();
    assert!(touching >= 3, "{touching} touching cells, gaps {gap:?}");
    assert!(separate >= 2, "{separate} separate cells, gaps {gap:?}");

    // Cells and background differ in mean intensity (whether membranes are dark or bright).
    let mean = |cell: bool| {
        let values: Vec<f32> = (sample.image.data.iter().zip(&labels.data))
            .filter(|(_, &l)| (l > 0) == cell)
            .map(|(&v, _)| v)
            .collect();
        values.iter().sum::<f32>() / values.len() as f32
    };
    assert!(
        (mean(true) - mean(false)).abs() > 0.02,
        "{} vs {}",
        mean(true),
        mean(false)
    );
}

#[test]
fn synthetic_dataset_round_trips_through_a_folder() {
    let dir = std::env::temp_dir().join(format!("unet-data-synth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dataset = synthetic_dataset(3, 40, 30, 9, &SynthConfig::default()).unwrap();
    assert_eq!(dataset.len(), 3);
    write_dataset(&dir, &dataset).unwrap();
    let back = Dataset::open(&dir, MaskFormat::Instance).unwrap();
    assert_eq!(back.len(), 3);
    for (a, b) in dataset.samples().iter().zip(back.samples()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.labels, b.labels);
        let worst = a
            .image
            .data
            .iter()
            .zip(&b.image.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            worst <= 0.5 / 255.0 + 1e-6,
            "8-bit rounding only, got {worst}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn small_stream(dataset: &Arc<Dataset>, seed: u64) -> TileStream {
    let sampler = TileSampler::new(
        TileSpec::new(44, 20).unwrap(),
        AugmentConfig::default(),
        seed,
    )
    .unwrap();
    TileStream::new(dataset.clone(), sampler, 2)
}

#[test]
fn tile_stream_is_deterministic_given_the_seed() {
    let dataset = Arc::new(synthetic_dataset(3, 64, 64, 1, &SynthConfig::default()).unwrap());
    let first: Vec<_> = small_stream(&dataset, 42)
        .take(4)
        .map(Result::unwrap)
        .collect();
    let again: Vec<_> = small_stream(&dataset, 42)
        .take(4)
        .map(Result::unwrap)
        .collect();
    let other: Vec<_> = small_stream(&dataset, 43)
        .take(4)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, again);
    assert_ne!(first, other);
    // The stream yields exactly the sampler's tiles 0, 1, 2, ...
    let sampler =
        TileSampler::new(TileSpec::new(44, 20).unwrap(), AugmentConfig::default(), 42).unwrap();
    for (k, tile) in first.iter().enumerate() {
        assert_eq!(*tile, sampler.tile(&dataset, k as u64).unwrap());
        assert_eq!(tile.image.size(), (44, 44));
        assert_eq!(tile.labels.size(), (20, 20));
        assert!(tile.weights.data.iter().all(|w| w.is_finite() && *w >= 0.0));
    }
    // Tiles differ from one another (random windows and transforms).
    assert_ne!(first[0].image, first[1].image);
}

#[test]
fn every_style_draws_the_same_cells_in_its_own_look() {
    use unet_wgpu::data::SynthStyle;
    let geometry = SynthConfig::for_style(SynthStyle::Dic);
    let mean = |image: &[f32], labels: &[u32], cell: bool| {
        let values: Vec<f32> = image
            .iter()
            .zip(labels)
            .filter(|(_, &l)| (l > 0) == cell)
            .map(|(&v, _)| v)
            .collect();
        values.iter().sum::<f32>() / values.len() as f32
    };
    let mut labels = None;
    for style in SynthStyle::ALL {
        let config = SynthConfig { style, ..geometry };
        let a = synthetic_sample(160, 160, 4, &config).unwrap();
        assert_eq!(
            a.image,
            synthetic_sample(160, 160, 4, &config).unwrap().image,
            "{style:?}"
        );
        assert!(
            a.image.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "{style:?}"
        );
        // The style changes the intensities only.
        assert_eq!(
            labels.get_or_insert_with(|| a.labels.clone()),
            &a.labels,
            "{style:?}"
        );
        let (cells, background) = (
            mean(&a.image.data, &a.labels.data, true),
            mean(&a.image.data, &a.labels.data, false),
        );
        let n = a.image.data.len() as f32;
        let all = a.image.data.iter().sum::<f32>() / n;
        let std = (a.image.data.iter().map(|v| (v - all).powi(2)).sum::<f32>() / n).sqrt();
        match style {
            SynthStyle::Em => assert!((cells - background).abs() > 0.05),
            // DIC: faint (the DIC-HeLa frames: mean 118, std 10 of 255), and cells have the
            // background's mean: only relief and texture tell them apart.
            SynthStyle::Dic => {
                assert!((all - 118.0 / 255.0).abs() < 0.03, "mean {all}");
                assert!((0.02..0.08).contains(&std), "std {std}");
                assert!((cells - background).abs() < 0.02, "{cells} vs {background}");
            }
            // Phase contrast: darker cells in bright halos.
            SynthStyle::Phase => assert!(background > cells + 0.1, "{cells} vs {background}"),
            // Fluorescence: a dark background, bright cells.
            SynthStyle::Fluorescence => {
                assert!(background < 0.1 && cells > 0.3, "{cells} vs {background}")
            }
        }
    }
    // Each style has a name for `--data synthetic:NAME`.
    for style in SynthStyle::ALL {
        assert_eq!(style.name().parse::<SynthStyle>(), Ok(style));
    }
    assert!("holography"
        .parse::<SynthStyle>()
        .unwrap_err()
        .contains("dic"));
}
