//! Prefetching: a background thread prepares the next training tiles while the GPU works on the
//! current one. The queue is bounded (`sync_channel`), so the thread runs at most `capacity`
//! tiles ahead. Tiles come from a [`TileSampler`], numbered 0, 1, 2, ...: the sequence depends
//! only on the seed, never on timing.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::dataset::Dataset;
use super::error::Result;
use super::tiles::{TileSampler, TrainingTile};

/// An endless, deterministic stream of augmented training tiles made on a background thread.
pub struct TileStream {
    receiver: Option<Receiver<Result<TrainingTile>>>,
    worker: Option<JoinHandle<()>>,
}

impl TileStream {
    /// Starts the background thread; it keeps up to `capacity` (at least 1) tiles ready.
    pub fn new(dataset: Arc<Dataset>, sampler: TileSampler, capacity: usize) -> Self {
        Self::starting_at(dataset, sampler, capacity, 0)
    }

    /// A stream that begins with tile number `first` (a resumed run continues its sequence).
    pub fn starting_at(
        dataset: Arc<Dataset>,
        sampler: TileSampler,
        capacity: usize,
        first: u64,
    ) -> Self {
        let (sender, receiver) = sync_channel(capacity.max(1));
        let worker = std::thread::spawn(move || {
            for k in first.. {
                let tile = sampler.tile(&dataset, k);
                let failed = tile.is_err();
                // A send error means the stream was dropped: stop quietly.
                if sender.send(tile).is_err() || failed {
                    return;
                }
            }
        });
        Self {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }

    /// The next tile (waits if it is not ready yet).
    pub fn next_tile(&mut self) -> Result<TrainingTile> {
        let received = self.receiver.as_ref().and_then(|r| r.recv().ok());
        // The worker only stops early after sending an error, so `None` cannot follow a success.
        received.unwrap_or_else(|| {
            Err(super::error::DataError::InvalidConfig {
                what: "tile stream",
                reason: "the background thread has stopped after an earlier error".into(),
            })
        })
    }
}

impl Iterator for TileStream {
    type Item = Result<TrainingTile>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_tile())
    }
}

impl Drop for TileStream {
    fn drop(&mut self) {
        // Closing the channel first makes a worker blocked in `send` return, then join it.
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
