#!/usr/bin/env bash
# make demo-down: stop what make demo started, by process id from its pid files, and forget its state.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-.demo}

stop() {
  local pidfile=$1 pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
}

stop "$DEMO/runtime.pid" # first: it gives its workers SIGTERM and waits for them
stop "$DEMO/moto.pid"
rm -f "$DEMO"/terraform.tfstate* "$DEMO/outputs.json"
