#!/usr/bin/env bash
# The checks that need a real GPU, in one go (about 10 minutes on an NVIDIA H200): the op
# tests and the PyTorch golden test on the GPU, `unet bench kernels --shapes paper` for
# each variant (and the autotuner's choices), `unet bench step --config paper`, and the
# same step in PyTorch (fp32, TF32 off); then a summary with the per-layer table, the
# fraction of the f32 peak and the ratio to PyTorch.
#
# The device machine has no Rust toolchain to count on and reaches no network, so the
# binaries are built here and travel with the working tree:
#
#   bash scripts/gpu_device_check.sh prepare     # here: release build, packed in .devcheck/
#   # on the device machine (the `run` tool, carry [".devcheck", ".gl"]):
#   bash scripts/gpu_device_check.sh run         # results in $OUT (else .devcheck/out)
#   bash scripts/gpu_device_check.sh run --small # the same on small shapes (lavapipe, CI):
#                                                # tests the script, not the GPU; without
#                                                # prepare it runs this checkout's build
#
# prepare keeps the binaries under .devcheck/ (ignored by git through .git/info/exclude),
# packed with xz to stay inside the device tool's 64 MiB. UNET_DEVCHECK_PROFILE=debug
# packs the debug build instead (quicker to build; for trying the script on lavapipe).
# On the device machine a missing Vulkan loader is taken from .gl/*.deb when carried (see
# the device tool's README); PEAK_TFLOPS (default 67, the H200's f32 peak) sets the fraction.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=(op_conv2d op_conv2d_gemm op_conv_transpose op_activation op_max_pool op_crop_concat
       op_loss op_sgd autotune golden)
DIR=.devcheck
mode=${1:-}
shift || true
small=false
for arg in "$@"; do
  case $arg in
    --small) small=true ;;
    *) echo "unknown option $arg (use --small)" >&2; exit 2 ;;
  esac
done

# Keeps .devcheck/ out of git's sight (this checkout only).
ignore_dir() {
  local exclude
  exclude=$(git rev-parse --git-path info/exclude 2>/dev/null) || return 0
  grep -qx "/$DIR/" "$exclude" 2>/dev/null || echo "/$DIR/" >>"$exclude"
}

