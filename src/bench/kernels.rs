//! Per-kernel benchmarks: every pass of every kernel variant on the U-Net's own layer
//! shapes, checked against variant 1 before it is timed.
//!
//! Method: for each layer, pass and variant, (1) check the result against variant 1
//! (direct) on the layer's channels, at full size or, for layers above
//! [`BenchOptions::direct_limit_gflop`], on a crop of at most [`CHECK_CROP`] pixels a side;
//! (2) run it `warmup` times (pipelines built, buffers pooled); (3) time `reps` runs, each
//! with the GPU synchronised inside the timed region ([`Gpu::sync`]), and report the median.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::conv2d::{self, Conv2d, ConvAlgo, GemmTiles, Padding};
use crate::tensor::{Shape, Tensor};

/// Side of the crop on which a layer too large for variant 1 is checked.
pub const CHECK_CROP: usize = 36;

/// One 3x3 convolution layer of the U-Net: its input shape and output channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvLayer {
    pub name: String,
    pub inp: Shape,
    pub c_out: usize,
}

impl ConvLayer {
    pub fn new(name: impl Into<String>, inp: Shape, c_out: usize) -> ConvLayer {
        ConvLayer {
            name: name.into(),
            inp,
            c_out,
        }
    }

    /// The paper's unpadded 3x3 conv with fused ReLU.
    pub fn conv(&self) -> Conv2d {
        Conv2d {
            kernel: 3,
            padding: Padding::Valid,
            relu: true,
        }
    }

    /// FLOPs of one pass: 2 * multiply-adds (one multiply and one add each). The forward,
    /// backward-input and backward-weight passes each do the same multiply-adds,
    /// N * C_out * H_out * W_out * C_in * k * k.
    pub fn flops(&self) -> Result<f64> {
        Ok(2.0 * self.conv().macs(self.inp, self.c_out)? as f64)
    }
}

/// The paper's 18 3x3 convolutions for one 572 x 572 tile (1 input channel), in order:
/// two per level down (enc0..enc3), two at the bottom (enc4), two per level up (dec3..dec0).
/// The first conv of each decoder level reads the concatenation of skip and up-sampled maps.
pub fn paper_layers() -> Vec<ConvLayer> {
    let mut layers = Vec::new();
    let mut size = 572;
    let mut c_in = 1;
    for (level, width) in [64, 128, 256, 512, 1024].into_iter().enumerate() {
        layers.push(ConvLayer::new(
            format!("enc{level}.conv1"),
            Shape::new(1, c_in, size, size),
            width,
        ));
        layers.push(ConvLayer::new(
            format!("enc{level}.conv2"),
            Shape::new(1, width, size - 2, size - 2),
            width,
        ));
        c_in = width;
        size = (size - 4) / 2; // two valid convs, then a 2x2 max-pool
    }
    // The loop halved once past the bottom (28 x 28 out -> 14); the up-convolution doubles
    // 28 to 56, the first decoder level's input.
    size = (size * 2) * 2;
    for (level, width) in [(3, 512), (2, 256), (1, 128), (0, 64)] {
        // Up-convolution halves the channels; the skip brings as many again.
        layers.push(ConvLayer::new(
            format!("dec{level}.conv1"),
            Shape::new(1, 2 * width, size, size),
            width,
        ));
        layers.push(ConvLayer::new(
            format!("dec{level}.conv2"),
            Shape::new(1, width, size - 2, size - 2),
            width,
        ));
        size = (size - 4) * 2;
    }
    layers
}

/// The paper's layers with a quarter of the channels (the 1-channel input stays 1) and
/// half the spatial size: the quick set for slow devices.
pub fn small_layers() -> Vec<ConvLayer> {
    paper_layers()
        .into_iter()
        .map(|l| {
            let c_in = if l.inp.c == 1 { 1 } else { l.inp.c / 4 };
            let inp = Shape::new(1, c_in, l.inp.h / 2, l.inp.w / 2);
            ConvLayer::new(l.name, inp, l.c_out / 4)
        })
        .collect()
}

