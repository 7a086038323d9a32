//! Which share of the inputs a job predicts: shard K of N takes the inputs whose index in
//! the sorted list is K modulo N (round robin), so N jobs with K = 0..N-1 cover every
//! input exactly once, and each gets a mix of the list rather than one end of it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// K, from 0.
    pub index: usize,
    /// N, at least 1.
    pub count: usize,
}

impl Shard {
    /// Every input in one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Config(format!(
                "shard {index}/{count} does not exist: give K/N with 0 <= K < N (e.g. 0/4 .. 3/4)"
            )));
        }
        Ok(Shard { index, count })
    }

    /// `K/N`, e.g. `2/8`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || {
            Error::Config(format!(
                "--shard {text:?} is not K/N: give e.g. --shard 0/4 for the first of four shards"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        Shard::new(
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        )
    }

    /// K and N from a scheduler's environment, looked up with `var`:
    /// Slurm job arrays (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` if set, and
    /// `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with N
    /// from `shards`, the job's `completions`, since Kubernetes does not pass it).
    pub fn from_env(var: impl Fn(&str) -> Option<String>, shards: Option<usize>) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Config(format!(
                        "{name}={v:?} is not a number: check the job script"
                    ))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = match (number("SLURM_ARRAY_TASK_COUNT")?, shards) {
                (_, Some(n)) | (Some(n), None) => n,
                (None, None) => return Err(Error::Config(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --shards N"
                        .into(),
                )),
            };
            return Shard::new(id.saturating_sub(min), count);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or_else(|| {
                Error::Config(
                    "JOB_COMPLETION_INDEX is set but the shard count is not: give --shards N (the Job's completions)"
                        .into(),
                )
            })?;
            return Shard::new(index, count);
        }
        Err(Error::Config(
            "--shard-from-env found neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor \
             JOB_COMPLETION_INDEX (a Kubernetes Indexed Job): run it as an array task, or give --shard K/N"
                .into(),
        ))
    }

    /// Whether the input at `index` of the sorted list belongs to this shard.
    pub fn owns(&self, index: usize) -> bool {
        index % self.count == self.index
    }

    /// How many of `total` inputs this shard owns.
    pub fn share(&self, total: usize) -> usize {
        (total + self.count - 1 - self.index) / self.count
    }

    /// The manifest's file name: `manifest-shard-K-of-N.json`.
    pub fn manifest_name(&self) -> String {
        format!("manifest-shard-{}-of-{}.json", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
