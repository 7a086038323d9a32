//! Noticing a network that has stopped learning, from what each step computes anyway.
//!
//! A U-Net trained with momentum 0.99 can fall, within its first few hundred steps, into a
//! state it never leaves: every ReLU of some layer is off for every pixel ("dead"), so no
//! gradient reaches the layers below and the output no longer depends on the input; or the
//! output is (nearly) the same everywhere. Either way its loss is that of the best
//! *constant* prediction, the weighted class prior's entropy of the tile:
//!
//! ```text
//! W_c   = sum of w(x) over the pixels x of class c      (W = sum over c of W_c)
//! prior = (1/P) sum over c of -W_c ln(W_c / W)            P = pixels of the tile
//! ```
//!
//! (the loss is (1/P) sum_x w(x) (-ln p_l(x)), and p_c = W_c / W minimises it among
//! predictions that are the same at every pixel). Two checks, both cheap:
//! - **Dead layers**, every [`DEAD_CHECK_EVERY`] steps: a 3x3 conv + ReLU layer whose bias
//!   gradient is exactly 0 in every channel had no ReLU on at any pixel of the tile (or
//!   received no gradient from above, which only a dead layer above it causes). Reading
//!   the biases' gradients back is a few kilobytes.
//! - **Loss at the prior**: after [`GRACE_STEPS`], the mean loss of the last [`WINDOW`]
//!   steps is at least [`PRIOR_RATIO`] of their mean prior entropy: the network does no
//!   better than predicting the class frequencies, whatever it outputs.
//!
//! A dead layer on [`CONFIRMATIONS`] checks in a row is a collapse: no gradient reaches
//! the layers below it, so it never recovers. A loss at the prior on [`CONFIRMATIONS`]
//! checks in a row is first only a warning, said at once: a network can sit there for a
//! few hundred steps and then learn, when what tells the classes apart is faint (the
//! DIC-like cells, whose only cue is texture). It becomes a collapse when the loss stays
//! at the prior on every check for [`PRIOR_PATIENCE`] more steps. A healthy network
//! recovers from a bad tile before either.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::Network;

/// Steps between two reads of the bias gradients.
pub const DEAD_CHECK_EVERY: u64 = 20;
/// Steps before the loss is compared with the prior: a fresh network starts there.
pub const GRACE_STEPS: u64 = 300;
/// Steps whose losses and priors are averaged.
pub const WINDOW: usize = 100;
/// A loss at or above this fraction of the prior entropy has learned nothing.
pub const PRIOR_RATIO: f64 = 0.95;
/// Consecutive failed checks that make a collapse, or for the loss a warning (the loss
/// check runs every [`DEAD_CHECK_EVERY`] steps too).
pub const CONFIRMATIONS: u32 = 3;
/// Steps a loss at the prior is watched after its warning before the run is stopped.
pub const PRIOR_PATIENCE: u64 = 700;
/// What to try against a collapse, said by the warning and by the error that stops a run.
pub const REMEDIES: &str = "a warm-up (--warmup 1000) or a lower rate (--lr 0.0003), and \
                            check that the masks mark what you want segmented (--foreground, \
                            --invert)";

/// What a check found wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Possibly collapsed: say so, and keep training.
    Warning(Collapse),
    /// Collapsed: stop.
    Collapsed(Collapse),
}

/// Why a network is called collapsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Collapse {
    /// Every ReLU of these layers is off on the whole tile.
    DeadLayers(Vec<String>),
    /// The mean loss of the last steps against their mean prior entropy.
    LossAtPrior { loss: f64, prior: f64 },
}

impl std::fmt::Display for Collapse {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Collapse::DeadLayers(layers) => {
                let named = match layers.len() {
                    1 => format!("layer {}", layers[0]),
                    n if n <= 3 => format!("layers {}", layers.join(", ")),
                    n => format!("{n} layers ({}, ...)", layers[..2].join(", ")),
                };
                write!(
                    f,
                    "every ReLU of {named} is off on every pixel, so the output no longer \
                     depends on the input"
                )
            }
            Collapse::LossAtPrior { loss, prior } => write!(
                f,
                "its loss ({loss:.4}, mean of the last {WINDOW} steps) is that of predicting \
                 the class frequencies everywhere ({prior:.4})"
            ),
        }
    }
}