/// Parses "N,C_in,H,W,C_out" (the `--conv` option) into a layer named "conv".
pub fn parse_conv_spec(spec: &str) -> Result<ConvLayer> {
    let bad = || {
        Error::shape(
            "bench --conv",
            format!(
                "{spec:?} is not N,C_in,H,W,C_out (five positive integers, e.g. 1,64,284,284,64)"
            ),
        )
    };
    let v: Vec<usize> = spec
        .split(',')
        .map(|s| s.trim().parse().ok().filter(|&x: &usize| x > 0))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    match v[..] {
        [n, c, h, w, c_out] => Ok(ConvLayer::new("conv", Shape::new(n, c, h, w), c_out)),
        _ => Err(bad()),
    }
}

/// A pass of a kernel: the three of a convolution, and those of the other ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pass {
    Forward,
    BackwardInput,
    /// dweight and dbias (`backward_params`).
    BackwardWeight,
    /// The whole backward of an op with one backward launcher.
    Backward,
    /// The loss and its gradient in one launch.
    ForwardBackward,
    /// The optimiser's update.
    Update,
}

impl Pass {
    /// The passes of a convolution.
    pub const ALL: [Pass; 3] = [Pass::Forward, Pass::BackwardInput, Pass::BackwardWeight];
    pub fn name(&self) -> &'static str {
        match self {
            Pass::Forward => "forward",
            Pass::BackwardInput => "backward_input",
            Pass::BackwardWeight => "backward_weight",
            Pass::Backward => "backward",
            Pass::ForwardBackward => "forward_backward",
            Pass::Update => "update",
        }
    }
}

/// One timed (layer, pass, variant).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub pass: Pass,
    pub variant: String,
    /// "N x C_in x H x W -> C_out" (convolutions), the op's shapes otherwise.
    pub shape: String,
    /// Median wall time of one synchronised run.
    pub ms: f64,
    /// FLOPs / time, FLOPs = 2 x multiply-adds; None for ops without arithmetic to speak of.
    pub gflops: Option<f64>,
    /// Bytes the pass must read and write / time (memory-bound ops; formulas in
    /// [`super::ops`]); None for the 3x3 convolutions, which are compute-bound.
    pub gbps: Option<f64>,
    /// Variant 1's median time over this one's; None where variant 1 was not timed.
    pub speedup: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Timed runs per measurement (the median is reported).
    pub reps: usize,
    /// Untimed runs first.
    pub warmup: usize,
    /// The variants to time; variant 1 is always run for the check.
    pub variants: Vec<ConvAlgo>,
    /// Layers whose pass costs more than this many GFLOP are not timed with variant 1 and
    /// are checked on a crop (variant 1 is very slow on software drivers).
    pub direct_limit_gflop: f64,
    /// Check against variant 1 before timing (off only for tuning experiments).
    pub check: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            reps: 5,
            warmup: 1,
            variants: vec![ConvAlgo::Direct, ConvAlgo::Gemm, ConvAlgo::Tiled],
            direct_limit_gflop: f64::INFINITY,
            check: true,
        }
    }
}

/// The operands of one layer, on the GPU.
struct Operands {
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
    /// The forward's output (relu' for the backward) and a random upstream gradient.
    out: Tensor,
    dout: Tensor,
    dweight: Tensor,
    dbias: Tensor,
}

