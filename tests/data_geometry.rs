//! Mirroring, the overlap-tile plan, training tiles and augmentation on small known cases.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use unet_wgpu::data::{
    augment, crop_mirrored, mirror_pad, reflect_index, training_tile_at, AugmentConfig,
    DisplacementGrid, Grid, Symmetry, TilePlan, TileSpec, Transform,
};

#[test]
fn reflect_index_follows_numpy_reflect() {
    // Row a b c d (n = 4): ... d c b | a b c d | c b a b c d ...
    let n4: Vec<usize> = (-7..=10).map(|i| reflect_index(i, 4)).collect();
    assert_eq!(n4, [1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]);
    let n2: Vec<usize> = (-3..=4).map(|i| reflect_index(i, 2)).collect();
    assert_eq!(n2, [1, 0, 1, 0, 1, 0, 1, 0]);
    // A 1-pixel axis: everything is that pixel.
    assert!((-5..=5).all(|i| reflect_index(i, 1) == 0));
}

#[test]
fn mirror_pad_at_every_border_and_corner() {
    // 1 2 3
    // 4 5 6
    let image = Grid {
        width: 3,
        height: 2,
        data: vec![1, 2, 3, 4, 5, 6],
    };
    let padded = mirror_pad(&image, 1, 1, 1, 1);
    assert_eq!(padded.size(), (5, 4));
    let expected = [
        [5, 4, 5, 6, 5],
        [2, 1, 2, 3, 2],
        [5, 4, 5, 6, 5],
        [2, 1, 2, 3, 2],
    ];
    for (y, row) in expected.iter().enumerate() {
        assert_eq!(padded.row(y), row, "row {y}");
    }
    // Only the bottom-right corner: pad 2 below and 2 to the right.
    let corner = mirror_pad(&image, 0, 2, 0, 2);
    let expected = [
        [1, 2, 3, 2, 1],
        [4, 5, 6, 5, 4],
        [1, 2, 3, 2, 1],
        [4, 5, 6, 5, 4],
    ];
    for (y, row) in expected.iter().enumerate() {
        assert_eq!(corner.row(y), row, "row {y}");
    }
}

#[test]
fn mirror_pad_wider_than_the_image_keeps_reflecting() {
    let row = Grid {
        width: 3,
        height: 1,
        data: vec![1, 2, 3],
    };
    // numpy: np.pad([1, 2, 3], 5, mode="reflect")
    let padded = mirror_pad(&row, 0, 0, 5, 5);
    assert_eq!(padded.data, [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]);
    // A 1-pixel image repeats its pixel.
    let one = Grid {
        width: 1,
        height: 1,
        data: vec![7],
    };
    assert_eq!(mirror_pad(&one, 2, 3, 4, 1).data, vec![7; 6 * 6]);
    // A window wholly outside the image.
    let far = crop_mirrored(&row, -8, 3, 4, 1);
    assert_eq!(far.data, [1, 2, 3, 2]);
}

/// Counts how often each output pixel of a `w x h` image is written by the plan.
fn coverage(plan: &TilePlan) -> Grid<u32> {
    let mut counts = Grid::filled(plan.width, plan.height, 0u32);
    for t in &plan.tiles {
        assert!(t.offset_x + t.out_width <= plan.spec.tile_out);
        assert!(t.offset_y + t.out_height <= plan.spec.tile_out);
        for y in t.out_y..t.out_y + t.out_height {
            for x in t.out_x..t.out_x + t.out_width {
                counts.set(x, y, counts.get(x, y) + 1);
            }
        }
    }
    counts
}

