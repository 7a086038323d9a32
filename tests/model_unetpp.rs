//! U-Net++: its layer table against the parameters it builds, gradients against finite
//! differences of an f64 CPU reference (same and valid convs, deep supervision), pruning,
//! the averaged deep-supervision loss, overfitting one image and a checkpoint round trip.

mod common;

use std::collections::HashMap;

use common::reference::{self, Host};
use common::*;
use unet_wgpu::model::{Arch, Heads, Mode, Network, UNetConfig, UNetPlusPlus};
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{Batch, Trainer};
use unet_wgpu::{Gpu, Shape};

fn tiny(padding: Padding, base_channels: usize) -> UNetConfig {
    UNetConfig {
        depth: 3,
        base_channels,
        padding,
        dropout: None,
        ..UNetConfig::paper().with_arch(Arch::UNetPlusPlus)
    }
}

fn host_params(gpu: &Gpu, net: &UNetPlusPlus) -> HashMap<String, Vec<f64>> {
    net.params()
        .iter()
        .map(|p| (p.name.clone(), to_f64(&p.value.to_vec(gpu).unwrap())))
        .collect()
}

#[test]
fn parameters_match_the_layer_table_and_are_named_like_pytorch() {
    let gpu = gpu();
    let config = tiny(Padding::Same, 4);
    let net = UNetPlusPlus::new(&gpu, config, 1).unwrap();
    let count: usize = net.params().iter().map(|p| p.shape().numel()).sum();
    assert_eq!(count, config.parameter_count());
    let names: Vec<&str> = net.params().iter().map(|p| p.name.as_str()).collect();
    for name in [
        "x0_0.conv1.weight",
        "x2_0.conv2.bias",
        "x1_1.up.weight",
        "x0_2.conv1.weight",
        "x0_1.head.weight",
        "x0_2.head.bias",
    ] {
        assert!(names.contains(&name), "no {name} in {names:?}");
    }
    // X(0,2) convolves [X(0,0), X(0,1), up(X(1,1))]: 3 x 4 channels in.
    let x02 = net
        .params()
        .into_iter()
        .find(|p| p.name == "x0_2.conv1.weight")
        .unwrap();
    assert_eq!(x02.shape(), Shape::new(4, 12, 3, 3));
    // Without deep supervision there is one head, on the last top node.
    let single = UNetConfig {
        deep_supervision: false,
        ..config
    };
    let net = UNetPlusPlus::new(&gpu, single, 1).unwrap();
    let heads: Vec<String> = net
        .params()
        .iter()
        .filter(|p| p.name.contains("head"))
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(heads, ["x0_2.head.weight", "x0_2.head.bias"]);
}

