"""Which AWS region gpupipe and ``gpupipe doctor`` talk to: one rule, one place.

After an apply the stack's ``region`` output is where everything lives, so it wins over the environment. Before
an apply the region that matters is the one the Terraform example will deploy to: its ``region`` variable when
one is set (tfvars, ``TF_VAR_region``), else what the AWS provider itself reads (``AWS_REGION``, then
``AWS_DEFAULT_REGION``, then the profile). A disagreement with the environment is named in one line.

``choose`` is pure; ``planned_region`` asks Terraform (``terraform console``) for the variable, so that every way
Terraform sets a variable counts and nothing here parses HCL.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

# The Terraform AWS provider's order (botocore reads only the second; gpupipe passes the region explicitly).
ENVIRONMENT_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class Region:
    name: str | None  # None: leave it to boto3 (the profile's region)
    source: str
    mismatch: str | None = None  # one line naming a disagreement with the environment


def environment_region(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, region) of the first region variable set, in the provider's order."""
    for variable in ENVIRONMENT_VARIABLES:
        if environ.get(variable):
            return variable, environ[variable]
    return None


def choose(stack: str | None, planned: str | None, environ: Mapping[str, str]) -> Region:
    """The region to use: the stack's output after an apply, the example's variable before one, else the environment."""
    env = environment_region(environ)
    if stack:
        mismatch = f"the stack is in {stack}, {env[0]} says {env[1]}" if env and env[1] != stack else None
        return Region(stack, "the stack's region output", mismatch)
    if planned:
        mismatch = f"the example deploys to {planned} (its region variable), {env[0]} says {env[1]}" if env and env[1] != planned else None
        return Region(planned, "the example's region variable", mismatch)
    if env:
        return Region(env[1], env[0])
    return Region(None, "the AWS profile")


def planned_region(terraform_dir: str, timeout: float = 60) -> str | None:
    """The ``region`` variable of the Terraform folder as Terraform evaluates it; None when unset or unreadable."""
    try:
        result = subprocess.run(
            ["terraform", f"-chdir={terraform_dir}", "console"],
            input="jsonencode(var.region)\n",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        value = json.loads(json.loads(result.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return value if isinstance(value, str) and value else None