#[test]
fn plan_writes_every_output_pixel_exactly_once() {
    let spec = TileSpec::new(44, 20).unwrap();
    for &(w, h) in &[
        (1, 1),
        (5, 7),
        (19, 20),
        (20, 20),
        (21, 20),
        (37, 100),
        (101, 63),
        (250, 250),
    ] {
        let plan = TilePlan::new(w, h, spec).unwrap();
        let counts = coverage(&plan);
        assert!(
            counts.data.iter().all(|&c| c == 1),
            "{w}x{h}: some pixel not written exactly once"
        );
        assert_eq!(plan.tiles.len(), w.div_ceil(20) * h.div_ceil(20), "{w}x{h}");
    }
    // The paper's tile on a large, non-square image.
    let plan = TilePlan::new(1000, 700, TileSpec::PAPER).unwrap();
    assert!(coverage(&plan).data.iter().all(|&c| c == 1));
}

#[test]
fn aligned_plans_start_on_the_alignment_and_cover_every_pixel_once() {
    // The paper's tile (output 388) with the U-Net's pooling stride 16: windows step by 384.
    for &(w, h) in &[(1, 1), (300, 512), (388, 389), (1000, 700), (777, 2050)] {
        let plan = TilePlan::aligned(w, h, TileSpec::PAPER, 16).unwrap();
        assert!(coverage(&plan).data.iter().all(|&c| c == 1), "{w}x{h}");
        let margin = TileSpec::PAPER.margin() as isize;
        for tile in &plan.tiles {
            assert_eq!((tile.input_x + margin) % 16, 0, "{w}x{h}: {tile:?}");
            assert_eq!((tile.input_y + margin) % 16, 0, "{w}x{h}: {tile:?}");
        }
    }
    let spec = TileSpec::new(44, 20).unwrap();
    assert!(TilePlan::aligned(50, 50, spec, 0).is_err());
    assert!(TilePlan::aligned(50, 50, spec, 21).is_err());
}

#[test]
fn extract_and_stitch_rebuild_the_image_through_a_fake_network() {
    // A "network" that returns the centre tile_out x tile_out of its input: stitching its
    // outputs over the whole plan must give back the image exactly.
    let spec = TileSpec::new(30, 12).unwrap();
    let margin = spec.margin();
    for &(w, h) in &[(7, 5), (12, 12), (29, 41), (50, 13)] {
        let image = Grid::from_fn(w, h, |x, y| (y * 1000 + x) as f32);
        let plan = TilePlan::new(w, h, spec).unwrap();
        let mut out = Grid::filled(w, h, f32::NAN);
        for tile in &plan.tiles {
            let input = plan.extract_tile(&image, tile).unwrap();
            assert_eq!(input.size(), (30, 30));
            let prediction = crop_mirrored(&input, margin as isize, margin as isize, 12, 12);
            plan.stitch(&mut out, tile, &prediction).unwrap();
        }
        assert_eq!(out, image, "{w}x{h}");
    }
}

#[test]
fn plan_rejects_bad_sizes() {
    assert!(TileSpec::new(44, 21).is_err(), "odd margin");
    assert!(TileSpec::new(10, 20).is_err(), "tile_in < tile_out");
    assert!(TileSpec::new(10, 0).is_err(), "empty output");
    let spec = TileSpec::new(44, 20).unwrap();
    assert!(TilePlan::new(0, 5, spec).is_err());
    let plan = TilePlan::new(30, 30, spec).unwrap();
    let wrong = Grid::filled(29, 30, 0.0f32);
    assert!(plan.extract_tile(&wrong, &plan.tiles[0]).is_err());
    let mut full = Grid::filled(30, 30, 0.0f32);
    assert!(plan
        .stitch(&mut full, &plan.tiles[0], &Grid::filled(19, 20, 0.0))
        .is_err());
}

fn ramp(w: usize, h: usize) -> Grid<f32> {
    Grid::from_fn(w, h, |x, y| ((x * 7 + y * 13) % 97) as f32 / 96.0)
}

#[test]
fn zero_elastic_displacement_is_the_identity() {
    let image = ramp(17, 11);
    let labels = Grid::from_fn(17, 11, |x, y| ((x / 4) + 10 * (y / 3)) as u32);
    let weights = Grid::from_fn(17, 11, |x, y| (x + y) as f32);
    let transform = Transform {
        elastic: Some(DisplacementGrid::constant(3, 0.0, 0.0)),
        ..Transform::identity()
    };
    let (i2, l2, w2) = augment(&transform, &image, &labels, &weights).unwrap();
    assert_eq!(i2, image);
    assert_eq!(l2, labels);
    assert_eq!(w2, weights);
}

