//! Benchmarks of the U-Net's other ops: up-convolution, max-pool, crop+concat, the loss,
//! dropout and the SGD step, on the shapes they have in the network.
//!
//! Most of these are memory-bound, so besides the time each row gives the bandwidth
//! GB/s = bytes / time, where `bytes` is what the pass must read and write at least
//! (every input element read once, every output element written once; f32 and u32 are
//! 4 bytes), the formula next to each op below. The up-convolution also does real
//! arithmetic and reports GFLOP/s (FLOPs = 2 x multiply-adds) as well.
//!
//! Each op has one implementation, so there is no variant 1 to check against or to
//! compare with: the speedup column is "-". Their numerics are checked by
//! `tests/op_*.rs` against f64 CPU references; here they are only timed, with the same
//! method as the convolutions ([`super::kernels`]): warm-up runs, then the median of
//! `reps` runs, each with the device synchronised inside the timed region.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::kernels::{time_median, BenchOptions, Pass, Report};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::activation::{dropout_backward, dropout_forward, DropoutMask};
use crate::ops::loss::softmax_cross_entropy;
use crate::ops::sgd::Sgd;
use crate::ops::{conv_transpose, crop_concat, max_pool};
use crate::tensor::{Shape, Tensor};

/// Parameters of the paper's U-Net (1 input channel, 2 classes).
const PAPER_PARAMS: usize = 31_030_658;

/// Where each op runs in the U-Net, level by level, for one tile.
#[derive(Clone, Debug)]
pub struct OpShapes {
    /// Max-pool inputs = the skip maps, levels 0..3 (paper: [1, 64, 568, 568] ...).
    pub pool_inputs: Vec<Shape>,
    /// Up-convolution inputs into decoder levels 0..3 and their output channels
    /// (paper: [1, 128, 196, 196] -> 64 ...).
    pub up_inputs: Vec<(Shape, usize)>,
    /// The logits: [1, 2, 388, 388] in the paper.
    pub logits: Shape,
    /// The bottom map dropout acts on: [1, 1024, 28, 28].
    pub dropout: Shape,
    /// Parameters the SGD step updates (as one tensor).
    pub params: usize,
}

impl OpShapes {
    /// The paper's network on a 572 x 572 tile.
    pub fn paper() -> OpShapes {
        Self::scaled(1, 1)
    }

    /// A quarter of the channels and half the size, like [`super::kernels::small_layers`].
    pub fn small() -> OpShapes {
        Self::scaled(4, 2)
    }

    fn scaled(channel_div: usize, size_div: usize) -> OpShapes {
        // Sizes of the paper's U-Net: level l's skip map (max-pool input) and the map
        // its up-convolution reads (the level below's output).
        const SKIP: [usize; 4] = [568, 280, 136, 64];
        const BELOW: [usize; 4] = [196, 100, 52, 28];
        let c = |l: usize| (64 << l) / channel_div;
        let s = |size: usize| size / size_div;
        OpShapes {
            pool_inputs: (0..4)
                .map(|l| Shape::new(1, c(l), s(SKIP[l]), s(SKIP[l])))
                .collect(),
            up_inputs: (0..4)
                .map(|l| (Shape::new(1, 2 * c(l), s(BELOW[l]), s(BELOW[l])), c(l)))
                .collect(),
            logits: Shape::new(1, 2, s(388), s(388)),
            dropout: Shape::new(1, c(4), s(28), s(28)),
            params: PAPER_PARAMS / (channel_div * channel_div),
        }
    }
}

/// Random values in [-1, 1) for the operands.
struct Random(ChaCha8Rng);

impl Random {
    fn tensor(&mut self, gpu: &Gpu, shape: Shape, name: &str) -> Result<Tensor> {
        let data: Vec<f32> = (0..shape.numel())
            .map(|_| self.0.random_range(-1.0..1.0))
            .collect();
        Tensor::from_slice(gpu, shape, &data, name)
    }
}

/// Builds a report row for an op with one implementation.
struct Row<'a> {
    name: String,
    shape: String,
    opts: &'a BenchOptions,
}

impl Row<'_> {
    /// Times `run` and reports it with its minimum traffic `bytes` and, if it has real
    /// arithmetic, its `flops`.
    fn time(
        &self,
        gpu: &Gpu,
        pass: Pass,
        bytes: usize,
        flops: Option<f64>,
        mut run: impl FnMut() -> Result<()>,
    ) -> Result<Report> {
        let ms = time_median(gpu, self.opts, &mut run)?;
        Ok(Report {
            name: self.name.clone(),
            pass,
            variant: "1".to_string(),
            shape: self.shape.clone(),
            ms,
            gflops: flops.map(|f| f / (ms * 1e6)),
            gbps: Some(bytes as f64 / (ms * 1e6)),
            speedup: None,
        })
    }
}

