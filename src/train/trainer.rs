//! One training step: forward, loss, backward, SGD update.

use super::schedule::LrSchedule;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Mode, Network};
use crate::ops::sgd::Sgd;
use crate::tensor::{Shape, Tensor};

/// A batch of training tiles on the host: N input tiles with their labels and weight maps
/// (cropped to the network's output size).
pub struct Batch<'a> {
    /// [N, C_in, tile, tile]
    pub input: &'a [f32],
    /// [N, 1, out, out], class indices 0..classes as f32.
    pub labels: &'a [f32],
    /// [N, 1, out, out], the per-pixel loss weights w(x).
    pub weights: &'a [f32],
    pub n: usize,
    pub tile: usize,
}

/// The model, its optimiser and the step counter; everything a checkpoint holds.
pub struct Trainer {
    pub model: Network,
    pub sgd: Sgd,
    /// Steps taken so far.
    pub step: u64,
    /// The run's seed: every random choice of step `s` is derived from (seed, s), so a
    /// resumed run continues exactly as if it had never stopped.
    pub seed: u64,
    /// How the rate of each step follows from `sgd.lr` (warm-up, decay); saved in
    /// checkpoints with the rest.
    pub schedule: LrSchedule,
    /// The batch shape (N, tile) whose buffers the pool has planned, if any.
    planned_for: Option<(usize, usize)>,
}

impl Trainer {
    pub fn new(model: impl Into<Network>, sgd: Sgd, seed: u64) -> Trainer {
        Trainer {
            model: model.into(),
            sgd,
            step: 0,
            seed,
            schedule: LrSchedule::default(),
            planned_for: None,
        }
    }

    /// Trains on one batch and returns its loss (the one value read back per step). A
    /// batch with labels that are no class index is an error (the loss kernel counts them).
    pub fn step(&mut self, gpu: &Gpu, batch: &Batch) -> Result<f32> {
        let loss = self.step_deferred(gpu, batch)?;
        let [value, invalid_labels] = loss.to_vec(gpu)?[..] else {
            unreachable!("the loss tensor holds (loss, invalid labels)");
        };
        if invalid_labels > 0.0 {
            return Err(Error::InvalidLabels {
                step: self.step,
                pixels: invalid_labels as u64,
            });
        }
        if !value.is_finite() {
            return Err(Error::Diverged {
                step: self.step,
                loss: value,
            });
        }
        Ok(value)
    }

    /// Records one step and returns the loss still on the GPU (nothing is read back).
    ///
    /// The first step of a batch shape is preceded by a dry run of it, from which the pool
    /// plans the step's buffers ([`Gpu::plan_memory`]): activations, gradients and
    /// temporaries then share a set of buffers sized for the step's busiest moment, and a
    /// warm step creates none.
    pub fn step_deferred(&mut self, gpu: &Gpu, batch: &Batch) -> Result<Tensor> {
        if self.planned_for != Some((batch.n, batch.tile)) {
            gpu.plan_memory(|| self.record_step(gpu, batch))?;
            self.planned_for = Some((batch.n, batch.tile));
        }
        gpu.start_planned_job();
        let loss = self.record_step(gpu, batch)?;
        self.step += 1;
        Ok(loss)
    }

    /// The learning rate of the next step, `self.step`.
    pub fn lr(&self) -> f32 {
        self.schedule.lr_at(self.sgd.lr, self.step)
    }

    /// Records forward, loss, backward and update of step `self.step`; returns the loss.
    fn record_step(&self, gpu: &Gpu, batch: &Batch) -> Result<Tensor> {
        let config = self.model.config();
        let out = config.check_tile(batch.tile)?;
        let input_shape = Shape::new(batch.n, config.in_channels, batch.tile, batch.tile);
        let target_shape = Shape::new(batch.n, 1, out, out);
        let input = Tensor::from_slice(gpu, input_shape, batch.input, "input tile")?;
        let labels = Tensor::from_slice(gpu, target_shape, batch.labels, "label tile")?;
        let weights = Tensor::from_slice(gpu, target_shape, batch.weights, "weight-map tile")?;

        self.model.zero_grads(gpu);
        let mode = Mode::Train {
            dropout_seed: derive_seed(self.seed, self.step) as u32,
        };
        let loss = self
            .model
            .loss_and_gradients(gpu, input, &labels, &weights, mode)?;
        let sgd = Sgd {
            lr: self.lr(),
            ..self.sgd
        };
        for p in self.model.params() {
            sgd.step(gpu, &p.value, &p.grad, &p.velocity)?;
        }
        Ok(loss)
    }
}

/// A well-mixed 64-bit value from (seed, step): SplitMix64's finaliser.
pub fn derive_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
