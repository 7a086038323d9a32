//! The GPU context: device and queue, the command recorder, uploads and downloads.
//!
//! Work is *recorded*: every op appends a dispatch to one command encoder, and nothing
//! reaches the GPU until something needs a result (a download, [`Gpu::sync`]) or the
//! recorder is full. A whole training step is thus a handful of submissions.
//!
//! Each dispatch's `Params` struct is written into a CPU-side copy of one uniform
//! "params arena" at a 256-byte-aligned slot; the arena is uploaded once, just before the
//! commands that read it are submitted.
//!
//! Environment: `UNET_GPU_TIMEOUT_S` bounds the wait for one submission (default 600 s);
//! `UNET_GPU_MEMORY_LIMIT` (bytes, or e.g. `512M`) caps the GPU memory the engine holds, as
//! if the device had only that much; `UNET_TEST_LOSE_DEVICE_AT=N` is a test hook that
//! destroys the device at the N-th submission, as a crashed driver would lose it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::adapter::{choose_adapter, AdapterChoice};
use super::autotune::{device_key, Autotune, TuneMode};
use super::pipeline::{Constants, Kernel, PipelineCache};
use super::pool::{BufferKind, BufferPool, Fit, PoolStats, PooledBuffer};
use super::profile::{Profile, Profiler};
use super::subgroups::{self, Probe, Subgroups};
use crate::error::{Error, Result};

/// The most storage buffers a kernel binds: what WebGPU and GLES 3.1 guarantee (a test
/// checks every shader against it). A device that offers fewer is refused when it opens.
pub const MAX_STORAGE_BINDINGS: u32 = 4;
/// Dispatches recorded before the recorder submits on its own.
const ARENA_SLOTS: u64 = 1024;
/// Default wait for one submission before giving up (overridden by `UNET_GPU_TIMEOUT_S`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    /// The subgroup sizes the kernels may rely on (measured: see [`super::subgroups`]),
    /// or None where they run without subgroup operations.
    subgroups: Option<Subgroups>,
    /// What the subgroup probe found where it differs from the adapter's report.
    subgroup_note: Option<String>,
    pipelines: PipelineCache,
    pool: Rc<BufferPool>,
    recorder: RefCell<Recorder>,
    /// Timestamps of every pass while profiling ([`Gpu::start_profiling`]).
    profiler: RefCell<Option<Profiler>>,
    /// The first error the device reported outside an error scope, if any.
    device_error: Arc<Mutex<Option<String>>>,
    /// Set when the device is lost.
    lost: Arc<Mutex<Option<String>>>,
    /// Test mode: every new uninitialised tensor is filled with NaN.
    poison: Cell<bool>,
    /// A dry run ([`Gpu::plan_memory`]): ops are recorded by the pool, nothing runs.
    dry_run: Cell<bool>,
    timeout: Duration,
    /// The most bytes the buffer pool may hold (`UNET_GPU_MEMORY_LIMIT`), if capped.
    memory_limit: Option<u64>,
    /// Submissions so far, and the one at which the test hook destroys the device.
    submissions: Cell<u64>,
    lose_device_at: Option<u64>,
    /// The ops' choices of implementation per shape (off until [`Gpu::set_autotune`]).
    autotune: RefCell<Autotune>,
}

/// Commands recorded and not yet submitted.
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    /// CPU copy of the params arena for the recorded dispatches.
    params: Vec<u8>,
    arena: wgpu::Buffer,
    slot_size: u64,
    dispatches: u64,
}

impl Gpu {
    /// Opens the adapter chosen by `choice` (falling back to `UNET_ADAPTER`/`UNET_BACKEND`,
    /// then to the best adapter available).
    pub fn new(choice: AdapterChoice) -> Result<Gpu> {
        let adapter = choose_adapter(&choice.or(AdapterChoice::from_env()))?;
        let info = adapter.get_info();
        let offered = adapter.limits();
        if offered.max_storage_buffers_per_shader_stage < MAX_STORAGE_BINDINGS {
            return Err(Error::RequestDevice {
                adapter: info.name.clone(),
                reason: format!(
                    "it binds at most {} storage buffers per shader, the kernels need {}",
                    offered.max_storage_buffers_per_shader_stage, MAX_STORAGE_BINDINGS
                ),
            });
        }
        let limits = required_limits(&offered);
        // Subgroup operations let the convolution kernels share loads across lanes.
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("unet-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::RequestDevice {
            adapter: info.name.clone(),
            reason: e.to_string(),
        })?;

