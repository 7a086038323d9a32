//! Autotuning: the first time a convolution (or up-convolution) pass meets a shape on a
//! device, time each variant and a few tile sizes that fit it, and keep the fastest.
//!
//! [`ConvAlgo::Auto`] consults the device's store ([`crate::gpu::autotune`], which says
//! where the choices are kept and how `UNET_AUTOTUNE=off|cached|on` behaves). Explicit
//! variants are never tuned. Each candidate is checked to run on the device (the tiles'
//! `check`) before it is timed: one untimed run (pipelines built, buffers pooled), then
//! runs synchronised with the GPU ([`Gpu::sync`]) until [`BUDGET_MS`] or [`MAX_REPS`];
//! a candidate whose first run takes more than twice the best so far stops there. The
//! lowest median goes on to a head-to-head with the device's untuned choice (what
//! `UNET_AUTOTUNE=off` runs, [`untuned_choice`]): the two are timed in turn
//! [`DUEL_ROUNDS`] times each, and the challenger wins only if it is at least [`MARGIN`]
//! faster there. So a burst of other work during one candidate's few runs cannot make
//! the tuner pick something slower than the default. Inside a memory-planning dry run the
//! timing runs for real, on its own buffers, so the plan records the kernels the real
//! steps will run.

use std::time::Instant;

use super::{Conv2d, ConvAlgo, GemmTiles, TiledTiles, UPCONV_GEMM};
use crate::error::{Error, Result};
use crate::gpu::autotune::Source;
use crate::gpu::{Gpu, TuneMode, Tuned};
use crate::ops::conv_transpose;
use crate::tensor::{Shape, Tensor};

/// Timed runs per candidate at most, and the time after which no further run starts.
pub const MAX_REPS: usize = 5;
pub const BUDGET_MS: f64 = 10.0;
/// Turns each of the head-to-head between the fastest candidate and the untuned choice.
pub const DUEL_ROUNDS: usize = 3;
/// How much faster than the untuned choice a candidate must be in the head-to-head to
/// replace it (a fraction of the untuned median).
pub const MARGIN: f64 = 0.05;
/// Passes of more multiply-adds than this do not try variant 1 (it is far slower on
/// large layers, and on software drivers one run takes seconds).
const DIRECT_MAX_MACS: u64 = 1 << 30;

/// The launcher a choice is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunedPass {
    Forward,
    BackwardInput,
    /// dweight and dbias.
    BackwardParams,
    /// The 2x2 up-convolution's forward and its whole backward.
    UpForward,
    UpBackward,
}

impl TunedPass {
    pub fn name(&self) -> &'static str {
        match self {
            TunedPass::Forward => "forward",
            TunedPass::BackwardInput => "backward_input",
            TunedPass::BackwardParams => "backward_params",
            TunedPass::UpForward => "up_forward",
            TunedPass::UpBackward => "up_backward",
        }
    }

    fn is_upconv(&self) -> bool {
        matches!(self, TunedPass::UpForward | TunedPass::UpBackward)
    }
}

/// One pass on one shape: what a choice is keyed by.
#[derive(Clone, Copy, Debug)]
pub struct Problem {
    pub pass: TunedPass,
    /// The convolution ([`UPCONV_GEMM`] for the up-convolution).
    pub conv: Conv2d,
    pub inp: Shape,
    pub c_out: usize,
}

impl Problem {
    /// A pass of a convolution.
    pub fn conv(pass: TunedPass, conv: &Conv2d, inp: Shape, c_out: usize) -> Problem {
        Problem {
            pass,
            conv: *conv,
            inp,
            c_out,
        }
    }

    /// A pass of the 2x2 up-convolution from `inp` to `c_out` channels.
    pub fn upconv(pass: TunedPass, inp: Shape, c_out: usize) -> Problem {
        Problem {
            pass,
            conv: UPCONV_GEMM,
            inp,
            c_out,
        }
    }

