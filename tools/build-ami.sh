#!/usr/bin/env bash
# Build the GPU worker AMI with the worker image pre-pulled; prints the AMI id last.
# Usage: tools/build-ami.sh <worker image URI> [terraform dir]
set -euo pipefail
cd "$(dirname "$0")/.."

worker_image=${1:?usage: tools/build-ami.sh <worker image URI> [terraform dir]}
tf_dir=${2:-terraform/examples/complete}
region=$(terraform -chdir="$tf_dir" output -raw region)

args=(-var "region=$region" -var "worker_image=$worker_image")
# Optional: BASE_AMI_ID pins the base image (default: the newest ECS GPU AL2023 AMI), SUBNET_ID picks the
# build subnet (default: the default VPC).
[[ -n "${BASE_AMI_ID:-}" ]] && args+=(-var "base_ami_id=$BASE_AMI_ID")
[[ -n "${SUBNET_ID:-}" ]] && args+=(-var "subnet_id=$SUBNET_ID")

cd ami
packer init .
packer build "${args[@]}" .
ami_id=$(python3 -c 'import json; build = json.load(open("manifest.json"))["builds"][-1]; print(build["artifact_id"].split(":")[1])')
echo "$ami_id"
