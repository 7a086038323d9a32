//! The U-Net of Ronneberger, Fischer and Brox (2015), forward and backward written out as
//! mirror images: read [`UNet::forward`] top to bottom and [`UNet::backward`] bottom to top.
//!
//! ```text
//! enc0 ─────────────────────────────── crop+concat ─ dec0 ─ head
//!   └ pool ─ enc1 ──────────── crop+concat ─ dec1 ┘ up
//!              └ pool ─ ... ─ bottom (+dropout) ┘ up
//! ```
//! Each level holds two 3x3 convs with ReLU; channels double on the way down.

use super::config::{Arch, UNetConfig};
use super::layers::{conv3x3, ConvLayer, Init, UpLayer, HEAD};
use super::param::Param;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::activation::{dropout_backward, dropout_forward, DropoutMask};
use crate::ops::crop_concat;
use crate::ops::max_pool::{self, MaxPoolSaved};
use crate::tensor::Tensor;

struct DecoderLevel {
    up: UpLayer,
    conv1: ConvLayer,
    conv2: ConvLayer,
}

pub struct UNet {
    pub config: UNetConfig,
    /// Two convs per level; the last level is the bottom.
    encoder: Vec<[ConvLayer; 2]>,
    /// Indexed by level, 0..depth-1 (the bottom has no decoder level).
    decoder: Vec<DecoderLevel>,
    head: ConvLayer,
}

/// What the forward keeps for the backward. Shapes are for a paper tile of 572.
pub struct Activations {
    /// The input tile, [N, C_in, 572, 572].
    input: Tensor,
    encoder: Vec<EncoderSaved>,
    /// The bottom's dropout and its output [N, 1024, 28, 28], when training with dropout.
    dropout: Option<(DropoutMask, Tensor)>,
    /// Indexed by level, like [`UNet::decoder`].
    decoder: Vec<DecoderSaved>,
    /// The network's output, [N, classes, 388, 388].
    pub logits: Tensor,
}

struct EncoderSaved {
    /// After conv1 + ReLU (level 0: [N, 64, 570, 570]).
    a1: Tensor,
    /// After conv2 + ReLU, the skip connection (level 0: [N, 64, 568, 568]).
    a2: Tensor,
    /// The max-pool below this level (none at the bottom) and its output, which is the
    /// next level's input (level 0: [N, 64, 284, 284]).
    pool: Option<(Tensor, MaxPoolSaved)>,
}

struct DecoderSaved {
    /// [skip cropped, up-sampled] (level 0: [N, 128, 392, 392]).
    cat: Tensor,
    /// After conv1 + ReLU (level 0: [N, 64, 390, 390]).
    b1: Tensor,
    /// After conv2 + ReLU (level 0: [N, 64, 388, 388]).
    b2: Tensor,
}

/// Training applies dropout with a fresh seed each step; evaluation does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train { dropout_seed: u32 },
    Eval,
}

impl UNet {
    /// A network with He-initialised weights (std sqrt(2 / fan_in)) and zero biases,
    /// drawn from `seed`.
    pub fn new(gpu: &Gpu, config: UNetConfig, seed: u64) -> Result<UNet> {
        config.validate()?;
        if config.arch != Arch::UNet {
            return Err(Error::Config(format!(
                "a {} config cannot build a U-Net",
                config.arch
            )));
        }
        let mut init = Init::new(gpu, seed);
        let conv3 = conv3x3(config.padding);

        let mut encoder = Vec::new();
        let mut c_in = config.in_channels;
        for level in 0..config.depth {
            let c = config.channels(level);
            encoder.push([
                init.conv(&format!("enc{level}.conv1"), conv3, c_in, c)?,
                init.conv(&format!("enc{level}.conv2"), conv3, c, c)?,
            ]);
            c_in = c;
        }
        let mut decoder = Vec::new();
        for level in 0..config.depth - 1 {
            let (c, below) = (config.channels(level), config.channels(level + 1));
            decoder.push(DecoderLevel {
                up: init.up(&format!("dec{level}.up"), below, c)?,
                conv1: init.conv(&format!("dec{level}.conv1"), conv3, 2 * c, c)?,
                conv2: init.conv(&format!("dec{level}.conv2"), conv3, c, c)?,
            });
        }
        let head = init.conv("head", HEAD, config.channels(0), config.classes)?;
        Ok(UNet {
            config,
            encoder,
            decoder,
            head,
        })
    }

    /// Every parameter, in a fixed order: the encoder top to bottom, the decoder bottom
    /// to top, then the head.
    pub fn params(&self) -> Vec<&Param> {
        let mut params = Vec::new();
        for [conv1, conv2] in &self.encoder {
            params.extend(conv1.params().into_iter().chain(conv2.params()));
        }
        for level in self.decoder.iter().rev() {
            params.extend(level.up.params());
            params.extend(level.conv1.params().into_iter().chain(level.conv2.params()));
        }
        params.extend(self.head.params());
        params
    }

    /// Zeroes every gradient accumulator (before a step's backward).
    pub fn zero_grads(&self, gpu: &Gpu) {
        for p in self.params() {
            p.grad.zero(gpu);
        }
    }

