#!/usr/bin/env bash
# The build fails unless a container sees the GPU: driver, container toolkit and runtime all work.
set -euo pipefail

: "${WORKER_IMAGE:?WORKER_IMAGE is required}"

nvidia-smi
# --gpus goes through the NVIDIA container toolkit on Amazon Linux 2023; no separate docker runtime is needed.
docker run --rm --gpus all --entrypoint nvidia-smi "$WORKER_IMAGE"
docker run --rm --gpus all --entrypoint python "$WORKER_IMAGE" \
  -c 'import tensorflow as tf; gpus = tf.config.list_physical_devices("GPU"); assert gpus, "TensorFlow sees no GPU"; print(gpus)'