/// dL/dparam on the GPU against central differences of the f64 reference network, with
/// the fake loss L = sum over heads of sum(logits_h * g_h), for a few elements of every
/// parameter tensor.
fn check_gradient(config: UNetConfig, tile: usize) {
    let gpu = gpu();
    let net = UNetPlusPlus::new(&gpu, config, 5).unwrap();
    let shape = Shape::new(1, 1, tile, tile);
    let x = random_vec(&mut rng(6), shape.numel());
    let acts = net
        .forward(&gpu, upload(&gpu, shape, &x), Mode::Eval, config.depth - 1)
        .unwrap();
    let mut r = rng(7);
    let g: Vec<Vec<f32>> = acts
        .heads
        .iter()
        .map(|h| random_vec(&mut r, h.logits.numel()))
        .collect();
    let dlogits: Vec<_> = acts
        .heads
        .iter()
        .zip(&g)
        .map(|(h, g)| upload(&gpu, h.logits.shape(), g))
        .collect();
    for p in net.params() {
        p.grad.zero(&gpu);
    }
    net.backward(&gpu, &acts, &dlogits).unwrap();

    let x = Host {
        shape,
        data: to_f64(&x),
    };
    let g: Vec<Vec<f64>> = g.iter().map(|g| to_f64(g)).collect();
    let mut params = host_params(&gpu, &net);
    let want = reference::unetpp(&config, &params, &x);
    assert_eq!(want.len(), acts.heads.len());
    for (head, want) in acts.heads.iter().zip(&want) {
        let got = head.logits.to_vec(&gpu).unwrap();
        assert_close(
            &format!("head {} logits", head.level),
            &got,
            &want.data,
            1e-4,
            1e-4,
        );
    }
    let fake_loss = |params: &HashMap<String, Vec<f64>>| -> f64 {
        let logits = reference::unetpp(&config, params, &x);
        logits.iter().zip(&g).map(|(l, g)| dot(&l.data, g)).sum()
    };

    let eps = 1e-6;
    let mut checked = 0;
    for p in net.params() {
        let grad = p.grad.to_vec(&gpu).unwrap();
        let len = grad.len();
        for &i in &[0, len / 2, len - 1] {
            let original = params[&p.name][i];
            params.get_mut(&p.name).unwrap()[i] = original + eps;
            let plus = fake_loss(&params);
            params.get_mut(&p.name).unwrap()[i] = original - eps;
            let minus = fake_loss(&params);
            params.get_mut(&p.name).unwrap()[i] = original;
            let numeric = (plus - minus) / (2.0 * eps);
            let what = format!("{:?} d{}[{i}]", config.padding, p.name);
            assert_close(&what, &grad[i..=i], &[numeric], 1e-3, 1e-3);
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * net.params().len());
}

#[test]
fn whole_model_gradient_matches_finite_differences_same() {
    check_gradient(tiny(Padding::Same, 3), 12);
}

#[test]
fn whole_model_gradient_matches_finite_differences_valid() {
    // Valid convs: the earlier top nodes are larger and every head reads their centre.
    check_gradient(tiny(Padding::Valid, 2), 60);
}

#[test]
fn pruned_network_predicts_with_the_sub_network_of_its_head() {
    let gpu = gpu();
    let config = tiny(Padding::Same, 4);
    let net = UNetPlusPlus::new(&gpu, config, 8).unwrap();
    let shape = Shape::new(1, 1, 16, 16);
    let x = random_vec(&mut rng(9), shape.numel());
    let want = reference::unetpp(
        &config,
        &host_params(&gpu, &net),
        &Host {
            shape,
            data: to_f64(&x),
        },
    );
    // Pruned to 1: only X(0,0), X(1,0), X(0,1) run, and head X(0,1) predicts.
    let acts = net
        .forward(&gpu, upload(&gpu, shape, &x), Mode::Eval, 1)
        .unwrap();
    assert_eq!(acts.heads.len(), 1);
    assert_eq!(acts.heads[0].level, 1);
    let got = acts.heads[0].logits.to_vec(&gpu).unwrap();
    assert_close("pruned head X(0,1)", &got, &want[0].data, 1e-4, 1e-4);

    // Through the common interface: pruning 0, or 3 on a depth-3 network, is an error, and
    // so is pruning a U-Net++ without deep supervision.
    let network = Network::from(net);
    for prune in [0, 3] {
        let heads = Heads {
            prune: Some(prune),
            average: false,
        };
        assert!(network.check_heads(heads).is_err(), "prune {prune}");
    }
    let single = Network::new(
        &gpu,
        UNetConfig {
            deep_supervision: false,
            ..config
        },
        1,
    )
    .unwrap();
    let pruned = Heads {
        prune: Some(1),
        average: false,
    };
    let err = single.check_heads(pruned).unwrap_err().to_string();
    assert!(err.contains("deep supervision"), "{err}");
    // A U-Net has one head: neither pruning nor averaging applies.
    let unet = Network::new(&gpu, tiny(Padding::Same, 4).with_arch(Arch::UNet), 1).unwrap();
    let average = Heads {
        prune: None,
        average: true,
    };
    assert!(unet.check_heads(average).is_err());
    assert!(unet.check_heads(Heads::default()).is_ok());
}

#[test]
fn deep_supervision_loss_is_the_mean_of_the_heads_losses() {
    let gpu = gpu();
    let config = tiny(Padding::Same, 4);
    let net = Network::new(&gpu, config, 10).unwrap();
    let shape = Shape::new(1, 1, 8, 8);
    let mut r = rng(11);
    let x = random_vec(&mut r, shape.numel());
    let labels: Vec<f32> = (0..64).map(|i| ((i / 3) % 2) as f32).collect();
    let weights: Vec<f32> = (0..64).map(|i| 1.0 + (i % 5) as f32).collect();
    let per_pixel = shape.with_c(1);
    let loss = net
        .loss_and_gradients(
            &gpu,
            upload(&gpu, shape, &x),
            &upload(&gpu, per_pixel, &labels),
            &upload(&gpu, per_pixel, &weights),
            Mode::Eval,
        )
        .unwrap()
        .to_vec(&gpu)
        .unwrap();

    let Network::UNetPlusPlus(inner) = &net else {
        unreachable!()
    };
    let heads = reference::unetpp(
        &config,
        &host_params(&gpu, inner),
        &Host {
            shape,
            data: to_f64(&x),
        },
    );
    let (labels, weights) = (to_f64(&labels), to_f64(&weights));
    let mean = heads
        .iter()
        .map(|h| reference::weighted_cross_entropy(h.shape, &h.data, &labels, &weights))
        .sum::<f64>()
        / heads.len() as f64;
    assert_eq!(heads.len(), 2);
    assert_close("mean of the heads' losses", &loss[..1], &[mean], 1e-5, 1e-4);
    assert_eq!(loss[1], 0.0, "no pixel has an invalid label");
}

/// One synthetic image: bright disks (class 1) on a dark background, labels for every pixel.
fn disks(tile: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let centres = [(0.3, 0.3, 0.18), (0.7, 0.35, 0.15), (0.45, 0.75, 0.2)];
    let inside = |i: usize| {
        let (fy, fx) = (
            (i / tile) as f64 / tile as f64,
            (i % tile) as f64 / tile as f64,
        );
        centres
            .iter()
            .any(|(cy, cx, r)| (fy - cy).powi(2) + (fx - cx).powi(2) < r * r)
    };
    let mut noise = rng(9);
    let image = (0..tile * tile)
        .map(|i| if inside(i) { 0.7 } else { 0.2 } + 0.05 * random_vec(&mut noise, 1)[0])
        .collect();
    let labels = (0..tile * tile)
        .map(|i| f32::from(u8::from(inside(i))))
        .collect();
    (image, labels, vec![1.0; tile * tile])
}

fn small_trainer(gpu: &Gpu) -> Trainer {
    let config = UNetConfig {
        dropout: Some(0.5),
        ..tiny(Padding::Same, 8)
    };
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    Trainer::new(Network::new(gpu, config, 1).unwrap(), sgd, 1)
}

const TILE: usize = 48;

#[test]
fn overfits_one_image() {
    let gpu = gpu();
    gpu.set_poison(false);
    let mut trainer = small_trainer(&gpu);
    let (image, labels, weights) = disks(TILE);
    let batch = Batch {
        input: &image,
        labels: &labels,
        weights: &weights,
        n: 1,
        tile: TILE,
    };
    assert_overfits(&gpu, &mut trainer, &batch, 300);
}

#[test]
fn checkpoint_round_trip_keeps_the_architecture_and_weights() {
    let gpu = gpu();
    let mut trainer = small_trainer(&gpu);
    let (image, labels, weights) = disks(TILE);
    let batch = Batch {
        input: &image,
        labels: &labels,
        weights: &weights,
        n: 1,
        tile: TILE,
    };
    trainer.step(&gpu, &batch).unwrap();
    let loaded = through_checkpoint(&gpu, &trainer, "unetpp-ckpt");

    assert_eq!(loaded.model.config(), trainer.model.config());
    assert_eq!(loaded.step, 1);
    for (a, b) in trainer.model.params().iter().zip(loaded.model.params()) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.value.to_vec(&gpu).unwrap(), b.value.to_vec(&gpu).unwrap());
        assert_eq!(
            a.velocity.to_vec(&gpu).unwrap(),
            b.velocity.to_vec(&gpu).unwrap()
        );
    }
}