        let device_error = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&device_error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().get_or_insert(e.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            let what = match message.trim() {
                "" => format!("{reason:?}"),
                message => format!("{reason:?}: {message}"),
            };
            sink.lock().unwrap().get_or_insert(what);
        });

        let timeout = std::env::var("UNET_GPU_TIMEOUT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let memory_limit = memory_limit_from_env()?;
        // Test hook: destroy the device at this submission, as a driver would lose it.
        let lose_device_at = std::env::var("UNET_TEST_LOSE_DEVICE_AT")
            .ok()
            .and_then(|s| s.parse().ok());
        let recorder = Recorder::new(&device, limits.min_uniform_buffer_offset_alignment);
        let mut gpu = Gpu {
            device,
            queue,
            info,
            limits,
            features,
            subgroups: None,
            subgroup_note: None,
            pipelines: PipelineCache::default(),
            pool: Rc::new(BufferPool::default()),
            recorder: RefCell::new(recorder),
            profiler: RefCell::new(None),
            device_error,
            lost,
            poison: Cell::new(false),
            dry_run: Cell::new(false),
            timeout,
            memory_limit,
            submissions: Cell::new(0),
            lose_device_at,
            autotune: RefCell::new(Autotune::default()),
        };
        if features.contains(wgpu::Features::SUBGROUP) {
            let reported = Subgroups {
                min: gpu.info.subgroup_min_size,
                max: gpu.info.subgroup_max_size,
            };
            match subgroups::probe(&gpu, reported)? {
                Probe::Usable(usable, note) => {
                    gpu.subgroups = Some(usable);
                    gpu.subgroup_note = note;
                }
                Probe::Broken(why) => gpu.subgroup_note = Some(format!("unusable: {why}")),
            }
        }
        gpu.set_autotune(TuneMode::Off, None);
        Ok(gpu)
    }

    /// Autotuning in `mode`, choices kept in the file `cache` (see [`super::autotune`]).
    /// A new device starts with it off, whatever the environment says: the command line
    /// turns it on (`UNET_AUTOTUNE`), the library's users and the tests choose.
    pub fn set_autotune(&self, mode: TuneMode, cache: Option<std::path::PathBuf>) {
        let key = device_key(&self.info, self.subgroups);
        *self.autotune.borrow_mut() = Autotune::new(mode, key, cache);
    }

    /// The ops' choices of implementation (borrow it briefly: tuning runs ops).
    pub fn autotune(&self) -> std::cell::RefMut<'_, Autotune> {
        self.autotune.borrow_mut()
    }

    /// Runs `job` for real inside a dry run ([`Gpu::plan_memory`]): the autotuner times
    /// kernels on its own buffers when a planned job first meets a shape.
    pub(crate) fn outside_dry_run<T>(&self, job: impl FnOnce() -> T) -> T {
        if !self.dry_run.get() {
            return job();
        }
        let recording = self.pool.pause_recording();
        self.dry_run.set(false);
        let result = job();
        self.dry_run.set(true);
        self.pool.resume_recording(recording);
        result
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }
    /// The subgroup sizes the shaders may see, if the device runs subgroup operations
    /// (and they pass the probe when the device opens: see [`super::subgroups`]).
    pub fn subgroups(&self) -> Option<Subgroups> {
        self.subgroups
    }
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
    pub fn pipelines_built(&self) -> usize {
        self.pipelines.count()
    }
    /// Frees the buffers the pool keeps for reuse.
    pub fn trim_pool(&self) {
        self.pool.trim();
    }

    /// Test mode: fill every new uninitialised tensor with NaN, so that an element a kernel
    /// forgets to write shows up in the comparison.
    pub fn set_poison(&self, on: bool) {
        self.poison.set(on);
    }
    pub fn poison(&self) -> bool {
        self.poison.get()
    }

    /// Adapter name, backend, device type and the limits that matter to this engine.
    pub fn describe(&self) -> String {
        let (i, l) = (&self.info, &self.limits);
        format!(
            "adapter: {} ({:?}, {:?}), driver: {} {}\n\
             max buffer size: {} MiB, max storage binding: {} MiB, \
             max workgroups per dimension: {}, max invocations per workgroup: {}, \
             workgroup memory: {} KiB, timestamps: {}, subgroups: {}",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size >> 10,
            self.has_timestamps(),
            self.describe_subgroups(),
        )
    }

    /// Where the convolutions must run without subgroup operations (none, or none that
    /// work), a note saying so and how to get the fast kernels; None where they have them.
    pub fn slow_path_note(&self) -> Option<String> {
        if self.subgroups.is_some() {
            return None;
        }
        let why = match &self.subgroup_note {
            Some(note) => format!("its subgroup operations are {note}"),
            None => "it has no subgroup operations".to_string(),
        };
        Some(format!(
            "note: {} ({:?}): {why}, so convolutions run without them (variant 3, several \
             times slower on a CPU device than the subgroup kernels). For the fast ones use \
             a Vulkan, Metal or DX12 driver; on Linux without a GPU, Mesa's \
             `mesa-vulkan-drivers`",
            self.info.name, self.info.backend
        ))
    }

    /// "32 lanes", or "none (...)", with what the probe found where it differs from the
    /// adapter's report.
    fn describe_subgroups(&self) -> String {
        let usable = self
            .subgroups
            .map_or("none (convolutions run variant 3)".to_string(), |s| {
                s.to_string()
            });
        match &self.subgroup_note {
            Some(note) => format!("{usable} ({note})"),
            None => usable,
        }
    }

    /// The largest buffer a tensor may have on this device. Kernels index elements with
    /// u32, which also bounds it.
    pub fn max_tensor_bytes(&self) -> u64 {
        let by_index = 4 * u64::from(u32::MAX);
        self.limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size)
            .min(by_index)
    }

    /// A storage buffer of `len` bytes for the tensor `name`, from the pool; `fit` says
    /// whether it is rounded up to a size class ([`Fit`]).
    pub(crate) fn storage(&self, len: u64, fit: Fit, name: &str) -> Result<PooledBuffer> {
        let limit = self.max_tensor_bytes();
        if len > limit {
            return Err(Error::TooLarge {
                name: name.to_string(),
                bytes: len,
                limit,
            });
        }
        self.pool_buffer(len, BufferKind::Storage, fit, name)
    }

    fn pool_buffer(
        &self,
        len: u64,
        kind: BufferKind,
        fit: Fit,
        name: &str,
    ) -> Result<PooledBuffer> {
        let max = self.limits.max_buffer_size;
        self.pool.acquire(len, max, kind, fit, |size, usage| {
            self.check_memory_limit(size, name)?;
            self.create_buffer(size, usage, name)
        })
    }

    /// A new buffer; out-of-memory comes back as an error (through an error scope), not
    /// a panic.
    fn create_buffer(
        &self,
        size: u64,
        usage: wgpu::BufferUsages,
        name: &str,
    ) -> Result<wgpu::Buffer> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage,
            mapped_at_creation: false,
        });
        match pollster::block_on(scope.pop()) {
            None => Ok(buffer),
            Some(_) => Err(Error::OutOfMemory {
                name: name.to_string(),
                bytes: size,
            }),
        }
    }

    /// Plans the pool's buffers for a job that will run again and again (a training
    /// step): runs `job` once as a dry run, in which every op is recorded by the pool but
    /// nothing is created, uploaded or run (downloads read zeros), then creates the
    /// buffers the planner assigns the recorded requests to ([`super::plan`]). Start each
    /// real run of the job with [`Gpu::start_planned_job`]; a run that asks for other
    /// buffers than the recorded ones falls back to the pool's size classes from there on.
    pub fn plan_memory<T>(&self, job: impl FnOnce() -> Result<T>) -> Result<()> {
        self.flush()?;
        // Lent to every request of the dry run; never bound, since nothing runs.
        let stand_in = self.create_buffer(256, BufferKind::Storage.usage(), "dry-run stand-in")?;
        self.pool.start_recording(stand_in);
        self.dry_run.set(true);
        let result = job().map(drop);
        self.dry_run.set(false);
        let requests = self.pool.stop_recording();
        result?;
        self.pool.install_plan(&requests, |size, usage| {
            self.check_memory_limit(size, "planned buffer")?;
            self.create_buffer(size, usage, "planned buffer")
        })
    }

    /// The next buffer requests are those of the job planned by [`Gpu::plan_memory`],
    /// from its beginning.
    pub fn start_planned_job(&self) {
        self.pool.start_cycle();
    }

    /// An error if a new buffer of `size` bytes would take the pool past
    /// `UNET_GPU_MEMORY_LIMIT`: the limit acts as a device with that much memory.
    fn check_memory_limit(&self, size: u64, name: &str) -> Result<()> {
        let Some(limit) = self.memory_limit else {
            return Ok(());
        };
        let held = self.pool.stats().bytes_held;
        if held.saturating_add(size) > limit {
            return Err(Error::MemoryLimit {
                name: name.to_string(),
                bytes: size,
                held,
                limit,
            });
        }
        Ok(())
    }

    /// Records one dispatch of `kernel` over `workgroups`, binding `params` at 0 and
    /// `buffers` at 1.. (their lengths as the binding sizes, so `arrayLength` is exact).
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        constants: Constants,
        params: &P,
        buffers: &[&PooledBuffer],
        workgroups: [u32; 3],
    ) -> Result<()> {
        assert_eq!(
            buffers.len(),
            kernel.bindings.len(),
            "{}::{} binds {} buffers",
            kernel.shader.name,
            kernel.entry,
            kernel.bindings.len()
        );
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&n| n > max) {
            return Err(Error::Device(format!(
                "{}::{}: {workgroups:?} workgroups exceed the device's {max} per dimension",
                kernel.shader.name, kernel.entry
            )));
        }
        if workgroups.contains(&0) || self.dry_run.get() {
            return Ok(());
        }
        if self.recorder.borrow().is_full() {
            self.flush()?;
        }
        let cached = self.pipelines.get(&self.device, kernel, constants);
        let mut recorder = self.recorder.borrow_mut();
        let params_offset = recorder.push_params(bytemuck::bytes_of(params));

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &recorder.arena,
                offset: params_offset,
                size: wgpu::BufferSize::new(std::mem::size_of::<P>() as u64),
            }),
        }];
        for (buffer, binding) in buffers.iter().zip(1..) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: buffer.buffer(),
                    offset: 0,
                    size: wgpu::BufferSize::new(buffer.len()),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry),
            layout: &cached.layout,
            entries: &entries,
        });
        let mut profiler = self.profiler.borrow_mut();
        let timestamp_writes = profiler.as_mut().and_then(|p| p.time_pass(kernel));
        let encoder = recorder.encoder(&self.device);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.entry),
            timestamp_writes,
        });
        pass.set_pipeline(&cached.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        let [x, y, z] = workgroups;
        pass.dispatch_workgroups(x, y, z);
        Ok(())
    }

    /// Workgroups covering `items` invocations, `per_workgroup` each: a 1-D grid, folded
    /// into 2-D when it would exceed the per-dimension limit. Shaders recover the linear
    /// index as `gid.x + gid.y * nwg.x * WORKGROUP_SIZE` and guard it against the total.
    pub fn grid_1d(&self, items: u64, per_workgroup: u32) -> [u32; 3] {
        let groups = items.div_ceil(u64::from(per_workgroup));
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }

    /// Records a zero fill of `buffer`.
    pub(crate) fn clear(&self, buffer: &PooledBuffer) {
        if self.dry_run.get() {
            return;
        }
        let mut recorder = self.recorder.borrow_mut();
        recorder.encoder(&self.device).clear_buffer(
            buffer.buffer(),
            0,
            Some(buffer.len().next_multiple_of(4)),
        );
    }

    /// Records a copy of `len` bytes between two buffers.
    pub(crate) fn copy(&self, src: &PooledBuffer, dst: &PooledBuffer, len: u64) {
        if self.dry_run.get() {
            return;
        }
        let mut recorder = self.recorder.borrow_mut();
        recorder
            .encoder(&self.device)
            .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, len);
    }

    /// Writes `data` into `buffer` from the host.
    ///
    /// Host writes take effect at the start of the next submission, before its commands.
    /// The buffer may have been recycled by the pool and still be used by commands
    /// recorded but not yet submitted, so those are submitted first.
    pub(crate) fn upload(&self, buffer: &PooledBuffer, data: &[u8]) -> Result<()> {
        if self.dry_run.get() {
            return Ok(());
        }
        self.flush()?;
        self.queue.write_buffer(buffer.buffer(), 0, data);
        Ok(())
    }

    /// Reads `len` bytes of `buffer` back to the host, running everything recorded.
    pub(crate) fn download(&self, buffer: &PooledBuffer, len: u64) -> Result<Vec<u8>> {
        self.read_back(buffer.buffer(), len)
    }

    /// [`Gpu::download`] of any buffer that can be copied from.
    fn read_back(&self, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
        if self.dry_run.get() {
            return Ok(vec![0; len as usize]);
        }
        let staging = self.pool_buffer(len, BufferKind::Readback, Fit::Class, "readback")?;
        self.recorder
            .borrow_mut()
            .encoder(&self.device)
            .copy_buffer_to_buffer(buffer, 0, staging.buffer(), 0, len);
        self.flush()?;
        let slice = staging.buffer().slice(..len);
        let mapped = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&mapped);
        slice.map_async(wgpu::MapMode::Read, move |result| {
            *sink.lock().unwrap() = Some(result);
        });
        self.wait()?;
        match mapped.lock().unwrap().take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Device(format!("reading a buffer back: {e}"))),
            None => return Err(Error::Device("a buffer read-back never completed".into())),
        }
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("reading a buffer back: {e}")))?
            .to_vec();
        staging.buffer().unmap();
        Ok(bytes)
    }

    /// Times every pass recorded from now on, until [`Gpu::finish_profiling`]. Needs
    /// timestamp queries ([`Gpu::has_timestamps`]).
    pub fn start_profiling(&self) -> Result<()> {
        if !self.has_timestamps() {
            return Err(Error::Config(format!(
                "{} has no timestamp queries, which profiling needs: leave out --profile, \
                 or pick another adapter with --adapter (see `unet info`)",
                self.info.name
            )));
        }
        self.flush()?;
        *self.profiler.borrow_mut() = Some(Profiler::new(&self.device));
        Ok(())
    }

    /// Runs everything recorded and returns the GPU time per kernel since
    /// [`Gpu::start_profiling`] (an empty profile if it was not called).
    pub fn finish_profiling(&self) -> Result<Profile> {
        let Some(profiler) = self.profiler.borrow_mut().take() else {
            return Ok(Profile::default());
        };
        let (query_set, queries) = profiler.written();
        if queries.is_empty() {
            return Ok(profiler.summarise(&[], 1.0));
        }
        let len = u64::from(queries.end) * wgpu::QUERY_SIZE as u64;
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: len,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.recorder
            .borrow_mut()
            .encoder(&self.device)
            .resolve_query_set(query_set, queries, &resolved, 0);
        let bytes = self.read_back(&resolved, len)?;
        let ticks: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|t| u64::from_le_bytes(t.try_into().expect("8 bytes")))
            .collect();
        Ok(profiler.summarise(&ticks, self.queue.get_timestamp_period()))
    }

    /// Submits everything recorded so far (without waiting for it).
    pub fn flush(&self) -> Result<()> {
        let mut recorder = self.recorder.borrow_mut();
        if let Some(encoder) = recorder.encoder.take() {
            self.submissions.set(self.submissions.get() + 1);
            if self.lose_device_at == Some(self.submissions.get()) {
                self.device.destroy();
            }
            self.queue
                .write_buffer(&recorder.arena, 0, &recorder.params);
            self.queue.submit([encoder.finish()]);
            recorder.params.clear();
            recorder.dispatches = 0;
        }
        drop(recorder);
        self.check()
    }

    /// Submits everything recorded and waits until the GPU has finished it.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.wait()
    }

    fn wait(&self) -> Result<()> {
        let poll = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(self.timeout),
        });
        match poll {
            Ok(_) => self.check(),
            Err(wgpu::PollError::Timeout) => Err(Error::Timeout(self.timeout)),
            Err(e) => {
                self.check()?;
                Err(Error::Device(e.to_string()))
            }
        }
    }

    /// Turns an error the device reported asynchronously into a `Result`.
    fn check(&self) -> Result<()> {
        if let Some(reason) = self.lost.lock().unwrap().clone() {
            return Err(Error::DeviceLost(reason));
        }
        match self.device_error.lock().unwrap().take() {
            Some(message) => Err(Error::Device(message)),
            None => Ok(()),
        }
    }
}