impl Operands {
    fn new(gpu: &Gpu, layer: &ConvLayer, seed: u64) -> Result<Operands> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut random = |shape: Shape, name: &str| {
            let data: Vec<f32> = (0..shape.numel())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            Tensor::from_slice(gpu, shape, &data, name)
        };
        let conv = layer.conv();
        let wshape = conv.weight_shape(layer.inp.c, layer.c_out);
        let out_shape = conv.out_shape(layer.inp, layer.c_out)?;
        let inp = random(layer.inp, "bench inp")?;
        let weight = random(wshape, "bench weight")?;
        let bias = random(Shape::vector(layer.c_out), "bench bias")?;
        let dout = random(out_shape, "bench dout")?;
        let out = conv2d::forward_with(gpu, ConvAlgo::Direct, &conv, &inp, &weight, &bias)?;
        Ok(Operands {
            dweight: Tensor::zeros(gpu, wshape, "bench dweight")?,
            dbias: Tensor::zeros(gpu, Shape::vector(layer.c_out), "bench dbias")?,
            inp,
            weight,
            bias,
            out,
            dout,
        })
    }

    /// Records one run of `pass` with `algo`; returns the tensor it produced.
    fn run(
        &self,
        gpu: &Gpu,
        layer: &ConvLayer,
        pass: Pass,
        algo: ConvAlgo,
    ) -> Result<Option<Tensor>> {
        let conv = layer.conv();
        match pass {
            Pass::Forward => {
                conv2d::forward_with(gpu, algo, &conv, &self.inp, &self.weight, &self.bias)
                    .map(Some)
            }
            Pass::BackwardInput => conv2d::backward_input_with(
                gpu,
                algo,
                &conv,
                layer.inp,
                &self.weight,
                &self.out,
                &self.dout,
            )
            .map(Some),
            Pass::BackwardWeight => {
                let (dw, db) = (&self.dweight, &self.dbias);
                conv2d::backward_params_with(
                    gpu, algo, &conv, &self.inp, &self.out, &self.dout, dw, db,
                )?;
                Ok(None)
            }
            Pass::Backward | Pass::ForwardBackward | Pass::Update => Err(Error::Config(format!(
                "{} is not a pass of a convolution",
                pass.name()
            ))),
        }
    }

    /// The result of `pass` with `algo` read back (dweight then dbias, freshly zeroed, for
    /// the weight pass).
    fn result(&self, gpu: &Gpu, layer: &ConvLayer, pass: Pass, algo: ConvAlgo) -> Result<Vec<f32>> {
        self.dweight.zero(gpu);
        self.dbias.zero(gpu);
        match self.run(gpu, layer, pass, algo)? {
            Some(t) => t.to_vec(gpu),
            None => {
                let mut v = self.dweight.to_vec(gpu)?;
                v.extend(self.dbias.to_vec(gpu)?);
                Ok(v)
            }
        }
    }
}

/// Checks `algo` against variant 1 on `layer`: |a - b| <= 1e-3 * (1 + max |b|) elementwise
/// (the sums run in another order, over up to C_in * 9 or N * H * W terms).
fn check(gpu: &Gpu, layer: &ConvLayer, pass: Pass, algo: ConvAlgo) -> Result<()> {
    let ops = Operands::new(gpu, layer, 1)?;
    let want = ops.result(gpu, layer, pass, ConvAlgo::Direct)?;
    let got = ops.result(gpu, layer, pass, algo)?;
    let scale = 1.0 + want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let bad = got
        .iter()
        .zip(&want)
        // Written so that a NaN counts as a mismatch.
        .position(|(g, w)| (g - w).abs().is_nan() || (g - w).abs() > 1e-3 * scale);
    match bad {
        None => Ok(()),
        Some(i) => Err(Error::Device(format!(
            "bench check: {} {} {:?} differs from variant 1 at [{i}]: {} vs {}",
            layer.name,
            pass.name(),
            algo,
            got[i],
            want[i]
        ))),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        0.5 * (v[mid - 1] + v[mid])
    }
}

