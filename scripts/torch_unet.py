"""The U-Net and U-Net++ of unet-wgpu, written plainly in PyTorch.

Parameter names and layouts are exactly those of `src/model/unet.rs` and
`src/model/unetpp.rs`, so a unet-wgpu checkpoint of either architecture loads with a strict
`load_state_dict` once its `optimizer.*` entries are dropped. The U-Net's:

    enc{i}.conv1.weight  [C_i, C_in, 3, 3]   (i = 0 .. depth-1; the last level is the bottom)
    enc{i}.conv1.bias    [C_i]
    enc{i}.conv2.*       [C_i, C_i, 3, 3], [C_i]
    dec{i}.up.weight     [C_{i+1}, C_i, 2, 2]  (ConvTranspose2d: [C_in, C_out, kH, kW])
    dec{i}.up.bias       [C_i]
    dec{i}.conv1.*       [C_i, 2 C_i, 3, 3], [C_i]   (i = 0 .. depth-2)
    dec{i}.conv2.*       [C_i, C_i, 3, 3], [C_i]
    head.weight          [classes, C_0, 1, 1]
    head.bias            [classes]

with C_i = base_channels * 2^i. The forward is the one of unet.rs: two 3x3 convs with ReLU
per level, a 2x2 max-pool between levels, dropout (training only) on the bottom level's
output, then per level on the way up a 2x2 stride-2 up-convolution, a centre crop of the
skip connection to the up-sampled size (window at ((Hs - H) // 2, (Ws - W) // 2)),
concatenation [skip, up] on channels, two 3x3 convs with ReLU; a 1x1 conv gives the logits.

The U-Net++'s (Zhou et al. 2018; `UNetPlusPlus` below) has one node X(i,j) per level i and
column j, i + j < depth:

    x{i}_0.conv1.*       [C_i, C_{i-1} (C_in for i = 0), 3, 3], [C_i]   the contracting path
    x{i}_0.conv2.*       [C_i, C_i, 3, 3], [C_i]
    x{i}_{j}.up.*        [C_{i+1}, C_i, 2, 2], [C_i]       (j >= 1: up-conv of X(i+1,j-1))
    x{i}_{j}.conv1.*     [C_i, (j + 1) C_i, 3, 3], [C_i]   over [X(i,0..j-1), up]
    x{i}_{j}.conv2.*     [C_i, C_i, 3, 3], [C_i]
    x0_{j}.head.*        [classes, C_0, 1, 1], [classes]   j = 1..depth-1 with deep
                                                           supervision, else only depth-1

X(i,j) = two 3x3 convs with ReLU of the concatenation of X(i,0), ..., X(i,j-1) and the
up-convolved X(i+1,j-1), each centre-cropped to the up-sampled size (with valid padding);
dropout (training only) on the bottom node X(depth-1,0) as its consumers see it. Each head
reads the centre of its top node at the full network's output size.

Usage (also `python3 scripts/torch_unet.py bench-step --config paper`, a training
step timed in fp32 with TF32 off, to compare with `unet bench step`):

    from torch_unet import UNet, config_from_checkpoint, load_checkpoint
    model = load_checkpoint("runs/x/checkpoint.safetensors")   # eval mode, either arch
    logits = model(torch.from_numpy(tile))                     # tile: [N, C, H, W] f32
    # U-Net++: model(x) is the last head's logits; model.forward_heads(x, top) every head's.
"""

import json

import torch
import torch.nn.functional as F
from torch import nn


