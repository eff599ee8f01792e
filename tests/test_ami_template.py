"""The AMI template's base image: what reaches DescribeImages is an AMI id or a filter, never an SSM
parameter name (``resolve:ssm:...`` answers InvalidAMIID.Malformed). Evaluated with ``packer console`` and checked
with ``packer validate -syntax-only``, which Debian's Packer 1.6 can do (it predates data sources)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not installed (apt-get install packer)"),
]

AMI = Path(__file__).resolve().parent.parent / "ami"
REQUIRED = ["-var", "region=eu-west-1", "-var", "worker_image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/w:1"]


@pytest.fixture
def template(tmp_path: Path) -> Path:
    # plugins.pkr.hcl holds required_plugins, which Packer 1.6 does not know (tools/check-ami.sh does the same).
    for path in AMI.glob("*.pkr.hcl"):
        if path.name != "plugins.pkr.hcl":
            shutil.copy(path, tmp_path / path.name)
    shutil.copytree(AMI / "scripts", tmp_path / "scripts")
    return tmp_path


def evaluate(template: Path, expression: str, *variables: str) -> object:
    done = subprocess.run(
        ["packer", "console", *REQUIRED, *variables, "."],
        input=f"jsonencode({expression})\n",
        cwd=template,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_template_passes_packers_syntax_check(template: Path) -> None:
    done = subprocess.run(["packer", "validate", "-syntax-only", "."], cwd=template, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_by_default_the_base_ami_is_found_by_a_filter_never_by_an_ssm_name(template: Path) -> None:
    source_ami = evaluate(template, "local.source_ami")
    assert source_ami == "" or str(source_ami).startswith("ami-"), f"DescribeImages would get {source_ami!r}"
    [lookup] = evaluate(template, "local.source_ami_filters")  # type: ignore[misc]
    assert lookup["owners"] == ["amazon"]
    assert lookup["filters"]["name"].startswith("al2023-ami-ecs-gpu-hvm-") and lookup["filters"]["architecture"] == "x86_64"


def test_a_given_base_ami_id_is_used_as_is_and_no_filter_narrows_it(template: Path) -> None:
    assert evaluate(template, "[local.source_ami, local.source_ami_filters]", "-var", "base_ami_id=ami-0123456789abcdef0") == [
        "ami-0123456789abcdef0",
        [],
    ]
