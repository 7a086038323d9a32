"""Writes tests/fixtures/unet_tiny_golden.safetensors: PyTorch's answers for a tiny U-Net,
which tests/golden.rs checks unet-wgpu against (in the manner of llm.c's test_gpt2.c).

Regenerate (from the repository root; needs torch, numpy and safetensors, any device):

    python scripts/make_golden.py               # the 1-channel, 2-class case
    python scripts/make_golden.py --case c3k3   # 3 channels, 3 classes:
                                                # tests/fixtures/unet_tiny_golden_c3k3.safetensors

The second case has the same layout with input [N, 3, 60, 60] (the disks in three
channels of different contrast, independent noise per channel), labels 0 (background),
1 (disk interior) and 2 (the disk's outer 2 px ring), and logits [N, 3, 20, 20].

The output is deterministic for a given PyTorch version (everything is drawn from one
seeded generator and computed on the CPU): regenerating gives the same tensors bit for bit,
though the order of the metadata in the file's header may change. Commit the fixture
together with this script.

What it holds, all float32, under these keys:

    <name>          every initial parameter, under the project's names (enc0.conv1.weight,
                    ..., head.bias), in PyTorch's layouts; biases are random too, so that
                    the test sees them used
    input           [N, 1, 60, 60] the input tiles
    labels          [N, 1, 20, 20] class indices 0/1 as floats
    weight_map      [N, 1, 20, 20] per-pixel loss weights w(x)
    logits          [N, 2, 20, 20] the forward pass (eval mode; there is no dropout)
    loss            [1]  (w * cross_entropy(logits, labels)).mean()
    grad.<name>     dloss/d<name> after one backward from the initial weights
    losses          [STEPS] the loss before each of STEPS SGD steps (momentum, weight decay)
    final.<name>    every parameter after the STEPS steps

The metadata holds the network's config as unet-wgpu's JSON (`config`), the optimiser
(`lr`, `momentum`, `weight_decay`, `steps`) and how it was made.

The references (logits, loss, gradients, losses, final weights) are computed in float64
from the float32 inputs and weights, then rounded to float32: they are PyTorch's answer
without PyTorch's own float32 rounding. The script also runs the same computation in
float32 and prints how far that lands from float64, the spread to expect of any f32
implementation (unet-wgpu's included).
"""

import copy
import json
import math
import pathlib

import torch
from safetensors.torch import save_file

from torch_unet import UNet, UNetConfig, weighted_cross_entropy

SEED = 20150518  # the U-Net paper's arXiv date
CONFIG = UNetConfig(in_channels=1, classes=2, depth=3, base_channels=4,
                    padding="valid", dropout=None)
N, TILE, OUT = 2, 60, 20
LR, MOMENTUM, WEIGHT_DECAY, STEPS = 0.01, 0.99, 0.01, 5

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / \
    "unet_tiny_golden.safetensors"
CONFIG_C3K3 = UNetConfig(in_channels=3, classes=3, depth=3, base_channels=4,
                         padding="valid", dropout=None)
FIXTURE_C3K3 = FIXTURE.with_name("unet_tiny_golden_c3k3.safetensors")


def make_data(gen):
    """Two tiles of bright disks on a noisy background; labels 1 inside a disk; a weight
    map in [0.5, 10) (random, standing in for w_c + the border term)."""
    ys, xs = torch.meshgrid(torch.arange(TILE, dtype=torch.float32),
                            torch.arange(TILE, dtype=torch.float32), indexing="ij")
    mask = torch.zeros(N, 1, TILE, TILE)
    for n in range(N):
        for _ in range(4):
            cy, cx = (15 + 30 * torch.rand(2, generator=gen)).tolist()
            r = 3 + 6 * torch.rand(1, generator=gen).item()
            mask[n, 0][(ys - cy) ** 2 + (xs - cx) ** 2 <= r * r] = 1.0
    noise = torch.randn(N, 1, TILE, TILE, generator=gen)
    inp = mask + 0.3 * noise - 0.5
    off = (TILE - OUT) // 2
    labels = mask[:, :, off:off + OUT, off:off + OUT].clone()
    weight_map = 0.5 + 9.5 * torch.rand(N, 1, OUT, OUT, generator=gen)
    return inp, labels, weight_map


