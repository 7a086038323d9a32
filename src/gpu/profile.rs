//! Kernel timing (`unet bench step --profile`). While profiling is on, every compute pass
//! (one per dispatch) has the GPU write a timestamp at its start and at its end into a
//! query set; at the end the pass times are summed per kernel.
//!
//! The time between two passes (the driver starting the next one, barriers, copies and
//! clears, host work while the GPU waits) is in no pass: comparing the sum of the passes
//! with the wall time of the same work shows how large it is.

use serde::Serialize;

use super::pipeline::Kernel;

/// Passes that can be timed in one profile: the query set holds two timestamps per pass,
/// at most `wgpu::QUERY_SET_MAX_QUERIES` in all. Later passes run untimed.
const MAX_TIMED_PASSES: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// The passes recorded while profiling is on.
pub(crate) struct Profiler {
    query_set: wgpu::QuerySet,
    /// `shader::entry` of each timed pass, in order: pass i writes queries 2i and 2i + 1.
    kernels: Vec<String>,
    /// Passes recorded after the query set was full.
    untimed: usize,
}

/// The GPU time spent in the passes of one kernel.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    /// `shader::entry`.
    pub kernel: String,
    pub passes: usize,
    pub ms: f64,
}

/// GPU time per kernel, the most expensive first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Profile {
    pub kernels: Vec<KernelTime>,
    /// The sum of all timed passes.
    pub total_ms: f64,
    /// Passes beyond the query set's capacity, not in `kernels`.
    pub untimed_passes: usize,
}

impl Profile {
    /// Adds the passes of `other` (another stretch of work) to these.
    pub fn add(&mut self, other: &Profile) {
        for k in &other.kernels {
            self.count(k);
        }
        self.total_ms += other.total_ms;
        self.untimed_passes += other.untimed_passes;
        self.sort();
    }

    /// Adds `time` to its kernel's row (without re-sorting or touching the total).
    fn count(&mut self, time: &KernelTime) {
        match self.kernels.iter_mut().find(|k| k.kernel == time.kernel) {
            Some(row) => {
                row.passes += time.passes;
                row.ms += time.ms;
            }
            None => self.kernels.push(time.clone()),
        }
    }

    /// The most expensive kernel first.
    fn sort(&mut self) {
        self.kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    }
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device) -> Profiler {
        Profiler {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_TIMED_PASSES,
            }),
            kernels: Vec::new(),
            untimed: 0,
        }
    }

    /// The timestamp writes for the next pass, which runs `kernel` (`None` once full).
    pub(crate) fn time_pass(
        &mut self,
        kernel: &Kernel,
    ) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let pass = self.kernels.len() as u32;
        if pass >= MAX_TIMED_PASSES {
            self.untimed += 1;
            return None;
        }
        self.kernels
            .push(format!("{}::{}", kernel.shader.name, kernel.entry));
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(2 * pass),
            end_of_pass_write_index: Some(2 * pass + 1),
        })
    }

    /// The queries written so far (to resolve), `0..2 x timed passes`.
    pub(crate) fn written(&self) -> (&wgpu::QuerySet, std::ops::Range<u32>) {
        (&self.query_set, 0..2 * self.kernels.len() as u32)
    }

    /// Sums the pass times per kernel. `ticks`: the resolved queries, two per pass;
    /// `ns_per_tick`: the queue's timestamp period.
    pub(crate) fn summarise(&self, ticks: &[u64], ns_per_tick: f32) -> Profile {
        let mut profile = Profile {
            untimed_passes: self.untimed,
            ..Profile::default()
        };
        for (kernel, pass) in self.kernels.iter().zip(ticks.chunks_exact(2)) {
            // A device may report an end before its start for a pass too short to measure.
            let ms = pass[1].saturating_sub(pass[0]) as f64 * f64::from(ns_per_tick) * 1e-6;
            profile.count(&KernelTime {
                kernel: kernel.clone(),
                passes: 1,
                ms,
            });
            profile.total_ms += ms;
        }
        profile.sort();
        profile
    }
}
