//! Distance transform, connected components and weight maps on small hand-made masks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use unet_wgpu::data::weights::nearest_two_cell_distances;
use unet_wgpu::data::{
    class_weights, connected_components, distance_transform, read_image, weight_map,
    write_weight_map_npy, write_weight_map_png, ClassBalance, Grid, LabelImage, WeightMapConfig,
};

/// Brute force: distance from every pixel to the nearest `true` pixel.
fn brute_force_distance(features: &Grid<bool>) -> Grid<f32> {
    Grid::from_fn(features.width, features.height, |x, y| {
        let mut best = f32::INFINITY;
        for fy in 0..features.height {
            for fx in 0..features.width {
                if features.get(fx, fy) {
                    let d =
                        ((x as f32 - fx as f32).powi(2) + (y as f32 - fy as f32).powi(2)).sqrt();
                    best = best.min(d);
                }
            }
        }
        best
    })
}

#[test]
fn distance_transform_matches_brute_force_on_random_masks() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(w, h) in &[(1, 1), (1, 9), (9, 1), (7, 5), (13, 9), (16, 16), (23, 11)] {
        for density in [0.02, 0.1, 0.5] {
            let features = Grid::from_fn(w, h, |_, _| rng.random_bool(density));
            let fast = distance_transform(&features);
            let slow = brute_force_distance(&features);
            for (i, (a, b)) in fast.data.iter().zip(&slow.data).enumerate() {
                let same = (a.is_infinite() && b.is_infinite()) || (a - b).abs() < 1e-4;
                assert!(
                    same,
                    "{w}x{h} density {density}, pixel {i}: edt {a} vs brute {b}"
                );
            }
        }
    }
}

#[test]
fn distance_transform_known_answers() {
    // One feature at the centre of a 5x5 image: the distance is the length of (dx, dy).
    let features = Grid::from_fn(5, 5, |x, y| (x, y) == (2, 2));
    let d = distance_transform(&features);
    assert_eq!(d.get(2, 2), 0.0);
    assert_eq!(d.get(2, 0), 2.0);
    assert!((d.get(0, 0) - 8f32.sqrt()).abs() < 1e-6);
    assert!((d.get(4, 3) - 5f32.sqrt()).abs() < 1e-6);
    // No feature at all: infinitely far.
    let none = distance_transform(&Grid::filled(3, 2, false));
    assert!(none.data.iter().all(|d| d.is_infinite()));
}

#[test]
fn connected_components_use_4_connectivity() {
    // Two diagonal neighbours are separate cells; an L shape is one cell.
    let rows = ["#..##", ".#..#", "....#", "##..."];
    let binary = Grid::from_fn(5, 4, |x, y| rows[y].as_bytes()[x] == b'#');
    let labels = connected_components(&binary);
    let expected = [
        [1, 0, 0, 2, 2],
        [0, 3, 0, 0, 2],
        [0, 0, 0, 0, 2],
        [4, 4, 0, 0, 0],
    ];
    for (y, row) in expected.iter().enumerate() {
        assert_eq!(labels.row(y), row, "row {y}");
    }
}

/// Cells A (columns 0..=2) and B (columns 6..=8) of a 9x3 image, with a 3-pixel gap between.
fn two_cells_with_gap() -> LabelImage {
    Grid::from_fn(9, 3, |x, _| match x {
        0..=2 => 1,
        6..=8 => 2,
        _ => 0,
    })
}

#[test]
fn class_weights_are_inverse_frequencies_with_mean_one() {
    // 18 cell pixels, 9 background pixels, 27 in all: w = 27 / (2 * count).
    let (w_background, w_cell) = class_weights(&two_cells_with_gap(), true);
    assert_eq!(w_background, 1.5);
    assert_eq!(w_cell, 0.75);
    assert_eq!(class_weights(&two_cells_with_gap(), false), (1.0, 1.0));
}

#[test]
fn border_term_in_a_straight_gap_has_the_hand_derived_value() {
    // In the gap, d1 + d2 = 4 at every pixel (1 + 3, 2 + 2, 3 + 1), so
    // w = w_background + 10 exp(-16 / 50) = 1.5 + 7.2614904 = 8.7614904.
    let weights = weight_map(&two_cells_with_gap(), &WeightMapConfig::default()).unwrap();
    let expected_gap = 1.5 + 10.0 * (-16.0f32 / 50.0).exp();
    for y in 0..3 {
        for x in 0..9 {
            let expected = if (3..=5).contains(&x) {
                expected_gap
            } else {
                0.75
            };
            assert!(
                (weights.get(x, y) - expected).abs() < 1e-5,
                "({x},{y}): {}",
                weights.get(x, y)
            );
        }
    }
}