fn dims(s: Shape) -> String {
    format!("{}x{}x{}x{}", s.n, s.c, s.h, s.w)
}

/// 2x2 max-pool, forward and the backward U-Net uses (`backward_add`).
fn bench_max_pool(gpu: &Gpu, level: usize, inp: Shape, opts: &BenchOptions) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(10 + level as u64));
    let x = rng.tensor(gpu, inp, "bench pool inp")?;
    let out = max_pool::out_shape(inp);
    let dout = rng.tensor(gpu, out, "bench pool dout")?;
    let dinp = rng.tensor(gpu, inp, "bench pool dinp")?;
    let (_, saved) = max_pool::forward(gpu, &x)?;
    let row = Row {
        name: format!("enc{level}.pool"),
        shape: format!("{} -> {}", dims(inp), dims(out)),
        opts,
    };
    let (i, o) = (inp.numel(), out.numel());
    Ok(vec![
        // Forward: read inp, write out and argmax: 4 * (i + 2 o) bytes.
        row.time(gpu, Pass::Forward, 4 * (i + 2 * o), None, || {
            max_pool::forward(gpu, &x).map(drop)
        })?,
        // Backward (adding into dinp): read dout and argmax, read and write dinp:
        // 4 * (2 o + 2 i) bytes.
        row.time(gpu, Pass::Backward, 4 * (2 * o + 2 * i), None, || {
            max_pool::backward_add(gpu, &dout, &saved, &dinp)
        })?,
    ])
}

/// 2x2 stride-2 up-convolution (transposed conv), forward and backward.
fn bench_up_conv(
    gpu: &Gpu,
    level: usize,
    inp: Shape,
    c_out: usize,
    opts: &BenchOptions,
) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(20 + level as u64));
    let x = rng.tensor(gpu, inp, "bench up inp")?;
    let wshape = conv_transpose::weight_shape(inp.c, c_out);
    let weight = rng.tensor(gpu, wshape, "bench up weight")?;
    let bias = rng.tensor(gpu, Shape::vector(c_out), "bench up bias")?;
    let out = conv_transpose::out_shape(inp, c_out);
    let dout = rng.tensor(gpu, out, "bench up dout")?;
    let dweight = Tensor::zeros(gpu, wshape, "bench up dweight")?;
    let dbias = Tensor::zeros(gpu, Shape::vector(c_out), "bench up dbias")?;
    let row = Row {
        name: format!("dec{level}.up"),
        shape: format!("{} -> {}", dims(inp), dims(out)),
        opts,
    };
    let (i, o, w) = (inp.numel(), out.numel(), wshape.numel());
    // Each output element is a dot product over C_in: MACs = out elements * C_in.
    let flops = 2.0 * (o * inp.c) as f64;
    Ok(vec![
        // Forward: read inp, weight, bias, write out: 4 * (i + w + C_out + o) bytes.
        row.time(
            gpu,
            Pass::Forward,
            4 * (i + w + c_out + o),
            Some(flops),
            || conv_transpose::forward(gpu, &x, &weight, &bias).map(drop),
        )?,
        // Backward: read dout, weight and inp, write dinp, read and write dweight and
        // dbias: 4 * (o + w + i + i + 2 w + 2 C_out) bytes. dinp and dweight cost one
        // forward's multiply-adds each.
        row.time(
            gpu,
            Pass::Backward,
            4 * (o + 3 * w + 2 * i + 2 * c_out),
            Some(2.0 * flops),
            || conv_transpose::backward(gpu, &x, &weight, &dout, &dweight, &dbias).map(drop),
        )?,
    ])
}

/// Centre-crop of the skip map and concatenation with the up-sampled map.
fn bench_crop_concat(
    gpu: &Gpu,
    level: usize,
    skip: Shape,
    up: Shape,
    opts: &BenchOptions,
) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(30 + level as u64));
    let s = rng.tensor(gpu, skip, "bench concat skip")?;
    let u = rng.tensor(gpu, up, "bench concat up")?;
    let out = up.with_c(skip.c + up.c);
    let dout = rng.tensor(gpu, out, "bench concat dout")?;
    let row = Row {
        name: format!("dec{level}.concat"),
        shape: format!("{} + {} -> {}", dims(skip), dims(up), dims(out)),
        opts,
    };
    let (o, sk, un) = (out.numel(), skip.numel(), up.numel());
    Ok(vec![
        // Forward: read the crop window of skip and all of up, write out: 4 * 2 o bytes.
        row.time(gpu, Pass::Forward, 4 * 2 * o, None, || {
            crop_concat::forward(gpu, &s, &u).map(drop)
        })?,
        // Backward: read dout, write dskip (zeros outside the window) and dup:
        // 4 * (o + skip + up) bytes.
        row.time(gpu, Pass::Backward, 4 * (o + sk + un), None, || {
            crop_concat::backward(gpu, &dout, skip).map(drop)
        })?,
    ])
}

