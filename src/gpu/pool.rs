//! A buffer pool: buffers are returned to it when their tensor drops and handed out again
//! to the next request of the same size class and kind, so a training step allocates
//! nothing once warm. Its counters let tests and benchmarks check exactly that.
//!
//! # Size classes
//! A request of `len` bytes gets a buffer of [`BufferPool::class_size`]`(len)` bytes:
//! `len` rounded up to a quarter of its power of two, i.e. to one of
//! 1, 1.25, 1.5 or 1.75 x 2^k (k >= 16; small requests round to 256 B only).
//! Nearby sizes (a U-Net level's activations, gradients and padded copies differ by a few
//! percent) thus share buffers, at a cost of under 25 % (about 12 % on average) of
//! rounding. Within a class, buffers are exchanged freely; across classes never, so the
//! pool's behaviour on a repeated sequence of requests is the same every time: once one
//! training step has run, the next finds every buffer it needs.
//!
//! Why not hand a request the smallest free buffer of *any* larger class (best fit)? It
//! fragments less on one pass, but which buffer goes where then depends on what was free
//! at the start, so the second step no longer replays the first and allocates again; and
//! handing out whole buffers (no sub-allocation: wgpu forbids binding two ranges of one
//! buffer read-only and read-write in one dispatch) means a free buffer too small for a
//! request can never help it. Measured on the paper's training step (trace of its
//! requests replayed offline): exact sizes 2639 MiB, these classes 1703 MiB, best fit
//! within 2x 1755 MiB (and allocations in warm steps), while the bytes in use at once
//! never exceed 1259 MiB.
//!
//! # Plans
//! A job that repeats (a training step) does better with a plan: [`super::Gpu::plan_memory`]
//! runs it once dry, the pool records every storage request with its lifetime, and
//! [`super::plan`] assigns them to buffers knowing the whole sequence (1339 MiB for the
//! paper's step in the replay above). Each later run, started with
//! [`BufferPool::start_cycle`], is served request by request from the planned buffers;
//! if a run asks for a different length or kind than recorded, the rest of that run comes
//! from the size classes, so a changed job still runs, only with more memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::plan::{self, Request};

/// What a pooled buffer is for; buffers of different kinds are never exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// Tensor storage: read and written by shaders, copied to and from.
    Storage,
    /// Host-visible staging for downloads.
    Readback,
}

impl BufferKind {
    pub(crate) fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            BufferKind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            BufferKind::Readback => U::MAP_READ | U::COPY_DST,
        }
    }
}

/// How a request served outside a plan is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Rounded up to its size class, so that nearby sizes share buffers (activations,
    /// gradients, temporaries: given back and taken again every step).
    Class,
    /// Its own size (to 256 B): for buffers that live as long as the model (parameters,
    /// their gradients and momentum), which a class would only enlarge: on the paper's
    /// network by 36 MiB, 10 % of its 355 MiB.
    Exact,
}

/// Allocation counters. `bytes_held` counts every buffer the pool created and has not
/// freed, whether in use or waiting for reuse: it is the engine's GPU memory footprint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// GPU buffers created (each a real allocation).
    pub allocations: u64,
    /// Requests served by a buffer from the free lists.
    pub reuses: u64,
    /// Bytes of all live buffers, in use or free.
    pub bytes_held: u64,
    /// The largest `bytes_held` has been.
    pub peak_bytes_held: u64,
    /// Bytes of buffers currently handed out (their class sizes).
    pub bytes_in_use: u64,
    /// The largest `bytes_in_use` has been: the least any pool of whole buffers could
    /// have held. `peak_bytes_held` above it is rounding and buffers idle in other classes.
    pub peak_bytes_in_use: u64,
}

/// Every buffer size is a multiple of this many bytes.
const SIZE_GRANULE: u64 = 256;
/// Requests up to this size are rounded to the granule only.
const SMALL_REQUEST: u64 = 1 << 16;
/// Size classes per doubling above [`SMALL_REQUEST`]: 4 = steps of a quarter.
const CLASSES_PER_OCTAVE: u64 = 4;