#[test]
fn border_term_peaks_in_the_gap_between_two_squares() {
    // Squares x in 5..=10 and 15..=20, y in 7..=12 of a 30x20 image: gap columns 11..=14.
    let labels = Grid::from_fn(30, 20, |x, y| match (x, y) {
        (5..=10, 7..=12) => 1,
        (15..=20, 7..=12) => 2,
        _ => 0,
    });
    let weights = weight_map(&labels, &WeightMapConfig::default()).unwrap();
    let (w_background, _) = class_weights(&labels, true);
    let (mut best, mut best_at) = (0.0, (0, 0));
    for y in 0..20 {
        for x in 0..30 {
            if labels.get(x, y) == 0 && weights.get(x, y) > best {
                best = weights.get(x, y);
                best_at = (x, y);
            }
        }
    }
    assert!(
        (11..=14).contains(&best_at.0) && (7..=12).contains(&best_at.1),
        "peak at {best_at:?}"
    );
    // Straight across the gap d1 + d2 = 5: w0 exp(-25 / 50).
    assert!(
        (best - (w_background + 10.0 * (-0.5f32).exp())).abs() < 1e-5,
        "peak {best}"
    );
    // Far from the gap the border term has faded.
    assert!(weights.get(0, 0) - w_background < 0.5);
}

#[test]
fn fewer_than_two_cells_means_no_border_term() {
    let one_cell = Grid::from_fn(12, 8, |x, y| {
        u32::from((3..6).contains(&x) && (2..5).contains(&y))
    });
    let weights = weight_map(&one_cell, &WeightMapConfig::default()).unwrap();
    let (w_background, w_cell) = class_weights(&one_cell, true);
    for (id, w) in one_cell.data.iter().zip(&weights.data) {
        assert_eq!(*w, if *id > 0 { w_cell } else { w_background });
    }
    let empty = weight_map(&Grid::filled(4, 4, 0), &WeightMapConfig::default()).unwrap();
    assert!(empty.data.iter().all(|&w| w == 1.0));
}

/// The untruncated formula with brute-force distances to every cell.
fn brute_force_weight_map(labels: &LabelImage, config: &WeightMapConfig) -> Grid<f32> {
    let max_id = *labels.data.iter().max().unwrap();
    let per_cell: Vec<Grid<f32>> = (1..=max_id)
        .map(|id| brute_force_distance(&labels.map(|l| l == id)))
        .collect();
    let (wb, wc) = class_weights(labels, config.balance == ClassBalance::Paper);
    Grid::from_fn(labels.width, labels.height, |x, y| {
        if labels.get(x, y) > 0 {
            return wc;
        }
        let mut d: Vec<f32> = per_cell.iter().map(|g| g.get(x, y)).collect();
        d.sort_by(f32::total_cmp);
        let sum = d[0] + d[1];
        wb + config.w0 * (-(sum * sum) / (2.0 * config.sigma * config.sigma)).exp()
    })
}

#[test]
fn windowed_weight_map_matches_the_untruncated_formula() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Random small rectangles as cells on a 48x40 image (they may touch or overlap).
    let mut labels = Grid::filled(48, 40, 0u32);
    for id in 1..=6u32 {
        let (x0, y0) = (rng.random_range(0..40), rng.random_range(0..32));
        let (w, h) = (rng.random_range(2..8), rng.random_range(2..8));
        for y in y0..(y0 + h).min(40) {
            for x in x0..(x0 + w).min(48) {
                labels.set(x, y, id);
            }
        }
    }
    let ids: std::collections::BTreeSet<u32> =
        labels.data.iter().copied().filter(|&i| i > 0).collect();
    assert!(ids.len() >= 2, "test needs at least two cells");
    // Renumber 1..n so that the brute force sees no empty ids.
    let renumber: std::collections::BTreeMap<u32, u32> =
        ids.iter().zip(1..).map(|(&a, b)| (a, b)).collect();
    let labels = labels.map(|l| if l == 0 { 0 } else { renumber[&l] });
    let config = WeightMapConfig::default();
    let fast = weight_map(&labels, &config).unwrap();
    let slow = brute_force_weight_map(&labels, &config);
    for (i, (a, b)) in fast.data.iter().zip(&slow.data).enumerate() {
        assert!((a - b).abs() < 1e-3, "pixel {i}: {a} vs {b}");
    }
    // And the nearest-two distances themselves, where both are within reach.
    let (d1, _) = nearest_two_cell_distances(&labels, config.border_reach());
    assert!(d1
        .data
        .iter()
        .zip(&labels.data)
        .all(|(d, &l)| (l > 0) == (*d == 0.0)));
}