impl Recorder {
    fn new(device: &wgpu::Device, alignment: u32) -> Recorder {
        let slot_size = u64::from(alignment.max(256));
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: slot_size * ARENA_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder {
            encoder: None,
            params: Vec::new(),
            arena,
            slot_size,
            dispatches: 0,
        }
    }

    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("batch"),
            })
        })
    }

    fn is_full(&self) -> bool {
        self.dispatches >= ARENA_SLOTS
    }

    /// Appends one dispatch's params; returns its offset in the arena.
    fn push_params(&mut self, bytes: &[u8]) -> u64 {
        assert!(
            bytes.len() as u64 <= self.slot_size,
            "a Params struct exceeds one arena slot"
        );
        let offset = self.dispatches * self.slot_size;
        self.params.resize(offset as usize, 0);
        self.params.extend_from_slice(bytes);
        self.dispatches += 1;
        offset
    }
}

/// `UNET_GPU_MEMORY_LIMIT`: bytes, or a number with K, M or G (binary units), e.g. `512M`.
fn memory_limit_from_env() -> Result<Option<u64>> {
    let Ok(text) = std::env::var("UNET_GPU_MEMORY_LIMIT") else {
        return Ok(None);
    };
    parse_size(&text).map(Some).ok_or_else(|| {
        Error::Config(format!(
            "UNET_GPU_MEMORY_LIMIT={text:?} is not a size: give bytes, or a number with K, M or G \
             (e.g. 512M), or unset it"
        ))
    })
}

/// "1048576", "1024K", "1M", "1MiB" -> 1048576.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The limits this engine asks for: WebGPU's portable defaults (or the downlevel ones on
/// an adapter below them), with buffer sizes, workgroup size and workgroup memory raised
/// to what the adapter offers, so large tiles and tiled kernels fit wherever the hardware
/// allows.
fn required_limits(offered: &wgpu::Limits) -> wgpu::Limits {
    let mut base = wgpu::Limits::default();
    if !base.check_limits(offered) {
        base = wgpu::Limits::downlevel_defaults();
    }
    wgpu::Limits {
        max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
        max_buffer_size: offered.max_buffer_size,
        max_storage_buffers_per_shader_stage: offered
            .max_storage_buffers_per_shader_stage
            .max(base.max_storage_buffers_per_shader_stage),
        max_compute_workgroup_storage_size: offered.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: offered.max_compute_invocations_per_workgroup,
        max_compute_workgroup_size_x: offered.max_compute_workgroup_size_x,
        max_compute_workgroup_size_y: offered.max_compute_workgroup_size_y,
        max_compute_workgroups_per_dimension: offered.max_compute_workgroups_per_dimension,
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("3K"), Some(3 << 10));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2 GiB"), Some(2 << 30));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
    }
}
