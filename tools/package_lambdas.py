"""Build the Lambda zips reproducibly: the same sources give the same bytes.

Each zip holds its handler package, ``pipeline_core`` and the pinned
requirements in ``requirements/lambda.txt`` (boto3 comes with the runtime).
Entries are sorted, timestamps fixed and no bytecode is included.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = {"stream_router": ["stream_router", "pipeline_core"], "scaler": ["scaler", "pipeline_core"]}
LAMBDA_PYTHON = "3.12"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_PARTS = {"__pycache__", "bin"}


def install_requirements(target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--implementation",
            "cp",
            "--python-version",
            LAMBDA_PYTHON,
            "--platform",
            "manylinux2014_x86_64",
            "--only-binary=:all:",
            "-r",
            str(REPO / "requirements" / "lambda.txt"),
        ],
        check=True,
    )


def files_under(root: Path) -> list[tuple[str, Path]]:
    """(archive name, path) for every file below ``root``, sorted, bytecode and caches left out."""
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not SKIP_PARTS & set(relative.parts) and path.suffix != ".pyc":
            found.append((relative.as_posix(), path))
    return sorted(found)


def write_zip(destination: Path, entries: list[tuple[str, Path]]) -> None:
    with zipfile.ZipFile(destination, "w") as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)


def build(out: Path) -> dict[str, str]:
    """Build every zip into ``out``; returns name -> sha256."""
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    with tempfile.TemporaryDirectory(prefix="lambda-deps-") as tmp:
        deps = Path(tmp)
        install_requirements(deps)
        dependency_files = files_under(deps)
        for function, packages in FUNCTIONS.items():
            entries = list(dependency_files)
            for package in packages:
                entries += [(f"{package}/{name}", path) for name, path in files_under(REPO / package) if name.endswith(".py")]
            destination = out / f"{function}.zip"
            write_zip(destination, entries)
            digests[function] = hashlib.sha256(destination.read_bytes()).hexdigest()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build")
    args = parser.parse_args()
    for function, digest in build(args.out).items():
        print(f"{args.out / (function + '.zip')}  sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
