"""terraform/examples/local, applied with the real AWS provider to the session's moto server.

Run through `make test`, which points Terraform at the provider mirror when one
is configured (TF_PLUGIN_MIRROR); Terraform itself is a prerequisite.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from gpupipe.cli import output_values

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "terraform" / "examples" / "local"


class Terraform:
    def __init__(self, workdir: Path, variables: dict[str, str]):
        self.workdir, self.variables = workdir, variables
        self.state = workdir / "terraform.tfstate"
        self.env = {**os.environ, "TF_DATA_DIR": str(workdir / ".terraform"), "TF_IN_AUTOMATION": "1"}

    def run(self, *args: str, timeout: float = 600) -> str:
        var_args = [f"-var={key}={value}" for key, value in self.variables.items()] if args[0] in ("apply", "destroy") else []
        state_args = [f"-state={self.state}"] if args[0] in ("apply", "destroy", "output") else []
        command = ["terraform", f"-chdir={EXAMPLE}", *args, *state_args, *var_args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise AssertionError(f"terraform {args[0]} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def outputs(self) -> dict[str, Any]:
        return output_values(json.loads(self.run("output", "-json")))
