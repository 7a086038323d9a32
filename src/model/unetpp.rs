//! U-Net++ (Zhou, Rahman Siddiquee, Tajbakhsh and Liang 2018): the U-Net's encoder with
//! nested, dense skip pathways between it and the decoder. Node X(i,j) sits at level i
//! (resolution 1/2^i); X(i,0) is the contracting path, and each X(i,j), j >= 1, convolves
//! the concatenation of every earlier node of its level with the up-sampled node below:
//!
//! ```text
//! X(i,j) = conv3x3+ReLU twice ( [X(i,0), X(i,1), ..., X(i,j-1), up(X(i+1,j-1))] )
//!
//! X(0,0) ─── X(0,1) ─── X(0,2) ─── X(0,3)   -> 1x1 heads (deep supervision:
//!   └ X(1,0) ─── X(1,1) ─── X(1,2) ┘            one on each X(0,j), j >= 1)
//!       └ X(2,0) ─── X(2,1) ┘
//!           └ X(3,0) ┘
//! ```
//!
//! The forward runs the anti-diagonals i + j = 0, 1, 2, ... in turn, each from X(d,0) up
//! to X(0,d); stopping after diagonal m leaves exactly the sub-network of head X(0,m),
//! which is how a deep-supervised U-Net++ is pruned for faster prediction. The backward
//! runs the same order in reverse. A node's output feeds several nodes, so its gradient is
//! summed over them ([`NodeGrads`]) before its own convs' backward.
//!
//! With valid convolutions every concatenated node is centre-cropped to the up-sampled
//! map, and every head reads the centre of its top node at the size of the last one's, so
//! all heads predict the same output window.

use super::config::{Arch, UNetConfig};
use super::layers::{conv3x3, ConvLayer, Init, UpLayer, HEAD};
use super::param::Param;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::Mode;
use crate::ops::activation::{dropout_backward, dropout_forward, DropoutMask};
use crate::ops::axpy::axpy;
use crate::ops::conv_transpose;
use crate::ops::crop_concat;
use crate::ops::max_pool::{self, MaxPoolSaved};
use crate::tensor::{Shape, Tensor};

pub struct UNetPlusPlus {
    pub config: UNetConfig,
    /// `nodes[i][j]` is X(i,j), for i + j < depth.
    nodes: Vec<Vec<Node>>,
    /// The 1x1 heads, one per `config.head_levels()`, in that order.
    heads: Vec<ConvLayer>,
}

/// One node: two 3x3 convs with ReLU, fed by an up-conv unless it is on the contracting path.
struct Node {
    /// The up-convolution of X(i+1,j-1); none for j = 0.
    up: Option<UpLayer>,
    conv1: ConvLayer,
    conv2: ConvLayer,
}

/// What the forward keeps for the backward.
pub struct Activations {
    input: Tensor,
    /// `nodes[i][j]` for every node computed.
    nodes: Vec<Vec<NodeSaved>>,
    /// The bottom node's dropout and its output, when training with dropout.
    dropout: Option<(DropoutMask, Tensor)>,
    /// One per head computed, in the order of `config.head_levels()`.
    pub heads: Vec<HeadSaved>,
}

struct NodeSaved {
    /// The first conv's input, the concatenation; none on the contracting path, whose
    /// input is the pooled node above (or the image).
    cat: Option<Tensor>,
    /// After conv1 + ReLU.
    mid: Tensor,
    /// After conv2 + ReLU: X(i,j).
    out: Tensor,
    /// Contracting path: the max-pool into the level below, once that level is computed.
    pool: Option<(Tensor, MaxPoolSaved)>,
}

pub struct HeadSaved {
    /// The j of the top node X(0,j) this head reads.
    pub level: usize,
    /// The centre of X(0,j) at the output size, when X(0,j) is larger (valid convs).
    cropped: Option<Tensor>,
    pub logits: Tensor,
}

