//! Naive f64 CPU references of the U-Net's ops and of the whole network, for checking the
//! GPU against (never the other way round).

use std::collections::HashMap;

use unet_wgpu::model::UNetConfig;
use unet_wgpu::ops::conv2d::Padding;
use unet_wgpu::Shape;

/// An f64 NCHW tensor on the host.
#[derive(Clone, Debug)]
pub struct Host {
    pub shape: Shape,
    pub data: Vec<f64>,
}

impl Host {
    pub fn zeros(shape: Shape) -> Host {
        Host {
            shape,
            data: vec![0.0; shape.numel()],
        }
    }
    fn at(&self, n: usize, c: usize, y: usize, x: usize) -> f64 {
        self.data[self.shape.index(n, c, y, x)]
    }
}

/// k x k convolution, stride 1, zero padding `pad`; weight [C_out, C_in, k, k].
pub fn conv2d(
    x: &Host,
    w: &[f64],
    b: &[f64],
    c_out: usize,
    k: usize,
    pad: usize,
    relu: bool,
) -> Host {
    let s = x.shape;
    let (oh, ow) = (s.h + 2 * pad + 1 - k, s.w + 2 * pad + 1 - k);
    let mut out = Host::zeros(Shape::new(s.n, c_out, oh, ow));
    for n in 0..s.n {
        for co in 0..c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[co];
                    for ci in 0..s.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = (
                                    (oy + ky) as isize - pad as isize,
                                    (ox + kx) as isize - pad as isize,
                                );
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                acc += x.at(n, ci, iy as usize, ix as usize)
                                    * w[((co * s.c + ci) * k + ky) * k + kx];
                            }
                        }
                    }
                    let i = out.shape.index(n, co, oy, ox);
                    out.data[i] = if relu { acc.max(0.0) } else { acc };
                }
            }
        }
    }
    out
}

/// 2x2 max-pool, stride 2.
pub fn max_pool(x: &Host) -> Host {
    let s = x.shape;
    let mut out = Host::zeros(Shape::new(s.n, s.c, s.h / 2, s.w / 2));
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..s.h / 2 {
                for xx in 0..s.w / 2 {
                    let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|&(dy, dx)| x.at(n, c, 2 * y + dy, 2 * xx + dx))
                        .fold(f64::NEG_INFINITY, f64::max);
                    let i = out.shape.index(n, c, y, xx);
                    out.data[i] = m;
                }
            }
        }
    }
    out
}

/// 2x2 transposed convolution, stride 2; weight [C_in, C_out, 2, 2].
pub fn conv_transpose(x: &Host, w: &[f64], b: &[f64], c_out: usize) -> Host {
    let s = x.shape;
    let mut out = Host::zeros(Shape::new(s.n, c_out, 2 * s.h, 2 * s.w));
    for n in 0..s.n {
        for co in 0..c_out {
            for oy in 0..2 * s.h {
                for ox in 0..2 * s.w {
                    let (iy, ix, a, bb) = (oy / 2, ox / 2, oy % 2, ox % 2);
                    let mut acc = b[co];
                    for ci in 0..s.c {
                        acc += x.at(n, ci, iy, ix) * w[((ci * c_out + co) * 2 + a) * 2 + bb];
                    }
                    let i = out.shape.index(n, co, oy, ox);
                    out.data[i] = acc;
                }
            }
        }
    }
    out
}

/// Centre-crop `skip` to `up`'s size and concatenate on channels: [skip, up].
pub fn crop_concat(skip: &Host, up: &Host) -> Host {
    let (s, u) = (skip.shape, up.shape);
    let (oy, ox) = ((s.h - u.h) / 2, (s.w - u.w) / 2);
    let mut out = Host::zeros(Shape::new(u.n, s.c + u.c, u.h, u.w));
    for n in 0..u.n {
        for c in 0..s.c + u.c {
            for y in 0..u.h {
                for x in 0..u.w {
                    let v = if c < s.c {
                        skip.at(n, c, y + oy, x + ox)
                    } else {
                        up.at(n, c - s.c, y, x)
                    };
                    let i = out.shape.index(n, c, y, x);
                    out.data[i] = v;
                }
            }
        }
    }
    out
}

/// The centre `h` x `w` window of `x` (offsets rounded down, as the GPU op does).
pub fn crop(x: &Host, h: usize, w: usize) -> Host {
    let s = x.shape;
    let (oy, ox) = ((s.h - h) / 2, (s.w - w) / 2);
    let mut out = Host::zeros(Shape::new(s.n, s.c, h, w));
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..h {
                for xx in 0..w {
                    let i = out.shape.index(n, c, y, xx);
                    out.data[i] = x.at(n, c, y + oy, xx + ox);
                }
            }
        }
    }
    out
}

