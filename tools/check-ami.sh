#!/usr/bin/env bash
# Static checks of the AMI template and every shell script: shellcheck, packer fmt, packer validate.
# Packer from Debian (1.6) predates required_plugins, so plugins.pkr.hcl is left out of the syntax check.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in shellcheck packer; do
  command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install $tool)" >&2; exit 1; }
done

shellcheck ami/scripts/*.sh tools/*.sh .ci/run terraform/modules/step/user_data.sh.tftpl
packer fmt -check ami/

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
find ami -maxdepth 1 -name '*.pkr.hcl' ! -name plugins.pkr.hcl -exec cp {} "$workdir"/ \;
cp -r ami/scripts "$workdir"/
packer validate -syntax-only "$workdir"
