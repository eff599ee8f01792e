"""Forcing an interleaving of two workers at one DynamoDB write, without mocking the project's code."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def _counts(request: dict[str, Any]) -> bool:
    """Whether a request (an ``update_item``'s, or a ``transact_write_items``'s) counts a segment done."""
    items = request.get("TransactItems") or [{"Update": request}]
    updates = [item.get("Update") or {} for item in items]
    return any(
        "segments_done" in (u.get("ExpressionAttributeNames") or {}).values() and " + " in u.get("UpdateExpression", "") for u in updates
    )


class AfterFirstCount:
    """The moto table; after the first write that counts a segment done is answered by DynamoDB (applied or refused)
    and before that answer reaches the caller, ``meanwhile`` runs (once): another worker's move lands in between."""

    def __init__(self, table: Any, meanwhile: Callable[[], Any]):
        self.table, self.meanwhile, self.fired = table, meanwhile, False
        self.meta = SimpleNamespace(client=_Client(table.meta.client, self._around))

    def _around(self, call: Callable[..., Any], **request: Any) -> Any:
        counting = not self.fired and _counts(request)
        try:
            return call(**request)
        finally:
            if counting:
                self.fired = True
                self.meanwhile()

    def update_item(self, **request: Any) -> Any:
        return self._around(self.table.update_item, **request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)


class _Client:
    """The table's client with its ``transact_write_items`` passed through ``around``."""

    def __init__(self, client: Any, around: Callable[..., Any]):
        self.client, self.around = client, around

    def transact_write_items(self, **request: Any) -> Any:
        return self.around(self.client.transact_write_items, **request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
