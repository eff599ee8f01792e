#!/usr/bin/env bash
# Leave nothing instance-specific in the AMI.
set -euo pipefail

dnf clean all
rm -rf /var/cache/dnf/*

rm -rf /var/lib/ecs/data/* /var/log/ecs/* /var/lib/cloud/instances/* /var/lib/cloud/instance
rm -f /etc/ssh/ssh_host_* /root/.bash_history /home/ec2-user/.bash_history
truncate -s 0 /etc/machine-id
find /var/log -type f -name '*.log' -exec truncate -s 0 {} +