class UNetConfig:
    """The fields of unet-wgpu's `UNetConfig` (as in a checkpoint's `config` metadata)."""

    def __init__(self, in_channels=1, classes=2, depth=5, base_channels=64,
                 padding="valid", dropout=0.5, arch="unet", deep_supervision=False):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")
        if arch not in ("unet", "unetpp"):
            raise ValueError(f"arch must be 'unet' or 'unetpp', not {arch!r}")
        self.arch = arch
        self.deep_supervision = deep_supervision
        self.in_channels = in_channels
        self.classes = classes
        self.depth = depth
        self.base_channels = base_channels
        self.padding = padding
        self.dropout = dropout  # a rate in [0, 1), or None

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    def to_json(self):
        # Same keys and order as serde writes them for the Rust struct.
        return json.dumps({
            "arch": self.arch,
            "in_channels": self.in_channels,
            "classes": self.classes,
            "depth": self.depth,
            "base_channels": self.base_channels,
            "padding": self.padding,
            "dropout": self.dropout,
            "deep_supervision": self.deep_supervision,
        }, separators=(",", ":"))

    def head_levels(self):
        """The top nodes X(0,j) that carry a head: j = 1..depth-1 with deep supervision,
        else only depth-1 (config.rs's `head_levels`)."""
        last = self.depth - 1
        return list(range(1, last + 1)) if self.deep_supervision else [last]

    def channels(self, level):
        return self.base_channels << level

    def output_size(self, size):
        """The output side length for an input tile of side `size`, or None when the tile
        does not fit (an odd max-pool input, or a map shrunk to nothing): config.rs's
        `output_size`."""
        shrink = 4 if self.padding == "valid" else 0  # two 3x3 convs per level
        for _ in range(self.depth - 1):
            size -= shrink
            if size <= 0 or size % 2:
                return None
            size //= 2
        size -= shrink
        for _ in range(self.depth - 1):
            if size <= 0:
                return None
            size = 2 * size - shrink
        return size if size > 0 else None

    def input_size_for(self, output):
        """The smallest input tile whose output is at least `output` pixels wide."""
        size = 1
        while (self.output_size(size) or 0) < output:
            size += 1
        return size


