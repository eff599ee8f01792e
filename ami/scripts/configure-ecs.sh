#!/usr/bin/env bash
# Agent defaults baked into the AMI; the launch template's user data adds the cluster name.
set -euo pipefail

install -d -m 0755 /etc/ecs
cat >/etc/ecs/ecs.config <<'CONFIG'
ECS_ENABLE_GPU_SUPPORT=true
ECS_IMAGE_PULL_BEHAVIOR=prefer-cached
ECS_ENABLE_TASK_IAM_ROLE=true
ECS_ENABLE_SPOT_INSTANCE_DRAINING=true
ECS_WARM_POOLS_CHECK=true
CONFIG
systemctl enable ecs.service