#[derive(Default)]
struct PoolState {
    free: HashMap<(u64, BufferKind), Vec<wgpu::Buffer>>,
    stats: PoolStats,
    /// Requests being recorded for a plan (a dry run), with the buffer lent meanwhile.
    recording: Option<Recording>,
    /// The buffers of the installed plan, if any.
    planned: Option<Planned>,
    /// Counts installed plans, so that a buffer of a replaced plan is recognised.
    plan_generation: u64,
}

/// A dry run being recorded: every request gets `stand_in` (never bound: nothing runs)
/// and its lifetime is noted.
pub(crate) struct Recording {
    stand_in: wgpu::Buffer,
    requests: Vec<Request<BufferKind>>,
    clock: u64,
}

/// A plan in force: request `cursor` of the current cycle is served by
/// `buffers[assignment[cursor]]` if its length and kind are the recorded ones and that
/// buffer is idle; otherwise the cycle falls back to the size classes.
struct Planned {
    generation: u64,
    buffers: Vec<wgpu::Buffer>,
    lent: Vec<bool>,
    expected: Vec<(u64, BufferKind)>,
    assignment: Vec<usize>,
    /// The next request of the cycle; None once the cycle has left the plan.
    cursor: Option<usize>,
}

/// Where a lent buffer goes back to.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The free lists (of size classes, and of the exact sizes of [`Fit::Exact`]).
    Classes,
    /// Buffer `index` of plan number `generation`.
    Planned { generation: u64, index: usize },
    /// A dry run's recorded request number `.0`.
    Recorded(usize),
}

#[derive(Default)]
pub struct BufferPool {
    state: RefCell<PoolState>,
}

/// A buffer on loan from the pool; it goes back when dropped.
pub struct PooledBuffer {
    buffer: wgpu::Buffer,
    /// The bytes asked for (the buffer itself may be slightly larger).
    len: u64,
    kind: BufferKind,
    origin: Origin,
    pool: Rc<BufferPool>,
}

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
    /// The requested length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut state = self.pool.state.borrow_mut();
        match self.origin {
            Origin::Classes => state.release(self.buffer.clone(), self.kind),
            Origin::Planned { generation, index } => {
                state.stats.bytes_in_use -= self.buffer.size();
                match state.planned.as_mut() {
                    Some(planned) if planned.generation == generation => {
                        planned.lent[index] = false;
                    }
                    // Its plan was replaced while it was lent: it is freed now.
                    _ => state.stats.bytes_held -= self.buffer.size(),
                }
            }
            Origin::Recorded(i) => {
                if let Some(rec) = state.recording.as_mut() {
                    rec.clock += 1;
                    rec.requests[i].end = rec.clock;
                }
            }
        }
    }
}

impl PoolState {
    fn release(&mut self, buffer: wgpu::Buffer, kind: BufferKind) {
        self.stats.bytes_in_use -= buffer.size();
        self.free
            .entry((buffer.size(), kind))
            .or_default()
            .push(buffer);
    }

    fn lend(&mut self, size: u64) {
        self.stats.bytes_in_use += size;
        self.stats.peak_bytes_in_use = self.stats.peak_bytes_in_use.max(self.stats.bytes_in_use);
    }

    fn created(&mut self, size: u64) {
        self.stats.allocations += 1;
        self.stats.bytes_held += size;
        self.stats.peak_bytes_held = self.stats.peak_bytes_held.max(self.stats.bytes_held);
    }

    /// The planned buffer for a request of `len` bytes of `kind`, if the cycle is still
    /// following the plan (and so advances it).
    fn take_planned(&mut self, len: u64, kind: BufferKind) -> Option<(Origin, wgpu::Buffer)> {
        let planned = self.planned.as_mut()?;
        let i = planned.cursor?;
        let b = *planned.assignment.get(i)?;
        if planned.expected[i] != (len, kind) || planned.lent[b] {
            planned.cursor = None;
            return None;
        }
        planned.cursor = Some(i + 1);
        planned.lent[b] = true;
        let origin = Origin::Planned {
            generation: planned.generation,
            index: b,
        };
        Some((origin, planned.buffers[b].clone()))
    }
}