/// f64 softmax of logits [N, K, H, W] over K, the textbook way (max subtracted).
pub fn softmax(shape: Shape, logits: &[f64]) -> Vec<f64> {
    let mut probs = vec![0.0; logits.len()];
    for n in 0..shape.n {
        for y in 0..shape.h {
            for x in 0..shape.w {
                let at = |k| shape.index(n, k, y, x);
                let m = (0..shape.c)
                    .map(|k| logits[at(k)])
                    .fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..shape.c).map(|k| (logits[at(k)] - m).exp()).sum();
                for k in 0..shape.c {
                    probs[at(k)] = (logits[at(k)] - m).exp() / sum;
                }
            }
        }
    }
    probs
}

/// f64 loss = (1/P) sum_x w(x) * -log p_{l(x)}(x), P = N*H*W, with -log p_l computed as
/// lse - z_l so that a p_l that underflows (logits of +-80) stays finite.
pub fn weighted_cross_entropy(
    shape: Shape,
    logits: &[f64],
    labels: &[f64],
    weights: &[f64],
) -> f64 {
    let mut total = 0.0;
    for n in 0..shape.n {
        for y in 0..shape.h {
            for x in 0..shape.w {
                let i = n * shape.plane() + y * shape.w + x;
                let z = |k| logits[shape.index(n, k, y, x)];
                let m = (0..shape.c).map(z).fold(f64::NEG_INFINITY, f64::max);
                let lse = m + (0..shape.c).map(|k| (z(k) - m).exp()).sum::<f64>().ln();
                total += weights[i] * (lse - z(labels[i] as usize));
            }
        }
    }
    total / (shape.n * shape.plane()) as f64
}

/// The layers of a network in f64, from parameters named as in a checkpoint.
struct Layers<'a> {
    config: &'a UNetConfig,
    params: &'a HashMap<String, Vec<f64>>,
}

impl Layers<'_> {
    fn param(&self, name: String) -> &[f64] {
        self.params
            .get(&name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    /// `{node}.conv1` then `{node}.conv2`, each 3x3 + ReLU, to `c` channels.
    fn two_convs(&self, x: &Host, node: &str, c: usize) -> Host {
        let pad = match self.config.padding {
            Padding::Valid => 0,
            Padding::Same => 1,
        };
        let conv = |x: &Host, name: String| {
            let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
            conv2d(x, self.param(w), self.param(b), c, 3, pad, true)
        };
        conv(&conv(x, format!("{node}.conv1")), format!("{node}.conv2"))
    }

    /// The 2x2 up-convolution `{name}` to `c` channels.
    fn up(&self, x: &Host, name: &str, c: usize) -> Host {
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        conv_transpose(x, self.param(w), self.param(b), c)
    }

    /// The 1x1 head `{name}` to class scores.
    fn head(&self, x: &Host, name: &str) -> Host {
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        conv2d(
            x,
            self.param(w),
            self.param(b),
            self.config.classes,
            1,
            0,
            false,
        )
    }
}

/// The whole U-Net in f64, without dropout, from parameters named as in a checkpoint.
pub fn unet(config: &UNetConfig, params: &HashMap<String, Vec<f64>>, x: &Host) -> Host {
    let layers = Layers { config, params };
    let mut skips = Vec::new();
    let mut h = x.clone();
    for level in 0..config.depth {
        h = layers.two_convs(&h, &format!("enc{level}"), config.channels(level));
        if level + 1 < config.depth {
            skips.push(h.clone());
            h = max_pool(&h);
        }
    }
    for level in (0..config.depth - 1).rev() {
        let c = config.channels(level);
        let up = layers.up(&h, &format!("dec{level}.up"), c);
        let cat = crop_concat(&skips[level], &up);
        h = layers.two_convs(&cat, &format!("dec{level}"), c);
    }
    layers.head(&h, "head")
}

/// U-Net++ in f64, without dropout, from parameters named as in a checkpoint: the logits
/// of every head, in the order of `config.head_levels()`.
pub fn unetpp(config: &UNetConfig, params: &HashMap<String, Vec<f64>>, x: &Host) -> Vec<Host> {
    let layers = Layers { config, params };
    let depth = config.depth;
    // nodes[i][j] = X(i,j).
    let mut nodes: Vec<Vec<Host>> = vec![Vec::new(); depth];
    for d in 0..depth {
        let inp = match d {
            0 => x.clone(),
            _ => max_pool(&nodes[d - 1][0]),
        };
        nodes[d].push(layers.two_convs(&inp, &format!("x{d}_0"), config.channels(d)));
        for j in 1..=d {
            let i = d - j;
            let c = config.channels(i);
            let name = format!("x{i}_{j}");
            let up = layers.up(&nodes[i + 1][j - 1], &format!("{name}.up"), c);
            // [X(i,0), ..., X(i,j-1), up], each cropped to up's size.
            let cat = nodes[i][..j]
                .iter()
                .rev()
                .fold(up, |rest, earlier| crop_concat(earlier, &rest));
            nodes[i].push(layers.two_convs(&cat, &name, c));
        }
    }
    let last = &nodes[0][depth - 1].shape;
    config
        .head_levels()
        .map(|j| layers.head(&crop(&nodes[0][j], last.h, last.w), &format!("x0_{j}.head")))
        .collect()
}
