"""Batching across jobs: many threads, one inference call per batch, results back to their own caller."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from worker.batching import Batcher

pytestmark = pytest.mark.unit


class Model:
    """Doubles numbers; records every batch it was called with; refuses the number -1."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.calls.append(list(items))
        if -1 in items:
            raise ValueError("-1 is a bad image")
        return [item * 2 for item in items]


def test_items_from_many_callers_share_batches_and_get_their_own_results() -> None:
    model = Model()
    batcher = Batcher(model, batch_size=8, wait_seconds=0.2)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda n: batcher.submit([n]), range(16)))
    assert results == [[n * 2] for n in range(16)]
    assert sorted(item for call in model.calls for item in call) == list(range(16))
    assert all(len(call) <= 8 for call in model.calls)
    assert len(model.calls) < 16, "no two callers' items shared a batch"


def test_one_callers_items_are_split_into_batches_in_order() -> None:
    model = Model()
    batcher = Batcher(model, batch_size=4, wait_seconds=0)
    assert batcher.submit(list(range(10))) == [n * 2 for n in range(10)]
    assert [len(call) for call in model.calls] == [4, 4, 2]


def test_a_bad_item_fails_only_its_own_caller() -> None:
    model = Model()
    batcher = Batcher(model, batch_size=8, wait_seconds=0.2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {n: pool.submit(batcher.submit, [n]) for n in (11, 12, -1, 14)}
        with pytest.raises(ValueError, match="-1 is a bad image"):
            futures[-1].result()
        assert [futures[n].result() for n in (11, 12, 14)] == [[22], [24], [28]]


def test_items_of_different_shapes_never_share_a_batch() -> None:
    shapes: list[set[tuple[int, ...]]] = []

    def infer(images: list[np.ndarray]) -> list[tuple[int, ...]]:
        shapes.append({image.shape for image in images})
        return [image.shape for image in images]

    batcher = Batcher(infer, batch_size=8, wait_seconds=0.2, key=lambda image: image.shape)
    images = [np.zeros((4, 4, 3)), np.zeros((8, 4, 3))] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda image: batcher.submit([image])[0], images))
    assert results == [image.shape for image in images]
    assert all(len(group) == 1 for group in shapes)


def test_an_item_that_waited_while_the_previous_batch_ran_goes_with_the_next_at_once() -> None:
    """The batch waits for company up to ``wait_seconds`` after its oldest item arrived, not after the GPU came free:
    an item that already waited out a busy batch is not held back again (a worker with 8 in flight lost
    the wait on every batch)."""
    running, go, started = threading.Event(), threading.Event(), []

    def infer(items: list[str]) -> list[str]:
        started.append((list(items), time.monotonic()))
        if items == ["a"]:
            running.set()
            go.wait(10)
        return items

    wait = 2.0
    batcher = Batcher(infer, batch_size=8, wait_seconds=wait)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(batcher.submit, ["a"])
        assert running.wait(10)  # "a" (waited its 2 s alone, then) is being inferred
        second = pool.submit(batcher.submit, ["b"])
        time.sleep(wait + 0.2)  # "b" waits out its own wait while "a"'s batch runs
        freed = time.monotonic()
        go.set()
        assert first.result(10) == ["a"] and second.result(10) == ["b"]
    [at] = [at for batch, at in started if batch == ["b"]]
    assert at - freed < wait / 2, f"'b' was held {at - freed:.2f} s more after the batch before it ended"
