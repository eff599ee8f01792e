#!/usr/bin/env bash
# The build fails unless a container sees the GPU: driver, container toolkit and runtime all work.
set -euo pipefail

: "${WORKER_IMAGE:?WORKER_IMAGE is required}"

nvidia-smi
docker run --rm --runtime=nvidia --gpus all --entrypoint nvidia-smi "$WORKER_IMAGE"
docker run --rm --runtime=nvidia --gpus all --entrypoint python "$WORKER_IMAGE" \
  -c 'import tensorflow as tf; gpus = tf.config.list_physical_devices("GPU"); assert gpus, "TensorFlow sees no GPU"; print(gpus)'