impl BufferPool {
    pub fn stats(&self) -> PoolStats {
        self.state.borrow().stats
    }

    /// The size class a request of `len` bytes is served from: `len` rounded up to a
    /// multiple of 2^k / 4, where 2^k <= len < 2^(k+1) (see the module notes); requests
    /// up to 64 KiB to a multiple of 256 B.
    pub fn class_size(len: u64) -> u64 {
        let len = len.max(4);
        let step = if len <= SMALL_REQUEST {
            SIZE_GRANULE
        } else {
            let octave = 1u64 << (63 - len.leading_zeros());
            octave / CLASSES_PER_OCTAVE
        };
        len.div_ceil(step) * step
    }

    /// Hands out a free buffer of the right class (of `len` itself with [`Fit::Exact`]),
    /// or creates one with `create`.
    /// Classes are capped at `max_size` (the device's largest buffer), so a request that
    /// fits the device always gets a buffer it can create.
    /// `create` receives the size and usage and may fail (out of memory).
    pub fn acquire<E>(
        self: &Rc<Self>,
        len: u64,
        max_size: u64,
        kind: BufferKind,
        fit: Fit,
        create: impl FnOnce(u64, wgpu::BufferUsages) -> Result<wgpu::Buffer, E>,
    ) -> Result<PooledBuffer, E> {
        let mut state = self.state.borrow_mut();
        // Plans cover tensor storage; read-back staging (made outside dry runs, and between
        // jobs as much as inside them) always comes from the classes.
        let plannable = kind == BufferKind::Storage;
        if let Some(rec) = state.recording.as_mut().filter(|_| plannable) {
            rec.clock += 1;
            rec.requests.push(Request {
                len,
                kind,
                start: rec.clock,
                end: u64::MAX,
            });
            let (buffer, origin) = (
                rec.stand_in.clone(),
                Origin::Recorded(rec.requests.len() - 1),
            );
            return Ok(self.lent(buffer, len, kind, origin));
        }
        let planned = if plannable {
            state.take_planned(len, kind)
        } else {
            None
        };
        if let Some((origin, buffer)) = planned {
            state.stats.reuses += 1;
            state.lend(buffer.size());
            return Ok(self.lent(buffer, len, kind, origin));
        }
        let exact = len.max(4).div_ceil(SIZE_GRANULE) * SIZE_GRANULE;
        let size = match fit {
            Fit::Class => Self::class_size(len).min(max_size.max(exact)),
            Fit::Exact => exact,
        };
        let buffer = match state.free.get_mut(&(size, kind)).and_then(Vec::pop) {
            Some(buffer) => {
                state.stats.reuses += 1;
                buffer
            }
            None => {
                drop(state);
                let buffer = create(size, kind.usage())?;
                state = self.state.borrow_mut();
                state.created(size);
                buffer
            }
        };
        state.lend(size);
        Ok(self.lent(buffer, len, kind, Origin::Classes))
    }

    fn lent(
        self: &Rc<Self>,
        buffer: wgpu::Buffer,
        len: u64,
        kind: BufferKind,
        origin: Origin,
    ) -> PooledBuffer {
        PooledBuffer {
            buffer,
            len,
            kind,
            origin,
            pool: Rc::clone(self),
        }
    }

    /// Starts recording requests instead of serving them (a dry run: every request gets
    /// `stand_in`, which must never be bound, because nothing runs).
    pub fn start_recording(&self, stand_in: wgpu::Buffer) {
        self.state.borrow_mut().recording = Some(Recording {
            stand_in,
            requests: Vec::new(),
            clock: 0,
        });
    }

    /// Sets a recording aside (requests are served for real meanwhile); give it back with
    /// [`Self::resume_recording`].
    pub(crate) fn pause_recording(&self) -> Option<Recording> {
        self.state.borrow_mut().recording.take()
    }