/// Median milliseconds of `reps` synchronised runs of `run`, after `warmup` untimed ones.
pub fn time_median(
    gpu: &Gpu,
    opts: &BenchOptions,
    run: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..opts.warmup {
        run()?;
        gpu.sync()?;
    }
    let mut times = Vec::with_capacity(opts.reps);
    for _ in 0..opts.reps.max(1) {
        let start = Instant::now();
        run()?;
        gpu.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

/// Median milliseconds of `reps` synchronised runs of `pass` with `algo`.
fn time(
    gpu: &Gpu,
    ops: &Operands,
    layer: &ConvLayer,
    pass: Pass,
    algo: ConvAlgo,
    opts: &BenchOptions,
) -> Result<f64> {
    time_median(gpu, opts, &mut || ops.run(gpu, layer, pass, algo).map(drop))
}

/// Benchmarks the three passes of one layer with every variant in `opts`.
pub fn bench_conv_layer(gpu: &Gpu, layer: &ConvLayer, opts: &BenchOptions) -> Result<Vec<Report>> {
    let flops = layer.flops()?;
    let big = flops > opts.direct_limit_gflop * 1e9;
    let check_layer = if big {
        let side = |s: usize| s.min(CHECK_CROP);
        let inp = Shape::new(
            layer.inp.n,
            layer.inp.c,
            side(layer.inp.h),
            side(layer.inp.w),
        );
        ConvLayer::new(format!("{} (crop)", layer.name), inp, layer.c_out)
    } else {
        layer.clone()
    };
    let ops = Operands::new(gpu, layer, 2)?;
    let shape = format!(
        "{}x{}x{}x{} -> {}",
        layer.inp.n, layer.inp.c, layer.inp.h, layer.inp.w, layer.c_out
    );
    let mut reports = Vec::new();
    for pass in Pass::ALL {
        let mut direct_ms = None;
        for &algo in &opts.variants {
            if algo == ConvAlgo::Gemm && GemmTiles::for_device(gpu, 3).is_none() {
                // Without subgroups variant 2 would only run variant 1 again.
                continue;
            }
            if algo != ConvAlgo::Direct {
                if opts.check {
                    check(gpu, &check_layer, pass, algo)?;
                }
            } else if big {
                continue;
            }
            let ms = time(gpu, &ops, layer, pass, algo, opts)?;
            if algo == ConvAlgo::Direct {
                direct_ms = Some(ms);
            }
            reports.push(Report {
                name: layer.name.clone(),
                pass,
                variant: algo.name().to_string(),
                shape: shape.clone(),
                ms,
                gflops: Some(flops / (ms * 1e6)),
                gbps: None,
                speedup: direct_ms.map(|d| d / ms),
            });
        }
    }
    gpu.trim_pool();
    Ok(reports)
}

/// Benchmarks a set of layers ([`paper_layers`] or [`small_layers`]), printing each row
/// as it is measured when `progress` is set.
pub fn bench_conv_layers(
    gpu: &Gpu,
    layers: &[ConvLayer],
    opts: &BenchOptions,
    progress: bool,
) -> Result<Vec<Report>> {
    let mut all = Vec::new();
    if progress {
        println!("{}", header());
    }
    for layer in layers {
        let reports = bench_conv_layer(gpu, layer, opts)?;
        if progress {
            for r in &reports {
                println!("{}", row(r));
            }
        }
        all.extend(reports);
    }
    Ok(all)
}

/// The single-shape entry point (`--conv N,C_in,H,W,C_out`).
pub fn bench_conv_spec(gpu: &Gpu, spec: &str, opts: &BenchOptions) -> Result<Vec<Report>> {
    bench_conv_layer(gpu, &parse_conv_spec(spec)?, opts)
}

pub(super) fn header() -> String {
    format!(
        "{:<15} {:<16} {:<7} {:<40} {:>10} {:>9} {:>7} {:>8}",
        "layer", "pass", "variant", "shape", "ms", "GFLOP/s", "GB/s", "speedup"
    )
}

pub(super) fn row(r: &Report) -> String {
    let figure = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let speedup = r.speedup.map_or("-".to_string(), |s| format!("{s:.1}x"));
    format!(
        "{:<15} {:<16} {:<7} {:<40} {:>10.2} {:>9} {:>7} {:>8}",
        r.name,
        r.pass.name(),
        r.variant,
        r.shape,
        r.ms,
        figure(r.gflops),
        figure(r.gbps),
        speedup
    )
}

/// The autotuner's choices so far ([`crate::gpu::autotune`]), each with where it came from
/// and every candidate's median ms (fastest first): what `auto` ran, and why.
pub fn print_autotune_choices(gpu: &Gpu) {
    let tuner = gpu.autotune();
    println!(
        "\nautotune ({}; cache {}):",
        tuner.mode().name(),
        tuner
            .cache_path()
            .map_or("none".to_string(), |p| p.display().to_string())
    );
    for d in tuner.decisions() {
        println!(
            "  {:<52} -> {:<22} ({:?}) ms: {}",
            d.key,
            d.tuned.choice,
            d.source,
            d.tuned.timings_text()
        );
    }
}

/// Prints reports as a table.
pub fn print_reports(reports: &[Report]) {
    println!("{}", header());
    for r in reports {
        println!("{}", row(r));
    }
}