    /// The key in the files, e.g. `conv3x3 valid relu forward 1x64x140x140->64`.
    pub fn key(&self) -> String {
        let i = self.inp;
        let shape = format!("{}x{}x{}x{}->{}", i.n, i.c, i.h, i.w, self.c_out);
        if self.pass.is_upconv() {
            return format!("upconv2x2 {} {shape}", self.pass.name());
        }
        let k = self.conv.kernel;
        let pad = format!("{:?}", self.conv.padding).to_lowercase();
        let relu = if self.conv.relu { " relu" } else { "" };
        format!("conv{k}x{k} {pad}{relu} {} {shape}", self.pass.name())
    }

    /// Rows of the pass's GEMM (what the tiles' `bm` covers).
    fn gemm_rows(&self) -> usize {
        match self.pass {
            TunedPass::Forward | TunedPass::BackwardParams => self.c_out,
            TunedPass::BackwardInput | TunedPass::UpBackward => self.inp.c,
            TunedPass::UpForward => 4 * self.c_out,
        }
    }

    fn macs(&self) -> u64 {
        if self.pass.is_upconv() {
            (self.inp.numel() * 4 * self.c_out) as u64
        } else {
            self.conv.macs(self.inp, self.c_out).unwrap_or(u64::MAX)
        }
    }
}

/// A choice's name in the files and reports: `direct`, `gemm` (default tiles),
/// `gemm wg,mi,rows,quads,bw_ci,bw_rows,bw_quads,min_workgroups`, `tiled`, `tiled BMxBNxBK`.
pub fn choice_name(algo: &ConvAlgo) -> String {
    match algo {
        ConvAlgo::GemmTiled(t) => format!(
            "gemm {},{},{},{},{},{},{},{}",
            t.wg, t.mi, t.rows, t.quads, t.bw_ci, t.bw_rows, t.bw_quads, t.min_workgroups
        ),
        ConvAlgo::TiledWith(t) => format!("tiled {}x{}x{}", t.bm, t.bn, t.bk),
        other => other.name().to_string(),
    }
}

/// The choice named `name` ([`choice_name`]), if it is one.
pub fn parse_choice(name: &str) -> Option<ConvAlgo> {
    let numbers = |s: &str, sep: char| -> Option<Vec<u32>> {
        s.split(sep).map(|v| v.trim().parse().ok()).collect()
    };
    match name.trim().split_once(' ') {
        None => match name.trim() {
            "direct" => Some(ConvAlgo::Direct),
            "gemm" => Some(ConvAlgo::Gemm),
            "tiled" => Some(ConvAlgo::Tiled),
            "auto" => Some(ConvAlgo::Auto),
            _ => None,
        },
        Some(("gemm", rest)) => match numbers(rest, ',')?[..] {
            [wg, mi, rows, quads, bw_ci, bw_rows, bw_quads, min_workgroups] => {
                Some(ConvAlgo::GemmTiled(GemmTiles {
                    wg,
                    mi,
                    rows,
                    quads,
                    bw_ci,
                    bw_rows,
                    bw_quads,
                    min_workgroups,
                }))
            }
            _ => None,
        },
        Some(("tiled", rest)) => match numbers(rest, 'x')?[..] {
            [bm, bn, bk] => Some(ConvAlgo::TiledWith(TiledTiles { bm, bn, bk })),
            _ => None,
        },
        _ => None,
    }
}

