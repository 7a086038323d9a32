//! Learning-rate schedules: the rate of every step of a run, from one `--schedule` text.
//!
//! ```text
//! constant                          lr(s) = lr
//! 0.001,0.0003@0.57,0.0001@0.85     steps: 0.001 until 57% of the run, then 0.0003, from 85% 0.0001
//! 0.001,0.0003@4990,0.0001@7390     the same with phases from step numbers (whole numbers >= 1)
//! cosine  (or cosine:1e-5)          lr(s) = end + (lr - end) (1 + cos(pi s / S)) / 2, end 0 (or 1e-5)
//! ```
//! S is the run's planned number of steps (`--steps`); a run resumed or extended beyond S
//! keeps the rate its schedule reaches at S. A warm-up of W steps multiplies the rate by
//! (s + 1) / W for s < W: with momentum 0.99 the first full-rate steps of a fresh network
//! can throw it into a state where it predicts one class everywhere.
//!
//! A checkpoint stores the schedule's text, S and W, so a resumed run continues it.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// The shape of the rate over a run (the rate itself is `Sgd::lr`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The same rate at every step.
    #[default]
    Constant,
    /// Piecewise-constant: from fraction `from` of the run on, rate `lr` (the first phase
    /// starts at 0 with the run's base rate).
    Steps(Vec<Phase>),
    /// Half a cosine from the base rate down to `end` at the last step.
    Cosine { end: f32 },
}

/// One phase of a step schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// Where the phase starts: a fraction of the planned steps (0 < from < 1), or a step
    /// number (a whole number >= 1).
    pub from: f64,
    pub lr: f32,
}

/// Everything besides the base rate (`Sgd::lr`: the first phase's rate, or the cosine's
/// peak) that sets the rate of step `s`: the schedule, the run's planned length and its
/// warm-up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LrSchedule {
    pub schedule: Schedule,
    /// The steps the fractions refer to (`--steps` of the run that made the schedule).
    pub planned_steps: u64,
    pub warmup: u64,
}

impl LrSchedule {
    /// The rate of step `step` (counted from 0) of a run whose base rate is `base_lr`.
    pub fn lr_at(&self, base_lr: f32, step: u64) -> f32 {
        let progress = if self.planned_steps == 0 {
            0.0
        } else {
            (step as f64 / self.planned_steps as f64).min(1.0)
        };
        let lr = match &self.schedule {
            Schedule::Constant => base_lr,
            Schedule::Steps(phases) => phases
                .iter()
                .rev()
                .find(|phase| match phase.from >= 1.0 {
                    true => step as f64 >= phase.from,
                    false => progress >= phase.from,
                })
                .map_or(base_lr, |phase| phase.lr),
            Schedule::Cosine { end } => {
                let (peak, end) = (base_lr as f64, *end as f64);
                (end + (peak - end) * (1.0 + (PI * progress).cos()) / 2.0) as f32
            }
        };
        lr * warmup_factor(step, self.warmup)
    }
}

/// The learning-rate factor of step `step` (counted from 0) under a linear warm-up of
/// `warmup` steps: (step + 1) / warmup, then 1.
pub fn warmup_factor(step: u64, warmup: u64) -> f32 {
    if step >= warmup {
        1.0
    } else {
        (step + 1) as f32 / warmup as f32
    }
}

impl Schedule {
    /// Parses `--schedule`. A step schedule's first value is the run's base rate, returned
    /// beside the schedule (so `--lr` and a step schedule cannot disagree).
    pub fn parse(text: &str) -> Result<(Schedule, Option<f32>)> {
        let bad = |why: String| {
            Error::Config(format!(
                "--schedule {text:?}: {why}. Use `constant`, `cosine`, `cosine:END_LR`, or \
                 steps like `0.001,0.0003@0.57,0.0001@0.85` (rate@fraction of --steps, or rate@step)"
            ))
        };
        let rate = |s: &str| -> Result<f32> {
            match s.trim().parse::<f32>() {
                Ok(lr) if lr.is_finite() && lr >= 0.0 => Ok(lr),
                _ => Err(bad(format!("{s:?} is not a learning rate"))),
            }
        };
        let text_trimmed = text.trim();
        if text_trimmed == "constant" {
            return Ok((Schedule::Constant, None));
        }
        if let Some(rest) = text_trimmed.strip_prefix("cosine") {
            let end = match rest.strip_prefix(':') {
                Some(end) => rate(end)?,
                None if rest.is_empty() => 0.0,
                None => return Err(bad(format!("unknown schedule {text_trimmed:?}"))),
            };
            return Ok((Schedule::Cosine { end }, None));
        }
        let mut parts = text_trimmed.split(',');
        let first = rate(parts.next().unwrap_or(""))?;
        let mut phases: Vec<Phase> = Vec::new();
        for part in parts {
            let (lr, from) = part
                .split_once('@')
                .ok_or_else(|| bad(format!("{part:?} has no @fraction")))?;
            let from: f64 = match from.trim().parse() {
                Ok(f) if f > 0.0 && (f < 1.0 || f == f64::floor(f)) => f,
                _ => {
                    return Err(bad(format!(
                        "{from:?} is neither a fraction in (0, 1) nor a step number"
                    )))
                }
            };
            let step_number = |f: f64| f >= 1.0;
            if let Some(last) = phases.last() {
                if step_number(last.from) != step_number(from) {
                    return Err(bad("use fractions or step numbers, not both".into()));
                }
                if from <= last.from {
                    return Err(bad("the phases must start in increasing order".into()));
                }
            }
            phases.push(Phase {
                from,
                lr: rate(lr)?,
            });
        }
        let schedule = if phases.is_empty() {
            Schedule::Constant
        } else {
            Schedule::Steps(phases)
        };
        Ok((schedule, Some(first)))
    }
}

impl LrSchedule {
    /// The text [`Schedule::parse`] reads back: `constant`, `cosine:END`, or a step
    /// schedule with the base rate first.
    pub fn describe(&self, base_lr: f32) -> String {
        match &self.schedule {
            Schedule::Constant => "constant".into(),
            Schedule::Cosine { end } => format!("cosine:{end}"),
            Schedule::Steps(phases) => std::iter::once(base_lr.to_string())
                .chain(phases.iter().map(|p| format!("{}@{}", p.lr, p.from)))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The schedule as checkpoint metadata: (key, value) pairs.
    pub fn to_metadata(&self, base_lr: f32) -> [(&'static str, String); 3] {
        [
            ("schedule", self.describe(base_lr)),
            ("schedule_steps", self.planned_steps.to_string()),
            ("warmup", self.warmup.to_string()),
        ]
    }

    /// The schedule of checkpoint metadata written by [`Self::to_metadata`]; a checkpoint
    /// from before schedules has a constant rate.
    pub fn from_metadata(
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let Some(text) = get("schedule") else {
            return Ok(Self::default());
        };
        let (schedule, _) = Schedule::parse(&text).map_err(|e| e.to_string())?;
        let whole = |key: &str| -> std::result::Result<u64, String> {
            get(key)
                .unwrap_or_else(|| "0".into())
                .parse()
                .map_err(|_| format!("`{key}` is not a whole number"))
        };
        Ok(Self {
            schedule,
            planned_steps: whole("schedule_steps")?,
            warmup: whole("warmup")?,
        })
    }
}
