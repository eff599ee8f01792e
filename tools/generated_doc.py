"""A document's generated part: replaced between its two markers, or checked against what the code generates."""

from __future__ import annotations

import sys
from pathlib import Path


def replace_between(text: str, begin: str, end: str, part: str) -> str:
    """``text`` with everything from ``begin`` to ``end`` (both included) replaced by ``part``."""
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + part + text[stop:]


def write_or_check(doc: Path, new: str, check: bool, rerun: str) -> bool:
    """With ``check``, whether ``doc`` already reads ``new`` (saying how to refresh it when not); else write it."""
    if check:
        if doc.read_text() != new:
            print(f"{doc} is out of date: run {rerun}", file=sys.stderr)
            return False
        return True
    doc.write_text(new)
    return True