#[test]
fn constant_elastic_displacement_moves_pixels_where_expected() {
    // Displacement (3, -2) everywhere: the output at (x, y) shows the input at (x + 3, y - 2).
    let (w, h) = (20, 16);
    let image = ramp(w, h);
    let labels = Grid::from_fn(w, h, |x, y| (x + 100 * y) as u32);
    let transform = Transform {
        elastic: Some(DisplacementGrid::constant(3, 3.0, -2.0)),
        ..Transform::identity()
    };
    let (moved, moved_labels, _) = augment(&transform, &image, &labels, &image).unwrap();
    for y in 2..h {
        for x in 0..w - 3 {
            assert!(
                (moved.get(x, y) - image.get(x + 3, y - 2)).abs() < 1e-4,
                "({x},{y})"
            );
            assert_eq!(
                moved_labels.get(x, y),
                labels.get(x + 3, y - 2),
                "({x},{y})"
            );
        }
    }
    // Beyond the right border the mirror fills in: x = w - 1 shows x = w + 2 -> w - 4.
    assert_eq!(moved_labels.get(w - 1, 5), labels.get(w - 4, 3));
}

#[test]
fn rotation_by_90_degrees_and_flips_move_pixels_where_expected() {
    let n = 9;
    let c = 4isize;
    let labels = Grid::from_fn(n, n, |x, y| (x + 10 * y) as u32);
    let image = labels.map(|v| v as f32 / 100.0);
    let quarter = Transform {
        rotation_rad: std::f32::consts::FRAC_PI_2,
        ..Transform::identity()
    };
    // src = c + R (p - c), R(90 deg) (qx, qy) = (-qy, qx).
    let (rotated, rotated_labels, _) = augment(&quarter, &image, &labels, &image).unwrap();
    for y in 0..n as isize {
        for x in 0..n as isize {
            let (sx, sy) = ((c - (y - c)) as usize, (c + (x - c)) as usize);
            assert_eq!(
                rotated_labels.get(x as usize, y as usize),
                labels.get(sx, sy)
            );
            assert!((rotated.get(x as usize, y as usize) - image.get(sx, sy)).abs() < 1e-4);
        }
    }
    let flip = Transform {
        flip_x: true,
        ..Transform::identity()
    };
    let (_, flipped, _) = augment(&flip, &image, &labels, &image).unwrap();
    assert!((0..n).all(|y| (0..n).all(|x| flipped.get(x, y) == labels.get(n - 1 - x, y))));
}

#[test]
fn labels_stay_in_their_label_set_under_random_augmentation() {
    let labels = Grid::from_fn(40, 30, |x, y| [0u32, 3, 7, 12][(x / 10 + y / 10) % 4]);
    let image = ramp(40, 30);
    let config = AugmentConfig::default();
    for seed in 0..8 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let transform = Transform::sample(&config, &mut rng);
        let (out, out_labels, _) = augment(&transform, &image, &labels, &image).unwrap();
        assert!(
            out_labels.data.iter().all(|l| [0, 3, 7, 12].contains(l)),
            "seed {seed}"
        );
        assert!(
            out.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "seed {seed}"
        );
        assert_ne!(
            out_labels, labels,
            "seed {seed}: a random transform should change something"
        );
    }
}