/// What `algo` runs for `problem`: itself unless it is [`ConvAlgo::Auto`]; for Auto, the
/// device's choice for the shape (tuned now where the mode says so), or Auto itself (the
/// device's default) where there is none.
pub(super) fn resolve(gpu: &Gpu, algo: ConvAlgo, problem: &Problem) -> Result<ConvAlgo> {
    if algo != ConvAlgo::Auto {
        return Ok(algo);
    }
    let mode = gpu.autotune().mode();
    if mode == TuneMode::Off {
        return Ok(algo);
    }
    let key = problem.key();
    let found = gpu.autotune().lookup(&key);
    if let Some((tuned, source)) = found {
        match parse_choice(&tuned.choice).filter(|a| runs(gpu, a, problem)) {
            Some(chosen) => {
                gpu.autotune().record(&key, tuned, source);
                return Ok(chosen);
            }
            None => eprintln!(
                "warning: autotune choice {:?} for {key} cannot run on this device; ignored",
                tuned.choice
            ),
        }
    }
    if mode == TuneMode::Cached {
        return Ok(algo);
    }
    let tuned = gpu.outside_dry_run(|| tune(gpu, problem))?;
    // The timing's operands are free now: give their memory back rather than keep it.
    gpu.trim_pool();
    let chosen = parse_choice(&tuned.choice).expect("a candidate's name parses");
    gpu.autotune().record(&key, tuned, Source::Tuned);
    Ok(chosen)
}

/// What `gpu` runs for `problem` without tuning (`UNET_AUTOTUNE=off`), with its tiles
/// spelled out so that it can be timed as a candidate: variant 2's default tiles on CPU
/// devices with subgroup operations, variant 3's default tiles for the pass's rows
/// elsewhere.
pub fn untuned_choice(gpu: &Gpu, problem: &Problem) -> ConvAlgo {
    match ConvAlgo::Auto.variant(gpu, problem.conv.kernel) {
        Ok(super::Variant::Gemm(tiles)) => ConvAlgo::GemmTiled(tiles),
        _ => ConvAlgo::TiledWith(TiledTiles::for_rows(problem.gemm_rows())),
    }
}

/// Whether `algo` can run `problem` on `gpu` (explicit tiles that fit the device).
fn runs(gpu: &Gpu, algo: &ConvAlgo, problem: &Problem) -> bool {
    algo.variant(gpu, problem.conv.kernel).is_ok()
}

/// The candidates for `problem` on `gpu`, each checked to run there: the untuned choice
/// first, then variant 1 on small passes, variant 2 with its default tiles and two other
/// pixel tiles (where the device has subgroups), variant 3 with the tiles whose rows the
/// GEMM fills.
pub fn candidates(gpu: &Gpu, problem: &Problem) -> Vec<ConvAlgo> {
    let mut out = vec![untuned_choice(gpu, problem)];
    if problem.macs() <= DIRECT_MAX_MACS {
        out.push(ConvAlgo::Direct);
    }
    if let Some(d) = GemmTiles::for_device(gpu, problem.conv.kernel) {
        // The weight gradient has its own tiles; the other passes share the pixel tile.
        if problem.pass == TunedPass::BackwardParams {
            for bw_ci in [d.bw_ci, 2, 6] {
                out.push(ConvAlgo::GemmTiled(GemmTiles { bw_ci, ..d }));
            }
        } else {
            for (rows, quads) in [(d.rows, d.quads), (2, 2), (4, 1)] {
                out.push(ConvAlgo::GemmTiled(GemmTiles { rows, quads, ..d }));
            }
        }
    }
    let rows_cap = problem.gemm_rows().next_multiple_of(16).max(16) as u32;
    for (bm, bn) in [(64, 64), (64, 32), (32, 64), (32, 32), (16, 64), (16, 32)] {
        if bm <= rows_cap {
            out.push(ConvAlgo::TiledWith(TiledTiles { bm, bn, bk: 16 }));
        }
    }
    let mut seen = Vec::new();
    out.retain(|a| {
        let fresh = runs(gpu, a, problem) && !seen.contains(a);
        seen.push(*a);
        fresh
    });
    out
}

/// Random operands of a problem's shapes, and one run of a candidate on them.
struct Operands {
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
    out: Tensor,
    dweight: Tensor,
    dbias: Tensor,
}

