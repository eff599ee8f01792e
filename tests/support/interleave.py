"""Forcing an interleaving of two workers at one DynamoDB write, without mocking the project's code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class AfterFirstCount:
    """The moto table; after the first update that counts a segment done is answered by DynamoDB (applied or refused)
    and before that answer reaches the caller, ``meanwhile`` runs (once): another worker's move lands in between."""

    def __init__(self, table: Any, meanwhile: Callable[[], Any]):
        self.table, self.meanwhile, self.fired = table, meanwhile, False

    def update_item(self, **request: Any) -> Any:
        counting = not self.fired and "segments_done + :one" in request.get("UpdateExpression", "")
        try:
            return self.table.update_item(**request)
        finally:
            if counting:
                self.fired = True
                self.meanwhile()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)