#[test]
fn gray_value_changes_follow_the_formula() {
    let transform = Transform {
        contrast: 2.0,
        brightness: 0.1,
        gamma: 2.0,
        ..Transform::identity()
    };
    let mut image = Grid {
        width: 3,
        height: 1,
        data: vec![0.5, 0.8, 1.5],
    };
    transform.adjust_gray_values(&mut image);
    // (v^2 - 0.5) * 2 + 0.5 + 0.1, clamped: 0.5 -> 0.1; 0.8 -> 0.64 -> 0.88; 1.5 -> clamp(1)^2 -> 1.
    let expected = [0.1, 0.88, 1.0];
    for (a, b) in image.data.iter().zip(expected) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn identity_training_tile_is_a_mirrored_crop() {
    let spec = TileSpec::new(24, 10).unwrap();
    let image = ramp(31, 17);
    let labels = Grid::from_fn(31, 17, |x, y| ((x / 5) * (y / 4)) as u32);
    let weights = Grid::from_fn(31, 17, |x, y| 1.0 + (x * y) as f32);
    // An output window sticking out of the bottom-right corner.
    let (x0, y0) = (25, 12);
    let tile = training_tile_at(
        &image,
        &labels,
        &weights,
        spec,
        x0,
        y0,
        &Transform::identity(),
    )
    .unwrap();
    assert_eq!(
        tile.image,
        crop_mirrored(&image, x0 - 7, y0 - 7, 24, 24).into()
    );
    assert_eq!(tile.labels, crop_mirrored(&labels, x0, y0, 10, 10));
    assert_eq!(tile.classes, tile.labels.map(|l| u8::from(l > 0)));
    for y in 0..10 {
        for x in 0..10 {
            let (ix, iy) = (x0 as usize + x, y0 as usize + y);
            let expected = if ix < 31 && iy < 17 {
                weights.get(ix, iy)
            } else {
                0.0
            };
            assert_eq!(tile.weights.get(x, y), expected, "({x},{y})");
        }
    }
}

#[test]
fn random_tiles_from_an_image_smaller_than_the_output_window() {
    use unet_wgpu::data::random_training_tile;
    let spec = TileSpec::new(36, 20).unwrap();
    let image = ramp(7, 5);
    let labels = Grid::from_fn(7, 5, |x, _| u32::from(x > 2));
    let weights = Grid::filled(7, 5, 2.0f32);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..5 {
        let tile = random_training_tile(
            &image,
            &labels,
            &weights,
            spec,
            &AugmentConfig::none(),
            &mut rng,
        )
        .unwrap();
        assert_eq!(tile.image.size(), (36, 36));
        assert_eq!(tile.weights.size(), (20, 20));
        // Exactly the 35 real pixels keep their weight; the rest is mirrored and weighted 0.
        assert_eq!(tile.weights.data.iter().filter(|&&w| w == 2.0).count(), 35);
        assert_eq!(
            tile.weights.data.iter().filter(|&&w| w == 0.0).count(),
            400 - 35
        );
    }
}

/// The 8 symmetries, checked on a 3 x 2 plane against the arrangements written out by hand.
#[test]
fn symmetries_are_the_eight_flips_and_turns_and_invert() {
    // 1 2 3
    // 4 5 6
    let grid = Grid {
        width: 3,
        height: 2,
        data: vec![1, 2, 3, 4, 5, 6],
    };
    let by_hand: [(usize, [u8; 6]); 8] = [
        (3, [1, 2, 3, 4, 5, 6]), // identity
        (3, [3, 2, 1, 6, 5, 4]), // mirrored left-right
        (3, [4, 5, 6, 1, 2, 3]), // mirrored top-bottom
        (3, [6, 5, 4, 3, 2, 1]), // half turn
        (2, [1, 4, 2, 5, 3, 6]), // transposed
        (2, [3, 6, 2, 5, 1, 4]), // quarter turn anticlockwise
        (2, [4, 1, 5, 2, 6, 3]), // quarter turn clockwise
        (2, [6, 3, 5, 2, 4, 1]), // anti-transposed
    ];
    for (symmetry, (width, data)) in Symmetry::ALL.iter().zip(by_hand) {
        let turned = symmetry.apply(&grid);
        assert_eq!(
            (turned.width, turned.data.as_slice()),
            (width, &data[..]),
            "{symmetry:?}"
        );
        assert_eq!(symmetry.invert(&turned), grid, "{symmetry:?} inverted");
    }
}