    pub(crate) fn resume_recording(&self, recording: Option<Recording>) {
        self.state.borrow_mut().recording = recording;
    }

    /// Stops recording; returns the requests (those still alive end at the last tick).
    pub fn stop_recording(&self) -> Vec<Request<BufferKind>> {
        let Some(rec) = self.state.borrow_mut().recording.take() else {
            return Vec::new();
        };
        let last = rec.clock + 1;
        let mut requests = rec.requests;
        for r in &mut requests {
            r.end = r.end.min(last);
        }
        requests
    }

    /// Creates the buffers of a plan for `requests` and serves each following cycle
    /// (see [`Self::start_cycle`]) from them. The previous plan's buffers are dropped.
    pub fn install_plan<E>(
        &self,
        requests: &[Request<BufferKind>],
        mut create: impl FnMut(u64, wgpu::BufferUsages) -> Result<wgpu::Buffer, E>,
    ) -> Result<(), E> {
        let plan = plan::plan(requests, SIZE_GRANULE);
        let mut state = self.state.borrow_mut();
        if let Some(old) = state.planned.take() {
            // Idle buffers are freed now; lent ones when they come back (see `Drop`).
            let idle = old.buffers.iter().zip(&old.lent).filter(|(_, &lent)| !lent);
            state.stats.bytes_held -= idle.map(|(b, _)| b.size()).sum::<u64>();
        }
        state.plan_generation += 1;
        let mut buffers = Vec::with_capacity(plan.buffers.len());
        for &(size, kind) in &plan.buffers {
            match create(size, kind.usage()) {
                Ok(buffer) => buffers.push(buffer),
                Err(e) => {
                    // Out of memory: what was created goes again, and no plan is in force.
                    state.stats.bytes_held -= buffers.iter().map(wgpu::Buffer::size).sum::<u64>();
                    return Err(e);
                }
            }
            state.created(size);
        }
        state.planned = Some(Planned {
            generation: state.plan_generation,
            lent: vec![false; buffers.len()],
            buffers,
            expected: requests.iter().map(|r| (r.len, r.kind)).collect(),
            assignment: plan.assignment,
            cursor: None,
        });
        Ok(())
    }

    /// The next requests are the planned job's, from its first: serve them from the plan.
    pub fn start_cycle(&self) {
        if let Some(planned) = self.state.borrow_mut().planned.as_mut() {
            planned.cursor = Some(0);
        }
    }

    /// Frees every buffer waiting for reuse (for example between two differently sized jobs).
    /// The handles are dropped, not destroyed: commands recorded but not yet submitted may
    /// still use a buffer, and wgpu frees it once they have run.
    pub fn trim(&self) {
        let mut state = self.state.borrow_mut();
        let freed: u64 = state.free.values().flatten().map(wgpu::Buffer::size).sum();
        state.free.clear();
        state.stats.bytes_held -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    #[test]
    fn size_classes_round_up_by_less_than_a_quarter() {
        let mut last = 0;
        for len in (1..5000u64).map(|i| i * i * 977) {
            let class = BufferPool::class_size(len);
            assert!(
                class >= len && class.is_multiple_of(256),
                "{len} -> {class}"
            );
            assert!(class >= last, "classes grow with the request");
            if len > 1 << 16 {
                assert!(4 * class < 5 * len + 4 * 256, "{len} -> {class}");
            }
            last = class;
        }
        // 1, 1.25, 1.5, 1.75 x 2^k: the paper's level-0 maps of 64 x 568 x 568 and
        // 64 x 570 x 570 floats (78.8 and 79.3 MiB) share the 80 MiB class.
        assert_eq!(BufferPool::class_size(4 * 64 * 568 * 568), 80 << 20);
        assert_eq!(BufferPool::class_size(4 * 64 * 570 * 570), 80 << 20);
        assert_eq!(BufferPool::class_size(4 * 64 * 572 * 580), 96 << 20);
        assert_eq!(BufferPool::class_size(1000), 1024);
    }
}
