//! The device's subgroups, as reported and as measured.
//!
//! A subgroup is the set of invocations that run in lockstep (a SIMD register on a CPU
//! device, a warp or wave on a GPU); the convolution kernels pass values between its
//! lanes with `subgroupShuffle`, by lane id, in segments of the smallest size a pipeline
//! can get. The adapter's reported range is not always what runs: Mesa's lavapipe with
//! `LP_NATIVE_VECTOR_WIDTH=1024` (or 2048) reports 32 (or 64) lanes but runs 16, so a
//! segment of 32 lanes read lanes that do not exist (`examples/subgroup_probe.rs` shows
//! it). So when the device opens, a probe kernel (`shaders/subgroup_probe.wgsl`) measures
//! the size and checks a shuffle within segments of it; the kernels use the smaller of
//! the reported minimum and the measured size, and a device whose shuffles misbehave
//! runs the kernels without subgroups.

use super::{Access, Gpu, Kernel};
use crate::error::Result;
use crate::shader;
use crate::tensor::{Shape, Tensor};

/// The subgroup sizes the shaders may see on a device: every size in `min..=max` (powers
/// of two) is possible, and may differ between pipelines where `min < max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subgroups {
    pub min: u32,
    pub max: u32,
}

impl Subgroups {
    /// Whether every pipeline gets the same size.
    pub fn fixed(&self) -> bool {
        self.min == self.max
    }
}

impl std::fmt::Display for Subgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fixed() {
            write!(f, "{} lanes", self.min)
        } else {
            write!(f, "{} to {} lanes", self.min, self.max)
        }
    }
}

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The range the kernels may rely on, and a note where it differs from the report.
    Usable(Subgroups, Option<String>),
    /// Subgroup operations do not behave as specified; why.
    Broken(String),
}

const PROBE: Kernel = Kernel {
    shader: shader!("subgroup_probe.wgsl"),
    entry: "probe",
    bindings: &[Access::ReadWrite],
};

/// Runs the probe on `gpu`, whose adapter reports `reported`.
pub(crate) fn probe(gpu: &Gpu, reported: Subgroups) -> Result<Probe> {
    let max_wg = gpu.limits().max_compute_invocations_per_workgroup;
    let wg = reported.max.clamp(1, max_wg);
    // First run: the lane ids alone (segments of 1 lane shuffle nothing).
    let lanes = run(gpu, wg, 1)?;
    let measured = lanes.iter().map(|r| r[0]).max().unwrap_or(0) + 1;
    if !measured.is_power_of_two() {
        return Ok(Probe::Broken(format!(
            "lane ids run up to {} (not a power of two)",
            measured - 1
        )));
    }
    let min = reported.min.min(measured);
    // Second run: a shuffle within segments of `min` lanes must read the lane it names.
    let rows = run(gpu, wg, min)?;
    for (i, &[lane, first, neighbour]) in rows.iter().enumerate() {
        let want_lane = lane - lane % min + (lane + 1) % min;
        let got = rows.get(neighbour as usize);
        if got.is_none_or(|&[l, f, _]| l != want_lane || f != first) {
            return Ok(Probe::Broken(format!(
                "invocation {i} (lane {lane}) shuffled from lane {want_lane} and got \
                 invocation {neighbour}'s value"
            )));
        }
    }
    let usable = Subgroups {
        min,
        max: reported.max.max(measured),
    };
    let note = (usable != reported)
        .then(|| format!("the driver reports {reported}, a probe measured {measured}"));
    Ok(Probe::Usable(usable, note))
}

/// One probe workgroup of `wg` invocations with segments of `sg` lanes: per invocation,
/// [lane id, first lane's local index, the shuffled neighbour's local index].
fn run(gpu: &Gpu, wg: u32, sg: u32) -> Result<Vec<[u32; 3]>> {
    let out = Tensor::empty_u32(gpu, Shape::vector(3 * wg as usize), "subgroup probe")?;
    let constants = [("WG", f64::from(wg)), ("SG", f64::from(sg))];
    gpu.dispatch(&PROBE, &constants, &[0u32; 4], &[out.buffer()], [1, 1, 1])?;
    let values = out.to_vec_u32(gpu)?;
    Ok(values.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}