impl UNetPlusPlus {
    /// A network with He-initialised weights and zero biases, drawn from `seed`.
    pub fn new(gpu: &Gpu, config: UNetConfig, seed: u64) -> Result<UNetPlusPlus> {
        config.validate()?;
        if config.arch != Arch::UNetPlusPlus {
            return Err(Error::Config(format!(
                "a {} config cannot build a U-Net++",
                config.arch
            )));
        }
        let mut init = Init::new(gpu, seed);
        let conv3 = conv3x3(config.padding);
        let mut nodes: Vec<Vec<Node>> = (0..config.depth).map(|_| Vec::new()).collect();
        for diagonal in 0..config.depth {
            let (c_in, c) = match diagonal {
                0 => (config.in_channels, config.channels(0)),
                d => (config.channels(d - 1), config.channels(d)),
            };
            nodes[diagonal].push(Node {
                up: None,
                conv1: init.conv(&format!("x{diagonal}_0.conv1"), conv3, c_in, c)?,
                conv2: init.conv(&format!("x{diagonal}_0.conv2"), conv3, c, c)?,
            });
            for j in 1..=diagonal {
                let i = diagonal - j;
                let (c, below) = (config.channels(i), config.channels(i + 1));
                let name = format!("x{i}_{j}");
                nodes[i].push(Node {
                    up: Some(init.up(&format!("{name}.up"), below, c)?),
                    // X(i,0..j-1) and up(X(i+1,j-1)), c channels each.
                    conv1: init.conv(&format!("{name}.conv1"), conv3, (j + 1) * c, c)?,
                    conv2: init.conv(&format!("{name}.conv2"), conv3, c, c)?,
                });
            }
        }
        let heads = config
            .head_levels()
            .map(|j| {
                init.conv(
                    &format!("x0_{j}.head"),
                    HEAD,
                    config.channels(0),
                    config.classes,
                )
            })
            .collect::<Result<_>>()?;
        Ok(UNetPlusPlus {
            config,
            nodes,
            heads,
        })
    }

    /// Every parameter, in the order the forward uses them: node by node along the
    /// diagonals, then the heads.
    pub fn params(&self) -> Vec<&Param> {
        let mut params = Vec::new();
        for diagonal in 0..self.config.depth {
            for j in 0..=diagonal {
                let node = &self.nodes[diagonal - j][j];
                params.extend(node.up.iter().flat_map(UpLayer::params));
                params.extend(node.conv1.params().into_iter().chain(node.conv2.params()));
            }
        }
        params.extend(self.heads.iter().flat_map(ConvLayer::params));
        params
    }

    /// input [N, C_in, H, W] -> the logits of every head on X(0,1..=top), keeping what the
    /// backward needs. `top` = depth - 1 runs the whole network; a smaller `top` runs only
    /// the sub-network of head X(0,top) (pruning), which needs deep supervision.
    pub fn forward(&self, gpu: &Gpu, input: Tensor, mode: Mode, top: usize) -> Result<Activations> {
        let depth = self.config.depth;
        self.config.check_prune(top)?;
        let s = input.shape();
        let (out_h, out_w) = (self.config.check_tile(s.h)?, self.config.check_tile(s.w)?);
        let mut acts = Activations {
            input,
            nodes: (0..depth).map(|_| Vec::new()).collect(),
            dropout: None,
            heads: Vec::new(),
        };
        for diagonal in 0..=top {
            self.forward_encoder_node(gpu, &mut acts, diagonal)?;
            if diagonal == depth - 1 {
                // Dropout at the end of the contracting path, as in the U-Net.
                if let (Mode::Train { dropout_seed }, Some(p)) = (mode, self.config.dropout) {
                    if p > 0.0 {
                        let mask = DropoutMask::new(dropout_seed, p)?;
                        let dropped = dropout_forward(gpu, &acts.nodes[diagonal][0].out, mask)?;
                        acts.dropout = Some((mask, dropped));
                    }
                }
            }
            for j in 1..=diagonal {
                self.forward_nested_node(gpu, &mut acts, diagonal - j, j)?;
            }
        }
        for (head, level) in self.heads.iter().zip(self.config.head_levels()) {
            if level > top {
                break;
            }
            let x = &acts.nodes[0][level].out;
            let cropped = match x.shape() {
                s if (s.h, s.w) == (out_h, out_w) => None,
                _ => Some(crop_concat::crop(gpu, x, out_h, out_w)?),
            };
            let logits = head.forward(gpu, cropped.as_ref().unwrap_or(x))?;
            acts.heads.push(HeadSaved {
                level,
                cropped,
                logits,
            });
        }
        Ok(acts)
    }

