#!/usr/bin/env bash
# make demo: the whole pipeline on this machine. A moto server on loopback, terraform/examples/local
# applied to it with the real AWS provider, the local runtime (real router, scaler and workers),
# sample media submitted, and the results printed. Leaves the stack running; make demo-down stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
DEMO=${DEMO_DIR:-.demo}
PORT=${DEMO_PORT:-5055}
ENDPOINT="http://127.0.0.1:$PORT"
TF_EXAMPLE=terraform/examples/local

tools/demo-down.sh >/dev/null # a second run starts from a clean slate
mkdir -p "$DEMO/runtime"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

echo "==> AWS emulator (moto) on $ENDPOINT"
MOTO_IAM_LOAD_MANAGED_POLICIES=true setsid "$BIN/python" -m local_runtime.emulator -H 127.0.0.1 -p "$PORT" >"$DEMO/moto.log" 2>&1 &
echo $! >"$DEMO/moto.pid"
for _ in $(seq 1 50); do
  "$BIN/python" - "$PORT" <<'PY' && break
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
except OSError:
    sys.exit(1)
PY
  sleep 0.2
done

echo "==> terraform apply $TF_EXAMPLE (about 90 s against moto)"
export TF_DATA_DIR="$PWD/$DEMO/.terraform"
terraform -chdir="$TF_EXAMPLE" init -backend=false -input=false >"$DEMO/init.log"
terraform -chdir="$TF_EXAMPLE" apply -auto-approve -input=false -state="$PWD/$DEMO/terraform.tfstate" \
  -var "endpoint=$ENDPOINT" -var "lambda_zip_dir=$PWD/build" >"$DEMO/apply.log" ||
  { tail -n 40 "$DEMO/apply.log" >&2; exit 1; }
terraform -chdir="$TF_EXAMPLE" output -state="$PWD/$DEMO/terraform.tfstate" -json >"$DEMO/outputs.json"

echo "==> local runtime (router, scaler, worker processes); log: $DEMO/runtime.log"
setsid "$BIN/python" -m local_runtime --outputs "$DEMO/outputs.json" --endpoint "$ENDPOINT" \
  --workdir "$DEMO/runtime" --scaler-period 5 >"$DEMO/runtime.log" 2>&1 &
echo $! >"$DEMO/runtime.pid"

echo "==> sample media from scikit-image's photos"
"$BIN/python" -m tools.sample_media "$DEMO/media"

export AWS_ENDPOINT_URL="$ENDPOINT" GPUPIPE_OUTPUTS="$DEMO/outputs.json"
echo "==> gpupipe submit"
"$BIN/python" -m gpupipe submit "$DEMO"/media/*
echo "==> gpupipe status --wait"
"$BIN/python" -m gpupipe status --wait --timeout 600 || true
echo "==> gpupipe results"
for file in "$DEMO"/media/*; do
  "$BIN/python" -m gpupipe results "$(basename "$file")" --out "$DEMO/results"
done
echo
echo "==> what the scaler and the task runner did"
"$BIN/python" -m local_runtime.report "$DEMO/runtime.log"
echo
echo "==> gpupipe report: one page of every job, annotated videos with their timelines"
rm -rf "$DEMO/report"
"$BIN/python" -m gpupipe report --out "$DEMO/report"
cat <<MSG

The stack keeps running. Point your shell at the emulator (its credentials are moto's test ones):
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL=$ENDPOINT GPUPIPE_OUTPUTS=$DEMO/outputs.json
then submit more with
  $BIN/python -m gpupipe submit FILE...
run the read-only deploy checks against the emulator (a check moto cannot answer prints as "not run") with
  make preflight
and watch the scaler take the workers back to zero after the idle period (30 s here):
  $BIN/python -m local_runtime.report $DEMO/runtime.log
Stop everything with: make demo-down

The report (open it in a browser; it needs no server):
  $PWD/$DEMO/report/index.html
MSG
