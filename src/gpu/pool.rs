//! A buffer pool: buffers are returned to it when their tensor drops and handed out again
//! to the next request of the same size and kind, so a training step allocates nothing once
//! warm. Its counters let tests and benchmarks check exactly that.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What a pooled buffer is for; buffers of different kinds are never exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// Tensor storage: read and written by shaders, copied to and from.
    Storage,
    /// Host-visible staging for downloads.
    Readback,
}

impl BufferKind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            BufferKind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            BufferKind::Readback => U::MAP_READ | U::COPY_DST,
        }
    }
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
    /// Bytes of buffers currently handed out.
    pub bytes_in_use: u64,
}

/// Sizes are rounded up to this many bytes, so that nearly equal requests share buffers.
const SIZE_GRANULE: u64 = 256;

#[derive(Default)]
struct PoolState {
    free: HashMap<(u64, BufferKind), Vec<wgpu::Buffer>>,
    stats: PoolStats,
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
        self.pool.release(self.buffer.clone(), self.kind);
    }
}

impl BufferPool {
    pub fn stats(&self) -> PoolStats {
        self.state.borrow().stats
    }

    /// The size class a request of `len` bytes is served from.
    pub fn class_size(len: u64) -> u64 {
        len.max(4).div_ceil(SIZE_GRANULE) * SIZE_GRANULE
    }

    /// Hands out a free buffer of the right class, or creates one with `create`.
    /// `create` receives the size and usage and may fail (out of memory).
    pub fn acquire<E>(
        self: &Rc<Self>,
        len: u64,
        kind: BufferKind,
        create: impl FnOnce(u64, wgpu::BufferUsages) -> Result<wgpu::Buffer, E>,
    ) -> Result<PooledBuffer, E> {
        let size = Self::class_size(len);
        let reused = self
            .state
            .borrow_mut()
            .free
            .get_mut(&(size, kind))
            .and_then(Vec::pop);
        let buffer = match reused {
            Some(buffer) => {
                self.state.borrow_mut().stats.reuses += 1;
                buffer
            }
            None => {
                let buffer = create(size, kind.usage())?;
                let mut state = self.state.borrow_mut();
                state.stats.allocations += 1;
                state.stats.bytes_held += size;
                state.stats.peak_bytes_held =
                    state.stats.peak_bytes_held.max(state.stats.bytes_held);
                buffer
            }
        };
        self.state.borrow_mut().stats.bytes_in_use += size;
        Ok(PooledBuffer {
            buffer,
            len,
            kind,
            pool: Rc::clone(self),
        })
    }

    fn release(&self, buffer: wgpu::Buffer, kind: BufferKind) {
        let size = buffer.size();
        let mut state = self.state.borrow_mut();
        state.stats.bytes_in_use -= size;
        state.free.entry((size, kind)).or_default().push(buffer);
    }

    /// Frees every buffer waiting for reuse (for example between two differently sized jobs).
    pub fn trim(&self) {
        let mut state = self.state.borrow_mut();
        let freed: u64 = state.free.values().flatten().map(wgpu::Buffer::size).sum();
        for buffer in state.free.drain().flat_map(|(_, buffers)| buffers) {
            buffer.destroy();
        }
        state.stats.bytes_held -= freed;
    }
}
