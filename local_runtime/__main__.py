"""``python -m local_runtime --outputs outputs.json --endpoint http://127.0.0.1:5055 --workdir .demo``"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from gpupipe.cli import output_values
from local_runtime.runtime import LocalRuntime
from worker import logs


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline's triggers and ECS tasks against a local AWS emulator.")
    parser.add_argument("--outputs", type=Path, required=True, help="terraform output -json of terraform/examples/local")
    parser.add_argument("--endpoint", required=True, help="the emulator's URL")
    parser.add_argument("--workdir", type=Path, required=True, help="where worker logs go")
    parser.add_argument("--scaler-period", type=float, default=10.0, help="seconds between scheduled scaler runs")
    args = parser.parse_args()
    logs.configure(component="local-runtime")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(name, value)
    raw = json.loads(args.outputs.read_text())
    outputs = output_values(raw)
    args.workdir.mkdir(parents=True, exist_ok=True)
    runtime = LocalRuntime(outputs, args.endpoint, args.workdir, scaler_period=args.scaler_period)

    def request_stop(signum: int, _frame: object) -> None:
        runtime.stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    runtime.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
