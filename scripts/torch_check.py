"""Checks that PyTorch computes the same output as unet-wgpu for a checkpoint.

Loads a checkpoint written by unet-wgpu (`checkpoint::save`, e.g. `runs/x/checkpoint.safetensors`)
into the plain PyTorch U-Net or U-Net++ of torch_unet.py (strict names and shapes), runs both
on the same input in eval mode (no dropout) and compares the logits elementwise (a U-Net++'s
last head's, as the `forward` example writes them): |ours - torch| <= atol + rtol * |torch|.
Prints the largest differences and exits 1 when any element is out of tolerance.

    python scripts/torch_check.py CHECKPOINT                      # a random input tile
    python scripts/torch_check.py CHECKPOINT --input tile.npy     # f32 [N, C, H, W]
    python scripts/torch_check.py CHECKPOINT --input tile.npy --ours logits.npy

unet-wgpu's side is `cargo run --release --example forward -- CHECKPOINT IN.npy OUT.npy`,
run from the repository root (or, with --ours, a file that command already wrote).
PyTorch runs on the CPU in float64 by default, as a reference free of float32 rounding
(--dtype float32 for PyTorch's own float32 answer). Needs torch, numpy and safetensors.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch

from torch_unet import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_ours(checkpoint, input_path, out_path, profile):
    """unet-wgpu's logits for the input file, from the `forward` example."""
    cmd = ["cargo", "run", "--quiet", "--example", "forward"]
    if profile == "release":
        cmd.append("--release")
    cmd += ["--", str(checkpoint), str(input_path), str(out_path)]
    print("running:", " ".join(cmd), file=sys.stderr)
    done = subprocess.run(cmd, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"the forward example failed (exit {done.returncode})")
    return np.load(out_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=pathlib.Path)
    parser.add_argument("--input", type=pathlib.Path,
                        help=".npy f32 [N, C, H, W]; default: a random tile")
    parser.add_argument("--tile", type=int,
                        help="side of the random tile (default: the smallest valid tile "
                             "with an output of at least 16 pixels)")
    parser.add_argument("--batch", type=int, default=1, help="tiles in the random input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--ours", type=pathlib.Path,
                        help="unet-wgpu's logits already computed for --input "
                             "(skips running cargo)")
    parser.add_argument("--profile", choices=["release", "dev"], default="release",
                        help="cargo profile for the forward example")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="PyTorch's precision")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--rtol", type=float, default=1e-3)
    args = parser.parse_args()
    if args.ours and not args.input:
        parser.error("--ours needs the --input it was computed from")

    model = load_checkpoint(str(args.checkpoint))  # eval mode, strict names and shapes
    config = model.config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        if args.input:
            input_path = args.input
            tile = np.load(input_path)
        else:
            side = args.tile or config.input_size_for(16)
            if config.output_size(side) is None:
                parser.error(f"tile {side} does not fit this network "
                             f"(try {config.input_size_for(1)} or larger)")
            rng = np.random.default_rng(args.seed)
            tile = rng.standard_normal((args.batch, config.in_channels, side, side))
            tile = tile.astype(np.float32)
            input_path = tmp / "input.npy"
            np.save(input_path, tile)
        if tile.dtype != np.float32 or tile.ndim != 4:
            parser.error(f"the input must be float32 [N, C, H, W], not {tile.dtype} "
                         f"{list(tile.shape)}")
        ours = np.load(args.ours) if args.ours else \
            run_ours(args.checkpoint.resolve(), input_path.resolve(), tmp / "ours.npy",
                     args.profile)

    dtype = getattr(torch, args.dtype)
    with torch.no_grad():
        theirs = model.to(dtype)(torch.from_numpy(tile).to(dtype)).numpy()
    if ours.shape != theirs.shape:
        sys.exit(f"shapes differ: unet-wgpu {list(ours.shape)}, PyTorch {list(theirs.shape)}")

    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    scale = np.abs(theirs.astype(np.float64))
    big = scale > 1e-3
    rel = (diff[big] / scale[big]).max() if big.any() else 0.0
    bad = diff > args.atol + args.rtol * scale
    same_class = (ours.argmax(axis=1) == theirs.argmax(axis=1)).mean()
    print(f"checkpoint  {args.checkpoint} ({config.to_json()})")
    print(f"input       {list(tile.shape)} -> logits {list(theirs.shape)}, "
          f"|logits| <= {scale.max():.3g}")
    print(f"max abs difference  {diff.max():.3e}")
    print(f"max rel difference  {rel:.3e} (over |PyTorch| > 1e-3)")
    print(f"same predicted class at {100 * same_class:.2f}% of pixels")
    if bad.any():
        first = np.argwhere(bad)[:5]
        lines = [f"  {tuple(int(i) for i in idx)}: unet-wgpu {ours[tuple(idx)]:.6g}, "
                 f"PyTorch {theirs[tuple(idx)]:.6g}" for idx in first]
        print(f"FAIL: {bad.sum()} of {bad.size} logits differ by more than "
              f"{args.atol} + {args.rtol} * |PyTorch|; first:\n" + "\n".join(lines))
        sys.exit(1)
    print(f"OK: every logit within {args.atol} + {args.rtol} * |PyTorch|")


if __name__ == "__main__":
    main()
