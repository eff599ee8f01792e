"""Record every AWS call a process makes, for the IAM contract test (tests/support/iam_contract.py).

A botocore ``before-parameter-build`` handler on every botocore session writes one JSON line per
call: service, operation, the request's parameters, which process made it (the worker's step) and
which of the project's functions were on the stack (``stream_router.app.intake_handler``...), so the
test can tell which component, and so which IAM role, made it. Nothing in the production code knows
about it: ``sitecustomize_dir`` writes a ``sitecustomize.py`` that installs it at interpreter start,
for a process started with that folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Frames from these packages are kept: they name the component that made a call.
PROJECT_PACKAGES = ("stream_router", "scaler", "worker", "pipeline_core", "local_runtime", "gpupipe", "tests")

_lock = threading.Lock()


def _project_frames() -> list[str]:
    frames, frame = [], sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in PROJECT_PACKAGES:
            frames.append(f"{module}.{frame.f_code.co_name}")
        frame = frame.f_back
    return frames


def _main_module() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec is not None else ""


def handler(sink: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model
        sink(
            {
                "pid": os.getpid(),
                "main": _main_module(),
                "step": os.environ.get("STEP_NAME"),
                "service": service.service_name,
                "signing_name": service.signing_name,
                "operation": model.name,
                # Bodies and file objects are not needed to authorize a call: they become null.
                "params": json.loads(json.dumps(params, default=lambda _value: None)),
                "stack": _project_frames(),
            }
        )

    return record


def file_sink(path: Path) -> Callable[[dict[str, Any]], None]:
    def write(entry: dict[str, Any]) -> None:
        line = json.dumps(entry) + "\n"
        with _lock, open(path, "a", encoding="utf-8") as out:
            out.write(line)

    return write


def install(sink: Callable[[dict[str, Any]], None]) -> None:
    """Every botocore session created from now on records its clients' calls."""
    import botocore.session

    original = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.register("before-parameter-build", handler(sink))

    botocore.session.Session.__init__ = init  # type: ignore[method-assign]


def sitecustomize_dir(folder: Path, log: Path) -> Path:
    """A folder whose sitecustomize.py records the calls of any Python process started with it on PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "from pathlib import Path\n"
        "from tests.support import iam_recorder\n"
        f"iam_recorder.install(iam_recorder.file_sink(Path({str(log)!r})))\n"
    )
    return folder


def read(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
