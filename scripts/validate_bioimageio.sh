#!/usr/bin/env bash
# Checks the BioImage Model Zoo packages that `unet export --format bioimageio` writes with
# the zoo's own tools: the format (the `bioimageio.spec` package: fields, file hashes), then,
# where pip can also install `bioimageio.core` and `onnxruntime`, `bioimageio test` (runs
# model.onnx with onnxruntime on test_input.npy through the stated preprocessing and
# compares with test_output.npy, at several sizes and batch sizes).
#
#   scripts/validate_bioimageio.sh              train two tiny runs (U-Net z-score, U-Net++ none) on
#                                               synthetic cells, export each as a folder
#                                               and a zip, validate all four
#   scripts/validate_bioimageio.sh PACKAGE...   validate these folders or .zip files
#
# Needs the `unet` binary ($UNET, default target/debug/unet: run `cargo build` first) and a
# GPU adapter (lavapipe will do) for the export. Where pip cannot install bioimageio.spec
# (no network, no pip) it says so and exits 0: the Rust tests check the package's
# structure and files either way.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import bioimageio.spec' 2>/dev/null; then
    if ! python3 -m pip install --quiet bioimageio.spec >/dev/null 2>&1; then
        echo "validate_bioimageio: skipped, pip could not install bioimageio.spec"
        exit 0
    fi
fi

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
    UNET=${UNET:-target/debug/unet}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # The U-Net with the default normalisation (z-score), U-Net++ with none: the two
    # kinds of preprocessing an export states.
    for arch in unet unetpp; do
        tile=$([ "$arch" = unet ] && echo 100 || echo 96) # valid: 92 + 8k; same: 8k
        normalize=$([ "$arch" = unet ] && echo z-score || echo none)
        "$UNET" train --data synthetic --arch "$arch" --tile "$tile" --steps 2 --no-augment \
            --normalize "$normalize" --out "$work/$arch" >"$work/log" 2>&1 \
            || { cat "$work/log"; exit 1; }
        for out in "$work/$arch-package" "$work/$arch.zip"; do
            "$UNET" export --checkpoint "$work/$arch/checkpoint.safetensors" \
                --format bioimageio --out "$out" --author "unet-wgpu CI" \
                >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
            packages+=("$out")
        done
    done
fi

python3 - "${packages[@]}" <<'PY'
import sys
from bioimageio.spec import load_description_and_validate_format_only

failed = 0
for path in sys.argv[1:]:
    source = path + "/bioimageio.yaml" if not path.endswith(".zip") else path
    summary = load_description_and_validate_format_only(source, perform_io_checks=True)
    print(f"{path}: {summary.status}")
    if summary.status not in ("passed", "valid-format"):
        print(summary.format())
        failed += 1
    else:
        for detail in summary.details:
            for warning in getattr(detail, "warnings", []) or []:
                print(f"  warning: {warning.loc}: {warning.msg}")
print(f"format: {len(sys.argv) - 1 - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

if ! python3 -c 'import bioimageio.core, onnxruntime' 2>/dev/null; then
    if ! python3 -m pip install --quiet bioimageio.core onnxruntime >/dev/null 2>&1; then
        echo "validate_bioimageio: bioimageio test skipped, pip could not install" \
            "bioimageio.core and onnxruntime"
        exit 0
    fi
fi
passed=0
failed=0
for package in "${packages[@]}"; do
    source=$package
    [ -d "$package" ] && source=$package/bioimageio.yaml
    if python3 -m bioimageio.core test "$source" >"${TMPDIR:-/tmp}/bioimageio-test.log" 2>&1; then
        echo "$package: bioimageio test passed"
        passed=$((passed + 1))
    else
        echo "$package: bioimageio test FAILED"
        cat "${TMPDIR:-/tmp}/bioimageio-test.log"
        failed=$((failed + 1))
    fi
done
echo "bioimageio-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
