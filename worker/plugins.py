"""Plugins by name: a registered name, or any ``package.module:attribute`` import path."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def resolve(name: str, registry: Mapping[str, str], kind: str) -> Any:
    """The attribute ``registry[name]`` (or ``name`` itself) points at, imported on first use."""
    module_name, sep, attribute = registry.get(name, name).partition(":")
    if not sep:
        raise ValueError(f"unknown {kind} {name!r}: use one of {', '.join(sorted(registry))}, or module:attribute")
    return getattr(importlib.import_module(module_name), attribute)