class ConvPair(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU: `conv1`, `conv2`."""

    def __init__(self, c_in, c_out, padding):
        super().__init__()
        pad = 0 if padding == "valid" else 1
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=pad)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=pad)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UpLevel(nn.Module):
    """One level of the expanding path: `up` (2x2 up-conv), then `conv1`, `conv2`."""

    def __init__(self, c_below, c, padding):
        super().__init__()
        pad = 0 if padding == "valid" else 1
        self.up = nn.ConvTranspose2d(c_below, c, 2, stride=2)
        # conv1 sees the cropped skip (c channels) concatenated with the up-conv's c.
        self.conv1 = nn.Conv2d(2 * c, c, 3, padding=pad)
        self.conv2 = nn.Conv2d(c, c, 3, padding=pad)

    def forward(self, below, skip):
        up = self.up(below)
        cat = torch.cat([center_crop(skip, up.shape[-2:]), up], dim=1)
        return F.relu(self.conv2(F.relu(self.conv1(cat))))


def center_crop(x, size):
    """The centre window of `x` [N, C, Hs, Ws] of size (H, W), top-left at
    ((Hs - H) // 2, (Ws - W) // 2) like crop_concat.rs."""
    h, w = size
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


class UNet(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        c_in = config.in_channels
        for level in range(config.depth):
            self.add_module(f"enc{level}", ConvPair(c_in, config.channels(level), config.padding))
            c_in = config.channels(level)
        for level in range(config.depth - 1):
            self.add_module(f"dec{level}", UpLevel(config.channels(level + 1),
                                                   config.channels(level), config.padding))
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.head = nn.Conv2d(config.channels(0), config.classes, 1)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """He initialisation as in unet.rs: weights ~ N(0, 2 / fan_in) with fan_in =
        k * k * C_in for convs and C_in for the up-convs (one tap per input channel);
        biases zero. (Same distribution as unet-wgpu, not the same random numbers.)"""
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                fan_in = module.in_channels
            elif isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            else:
                continue
            with torch.no_grad():
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                module.bias.zero_()

    def forward(self, x):
        depth = self.config.depth
        skips = []
        for level in range(depth):
            x = getattr(self, f"enc{level}")(x)
            if level + 1 < depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        x = self.dropout(x)  # end of the contracting path; identity in eval mode
        for level in reversed(range(depth - 1)):
            x = getattr(self, f"dec{level}")(x, skips[level])
        return self.head(x)


def he_init(model, generator=None):
    """He initialisation as in layers.rs (see UNet.reset_parameters)."""
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            fan_in = module.in_channels
        elif isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            continue
        with torch.no_grad():
            module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
            module.bias.zero_()


class Node(nn.Module):
    """X(i,j): `up` (j >= 1: the 2x2 up-conv of X(i+1,j-1)), then `conv1` over the `cat`
    channels and `conv2`, each 3x3 with ReLU."""

    def __init__(self, c_in, c, padding, c_below=None):
        super().__init__()
        pad = 0 if padding == "valid" else 1
        if c_below is not None:
            self.up = nn.ConvTranspose2d(c_below, c, 2, stride=2)
        self.conv1 = nn.Conv2d(c_in, c, 3, padding=pad)
        self.conv2 = nn.Conv2d(c, c, 3, padding=pad)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNetPlusPlus(nn.Module):
    """U-Net++ with unetpp.rs's names and order: the anti-diagonals i + j = 0, 1, ... in
    turn; stopping after diagonal `top` leaves the sub-network of head X(0,top) (pruning)."""

    def __init__(self, config):
        super().__init__()
        if config.depth < 2:
            raise ValueError("U-Net++ needs depth 2 or more")
        self.config = config
        for d in range(config.depth):
            c_in = config.in_channels if d == 0 else config.channels(d - 1)
            self.add_module(f"x{d}_0", Node(c_in, config.channels(d), config.padding))
            for j in range(1, d + 1):
                i = d - j
                c = config.channels(i)
                self.add_module(f"x{i}_{j}", Node((j + 1) * c, c, config.padding,
                                                  c_below=config.channels(i + 1)))
        for j in config.head_levels():
            # The head belongs to its top node: `x0_{j}.head.*`, as in unetpp.rs.
            head = nn.Conv2d(config.channels(0), config.classes, 1)
            getattr(self, f"x0_{j}").add_module("head", head)
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        he_init(self)

    def forward_heads(self, x, top=None):
        """The logits of every head on X(0,1..=top) (default: the whole network), in the
        order of config.head_levels()."""
        cfg = self.config
        top = cfg.depth - 1 if top is None else top
        if not 1 <= top <= cfg.depth - 1:
            raise ValueError(f"cannot prune this U-Net++ to {top}: use 1..={cfg.depth - 1}")
        if not any(j <= top for j in cfg.head_levels()):
            raise ValueError("trained without deep supervision: only the full network "
                             f"(top = {cfg.depth - 1}) has a head")
        out_h, out_w = cfg.output_size(x.shape[-2]), cfg.output_size(x.shape[-1])
        if out_h is None or out_w is None:
            raise ValueError(f"tile {list(x.shape[-2:])} does not fit this network")
        nodes = [[] for _ in range(cfg.depth)]

        def seen(i, j):
            # The bottom node as its consumers see it: after dropout.
            x_ij = nodes[i][j]
            return self.dropout(x_ij) if (i == cfg.depth - 1 and j == 0) else x_ij

        for d in range(top + 1):
            inp = x if d == 0 else F.max_pool2d(nodes[d - 1][0], 2)
            nodes[d].append(getattr(self, f"x{d}_0")(inp))
            for j in range(1, d + 1):
                i = d - j
                node = getattr(self, f"x{i}_{j}")
                up = node.up(seen(i + 1, j - 1))
                parts = [center_crop(p, up.shape[-2:]) for p in nodes[i]] + [up]
                nodes[i].append(node(torch.cat(parts, dim=1)))
        heads = []
        for j in cfg.head_levels():
            if j > top:
                break
            top_node = center_crop(nodes[0][j], (out_h, out_w))
            heads.append(getattr(self, f"x0_{j}").head(top_node))
        return heads

    def forward(self, x, top=None):
        """The last head's logits (what `examples/forward.rs` writes)."""
        return self.forward_heads(x, top)[-1]


def weighted_cross_entropy(logits, labels, weights):
    """unet-wgpu's loss (ops/loss.rs): the pixel-weighted cross-entropy averaged over all
    N*H*W pixels (not divided by the sum of the weights).

    logits [N, K, H, W]; labels [N, 1, H, W] class indices (any dtype); weights [N, 1, H, W].
    """
    ce = F.cross_entropy(logits, labels[:, 0].long(), reduction="none")
    return (weights[:, 0] * ce).mean()


def split_checkpoint(tensors):
    """Separates a checkpoint's tensors into the model's state_dict and the rest
    (`optimizer.momentum.<name>`: SGD's momentum buffers)."""
    state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    rest = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    return state, rest


def config_from_checkpoint(path):
    """The UNetConfig stored in a unet-wgpu checkpoint's metadata."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "unet-wgpu" or "config" not in meta:
        raise ValueError(f"{path} is not a unet-wgpu checkpoint (no unet-wgpu metadata)")
    return UNetConfig.from_json(meta["config"])


def load_checkpoint(path):
    """A UNet or UNetPlusPlus in eval mode holding the weights of a unet-wgpu checkpoint."""
    from safetensors.torch import load_file

    config = config_from_checkpoint(path)
    model = (UNetPlusPlus if config.arch == "unetpp" else UNet)(config)
    state, _ = split_checkpoint(load_file(path))
    model.load_state_dict(state)  # strict: every name and shape must match
    return model.eval()


# ---- A training-step benchmark, to compare with `unet bench step` -------------------------

PRESETS = {
    # name: (depth, base_channels, tile), as `unet bench step --config`.
    "paper": (5, 64, 572),
    "small": (4, 16, 188),
}


def forward_macs(model, x):
    """Multiply-adds of one forward, counted as `unet info` does: out pixels x C_in x k x k
    for each conv, in pixels x C_out x 4 for each up-convolution."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * module.in_channels * k
        elif isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels * 4

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def bench_step(config_name="paper", tile=None, reps=5, device="cuda", peak_tflops=None):
    """Times forward, loss, backward and SGD (momentum 0.99) on one tile in fp32 with TF32
    off (the engine's arithmetic); returns a dict like `unet bench step --json`."""
    import statistics
    import time

    depth, base, default_tile = PRESETS[config_name]
    tile = tile or default_tile
    if device.startswith("cuda"):
        # fp32 everywhere: no TF32 in matmuls or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # cuDNN picks its algorithms by timing, as the engine's autotuner does.
        torch.backends.cudnn.benchmark = True
    config = UNetConfig(depth=depth, base_channels=base)
    out = config.output_size(tile)
    if out is None:
        raise ValueError(f"tile {tile} does not fit the {config_name} network")
    torch.manual_seed(1)
    model = UNet(config).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    x = torch.randn(1, 1, tile, tile, device=device)
    labels = torch.randint(0, 2, (1, 1, out, out), device=device)
    weights = torch.rand(1, 1, out, out, device=device) + 0.5
    macs = forward_macs(model.eval(), x)
    model.train()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = weighted_cross_entropy(model(x), labels, weights)
        loss.backward()
        opt.step()
        return loss

    for _ in range(2):  # warm-up: cuDNN's search, the allocator's pools
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(max(1, reps)):
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    # FLOPs per step = 3 x the forward's 2 x multiply-adds, as `unet bench step` counts.
    gflops = 3 * 2 * macs / (ms * 1e6)
    report = {
        "framework": f"pytorch {torch.__version__}",
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "config": config_name,
        "tile": tile,
        "median_ms": ms,
        "gflops": gflops,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
        "tf32": False,
    }
    if peak_tflops:
        report["fraction_of_f32_peak"] = gflops / (peak_tflops * 1e3)
    return report


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench-step", help="time a training step (fp32, TF32 off)")
    bench.add_argument("--config", choices=sorted(PRESETS), default="paper")
    bench.add_argument("--tile", type=int)
    bench.add_argument("--reps", type=int, default=5)
    bench.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    bench.add_argument("--peak-tflops", type=float, help="f32 peak, for the fraction")
    bench.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    report = bench_step(args.config, args.tile, args.reps, args.device, args.peak_tflops)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
