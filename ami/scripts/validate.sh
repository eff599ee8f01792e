#!/usr/bin/env bash
# Final checks of the AMI's contents before it is registered.
set -euo pipefail

: "${WORKER_IMAGE:?WORKER_IMAGE is required}"

fail() {
  echo "AMI validation failed: $*" >&2
  exit 1
}

if ! grep -q '^ID="amzn"' /etc/os-release || ! grep -q '^VERSION_ID="2023"' /etc/os-release; then
  fail "the base is not Amazon Linux 2023"
fi

for setting in ECS_ENABLE_GPU_SUPPORT=true ECS_IMAGE_PULL_BEHAVIOR=prefer-cached ECS_WARM_POOLS_CHECK=true; do
  grep -qx "$setting" /etc/ecs/ecs.config || fail "/etc/ecs/ecs.config lacks $setting"
done
command -v nvidia-smi >/dev/null || fail "nvidia-smi is missing"
command -v nvidia-container-cli >/dev/null || fail "the NVIDIA container toolkit is missing"
docker image inspect "$WORKER_IMAGE" >/dev/null || fail "$WORKER_IMAGE is not pre-pulled"
systemctl is-enabled ecs.service >/dev/null || fail "the ECS agent is not enabled at boot"
echo "AMI validation passed"