    /// X(d,0): the image (d = 0) or the pooled X(d-1,0), through two convs.
    fn forward_encoder_node(&self, gpu: &Gpu, acts: &mut Activations, d: usize) -> Result<()> {
        if d > 0 {
            let above = &mut acts.nodes[d - 1][0];
            above.pool = Some(max_pool::forward(gpu, &above.out)?);
        }
        let inp = match d {
            0 => &acts.input,
            _ => &acts.nodes[d - 1][0].pooled().0,
        };
        let node = &self.nodes[d][0];
        let mid = node.conv1.forward(gpu, inp)?;
        let out = node.conv2.forward(gpu, &mid)?;
        acts.nodes[d].push(NodeSaved {
            cat: None,
            mid,
            out,
            pool: None,
        });
        Ok(())
    }

    /// X(i,j), j >= 1: [X(i,0..j-1), up(X(i+1,j-1))] through two convs.
    fn forward_nested_node(
        &self,
        gpu: &Gpu,
        acts: &mut Activations,
        i: usize,
        j: usize,
    ) -> Result<()> {
        let node = &self.nodes[i][j];
        let up = node.up().forward(gpu, acts.output(i + 1, j - 1))?;
        let parts: Vec<&Tensor> = acts.nodes[i].iter().map(|n| &n.out).chain([&up]).collect();
        let s = up.shape();
        let cat = crop_concat::forward_parts(gpu, &parts, s.h, s.w)?;
        drop(up); // the backward needs only `cat`
        let mid = node.conv1.forward(gpu, &cat)?;
        let out = node.conv2.forward(gpu, &mid)?;
        acts.nodes[i].push(NodeSaved {
            cat: Some(cat),
            mid,
            out,
            pool: None,
        });
        Ok(())
    }

    /// One dlogits per head of `acts` -> the gradient of every parameter, accumulated into
    /// `Param::grad`. The mirror image of [`UNetPlusPlus::forward`].
    pub fn backward(&self, gpu: &Gpu, acts: &Activations, dlogits: &[Tensor]) -> Result<()> {
        if dlogits.len() != acts.heads.len() {
            return Err(Error::Config(format!(
                "U-Net++ backward needs one dlogits per head: {} heads, {} given",
                acts.heads.len(),
                dlogits.len()
            )));
        }
        let mut grads = NodeGrads::new(self.config.depth);
        for ((head, saved), dlogits) in self.heads.iter().zip(&acts.heads).zip(dlogits) {
            let x = &acts.nodes[0][saved.level].out;
            let d = head.backward(
                gpu,
                saved.cropped.as_ref().unwrap_or(x),
                &saved.logits,
                dlogits,
            )?;
            let d = match saved.cropped {
                Some(_) => crop_concat::crop_backward(gpu, &d, x.shape())?,
                None => d,
            };
            grads.add(gpu, 0, saved.level, d)?;
        }
        let top = acts.heads.last().expect("at least one head").level;
        for diagonal in (0..=top).rev() {
            for j in (1..=diagonal).rev() {
                self.backward_nested_node(gpu, acts, &mut grads, diagonal - j, j)?;
            }
            self.backward_encoder_node(gpu, acts, &mut grads, diagonal)?;
        }
        Ok(())
    }

