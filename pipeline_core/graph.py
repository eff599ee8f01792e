"""A pipeline's steps as a graph: which steps each one needs the results of (``after``), checked once, here.

A step's ``after`` names the steps whose results it reads; left out (None), it is the step before it in the list,
so a list of steps without ``after`` is the chain it always was; ``after = []`` makes a root. A step is queued once
every step it runs after has succeeded; the roots are queued when the job is made. ``terraform/variables.tf`` (and
a precondition for cycles, ``terraform/main.tf``) refuse the same shapes at plan time, with the same messages'
substance; ``tests/test_graph.py`` holds the two to each other on each bad shape.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


class GraphError(ValueError):
    """A graph of steps that cannot run: the message names the offending steps."""


@dataclass(frozen=True)
class Graph:
    """The steps in their listed order, and the steps each runs after."""

    order: tuple[str, ...]
    parents: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, steps: Sequence[tuple[str, Sequence[str] | None]]) -> Graph:
        """The graph of ``(name, after)`` pairs in list order (``after`` None: the step before); GraphError when it
        cannot run."""
        names = [name for name, _ in steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise GraphError(
                f"step names must be unique: {', '.join(duplicates)} appear{'s' if len(duplicates) == 1 else ''} more than once"
            )
        if not names:
            raise GraphError("a pipeline needs at least one step")
        parents: dict[str, tuple[str, ...]] = {}
        for index, (name, after) in enumerate(steps):
            resolved = (names[index - 1],) if after is None and index > 0 else tuple(after or ())
            parents[name] = resolved
        graph = cls(tuple(names), parents)
        graph.check()
        return graph

    @classmethod
    def chain(cls, names: Iterable[str]) -> Graph:
        return cls.of([(name, None) for name in names])

    def check(self) -> None:
        known = set(self.order)
        for name in self.order:
            after = self.parents[name]
            if name in after:
                raise GraphError(f"step {name!r} runs after itself")
            unknown = [parent for parent in after if parent not in known]
            if unknown:
                raise GraphError(
                    f"step {name!r} runs after {', '.join(map(repr, unknown))}, which is no step (steps: {', '.join(self.order)})"
                )
            if len(set(after)) != len(after):
                raise GraphError(f"step {name!r} names a step twice in its after: {list(after)}")
        if not self.roots:
            raise GraphError(f"no step runs first: every step runs after another ({', '.join(self.order)}); give the first after = []")
        cycle = self._cycle()
        if cycle:
            links = ", ".join(f"{a} runs after {b}" for a, b in itertools.pairwise(cycle))
            raise GraphError(f"steps {', '.join(sorted(set(cycle)))} form a cycle ({links}): a step cannot run after its own results")

    def _cycle(self) -> list[str]:
        """One cycle, as a path that ends where it began ([] when there is none)."""
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(name: str, path: list[str]) -> list[str]:
            state[name] = 1
            for parent in self.parents[name]:
                if state.get(parent) == 1:  # on the path that led here
                    return [*path[path.index(parent) :], parent]
                if state.get(parent) is None and (found := visit(parent, [*path, parent])):
                    return found
            state[name] = 2
            return []

        for name in self.order:
            if state.get(name) is None and (found := visit(name, [name])):
                return found
        return []

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(name for name in self.order if not self.parents[name])

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(child for child in self.order if name in self.parents[child])

    def downstream(self, name: str) -> tuple[str, ...]:
        """Every step that runs after ``name``, directly or not, in list order."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            for child in self.children(frontier.pop()):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return tuple(step for step in self.order if step in found)

    def ready(self, done: Iterable[str], waiting: Iterable[str]) -> tuple[str, ...]:
        """Of the ``waiting`` steps, those every parent of which is ``done``."""
        finished, candidates = set(done), set(waiting)
        return tuple(name for name in self.order if name in candidates and all(parent in finished for parent in self.parents[name]))
