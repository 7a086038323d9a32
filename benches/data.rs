//! Data pipeline benchmarks (CPU): one augmented 572x572 training tile, one 512x512 weight map.
//! Run with `cargo bench --bench data`. Prints the median of several runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use unet_wgpu::data::{
    random_training_tile, synthetic_sample, weight_map, AugmentConfig, Dataset, MaskFormat,
    SynthConfig, TileSpec, WeightMapConfig,
};

/// Median wall time of `runs` calls of `f`, in milliseconds (after one warm-up call).
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

fn main() {
    let weights_config = WeightMapConfig::default();
    let sample = synthetic_sample(512, 512, 1, &SynthConfig::default()).expect("synthetic sample");
    let cells = sample.labels.data.iter().max().copied().unwrap_or(0);
    let weights = weight_map(&sample.labels, &weights_config).expect("weight map");
    // Correctness before timing: the border term is present.
    assert!(
        weights.data.iter().any(|&w| w > 2.0),
        "weight map has no border term"
    );

    let ms = median_ms(9, || {
        weight_map(&sample.labels, &weights_config).unwrap();
    });
    println!("weight map 512x512, synthetic, {cells} cells: {ms:.1} ms (median of 9)");

    let isbi_root = std::env::var("UNET_ISBI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/isbi2012"));
    match Dataset::open(&isbi_root.join("train"), MaskFormat::ISBI) {
        Ok(isbi) => {
            let labels = &isbi.samples()[0].labels;
            let cells = labels.data.iter().max().copied().unwrap_or(0);
            let ms = median_ms(9, || {
                weight_map(labels, &weights_config).unwrap();
            });
            println!("weight map 512x512, ISBI label 00, {cells} cells: {ms:.1} ms (median of 9)");
        }
        Err(e) => println!(
            "skipped ISBI weight map: ISBI data not found at {} ({e}), set UNET_ISBI_DIR",
            isbi_root.display()
        ),
    }

    let spec = TileSpec::PAPER;
    let augment = AugmentConfig::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let tile = random_training_tile(
        &sample.image,
        &sample.labels,
        &weights,
        spec,
        &augment,
        &mut rng,
    )
    .expect("tile");
    assert_eq!(tile.image.size(), (572, 572));
    let ms = median_ms(15, || {
        random_training_tile(
            &sample.image,
            &sample.labels,
            &weights,
            spec,
            &augment,
            &mut rng,
        )
        .unwrap();
    });
    println!("augmented training tile 572x572 -> 388x388 (elastic, rotation, shift, flips, gray values): {ms:.1} ms (median of 15)");
}