/// The fused softmax + weighted cross-entropy and its gradient.
fn bench_loss(gpu: &Gpu, logits: Shape, opts: &BenchOptions) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(40));
    let z = rng.tensor(gpu, logits, "bench logits")?;
    let pixels = logits.with_c(1);
    let labels: Vec<f32> = (0..pixels.numel())
        .map(|_| rng.0.random_range(0..logits.c) as f32)
        .collect();
    let labels = Tensor::from_slice(gpu, pixels, &labels, "bench labels")?;
    let weights: Vec<f32> = (0..pixels.numel())
        .map(|_| rng.0.random_range(1.0..11.0))
        .collect();
    let weights = Tensor::from_slice(gpu, pixels, &weights, "bench weights")?;
    let row = Row {
        name: "loss".to_string(),
        shape: dims(logits),
        opts,
    };
    let (zn, p) = (logits.numel(), pixels.numel());
    // Read logits, labels and weights, write dlogits (the partial sums are 1/256 of a
    // pixel each, left out): 4 * (2 K P + 2 P) bytes.
    let report = row.time(
        gpu,
        Pass::ForwardBackward,
        4 * (2 * zn + 2 * p),
        None,
        || softmax_cross_entropy(gpu, &z, &labels, &weights).map(drop),
    )?;
    Ok(vec![report])
}

/// Dropout at the bottom of the network, forward and backward (the same kernel).
fn bench_dropout(gpu: &Gpu, shape: Shape, opts: &BenchOptions) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(50));
    let x = rng.tensor(gpu, shape, "bench dropout inp")?;
    let mask = DropoutMask::new(7, 0.5)?;
    let row = Row {
        name: "bottom.dropout".to_string(),
        shape: dims(shape),
        opts,
    };
    // Read one tensor, write one: 4 * 2 n bytes (the mask is a hash, not stored).
    let bytes = 4 * 2 * shape.numel();
    Ok(vec![
        row.time(gpu, Pass::Forward, bytes, None, || {
            dropout_forward(gpu, &x, mask).map(drop)
        })?,
        row.time(gpu, Pass::Backward, bytes, None, || {
            dropout_backward(gpu, &x, mask).map(drop)
        })?,
    ])
}

/// One SGD-with-momentum update of every parameter, as one tensor.
fn bench_sgd(gpu: &Gpu, params: usize, opts: &BenchOptions) -> Result<Vec<Report>> {
    let mut rng = Random(ChaCha8Rng::seed_from_u64(60));
    let shape = Shape::vector(params);
    let p = rng.tensor(gpu, shape, "bench param")?;
    let g = rng.tensor(gpu, shape, "bench grad")?;
    let v = Tensor::zeros(gpu, shape, "bench velocity")?;
    // A tiny rate keeps the parameters finite however many runs there are.
    let sgd = Sgd {
        lr: 1e-6,
        ..Sgd::default()
    };
    let row = Row {
        name: "sgd".to_string(),
        shape: format!("{params} parameters"),
        opts,
    };
    // Read param, grad, velocity, write param, velocity: 4 * 5 n bytes.
    let report = row.time(gpu, Pass::Update, 4 * 5 * params, None, || {
        sgd.step(gpu, &p, &g, &v)
    })?;
    Ok(vec![report])
}

/// Every op on its U-Net shapes, printing each row as it is measured when `progress`.
pub fn bench_ops(
    gpu: &Gpu,
    shapes: &OpShapes,
    opts: &BenchOptions,
    progress: bool,
) -> Result<Vec<Report>> {
    let mut all = Vec::new();
    let mut add = |reports: Vec<Report>| {
        if progress {
            for r in &reports {
                println!("{}", super::kernels::row(r));
            }
        }
        all.extend(reports);
        gpu.trim_pool();
    };
    for (level, &inp) in shapes.pool_inputs.iter().enumerate() {
        add(bench_max_pool(gpu, level, inp, opts)?);
    }
    for (level, &(inp, c_out)) in shapes.up_inputs.iter().enumerate().rev() {
        add(bench_up_conv(gpu, level, inp, c_out, opts)?);
        let up = conv_transpose::out_shape(inp, c_out);
        add(bench_crop_concat(
            gpu,
            level,
            shapes.pool_inputs[level],
            up,
            opts,
        )?);
    }
    add(bench_dropout(gpu, shapes.dropout, opts)?);
    add(bench_loss(gpu, shapes.logits, opts)?);
    add(bench_sgd(gpu, shapes.params, opts)?);
    Ok(all)
}
