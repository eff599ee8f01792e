"""Batching across jobs: items submitted from many threads go through one inference call together.

A worker with several messages in flight runs ``process()`` in several threads at once; each hands its
frames to a ``Batcher``, whose one dispatcher thread groups what has arrived (up to ``batch_size``
items of the same shape, a number or a function of the shape, waiting at most ``wait_seconds`` after the first so that a lone image is
not held back) and calls ``infer`` once for the group. Results go back to each caller in order.

If ``infer`` raises for a group, each item of it is run alone, so a bad image fails only the job
that sent it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Request(Generic[Item]):
    key: Hashable
    item: Item
    future: Future[Any]
    arrived: float  # time.monotonic() at submit: the batch waits for company from here, not from when it is looked at


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        infer: Callable[[list[Item]], Sequence[Result]],
        batch_size: int | Callable[[Hashable], int],
        wait_seconds: float,
        key: Callable[[Item], Hashable] = lambda _item: None,
        name: str = "batcher",
    ):
        if (isinstance(batch_size, int) and batch_size < 1) or wait_seconds < 0:
            raise ValueError("batch_size must be >= 1 and wait_seconds >= 0")
        self.infer, self.wait_seconds, self.key = infer, wait_seconds, key
        self.limit = batch_size if callable(batch_size) else lambda _key: batch_size  # items per call, by key
        self.batches = 0  # calls of infer, for the logs and the benchmark
        self.items = 0
        self._pending: deque[_Request[Item]] = deque()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._dispatch, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[Item]) -> list[Result]:
        """Infer ``items`` (in as many batches as it takes, shared with other callers); block for the results."""
        now = time.monotonic()
        requests = [_Request(self.key(item), item, Future(), now) for item in items]
        with self._arrived:
            self._pending.extend(requests)
            self._arrived.notify()
        return [request.future.result() for request in requests]

    # --- the dispatcher -----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            batch = self._next_batch()
            self._run(batch)

    def _next_batch(self) -> list[_Request[Item]]:
        """The oldest request and up to batch_size - 1 more of its shape, waiting for them until wait_seconds after the
        oldest arrived: a request that waited while the previous batch ran goes with the next at once."""
        with self._arrived:
            while not self._pending:
                self._arrived.wait()
            first = self._pending[0]
            size = max(1, self.limit(first.key))
            deadline = first.arrived + self.wait_seconds
            while True:
                batch = [request for request in self._pending if request.key == first.key][:size]
                left = deadline - time.monotonic()
                if len(batch) >= size or left <= 0:
                    break
                self._arrived.wait(left)
            for request in batch:
                self._pending.remove(request)
            return batch

    def _run(self, batch: list[_Request[Item]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = list(self.infer([request.item for request in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"inference returned {len(results)} results for {len(batch)} items")
        except Exception as error:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                batch[0].future.set_exception(error)
                return
            for request in batch:  # isolate the item that fails: only its caller sees the error
                self._run([request])
            return
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)