def make_data_c3k3(gen):
    """Disks as in make_data, in three channels (contrast 1, 0.6, -0.4; independent
    noise), labelled 0 outside, 2 on a disk's outer 2 px, 1 inside that."""
    ys, xs = torch.meshgrid(torch.arange(TILE, dtype=torch.float32),
                            torch.arange(TILE, dtype=torch.float32), indexing="ij")
    classes = torch.zeros(N, 1, TILE, TILE)
    for n in range(N):
        for _ in range(4):
            cy, cx = (15 + 30 * torch.rand(2, generator=gen)).tolist()
            r = 3 + 6 * torch.rand(1, generator=gen).item()
            d = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt()
            classes[n, 0][d <= r] = 2.0
            classes[n, 0][d <= r - 2] = 1.0
    mask = (classes > 0).float()
    contrast = torch.tensor([1.0, 0.6, -0.4]).reshape(1, 3, 1, 1)
    noise = torch.randn(N, 3, TILE, TILE, generator=gen)
    inp = mask * contrast + 0.3 * noise - 0.5
    off = (TILE - OUT) // 2
    labels = classes[:, :, off:off + OUT, off:off + OUT].clone()
    weight_map = 0.5 + 9.5 * torch.rand(N, 1, OUT, OUT, generator=gen)
    return inp, labels, weight_map


def sgd_run(model, inp, labels, weight_map):
    """STEPS steps of PyTorch's SGD; returns the loss before each and the final weights."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = weighted_cross_entropy(model(inp), labels, weight_map)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return torch.tensor(losses), {k: v.detach().clone() for k, v in model.state_dict().items()}


def reference(model, inp, labels, weight_map):
    """Logits, loss, gradients, SGD losses and final weights, in the model's dtype."""
    model = copy.deepcopy(model).eval()
    logits = model(inp)
    loss = weighted_cross_entropy(logits, labels, weight_map)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    model.zero_grad()
    losses, final = sgd_run(model, inp, labels, weight_map)
    return {"logits": logits.detach(), "loss": loss.detach().reshape(1), "grads": grads,
            "losses": losses, "final": final}


def max_diff(a, b):
    """(max abs difference, max relative difference over elements with |b| > 1e-3)."""
    a, b = a.double(), b.double()
    d = (a - b).abs()
    big = b.abs() > 1e-3
    rel = (d[big] / b.abs()[big]).max().item() if big.any() else 0.0
    return d.max().item(), rel


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["default", "c3k3"], default="default")
    case = parser.parse_args().case
    config, fixture, data = {
        "default": (CONFIG, FIXTURE, make_data),
        "c3k3": (CONFIG_C3K3, FIXTURE_C3K3, make_data_c3k3),
    }[case]
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    model = UNet(config)
    model.reset_parameters(gen)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1, generator=gen)
    inp, labels, weight_map = data(gen)

    ref64 = reference(copy.deepcopy(model).double(), inp.double(), labels.double(),
                      weight_map.double())
    ref32 = reference(model, inp, labels, weight_map)

    print(f"PyTorch {torch.__version__}, float32 against float64 (max abs, max rel):")
    for key in ("logits", "loss", "losses"):
        print(f"  {key:8} {max_diff(ref32[key], ref64[key])}")
    for group in ("grads", "final"):
        worst = max((max_diff(ref32[group][k], ref64[group][k]) for k in ref64[group]),
                    key=lambda d: d[0])
        print(f"  {group:8} {worst} (worst tensor by abs)")
    print(f"  losses   {ref64['losses'].tolist()}")

    tensors = {name: p.detach() for name, p in model.named_parameters()}
    tensors.update(input=inp, labels=labels, weight_map=weight_map,
                   logits=ref64["logits"], loss=ref64["loss"], losses=ref64["losses"])
    tensors.update({f"grad.{k}": v for k, v in ref64["grads"].items()})
    tensors.update({f"final.{k}": v for k, v in ref64["final"].items()})
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    assert all(math.isfinite(v) for v in ref64["losses"].tolist())

    metadata = {
        "config": config.to_json(),
        "lr": str(LR),
        "momentum": str(MOMENTUM),
        "weight_decay": str(WEIGHT_DECAY),
        "steps": str(STEPS),
        "seed": str(SEED),
        "made_by": "scripts/make_golden.py",
        "torch_version": torch.__version__,
        "note": "references computed in float64 from the float32 inputs, stored as float32",
        "param_order": json.dumps([name for name, _ in model.named_parameters()]),
    }
    fixture.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(fixture), metadata=metadata)
    print(f"wrote {fixture} ({fixture.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
