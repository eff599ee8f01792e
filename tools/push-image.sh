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

# The repository is immutable: a tag is pushed once. Rebuilds need a new tag (a new commit, or IMAGE_TAG=...).
if aws ecr describe-images --region "$region" --repository-name "${repository#*/}" --image-ids imageTag="$tag" >/dev/null 2>&1; then
  echo "$repository:$tag is already pushed (the repository is immutable): use it, or rebuild with make image IMAGE_TAG=<new tag>" >&2
  exit 1
fi

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
# GPU instances are x86_64: build for it on any machine (an Apple silicon Mac builds arm64 otherwise).
docker build --platform linux/amd64 -f worker/Dockerfile -t "$repository:$tag" .
docker push "$repository:$tag"
echo "$repository:$tag"
