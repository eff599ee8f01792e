#!/usr/bin/env bash
# Build the worker image and push it to the ECR repository the module created.
# Usage: tools/push-image.sh [terraform dir] [tag]; prints the pushed image URI last.
set -euo pipefail
cd "$(dirname "$0")/.."

tf_dir=${1:-terraform/examples/complete}
tag=${2:-$(git rev-parse --short HEAD)}

repository=$(terraform -chdir="$tf_dir" output -raw ecr_repository_url)
region=$(terraform -chdir="$tf_dir" output -raw region)
registry=${repository%%/*}

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
docker build -f worker/Dockerfile -t "$repository:$tag" .
docker push "$repository:$tag"
echo "$repository:$tag"
