#!/usr/bin/env bash
# Keep the ECS agent from registering the build instance with any cluster.
set -euo pipefail

systemctl stop ecs || true
systemctl disable --now ecs.service || true
