#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: one process per TPU host, all running the same command.
#
#   bash launch/tpu_vm.sh create      # once: make the TPU VM (edit the settings below first)
#   bash launch/tpu_vm.sh setup       # once: copy this repository to every worker and install it
#   bash launch/tpu_vm.sh train configs/video_gru.py gs://BUCKET/runs/video_gru [--config.x=y ...]
#   bash launch/tpu_vm.sh eval  configs/video_gru.py gs://BUCKET/runs/video_gru
#   bash launch/tpu_vm.sh delete
#
# Edit: TPU_NAME, ZONE, PROJECT, ACCELERATOR_TYPE (e.g. v5litepod-16 = 4 hosts) and RUNTIME.
# The workdir should be a gs:// bucket every host can write (Orbax writes there directly).
# JAX finds the other hosts by itself on a TPU pod (--distributed=on asks it to), so no
# coordinator address is needed. A preempted (spot) slice sends SIGTERM: the job saves a
# checkpoint at an agreed step and exits; running the same `train` command again resumes.
set -euo pipefail

TPU_NAME="${TPU_NAME:-dcrn-jax}"
ZONE="${ZONE:-us-central2-b}"
PROJECT="${PROJECT:-my-gcp-project}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-16}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
REPO_DIR="dcrn_jax"  # Where the repository lands in each worker's home directory.

gcloud_tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --project="$PROJECT"; }
on_all() { gcloud_tpu ssh "$TPU_NAME" --worker=all --command="$1"; }

case "${1:-}" in
  create)
    gcloud_tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME" ;;
  setup)
    here="$(cd "$(dirname "$0")/.." && pwd)"
    tar -C "$here" --exclude=.venv --exclude=runs -czf /tmp/dcrn_jax.tgz .
    gcloud_tpu scp /tmp/dcrn_jax.tgz "$TPU_NAME":~/dcrn_jax.tgz --worker=all
    on_all "mkdir -p ~/$REPO_DIR && tar -C ~/$REPO_DIR -xzf ~/dcrn_jax.tgz && cd ~/$REPO_DIR &&
            python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[tpu]'" ;;
  train|eval)
    mode="$1"; config="$2"; workdir="$3"; shift 3
    on_all "cd ~/$REPO_DIR && . .venv/bin/activate && python -m dcrn_jax.main --distributed=on \
            --mode=$mode --config=$config --workdir=$workdir $*" ;;
  delete)
    gcloud_tpu delete "$TPU_NAME" --quiet ;;
  *)
    sed -n '2,16p' "$0"; exit 2 ;;
esac