impl Operands {
    fn new(gpu: &Gpu, p: &Problem) -> Result<Operands> {
        let filled = |shape: Shape, salt: usize| {
            // A cheap deterministic fill in [-1, 1): timing does not need real randomness.
            let data: Vec<f32> = (0..shape.numel())
                .map(|i| ((i * 2_654_435_761 + salt) % 2000) as f32 / 1000.0 - 1.0)
                .collect();
            Tensor::from_slice(gpu, shape, &data, "autotune operand")
        };
        let (weight_shape, out_shape) = if p.pass.is_upconv() {
            let i = p.inp;
            (
                conv_transpose::weight_shape(i.c, p.c_out),
                Shape::new(i.n, p.c_out, 2 * i.h, 2 * i.w),
            )
        } else {
            (
                p.conv.weight_shape(p.inp.c, p.c_out),
                p.conv.out_shape(p.inp, p.c_out)?,
            )
        };
        Ok(Operands {
            inp: filled(p.inp, 1)?,
            weight: filled(weight_shape, 2)?,
            bias: filled(Shape::vector(p.c_out), 3)?,
            // The forward's out (relu' in the backward) and the upstream gradient in one.
            out: filled(out_shape, 4)?,
            dweight: Tensor::zeros(gpu, weight_shape, "autotune dweight")?,
            dbias: Tensor::zeros(gpu, Shape::vector(p.c_out), "autotune dbias")?,
        })
    }

    fn run(&self, gpu: &Gpu, p: &Problem, algo: ConvAlgo) -> Result<()> {
        let o = self;
        match p.pass {
            TunedPass::Forward => {
                super::forward_with(gpu, algo, &p.conv, &o.inp, &o.weight, &o.bias).map(drop)
            }
            TunedPass::BackwardInput => {
                super::backward_input_with(gpu, algo, &p.conv, p.inp, &o.weight, &o.out, &o.out)
                    .map(drop)
            }
            TunedPass::BackwardParams => super::backward_params_with(
                gpu, algo, &p.conv, &o.inp, &o.out, &o.out, &o.dweight, &o.dbias,
            ),
            TunedPass::UpForward => {
                conv_transpose::forward_with(gpu, algo, &o.inp, &o.weight, &o.bias).map(drop)
            }
            TunedPass::UpBackward => conv_transpose::backward_with(
                gpu, algo, &o.inp, &o.weight, &o.out, &o.dweight, &o.dbias,
            )
            .map(drop),
        }
    }
}

/// Times every candidate for `problem`, then the fastest against the untuned choice head
/// to head, and returns the winner with every candidate's median (the two duellists' from
/// the head-to-head), fastest first.
pub fn tune(gpu: &Gpu, problem: &Problem) -> Result<Tuned> {
    gpu.sync()?;
    let ops = Operands::new(gpu, problem)?;
    let untuned = untuned_choice(gpu, problem);
    let mut timed: Vec<(ConvAlgo, f64)> = Vec::new();
    let mut failures = Vec::new();
    for algo in candidates(gpu, problem) {
        let best = timed.iter().map(|t| t.1).fold(f64::INFINITY, f64::min);
        match time_runs(gpu, &mut || ops.run(gpu, problem, algo), best) {
            Ok(times) => timed.push((algo, median(times))),
            Err(e @ Error::DeviceLost(_)) => return Err(e),
            Err(e) => failures.push(format!("{}: {e}", choice_name(&algo))),
        }
    }
    timed.sort_by(|a, b| a.1.total_cmp(&b.1));
    let Some(&(fastest, _)) = timed.first() else {
        return Err(Error::Device(format!(
            "autotune: no candidate ran {}: {}",
            problem.key(),
            failures.join("; ")
        )));
    };
    let mut chosen = fastest;
    if fastest != untuned && timed.iter().any(|t| t.0 == untuned) {
        let [challenger_ms, untuned_ms] =
            duel(gpu, &mut |a| ops.run(gpu, problem, a), [fastest, untuned])?;
        for (algo, ms) in timed.iter_mut() {
            if *algo == fastest {
                *ms = challenger_ms;
            } else if *algo == untuned {
                *ms = untuned_ms;
            }
        }
        timed.sort_by(|a, b| a.1.total_cmp(&b.1));
        if !beats(challenger_ms, untuned_ms) {
            chosen = untuned;
        }
    }
    // The choice is the fastest or the untuned one, and both were timed.
    let ms = timed
        .iter()
        .find(|t| t.0 == chosen)
        .expect("the choice was timed")
        .1;
    let why = if chosen == untuned {
        "the untuned choice"
    } else {
        "faster than the untuned choice"
    };
    eprintln!(
        "autotune: {} -> {} ({ms:.3} ms, {why}; {} candidates)",
        problem.key(),
        choice_name(&chosen),
        timed.len()
    );
    Ok(Tuned {
        choice: choice_name(&chosen),
        timings: timed.iter().map(|(a, ms)| (choice_name(a), *ms)).collect(),
    })
}

