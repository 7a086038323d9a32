#!/bin/bash
# Predict every image of a shared folder with a Slurm job array: N array tasks, each running
# `unet predict --shard-from-env`, which takes shard K = SLURM_ARRAY_TASK_ID (minus
# SLURM_ARRAY_TASK_MIN) of N = SLURM_ARRAY_TASK_COUNT: the inputs whose index in the sorted
# list is K modulo N. Submit with
#
#     sbatch --array=0-15 examples/slurm_predict.sh
#
# A pre-empted or failed task is simply resubmitted (sbatch --array=7 ...): it skips the
# inputs it finished. When all are done, `unet predict --merge-report $OUT` sums the shards'
# manifests and lists what is missing (its exit status is 0 only when nothing is).
#SBATCH --job-name=unet-predict
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=logs/unet-predict-%A_%a.out
set -euo pipefail

# The cluster's way to get a Vulkan driver and the binary (adapt to your site): an
# environment module, or a container (apptainer exec --nv unet.sif unet predict ...).
module load vulkan-loader 2>/dev/null || true
UNET=${UNET:-unet}                        # `cargo install --path .` puts it in ~/.cargo/bin

DATA=${DATA:-/shared/lab/microscope/2026-12-01}   # a folder on the shared file system
OUT=${OUT:-/shared/lab/predictions/2026-12-01}    # one folder for all shards
CHECKPOINT=${CHECKPOINT:-/shared/lab/models/em/checkpoint.safetensors}

mkdir -p "$OUT" logs
# Quote the glob: unet expands it, so every task sees the same sorted list however many
# files there are (no shell limit on the command line).
"$UNET" predict --checkpoint "$CHECKPOINT" "$DATA/*.tif" --out "$OUT" --shard-from-env