#[test]
fn invalid_weight_config_is_an_error() {
    let bad = WeightMapConfig {
        sigma: 0.0,
        ..WeightMapConfig::default()
    };
    let err = weight_map(&two_cells_with_gap(), &bad).unwrap_err();
    assert!(err.to_string().contains("sigma"), "{err}");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("unet-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn weight_map_is_written_as_npy_and_png() {
    let dir = temp_dir("weights-out");
    let weights = weight_map(&two_cells_with_gap(), &WeightMapConfig::default()).unwrap();

    let npy = dir.join("w.npy");
    write_weight_map_npy(&npy, &weights).unwrap();
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "header must be 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'shape': (3, 9)"),
        "{header}"
    );
    let body: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(body, weights.data);

    let png = dir.join("w.png");
    write_weight_map_png(&png, &weights).unwrap();
    let shown = read_image(&png).unwrap();
    assert_eq!(shown.size(), (9, 3));
    assert_eq!(shown.get(4, 1), 1.0, "the largest weight is white");
    assert!((shown.get(0, 0) - (0.75 / weights.get(4, 1) * 255.0).round() / 255.0).abs() < 1e-6);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two 6 x 6 squares with a 4-pixel gap in a 30 x 20 image.
fn two_squares() -> LabelImage {
    Grid::from_fn(30, 20, |x, y| match (x, y) {
        (5..=10, 7..=12) => 1,
        (15..=20, 7..=12) => 2,
        _ => 0,
    })
}

#[test]
fn total_balance_scales_each_class_to_the_same_weight_after_the_border_term() {
    let labels = two_squares();
    let with = |balance| WeightMapConfig {
        balance,
        ..WeightMapConfig::default()
    };
    let balanced = weight_map(&labels, &with(ClassBalance::Total)).unwrap();
    // The reference: 1 + the border term (brute-force distances), then per class the one
    // factor that makes the class's total N / 2.
    let plain = brute_force_weight_map(&labels, &with(ClassBalance::Off));
    let n = labels.data.len() as f64;
    for is_cell in [false, true] {
        let of_class = |i: &usize| (labels.data[*i] > 0) == is_cell;
        let pixels: Vec<usize> = (0..labels.data.len()).filter(of_class).collect();
        let plain_total: f64 = pixels.iter().map(|&i| plain.data[i] as f64).sum();
        let scale = n / 2.0 / plain_total;
        let total: f64 = pixels.iter().map(|&i| balanced.data[i] as f64).sum();
        assert!(
            (total - n / 2.0).abs() < 1e-3,
            "class total {total}, want {}",
            n / 2.0
        );
        for &i in &pixels {
            let expected = plain.data[i] as f64 * scale;
            assert!(
                (balanced.data[i] as f64 - expected).abs() < 1e-3,
                "pixel {i}: {} vs {expected}",
                balanced.data[i]
            );
        }
    }
    // The gap still weighs 1 + w0 exp(-25 / 50) times a background pixel far from it.
    let far = balanced.get(0, 0) as f64;
    let gap = balanced.get(12, 9) as f64;
    assert!(
        (gap / far - (1.0 + 10.0 * (-0.5f64).exp())).abs() < 1e-3,
        "{gap} / {far}"
    );
}

#[test]
fn total_balance_leaves_an_image_of_one_class_alone() {
    let config = WeightMapConfig {
        balance: ClassBalance::Total,
        ..WeightMapConfig::default()
    };
    let empty = weight_map(&Grid::filled(4, 4, 0), &config).unwrap();
    assert!(empty.data.iter().all(|&w| w == 1.0));
}

#[test]
fn class_balance_names_parse_and_unknown_ones_say_what_to_use() {
    for balance in [ClassBalance::Off, ClassBalance::Paper, ClassBalance::Total] {
        assert_eq!(balance.to_string().parse::<ClassBalance>(), Ok(balance));
    }
    let err = "equal".parse::<ClassBalance>().unwrap_err();
    assert!(err.contains("off, paper, total"), "{err}");
}
