//! Either network behind one interface: what training, prediction and checkpoints need.

use super::config::{Arch, UNetConfig};
use super::param::Param;
use super::unet::{Mode, UNet};
use super::unetpp::UNetPlusPlus;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::axpy::axpy;
use crate::ops::loss::{softmax, softmax_cross_entropy_scaled};
use crate::tensor::Tensor;

// A program holds one or two networks, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Network {
    UNet(UNet),
    UNetPlusPlus(UNetPlusPlus),
}

/// Which of U-Net++'s deep-supervision heads predict. A U-Net has one head: the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// Run only the sub-network of head X(0,m) (pruning: faster, usually a little less
    /// accurate); `None` runs the whole network.
    pub prune: Option<usize>,
    /// Average the class probabilities of every head that runs, instead of taking the
    /// last one's.
    pub average: bool,
}

impl Heads {
    /// Checks that these heads make sense for a network of `config` (also before one
    /// exists, as the export does).
    pub fn check(&self, config: &UNetConfig) -> Result<()> {
        match (config.arch, self.prune, self.average) {
            (Arch::UNet, None, false) => Ok(()),
            (Arch::UNet, ..) => Err(Error::Config(
                "pruning and averaging heads apply to U-Net++ (--arch unetpp) only".into(),
            )),
            (Arch::UNetPlusPlus, Some(m), _) => config.check_prune(m),
            (Arch::UNetPlusPlus, None, _) => Ok(()),
        }
    }
}

impl Network {
    /// A freshly initialised network of `config.arch`, drawn from `seed`.
    pub fn new(gpu: &Gpu, config: UNetConfig, seed: u64) -> Result<Network> {
        Ok(match config.arch {
            Arch::UNet => Network::UNet(UNet::new(gpu, config, seed)?),
            Arch::UNetPlusPlus => Network::UNetPlusPlus(UNetPlusPlus::new(gpu, config, seed)?),
        })
    }

    pub fn config(&self) -> &UNetConfig {
        match self {
            Network::UNet(net) => &net.config,
            Network::UNetPlusPlus(net) => &net.config,
        }
    }

    /// Every parameter, in a fixed order.
    pub fn params(&self) -> Vec<&Param> {
        match self {
            Network::UNet(net) => net.params(),
            Network::UNetPlusPlus(net) => net.params(),
        }
    }

    /// Zeroes every gradient accumulator (before a step's backward).
    pub fn zero_grads(&self, gpu: &Gpu) {
        for p in self.params() {
            p.grad.zero(gpu);
        }
    }

    /// One training step's forward, loss and backward: every parameter's gradient is
    /// accumulated into `Param::grad`, and the loss is returned, still on the GPU. The loss
    /// is the pixel-weighted cross-entropy of the output, or with deep supervision the mean
    /// of every head's (each head's loss and gradient scaled by 1 / heads).
    pub fn loss_and_gradients(
        &self,
        gpu: &Gpu,
        input: Tensor,
        labels: &Tensor,
        weights: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        match self {
            Network::UNet(net) => {
                let acts = net.forward(gpu, input, mode)?;
                let loss = softmax_cross_entropy_scaled(gpu, &acts.logits, labels, weights, 1.0)?;
                net.backward(gpu, acts, &loss.dlogits)?;
                Ok(loss.loss)
            }
            Network::UNetPlusPlus(net) => {
                let acts = net.forward(gpu, input, mode, net.config.depth - 1)?;
                let scale = 1.0 / acts.heads.len() as f32;
                let mut total: Option<Tensor> = None;
                let mut dlogits = Vec::with_capacity(acts.heads.len());
                for head in &acts.heads {
                    let loss =
                        softmax_cross_entropy_scaled(gpu, &head.logits, labels, weights, scale)?;
                    match &total {
                        None => total = Some(loss.loss),
                        Some(sum) => axpy(gpu, sum, 1.0, &loss.loss)?,
                    }
                    dlogits.push(loss.dlogits);
                }
                net.backward(gpu, &acts, &dlogits)?;
                Ok(total.expect("at least one head"))
            }
        }
    }

    /// Class probabilities [N, classes, H', W'] of the network in evaluation mode.
    pub fn probabilities(&self, gpu: &Gpu, input: Tensor, heads: Heads) -> Result<Tensor> {
        self.check_heads(heads)?;
        match self {
            Network::UNet(net) => softmax(gpu, &net.forward(gpu, input, Mode::Eval)?.logits),
            Network::UNetPlusPlus(net) => {
                let top = heads.prune.unwrap_or(net.config.depth - 1);
                let acts = net.forward(gpu, input, Mode::Eval, top)?;
                let last = &acts.heads.last().expect("at least one head").logits;
                if !heads.average {
                    return softmax(gpu, last);
                }
                let mean = Tensor::zeros(gpu, last.shape(), "mean of the heads' probabilities")?;
                let share = 1.0 / acts.heads.len() as f32;
                for head in &acts.heads {
                    axpy(gpu, &mean, share, &softmax(gpu, &head.logits)?)?;
                }
                Ok(mean)
            }
        }
    }

    /// Checks that `heads` makes sense for this network before any work is done.
    pub fn check_heads(&self, heads: Heads) -> Result<()> {
        heads.check(self.config())
    }
}

impl From<UNet> for Network {
    fn from(net: UNet) -> Network {
        Network::UNet(net)
    }
}

impl From<UNetPlusPlus> for Network {
    fn from(net: UNetPlusPlus) -> Network {
        Network::UNetPlusPlus(net)
    }
}
