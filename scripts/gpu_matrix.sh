#!/usr/bin/env bash
# The GPU numerics at every subgroup width real GPUs have, and without subgroups.
#
# Mesa's lavapipe takes its SIMD width from LP_NATIVE_VECTOR_WIDTH (bits) and reports
# subgroups of width / 32 lanes: 128 -> 4, 256 -> 8 (the usual default), 512 -> 16,
# 1024 -> 32 (NVIDIA, Apple), 2048 -> 64 (AMD). (At 1024 and 2048 it really runs 16 lanes
# while reporting 32 and 64; the engine measures that: see src/gpu/subgroups.rs.)
# UNET_BACKEND=gl runs wgpu's GL backend on llvmpipe: no subgroups, like browsers' WebGPU.
#
#   bash scripts/gpu_matrix.sh                 # every width and GL
#   bash scripts/gpu_matrix.sh 1024 gl         # only these
#   bash scripts/gpu_matrix.sh --skip-default  # all but the width lavapipe has unset (CI,
#                                              # whose full suite just ran at that width)
#
# Builds the test binaries once; each configuration re-runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=(op_activation op_axpy op_conv2d op_conv2d_gemm op_conv_transpose op_crop_concat
       op_loss op_max_pool op_sgd engine golden model model_unetpp infer autotune)
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
skip_default=false
configs=()
for arg in "$@"; do
  if [ "$arg" = --skip-default ]; then skip_default=true; else configs+=("$arg"); fi
done
[ ${#configs[@]} -gt 0 ] || configs=(128 256 512 1024 2048 gl)

failed=()
cargo test --locked --no-run "${args[@]}" 2>/dev/null
cargo build --locked --bin unet 2>/dev/null

if $skip_default; then
  default=$(env -u LP_NATIVE_VECTOR_WIDTH -u UNET_BACKEND target/debug/unet info 2>&1 \
    | grep -oE 'subgroups: [0-9]+ lanes' | grep -oE '[0-9]+' || true)
  if [ -n "$default" ]; then
    echo "gpu matrix: skipping $((default * 32)) bits ($default lanes), the default width"
    kept=()
    for config in "${configs[@]}"; do
      [ "$config" = "$((default * 32))" ] || kept+=("$config")
    done
    configs=("${kept[@]}")
  fi
fi

for config in "${configs[@]}"; do
  start=$(date +%s)
  if [ "$config" = gl ]; then
    env=(UNET_BACKEND=gl)
    expect="subgroups: none"
  else
    env=(LP_NATIVE_VECTOR_WIDTH="$config")
    lanes=$((config / 32))
    expect="(subgroups: | reports )$lanes lanes"
  fi
  # The device must be the one this configuration asks for, or the run proves nothing.
  info=$(env "${env[@]}" target/debug/unet info 2>&1 | grep -o 'subgroups:.*' || true)
  if ! grep -qE "$expect" <<<"$info"; then
    echo "gpu matrix: ${env[*]} gave '${info:-no adapter}', expected '$expect'" >&2
    exit 1
  fi
  echo "== ${env[*]}: $info"
  log=$(mktemp)
  if env "${env[@]}" cargo test --locked -q --no-fail-fast "${args[@]}" >"$log" 2>&1; then
    passed=$(grep -oE '[0-9]+ passed' "$log" | awk '{ n += $1 } END { print n }')
    echo "   ${env[*]}: $passed passed in $(( $(date +%s) - start )) s"
  else
    grep -E '^(---- |thread |failures:|    [a-z_]+$|error: test failed)' "$log" || cat "$log"
    echo "   ${env[*]}: FAILED after $(( $(date +%s) - start )) s"
    failed+=("${env[*]}")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu matrix: tests failed with: ${failed[*]}" >&2
  exit 1
fi
echo "gpu matrix: every configuration passed (${configs[*]})"
