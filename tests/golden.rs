//! Golden test against PyTorch, in the manner of llm.c's test_gpt2.c: a tiny U-Net's
//! weights, input, labels and weight map, with PyTorch's logits, loss, every parameter
//! gradient and the losses and weights of five SGD steps, all from
//! `tests/fixtures/unet_tiny_golden.safetensors`, written by `scripts/make_golden.py`
//! (which says how to regenerate it). No Python is needed to run this test.
//!
//! The references were computed by PyTorch in float64 from the float32 inputs. PyTorch's
//! own float32 run lands within about 4e-6 (logits) and 5e-7 (gradients, losses) of them;
//! the tolerances below leave room for a different order of summation, nothing more.

mod common;

use std::collections::HashMap;

use common::*;
use safetensors::{Dtype, SafeTensors};
use unet_wgpu::model::{Mode, UNet, UNetConfig};
use unet_wgpu::ops::loss::softmax_cross_entropy;
use unet_wgpu::ops::sgd::Sgd;
use unet_wgpu::train::{Batch, Trainer};
use unet_wgpu::{Gpu, Shape};

/// The cases: 1 channel and 2 classes; 3 channels and 3 classes.
const FIXTURES: [&str; 2] = [
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unet_tiny_golden.safetensors"
    ),
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unet_tiny_golden_c3k3.safetensors"
    ),
];

/// Tolerances, |got - want| <= atol + rtol * |want|. Logits and gradients are O(0.01..1)
/// (see make_golden.py's output); the loss is about 4.6.
const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

/// The fixture's tensors (all f32, with their shapes) and its metadata.
struct Fixture {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load(path: &str) -> Fixture {
        let bytes = std::fs::read(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (regenerate with python scripts/make_golden.py)")
        });
        let file = SafeTensors::deserialize(&bytes).expect("fixture is valid safetensors");
        let tensors = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                assert_eq!(view.dtype(), Dtype::F32, "{name}: fixture tensors are f32");
                let values = bytemuck::pod_collect_to_vec(view.data());
                (name, (view.shape().to_vec(), values))
            })
            .collect();
        let (_, header) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let meta = header.metadata().clone().expect("fixture metadata");
        Fixture { tensors, meta }
    }

    fn values(&self, name: &str) -> &[f32] {
        &self.get(name).1
    }

    fn get(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("the fixture has no tensor `{name}`"))
    }

    fn config(&self) -> UNetConfig {
        serde_json::from_str(&self.meta["config"]).expect("config metadata")
    }

    fn number(&self, key: &str) -> f32 {
        self.meta[key].parse().expect("a number")
    }

    fn sgd(&self) -> Sgd {
        Sgd {
            lr: self.number("lr"),
            momentum: self.number("momentum"),
            weight_decay: self.number("weight_decay"),
        }
    }

    /// The training batch: input tiles, labels and weight map.
    fn batch(&self) -> Batch<'_> {
        let (shape, input) = self.get("input");
        let [n, _, tile, _] = shape[..] else {
            panic!("input must be 4-D, is {shape:?}")
        };
        Batch {
            input,
            labels: self.values("labels"),
            weights: self.values("weight_map"),
            n,
            tile,
        }
    }

    /// A network of the fixture's config holding its initial weights, checked to have
    /// exactly the fixture's parameter names and shapes.
    fn model(&self, gpu: &Gpu) -> UNet {
        let model = UNet::new(gpu, self.config(), 0).unwrap();
        let mut ours: Vec<String> = model.params().iter().map(|p| p.name.clone()).collect();
        let mut theirs: Vec<String> =
            serde_json::from_str(&self.meta["param_order"]).expect("param_order metadata");
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "parameter names differ from PyTorch's");
        for p in model.params() {
            let (shape, values) = self.get(&p.name);
            assert_eq!(
                torch_shape(p.shape()),
                *shape,
                "{}: our shape {} vs PyTorch's",
                p.name,
                p.shape()
            );
            p.value.write(gpu, values).unwrap();
        }
        model
    }
}