/// Whether a challenger timed at `challenger_ms` replaces the untuned choice timed at
/// `untuned_ms` in the same head-to-head: only if it is at least [`MARGIN`] faster.
pub fn beats(challenger_ms: f64, untuned_ms: f64) -> bool {
    challenger_ms <= (1.0 - MARGIN) * untuned_ms
}

/// The two candidates timed in turn, [`DUEL_ROUNDS`] times each (so that the machine's
/// drift falls on both alike): the median ms of all of each one's runs.
fn duel(
    gpu: &Gpu,
    run: &mut dyn FnMut(ConvAlgo) -> Result<()>,
    pair: [ConvAlgo; 2],
) -> Result<[f64; 2]> {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..DUEL_ROUNDS {
        for (algo, runs) in pair.iter().zip(times.iter_mut()) {
            runs.extend(time_runs(gpu, &mut || run(*algo), f64::INFINITY)?);
        }
    }
    let [a, b] = times;
    Ok([median(a), median(b)])
}

/// The milliseconds of synchronised runs of `run` after one untimed run, until
/// [`BUDGET_MS`] or [`MAX_REPS`], or after the first if it took more than twice `best`.
fn time_runs(gpu: &Gpu, run: &mut dyn FnMut() -> Result<()>, best: f64) -> Result<Vec<f64>> {
    run()?;
    gpu.sync()?;
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MAX_REPS {
        let t = Instant::now();
        run()?;
        gpu.sync()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let spent = started.elapsed().as_secs_f64() * 1e3;
        if spent >= BUDGET_MS || times[0] > 2.0 * best {
            break;
        }
    }
    Ok(times)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::Padding;

    #[test]
    fn choice_names_round_trip() {
        let all = [
            ConvAlgo::Direct,
            ConvAlgo::Gemm,
            ConvAlgo::Tiled,
            ConvAlgo::GemmTiled(GemmTiles::DEFAULT),
            ConvAlgo::TiledWith(TiledTiles::MEDIUM),
        ];
        for algo in all {
            assert_eq!(parse_choice(&choice_name(&algo)), Some(algo));
        }
        assert_eq!(parse_choice("tiled 64x64"), None);
        assert_eq!(parse_choice("fast"), None);
    }

    #[test]
    fn keys_separate_passes_and_shapes() {
        let conv = Conv2d {
            kernel: 3,
            padding: Padding::Valid,
            relu: true,
        };
        let a = Problem::conv(TunedPass::Forward, &conv, Shape::new(1, 8, 20, 20), 16);
        let b = Problem::conv(TunedPass::Forward, &conv, Shape::new(1, 8, 20, 22), 16);
        let c = Problem::conv(
            TunedPass::BackwardInput,
            &conv,
            Shape::new(1, 8, 20, 20),
            16,
        );
        let d = Problem::upconv(TunedPass::UpForward, Shape::new(1, 8, 20, 20), 16);
        assert_eq!(a.key(), "conv3x3 valid relu forward 1x8x20x20->16");
        let keys = [a.key(), b.key(), c.key(), d.key()];
        for (i, k) in keys.iter().enumerate() {
            assert!(!keys[i + 1..].contains(k), "{k} twice");
        }
    }
}
