//! Metrics of K-class segmentations: the confusion matrix and, from it, per-class IoU and
//! Dice, their means over the foreground classes (1..K-1) and pixel accuracy. Unlabelled
//! pixels (truth [`IGNORE`]) are left out of every count.
//!
//! ```text
//! confusion[t][p] = pixels of true class t predicted as p
//! IoU_c  = TP / (TP + FP + FN)        Dice_c = 2 TP / (2 TP + FP + FN)
//! accuracy = sum_c TP_c / labelled pixels
//! ```
//!
//! A class absent from both truth and prediction has no IoU or Dice (`None`, `null` in
//! JSON) and is left out of the means.

use serde::Serialize;

use super::{BinaryMap, MetricsError, Result};

/// The class of an unlabelled pixel (as [`crate::data::IGNORE`]).
pub const IGNORE: u8 = u8::MAX;

/// The binary ground truth "class `foreground`" of a `width x height` class map, and
/// the map of its unlabelled pixels ([`IGNORE`]; `None` when it has none), as the
/// `_ignoring` metrics take them.
pub fn binary_truth(
    width: usize,
    height: usize,
    classes: &[u8],
    foreground: usize,
) -> Result<(BinaryMap, Option<BinaryMap>)> {
    let truth = BinaryMap::new(
        width,
        height,
        classes.iter().map(|&c| c as usize == foreground).collect(),
    )?;
    let ignored = classes.contains(&IGNORE).then(|| {
        BinaryMap::new(
            width,
            height,
            classes.iter().map(|&c| c == IGNORE).collect(),
        )
    });
    Ok((truth, ignored.transpose()?))
}

/// Pixel counts by (true class, predicted class).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    pub classes: usize,
    /// Row-major: `counts[t * classes + p]`.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Adds one image: `truth` and `pred` class maps of the same pixels. A predicted or
    /// true class >= K (other than [`IGNORE`] in `truth`) is an error.
    pub fn add(&mut self, truth: &[u8], pred: &[u8]) -> Result<()> {
        if truth.len() != pred.len() {
            return Err(MetricsError::WrongPixelCount {
                width: truth.len(),
                height: 1,
                expected: truth.len(),
                got: pred.len(),
            });
        }
        let k = self.classes;
        for (&t, &p) in truth.iter().zip(pred) {
            if t == IGNORE {
                continue;
            }
            if t as usize >= k || p as usize >= k {
                return Err(MetricsError::ClassOutOfRange {
                    class: t.max(p) as usize,
                    classes: k,
                });
            }
            self.counts[t as usize * k + p as usize] += 1;
        }
        Ok(())
    }

    pub fn get(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.classes + pred]
    }

    fn tp_fp_fn(&self, c: usize) -> (u64, u64, u64) {
        let tp = self.get(c, c);
        let fp = (0..self.classes).map(|t| self.get(t, c)).sum::<u64>() - tp;
        let fneg = (0..self.classes).map(|p| self.get(c, p)).sum::<u64>() - tp;
        (tp, fp, fneg)
    }

    pub fn iou(&self, c: usize) -> Option<f64> {
        let (tp, fp, fneg) = self.tp_fp_fn(c);
        let d = tp + fp + fneg;
        (d > 0).then(|| tp as f64 / d as f64)
    }

    pub fn dice(&self, c: usize) -> Option<f64> {
        let (tp, fp, fneg) = self.tp_fp_fn(c);
        let d = 2 * tp + fp + fneg;
        (d > 0).then(|| 2.0 * tp as f64 / d as f64)
    }

    /// Correct pixels over labelled pixels (0 when there are none).
    pub fn accuracy(&self) -> f64 {
        let total: u64 = self.counts.iter().sum();
        let correct: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        }
    }

    /// The report of these counts.
    pub fn report(&self) -> ClassReport {
        let per_class: Vec<ClassScores> = (0..self.classes)
            .map(|c| ClassScores {
                class: c,
                iou: self.iou(c),
                dice: self.dice(c),
                true_pixels: (0..self.classes).map(|p| self.get(c, p)).sum(),
                predicted_pixels: (0..self.classes).map(|t| self.get(t, c)).sum(),
            })
            .collect();
        let mean = |f: fn(&ClassScores) -> Option<f64>| {
            let values: Vec<f64> = per_class[1..].iter().filter_map(f).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        ClassReport {
            classes: self.classes,
            mean_foreground_iou: mean(|s| s.iou),
            mean_foreground_dice: mean(|s| s.dice),
            pixel_accuracy: self.accuracy(),
            confusion: (0..self.classes)
                .map(|t| (0..self.classes).map(|p| self.get(t, p)).collect())
                .collect(),
            per_class,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScores {
    pub class: usize,
    pub iou: Option<f64>,
    pub dice: Option<f64>,
    pub true_pixels: u64,
    pub predicted_pixels: u64,
}

/// Every K-class metric of a set of images (their confusion matrices summed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassReport {
    pub classes: usize,
    pub per_class: Vec<ClassScores>,
    /// Mean over classes 1..K-1 that have an IoU.
    pub mean_foreground_iou: Option<f64>,
    pub mean_foreground_dice: Option<f64>,
    pub pixel_accuracy: f64,
    /// `confusion[true][predicted]`, pixels.
    pub confusion: Vec<Vec<u64>>,
}

impl ClassReport {
    /// The report as a text table: per-class IoU and Dice, the means, accuracy, and the
    /// confusion matrix (rows: true class, columns: predicted).
    pub fn table(&self) -> String {
        let show = |v: Option<f64>| v.map_or("   -  ".to_string(), |v| format!("{v:.4}"));
        let mut out = String::from("class   IoU     Dice    true px    predicted px\n");
        for s in &self.per_class {
            out += &format!(
                "{:<7} {}  {}  {:>9}  {:>9}\n",
                s.class,
                show(s.iou),
                show(s.dice),
                s.true_pixels,
                s.predicted_pixels
            );
        }
        out += &format!(
            "mean foreground IoU {}, Dice {}; pixel accuracy {:.4}\n",
            show(self.mean_foreground_iou),
            show(self.mean_foreground_dice),
            self.pixel_accuracy
        );
        out += "confusion (rows: true class, columns: predicted)\n      ";
        for p in 0..self.classes {
            out += &format!("{p:>10}");
        }
        out += "\n";
        for (t, row) in self.confusion.iter().enumerate() {
            out += &format!("{t:<6}");
            for n in row {
                out += &format!("{n:>10}");
            }
            out += "\n";
        }
        out
    }
}
