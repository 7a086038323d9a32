//! Overlap-tile prediction: stitching tiles equals one pass over the whole mirror-padded image.

mod common;

use common::*;
use unet_wgpu::data::{crop_mirrored, Grid, Symmetry};
use unet_wgpu::infer::{predict, predict_bands, TileOptions};
use unet_wgpu::model::{Arch, Heads, Network, UNetConfig};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::Shape;

const TINY: UNetConfig = UNetConfig {
    depth: 3,
    base_channels: 4,
    dropout: None,
    ..UNetConfig::paper()
};

#[test]
fn stitched_tiles_equal_one_pass_over_the_whole_image() {
    check_stitching(TINY, Heads::default());
}

#[test]
fn unetpp_stitched_tiles_equal_one_pass_with_valid_convs_and_averaged_heads() {
    let config = UNetConfig {
        padding: Padding::Valid,
        ..TINY.with_arch(Arch::UNetPlusPlus)
    };
    let heads = Heads {
        prune: None,
        average: true,
    };
    check_stitching(config, heads);
}

fn check_stitching(config: UNetConfig, heads: Heads) {
    let gpu = gpu();
    let model = Network::new(&gpu, config, 11).unwrap();
    let tile = config.input_size_for(20); // valid: 60 -> 20, several tiles per image
    for &(w, h) in &[(37, 29), (13, 50), (20, 20)] {
        let image = Grid {
            width: w,
            height: h,
            data: random_vec(&mut rng(w as u64), w * h),
        };
        let options = TileOptions {
            tile,
            batch: 3,
            heads,
            average_symmetries: false,
        };
        let stitched = predict(&gpu, &model, &image, options).unwrap();

        // One pass: the smallest valid input whose output covers the whole image.
        let whole_in = config.input_size_for(w.max(h));
        let whole_out = config.check_tile(whole_in).unwrap();
        let margin = ((whole_in - whole_out) / 2) as isize;
        let padded = crop_mirrored(&image, -margin, -margin, whole_in, whole_in);
        let input = upload(&gpu, Shape::new(1, 1, whole_in, whole_in), &padded.data);
        let probs = model.probabilities(&gpu, input, heads).unwrap();
        let probs = probs.to_vec(&gpu).unwrap();
        for (class, map) in stitched.iter().enumerate() {
            let plane = &probs[class * whole_out * whole_out..(class + 1) * whole_out * whole_out];
            let want: Vec<f64> = (0..w * h)
                .map(|i| f64::from(plane[(i / w) * whole_out + i % w]))
                .collect();
            assert_close(
                &format!("{w}x{h} class {class}"),
                &map.data,
                &want,
                1e-5,
                1e-5,
            );
        }
    }
}

/// Averaging over the 8 orientations makes the prediction equivariant: predicting a
/// flipped or turned image gives the flipped or turned prediction, which one orientation
/// alone does not.
#[test]
fn symmetry_averaged_prediction_is_equivariant() {
    let gpu = gpu();
    let config = TINY;
    let model = Network::new(&gpu, config, 5).unwrap();
    let image = Grid {
        width: 23,
        height: 17,
        data: random_vec(&mut rng(9), 23 * 17),
    };
    let mut options = TileOptions::fitting(&gpu, &model, config.input_size_for(12)).unwrap();
    let foreground = |image: &Grid<f32>, options: TileOptions| {
        predict(&gpu, &model, image, options).unwrap()[1].clone()
    };
    // Symmetry::ALL[5] flips x and transposes: a quarter turn.
    let turn = Symmetry::ALL[5];
    let plain_of_turned = foreground(&turn.apply(&image), options);
    let turned_plain = turn.apply(&foreground(&image, options));
    let differs = plain_of_turned
        .data
        .iter()
        .zip(&turned_plain.data)
        .any(|(a, b)| (a - b).abs() > 1e-4);
    assert!(differs, "a random network should not be rotation-invariant");

    options.average_symmetries = true;
    let averaged = foreground(&image, options);
    for symmetry in Symmetry::ALL {
        let of_transformed = foreground(&symmetry.apply(&image), options);
        let want: Vec<f64> = symmetry
            .apply(&averaged)
            .data
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        assert_close(
            &format!("{symmetry:?}"),
            &of_transformed.data,
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn automatic_batch_fits_the_device() {
    let gpu = gpu();
    let model = Network::new(&gpu, UNetConfig::small(), 1).unwrap();
    let options = TileOptions::fitting(&gpu, &model, 188).unwrap();
    assert!((1..=8).contains(&options.batch), "{}", options.batch);
    // The largest activation of the batch (enc0.conv1's output, 16 x 186 x 186 per tile,
    // counted generously as 16 x 188 x 188) fits one storage binding.
    let largest_per_tile = 16 * 188 * 188 * 4;
    assert!(options.batch as u64 * largest_per_tile <= gpu.max_tensor_bytes());
}

/// The large-image path: bands of one tile row, stitched, equal the whole-image
/// prediction bit for bit, and cover every row once, top to bottom.
#[test]
fn bands_of_one_tile_row_equal_the_whole_image_prediction() {
    let gpu = gpu();
    let model = Network::new(&gpu, TINY, 3).unwrap();
    let (w, h) = (53, 71);
    let image = Grid {
        width: w,
        height: h,
        data: random_vec(&mut rng(4), w * h),
    };
    let options = TileOptions {
        tile: TINY.input_size_for(16),
        batch: 3,
        heads: Heads::default(),
        average_symmetries: false,
    };
    let whole = predict(&gpu, &model, &image, options).unwrap();
    let mut stitched = vec![Grid::filled(w, h, f32::NAN); 2];
    let mut next_row = 0;
    let mut bands = 0;
    predict_bands(&gpu, &model, &image, options, 1, |band| {
        assert_eq!(band.y, next_row, "bands come top to bottom, each row once");
        next_row += band.height;
        bands += 1;
        for (map, part) in stitched.iter_mut().zip(&band.maps) {
            assert_eq!((part.width, part.height), (w, band.height));
            map.data[band.y * w..(band.y + band.height) * w].copy_from_slice(&part.data);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(next_row, h);
    assert!(bands >= 4, "a tiny band makes several bands: {bands}");
    for (class, (got, want)) in stitched.iter().zip(&whole).enumerate() {
        let same = got
            .data
            .iter()
            .zip(&want.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "class {class}: the bands differ from the whole image");
    }
}