/// The weighted class prior's entropy of a batch (see the module notes): `labels` are
/// class indices as f32, `weights` the weight map, both over the batch's output pixels.
pub fn prior_entropy(labels: &[f32], weights: &[f32], classes: usize) -> f64 {
    let mut per_class = vec![0.0f64; classes];
    for (&label, &w) in labels.iter().zip(weights) {
        if let Some(total) = per_class.get_mut(label as usize) {
            *total += f64::from(w);
        }
    }
    let all: f64 = per_class.iter().sum();
    let pixels = labels.len().max(1) as f64;
    per_class
        .iter()
        .filter(|&&w| w > 0.0)
        .map(|&w| -w * (w / all).ln())
        .sum::<f64>()
        / pixels
}

/// The 3x3 conv + ReLU layers of `model` whose bias gradient is exactly 0: read after a
/// step, the layers that were dead on its tiles.
pub fn dead_layers(gpu: &Gpu, model: &Network) -> Result<Vec<String>> {
    let config = model.config();
    let layers = config.layers(config.input_size_for(1))?;
    let with_relu: Vec<String> = layers
        .iter()
        .filter(|l| l.kind == "conv3x3+relu")
        .map(|l| format!("{}.bias", l.name))
        .collect();
    let mut dead = Vec::new();
    for p in model.params() {
        if with_relu.contains(&p.name) && p.grad.to_vec(gpu)?.iter().all(|&g| g == 0.0) {
            dead.push(p.name.trim_end_matches(".bias").to_string());
        }
    }
    Ok(dead)
}

/// The running checks of one training run.
#[derive(Default)]
pub struct HealthMonitor {
    /// (loss, prior entropy) of the last [`WINDOW`] steps.
    recent: std::collections::VecDeque<(f64, f64)>,
    dead_in_a_row: u32,
    at_prior_in_a_row: u32,
    /// The step of the warning about the current stretch of losses at the prior.
    warned_at: Option<u64>,
}

impl HealthMonitor {
    /// Whether step `step` (just taken) is one whose bias gradients should be read.
    pub fn wants_dead_check(step: u64) -> bool {
        step.is_multiple_of(DEAD_CHECK_EVERY)
    }

    /// Records step `step`'s loss and prior entropy, and at a check step the layers found
    /// dead on it; returns a warning or a collapse once confirmed (module notes).
    pub fn record(
        &mut self,
        step: u64,
        loss: f32,
        prior: f64,
        dead: Option<Vec<String>>,
    ) -> Option<Verdict> {
        self.recent.push_back((f64::from(loss), prior));
        if self.recent.len() > WINDOW {
            self.recent.pop_front();
        }
        let dead = dead?;
        self.dead_in_a_row = if dead.is_empty() {
            0
        } else {
            self.dead_in_a_row + 1
        };
        if self.dead_in_a_row >= CONFIRMATIONS {
            return Some(Verdict::Collapsed(Collapse::DeadLayers(dead)));
        }
        if step < GRACE_STEPS || self.recent.len() < WINDOW {
            return None;
        }
        let n = self.recent.len() as f64;
        let loss = self.recent.iter().map(|r| r.0).sum::<f64>() / n;
        let prior = self.recent.iter().map(|r| r.1).sum::<f64>() / n;
        if loss < PRIOR_RATIO * prior {
            self.at_prior_in_a_row = 0;
            self.warned_at = None;
            return None;
        }
        self.at_prior_in_a_row += 1;
        if self.at_prior_in_a_row < CONFIRMATIONS {
            return None;
        }
        let collapse = Collapse::LossAtPrior { loss, prior };
        match self.warned_at {
            None => {
                self.warned_at = Some(step);
                Some(Verdict::Warning(collapse))
            }
            Some(warned) if step >= warned + PRIOR_PATIENCE => Some(Verdict::Collapsed(collapse)),
            Some(_) => None,
        }
    }
}