prepare() {
  local profile=${UNET_DEVCHECK_PROFILE:-release}
  local flag=--release
  [ "$profile" = debug ] && flag=
  mkdir -p "$DIR/bin"
  ignore_dir
  local args=()
  for t in "${TESTS[@]}"; do args+=(--test "$t"); done
  nice cargo build --locked $flag --bin unet
  cp "target/$profile/unet" "$DIR/bin/unet"
  # The test executables, as cargo names them (one per --test).
  nice cargo test --locked $flag --no-run --message-format=json "${args[@]}" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do cp "$exe" "$DIR/bin/$name"; done
  strip "$DIR"/bin/* 2>/dev/null || true
  # The tests find their fixtures through the path they were built in.
  pwd >"$DIR/manifest_dir"
  tar -C "$DIR" -cJf "$DIR/bins.tar.xz" bin manifest_dir
  rm -rf "$DIR/bin"
  ls -l "$DIR/bins.tar.xz"
  echo "carry [\"$DIR\", \".gl\"] and run: bash scripts/gpu_device_check.sh run"
}

# Prints a heading, runs the command with a time limit, keeps its output in $out/<name>.log.
step() {
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*"
  local start=$SECONDS
  if timeout "$limit" "$@" >"$out/$name.log" 2>&1; then
    echo "    ok ($((SECONDS - start)) s)"
  else
    echo "    FAILED (exit $?, $((SECONDS - start)) s); last lines:"
    tail -n 15 "$out/$name.log" | sed 's/^/    | /'
    failed+=("$name")
  fi
}

run() {
  out=${OUT:-$DIR/out}
  mkdir -p "$out"
  failed=()
  if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local nv=/usr/local/nvidia/share
  if [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
  fi
  local bin=$DIR/bin
  if [ -f "$DIR/bins.tar.xz" ]; then
    tar -C "$DIR" -xJf "$DIR/bins.tar.xz"
    local built
    built=$(cat "$DIR/manifest_dir")
    # The tests read fixtures under the folder they were built in: make it this one.
    if [ "$built" != "$(pwd)" ] && [ ! -e "$built" ]; then
      mkdir -p "$(dirname "$built")" && ln -s "$(pwd)" "$built"
    fi
  fi
  if [ ! -x "$bin/unet" ]; then
    # Not prepared: this checkout's own build (trying the script here, with --small).
    local profile
    for profile in release debug; do
      [ -x "target/$profile/unet" ] && break
    done
    [ -x "target/$profile/unet" ] || { echo "no $bin/unet: run 'bash $0 prepare' first" >&2; exit 1; }
    mkdir -p "$bin"
    ignore_dir
    ln -sf "$(pwd)/target/$profile/unet" "$bin/unet"
    for t in "${TESTS[@]}"; do
      local exe
      exe=$(ls -t target/debug/deps/"$t"-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
      [ -n "$exe" ] && ln -sf "$(pwd)/$exe" "$bin/$t"
    done
  fi
  local config=paper tile=() reps=5
  local kernels=(--shapes paper --reps 5 --direct-limit 1000)
  # --small: one small conv layer, the small step: a minute or two on lavapipe.
  if $small; then config=small tile=(--tile 92) reps=1 kernels=(--conv 1,16,40,40,16 --reps 1); fi
  # The engine's autotuner keeps its choices here, not in the machine's home.
  export UNET_AUTOTUNE_CACHE=$out/autotune_cache.json

  step info 60 "$bin/unet" info --config "$config"
  grep -E "adapter:|subgroups" "$out/info.log" | head -3 | sed 's/^/    /' || true
  for t in "${TESTS[@]}"; do
    [ -x "$bin/$t" ] || { echo "=== $t: not built"; failed+=("$t"); continue; }
    step "test_$t" 300 "$bin/$t" --test-threads=4
  done
  step kernels 600 env UNET_AUTOTUNE=off "$bin/unet" bench kernels "${kernels[@]}" \
    --json "$out/kernels.json"
  step kernels_autotune 600 "$bin/unet" bench kernels "${kernels[@]}" --autotune \
    --json "$out/kernels_autotune.json"
  step step_default 300 env UNET_AUTOTUNE=off "$bin/unet" bench step --config "$config" \
    "${tile[@]}" --reps "$reps" --json "$out/step_default.json"
  step step_autotune 300 env UNET_AUTOTUNE=on "$bin/unet" bench step --config "$config" \
    "${tile[@]}" --reps "$reps" --json "$out/step_autotune.json"
  local device=cuda
  python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
    || device=cpu
  step torch_step 300 python3 scripts/torch_unet.py bench-step --config "$config" \
    "${tile[@]}" --reps "$reps" --device "$device" --peak-tflops "${PEAK_TFLOPS:-67}" \
    --json "$out/step_torch.json"

  PEAK_TFLOPS=${PEAK_TFLOPS:-67} python3 - "$out" <<'EOF' | tee "$out/summary.txt"
import json, os, sys
out = sys.argv[1]
peak = float(os.environ["PEAK_TFLOPS"]) * 1e3  # GFLOP/s

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

rows = (load("kernels.json") or []) + [
    r for r in (load("kernels_autotune.json") or []) if r["variant"] == "auto"]
print(f"{'layer':<16}{'pass':<17}{'variant':<8}{'ms':>10}{'GFLOP/s':>11}{'of peak':>9}")
for r in rows:
    if r.get("gflops") is None or "conv" not in r["name"]:
        continue
    print(f"{r['name']:<16}{r['pass']:<17}{r['variant']:<8}{r['ms']:>10.3f}"
          f"{r['gflops']:>11.0f}{r['gflops'] / peak:>9.1%}")
torch = load("step_torch.json")
for name in ("step_default.json", "step_autotune.json"):
    s = load(name)
    if not s:
        print(f"{name}: missing")
        continue
    line = (f"{name[:-5]}: {s['median_ms']:.1f} ms, {s['gflops']:.0f} GFLOP/s "
            f"({s['gflops'] / peak:.1%} of the f32 peak), GPU memory "
            f"{s['peak_gpu_bytes'] / 1e9:.2f} GB")
    if torch:
        line += f", {s['median_ms'] / torch['median_ms']:.2f}x PyTorch's time"
    print(line)
if torch:
    mem = torch.get("peak_gpu_bytes")
    mem = f", GPU memory {mem / 1e9:.2f} GB" if mem else ""
    print(f"pytorch ({torch['device']}, TF32 off): {torch['median_ms']:.1f} ms, "
          f"{torch['gflops']:.0f} GFLOP/s ({torch['gflops'] / peak:.1%} of the f32 peak){mem}")
EOF
  if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu device check: FAILED: ${failed[*]} (logs in $out)"
    exit 1
  fi
  echo "gpu device check: all passed (logs in $out)"
}

case $mode in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare | run [--small]" >&2; exit 2 ;;
esac