    fn backward_nested_node(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        grads: &mut NodeGrads,
        i: usize,
        j: usize,
    ) -> Result<()> {
        let (node, saved) = (&self.nodes[i][j], &acts.nodes[i][j]);
        let cat = saved
            .cat
            .as_ref()
            .expect("nested nodes keep their concatenation");
        let d = grads.take(i, j);
        let d = node.conv2.backward(gpu, &saved.mid, &saved.out, d)?;
        let d = node.conv1.backward(gpu, cat, &saved.mid, d)?;
        let below = acts.output(i + 1, j - 1);
        let up_shape = conv_transpose::out_shape(below.shape(), self.config.channels(i));
        let part_shapes: Vec<Shape> = acts.nodes[i][..j]
            .iter()
            .map(|n| n.out.shape())
            .chain([up_shape])
            .collect();
        let mut dparts = crop_concat::backward_parts(gpu, &d, &part_shapes)?;
        let dup = dparts.pop().expect("the up-sampled part is last");
        for (k, dpart) in dparts.into_iter().enumerate() {
            grads.add(gpu, i, k, dpart)?;
        }
        let dbelow = node.up().backward(gpu, below, &dup)?;
        grads.add(gpu, i + 1, j - 1, dbelow)
    }

    fn backward_encoder_node(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        grads: &mut NodeGrads,
        d: usize,
    ) -> Result<()> {
        let (node, saved) = (&self.nodes[d][0], &acts.nodes[d][0]);
        let mut dout = grads.take(d, 0);
        if let (Some((mask, _)), true) = (&acts.dropout, d + 1 == self.config.depth) {
            dout = dropout_backward(gpu, &dout, *mask)?;
        }
        let dmid = node.conv2.backward(gpu, &saved.mid, &saved.out, dout)?;
        if d == 0 {
            // The image needs no gradient.
            node.conv1
                .backward_with(gpu, &acts.input, &saved.mid, dmid, false)?;
            return Ok(());
        }
        let (pooled, pool) = acts.nodes[d - 1][0].pooled();
        let dpooled = node.conv1.backward(gpu, pooled, &saved.mid, dmid)?;
        grads.add(gpu, d - 1, 0, max_pool::backward(gpu, &dpooled, pool)?)
    }
}

impl Node {
    fn up(&self) -> &UpLayer {
        self.up
            .as_ref()
            .expect("nested nodes have an up-convolution")
    }
}

impl Activations {
    /// X(i,j) as its consumers see it: the bottom node after dropout, if any.
    fn output(&self, i: usize, j: usize) -> &Tensor {
        match (&self.dropout, i + 1 == self.nodes.len() && j == 0) {
            (Some((_, dropped)), true) => dropped,
            _ => &self.nodes[i][j].out,
        }
    }
}

impl NodeSaved {
    fn pooled(&self) -> &(Tensor, MaxPoolSaved) {
        self.pool
            .as_ref()
            .expect("a contracting node is pooled once the level below is computed")
    }
}

/// The gradient of each node's output, summed over every node and head that reads it.
struct NodeGrads(Vec<Vec<Option<Tensor>>>);

impl NodeGrads {
    fn new(depth: usize) -> NodeGrads {
        NodeGrads(
            (0..depth)
                .map(|i| (0..depth - i).map(|_| None).collect())
                .collect(),
        )
    }

    /// Adds one path's gradient into X(i,j)'s (the first one is kept as it is).
    fn add(&mut self, gpu: &Gpu, i: usize, j: usize, grad: Tensor) -> Result<()> {
        match &self.0[i][j] {
            None => self.0[i][j] = Some(grad),
            Some(sum) => axpy(gpu, sum, 1.0, &grad)?,
        }
        Ok(())
    }

    /// X(i,j)'s whole gradient, once every node and head that reads it is done.
    fn take(&mut self, i: usize, j: usize) -> Tensor {
        self.0[i][j]
            .take()
            .expect("every node computed feeds a later node or a head")
    }
}