    /// input [N, C_in, H, W] -> logits [N, classes, H', W'], keeping what the backward needs.
    pub fn forward(&self, gpu: &Gpu, input: Tensor, mode: Mode) -> Result<Activations> {
        let depth = self.config.depth;
        // Contracting path: two convs per level, then a max-pool into the level below.
        let mut encoder: Vec<EncoderSaved> = Vec::with_capacity(depth);
        for (level, [conv1, conv2]) in self.encoder.iter().enumerate() {
            let inp = match level {
                0 => &input,
                _ => &encoder[level - 1].pooled().0,
            };
            let a1 = conv1.forward(gpu, inp)?;
            let a2 = conv2.forward(gpu, &a1)?;
            let pool = if level + 1 < depth {
                Some(max_pool::forward(gpu, &a2)?)
            } else {
                None
            };
            encoder.push(EncoderSaved { a1, a2, pool });
        }
        // Dropout at the end of the contracting path.
        let dropout = match (mode, self.config.dropout) {
            (Mode::Train { dropout_seed }, Some(p)) if p > 0.0 => {
                let mask = DropoutMask::new(dropout_seed, p)?;
                Some((mask, dropout_forward(gpu, &encoder[depth - 1].a2, mask)?))
            }
            _ => None,
        };
        let bottom_out = dropout
            .as_ref()
            .map_or(&encoder[depth - 1].a2, |(_, out)| out);

        // Expanding path, bottom to top: up-conv, crop+concat with the skip, two convs.
        let mut decoder: Vec<Option<DecoderSaved>> = (0..depth - 1).map(|_| None).collect();
        for level in (0..depth - 1).rev() {
            let dec = &self.decoder[level];
            let below = match level + 1 {
                l if l == depth - 1 => bottom_out,
                l => &decoder[l].as_ref().expect("level below done").b2,
            };
            let up = dec.up.forward(gpu, below)?;
            let cat = crop_concat::forward(gpu, &encoder[level].a2, &up)?;
            drop(up); // the backward needs only `cat`
            let b1 = dec.conv1.forward(gpu, &cat)?;
            let b2 = dec.conv2.forward(gpu, &b1)?;
            decoder[level] = Some(DecoderSaved { cat, b1, b2 });
        }
        let decoder: Vec<DecoderSaved> = decoder
            .into_iter()
            .map(|d| d.expect("every level"))
            .collect();
        let top = match decoder.first() {
            Some(level0) => &level0.b2,
            None => bottom_out, // depth 1: no pooling at all
        };
        let logits = self.head.forward(gpu, top)?;
        Ok(Activations {
            input,
            encoder,
            dropout,
            decoder,
            logits,
        })
    }

    /// dlogits -> the gradient of every parameter, accumulated into `Param::grad`.
    /// The mirror image of [`UNet::forward`]: head, expanding path top to bottom, then
    /// the contracting path bottom to top.
    ///
    /// It takes the activations by value and drops each saved tensor (and each gradient)
    /// as soon as its last use is recorded. The step's memory plan
    /// ([`Gpu::plan_memory`]) sees each buffer's lifetime as from taken to dropped, so a
    /// saved activation released early lends its buffer to the gradients that follow;
    /// kept to the end, every level's activations would still be alive at the busiest
    /// moment, the backward of level 0.
    pub fn backward(&self, gpu: &Gpu, acts: Activations, dlogits: &Tensor) -> Result<()> {
        let depth = self.config.depth;
        let Activations {
            input,
            mut encoder,
            dropout,
            decoder,
            logits,
        } = acts;
        let bottom_out = match &dropout {
            Some((_, dropped)) => dropped,
            None => &encoder.last().expect("at least one level").a2,
        };
        // Level 0 first; `peek` is the level below, whose output feeds the up-convolution.
        let mut decoder = decoder.into_iter().peekable();
        let top = decoder.peek().map_or(bottom_out, |level0| &level0.b2);
        let mut d = self.head.backward(gpu, top, &logits, dlogits)?;
        drop(logits);

        // Expanding path, top to bottom. Each level leaves the gradient of its skip
        // connection (written by crop+concat's backward) for the contracting path.
        let mut dskips: Vec<Tensor> = Vec::with_capacity(depth);
        for (level, dec) in self.decoder.iter().enumerate() {
            let DecoderSaved { cat, b1, b2 } = decoder.next().expect("every level saved");
            d = dec.conv2.backward(gpu, &b1, &b2, d)?;
            drop(b2);
            d = dec.conv1.backward(gpu, &cat, &b1, d)?;
            drop((cat, b1));
            let (dskip, dup) = crop_concat::backward(gpu, &d, encoder[level].a2.shape())?;
            drop(d);
            dskips.push(dskip);
            let below = decoder.peek().map_or(bottom_out, |next| &next.b2);
            d = dec.up.backward(gpu, below, &dup)?;
        }
        if let Some((mask, dropped)) = dropout {
            drop(dropped);
            d = dropout_backward(gpu, &d, mask)?;
        }

        // Contracting path, bottom to top, each level's saved tensors dropped as it is
        // done. A level's output feeds both its max-pool and its skip connection, so the
        // pool's gradient adds into the skip's.
        while let Some(EncoderSaved { a1, a2, pool }) = encoder.pop() {
            let level = encoder.len();
            let [conv1, conv2] = &self.encoder[level];
            if let Some((_, pool)) = pool {
                let dskip = dskips.pop().expect("skip gradient");
                max_pool::backward_add(gpu, &d, &pool, &dskip)?;
                d = dskip;
            }
            d = conv2.backward(gpu, &a1, &a2, d)?;
            drop(a2);
            let inp = match level {
                0 => &input,
                _ => &encoder[level - 1].pooled().0,
            };
            // The input image needs no gradient.
            match conv1.backward_with(gpu, inp, &a1, d, level > 0)? {
                Some(dinp) => d = dinp,
                None => break,
            }
        }
        Ok(())
    }
}

impl EncoderSaved {
    fn pooled(&self) -> &(Tensor, MaxPoolSaved) {
        self.pool
            .as_ref()
            .expect("every level but the bottom is pooled")
    }
}
