"""`make package`: the Lambda zips are reproducible and their handlers import from the zip alone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.package_lambdas import build

pytestmark = pytest.mark.integration


def test_zips_are_byte_identical_across_builds_and_import_from_the_zip(tmp_path: Path) -> None:
    first, second = build(tmp_path / "one"), build(tmp_path / "two")
    assert first == second
    assert set(first) == {"stream_router", "scaler"}
    handlers = (("stream_router", "stream_router.app"), ("stream_router", "stream_router.deadletter"), ("scaler", "scaler.app"))
    for function, handler_module in handlers:
        archive = tmp_path / "one" / f"{function}.zip"
        names = zipfile.ZipFile(archive).namelist()
        assert f"{handler_module.replace('.', '/')}.py" in names
        assert "pipeline_core/jobs.py" in names
        assert not [name for name in names if name.endswith(".pyc") or "__pycache__" in name]
        # Only the zip and the runtime's boto3 on the path, as in Lambda: -I ignores the working directory.
        script = (
            "import sys; sys.path.insert(0, sys.argv[1]); "
            f"import {handler_module} as m, aws_lambda_powertools as p, pipeline_core as c; "
            "assert all(x.__file__.startswith(sys.argv[1]) for x in (m, p, c)), (m.__file__, p.__file__)"
        )
        subprocess.run([sys.executable, "-I", "-c", script, str(archive)], check=True)
