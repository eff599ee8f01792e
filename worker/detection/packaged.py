"""Models whose weights ship inside a Python package, held to the sha256 that ``models.lock.json`` records.

The lock's ``packaged`` section names, for each such model, the package (installed hash-pinned with
``--no-deps`` from ``requirements/models.txt``: its Python code is never imported), the file inside it,
that file's sha256, its licence and its classes. A worker finds the file through the package's metadata,
hashes it and refuses to load anything else: a corrupted or swapped file is never run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parents[2] / "models.lock.json"  # the repository root; /app in the worker image


class ModelIntegrityError(ValueError):
    """A model file that is missing, or whose bytes are not the ones the lock records.

    A ValueError, like every other bad configuration: a worker that meets it logs ``cannot start`` with the
    reason and exits (worker/main.py) instead of running a model nobody locked.
    """


@dataclass(frozen=True)
class PackagedModel:
    """One entry of the lock's ``packaged`` section."""

    name: str
    package: str
    version: str
    file: str
    sha256: str
    licence: str
    classes: dict[int, str]

    @classmethod
    def from_lock(cls, name: str, lock: dict[str, Any]) -> PackagedModel:
        entry = lock.get("packaged", {}).get(name)
        if not isinstance(entry, dict):
            raise ModelIntegrityError(f"models.lock.json has no packaged model {name!r}: nothing to check its file against")
        return cls(
            name=name,
            package=str(entry["package"]),
            version=str(entry["version"]),
            file=str(entry["file"]),
            sha256=str(entry["sha256"]).lower(),
            licence=str(entry["licence"]),
            classes={int(key): str(value) for key, value in entry["classes"].items()},
        )

    def installed_path(self) -> Path:
        """Where the package's file is installed, found from the package's metadata (nothing is imported)."""
        try:
            distribution = metadata.distribution(self.package)
        except metadata.PackageNotFoundError:
            raise ModelIntegrityError(
                f"{self.name}: package {self.package}=={self.version} is not installed; install it with "
                "`pip install --no-deps --require-hashes -r requirements/models.txt`"
            ) from None
        if distribution.version != self.version:
            raise ModelIntegrityError(
                f"{self.name}: {self.package} {distribution.version} is installed, models.lock.json locks {self.version}"
            )
        return Path(str(distribution.locate_file(self.file)))


def read_lock(path: Path = LOCK) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def verified_bytes(model: PackagedModel, path: Path) -> bytes:
    """The file's bytes, once their sha256 is the lock's; otherwise a ModelIntegrityError that says both."""
    if not path.is_file():
        raise ModelIntegrityError(f"{model.name}: model file {path} does not exist")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != model.sha256:
        raise ModelIntegrityError(
            f"{model.name}: refusing to load {path}: its sha256 is {found}, models.lock.json expects {model.sha256} "
            f"({model.package}=={model.version}, {model.file}); the file is corrupted or was swapped"
        )
    return data
