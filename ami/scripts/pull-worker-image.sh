#!/usr/bin/env bash
# Pre-pull the worker image so that a new instance starts its task without the multi-GB pull.
set -euo pipefail

: "${REGION:?REGION is required}"
: "${WORKER_IMAGE:?WORKER_IMAGE is required}"

registry="${WORKER_IMAGE%%/*}"
if [[ "$registry" == *.dkr.ecr.*.amazonaws.com ]]; then
  # Amazon Linux 2023 packages the AWS CLI v2 as awscli-2 (dnf; no yum, no pip install).
  command -v aws >/dev/null || dnf install -y --quiet awscli-2
  token=$(aws ecr get-login-password --region "$REGION")
  docker login --username AWS --password-stdin "$registry" <<<"$token"
fi
docker pull "$WORKER_IMAGE"
docker logout "$registry" >/dev/null 2>&1 || true
rm -f /root/.docker/config.json