/// The layout PyTorch stores a parameter in: biases 1-D, weights 4-D.
fn torch_shape(shape: Shape) -> Vec<usize> {
    if shape == Shape::vector(shape.w) {
        vec![shape.w]
    } else {
        vec![shape.n, shape.c, shape.h, shape.w]
    }
}

/// Prints the largest absolute and relative differences (run with --nocapture to see
/// them), then asserts closeness, listing the first mismatches.
fn check(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    let want = to_f64(want);
    let (mut abs, mut rel) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(&want) {
        let d = (f64::from(g) - w).abs();
        abs = abs.max(d);
        if w.abs() > 1e-3 {
            rel = rel.max(d / w.abs());
        }
    }
    eprintln!("{what:28} max abs diff {abs:.3e}, max rel diff {rel:.3e} (|want| > 1e-3)");
    assert_close(what, got, &want, atol, rtol);
}

#[test]
fn forward_and_loss_match_pytorch() {
    let gpu = gpu();
    for fx in FIXTURES.map(Fixture::load) {
        let model = fx.model(&gpu);
        let (shape, input) = fx.get("input");
        let input = upload(
            &gpu,
            Shape::new(shape[0], shape[1], shape[2], shape[3]),
            input,
        );
        let acts = model.forward(&gpu, input, Mode::Eval).unwrap();
        let want_shape = &fx.get("logits").0;
        let s = acts.logits.shape();
        assert_eq!(vec![s.n, s.c, s.h, s.w], *want_shape, "logits shape");
        check(
            "logits",
            &acts.logits.to_vec(&gpu).unwrap(),
            fx.values("logits"),
            ATOL,
            RTOL,
        );

        let per_pixel = s.with_c(1);
        let labels = upload(&gpu, per_pixel, fx.values("labels"));
        let weights = upload(&gpu, per_pixel, fx.values("weight_map"));
        let loss = softmax_cross_entropy(&gpu, &acts.logits, &labels, &weights).unwrap();
        check(
            "loss",
            &loss.loss.to_vec(&gpu).unwrap()[..1],
            fx.values("loss"),
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn every_gradient_matches_pytorch() {
    let gpu = gpu();
    for fx in FIXTURES.map(Fixture::load) {
        let model = fx.model(&gpu);
        let (shape, input) = fx.get("input");
        let input = upload(
            &gpu,
            Shape::new(shape[0], shape[1], shape[2], shape[3]),
            input,
        );
        let acts = model.forward(&gpu, input, Mode::Eval).unwrap();
        let per_pixel = acts.logits.shape().with_c(1);
        let labels = upload(&gpu, per_pixel, fx.values("labels"));
        let weights = upload(&gpu, per_pixel, fx.values("weight_map"));
        let loss = softmax_cross_entropy(&gpu, &acts.logits, &labels, &weights).unwrap();
        model.zero_grads(&gpu);
        model.backward(&gpu, acts, &loss.dlogits).unwrap();
        for p in model.params() {
            check(
                &format!("grad.{}", p.name),
                &p.grad.to_vec(&gpu).unwrap(),
                fx.values(&format!("grad.{}", p.name)),
                ATOL,
                RTOL,
            );
        }
    }
}

#[test]
fn sgd_steps_match_pytorch() {
    let gpu = gpu();
    for fx in FIXTURES.map(Fixture::load) {
        let want_losses = fx.values("losses");
        let steps: usize = fx.meta["steps"].parse().unwrap();
        assert_eq!(want_losses.len(), steps);
        let sgd = fx.sgd();
        assert_eq!(sgd.momentum, 0.99, "the paper's momentum");

        let mut trainer = Trainer::new(fx.model(&gpu), sgd, 0);
        let batch = fx.batch();
        let losses: Vec<f32> = (0..steps)
            .map(|_| trainer.step(&gpu, &batch).unwrap())
            .collect();
        eprintln!("losses {losses:?}\n  PyTorch {want_losses:?}");
        check("losses", &losses, want_losses, ATOL, RTOL);
        for p in trainer.model.params() {
            check(
                &format!("final.{}", p.name),
                &p.value.to_vec(&gpu).unwrap(),
                fx.values(&format!("final.{}", p.name)),
                ATOL,
                RTOL,
            );
        }
    }
}
