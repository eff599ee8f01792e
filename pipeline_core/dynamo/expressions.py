"""DynamoDB condition and update expressions as small objects that carry their own names and values.

A ``Cond`` is built from attribute ``Path``s and values (``path.eq(value)``, ``path.exists()``, ``a & b``, ``a | b``,
``~a``), an ``Update`` from ``set``/``add``/``remove`` clauses; ``render`` turns them into the request's
``UpdateExpression``/``ConditionExpression``/``ExpressionAttributeNames``/``ExpressionAttributeValues`` once. Every
attribute name goes through a ``#name`` placeholder (so reserved words never matter) and every value through a
``:name`` placeholder, named where it is made:

- a ``StrEnum`` member is named after its value (``StepState.RUNNING`` -> ``:running``), an ``int`` after its digits
  (``:n1``); any other value must be given a name (``Value("now", now)``);
- two different values under one name, or two attributes under one placeholder, are refused at render time
  (``ExpressionConflict``), so a request can never silently compare against the wrong value.

A ``Guard`` is a condition with a name (``pipeline_core.protocol.guards``): rendering is its condition's, and
``Cond.guards`` says which named guards a condition was built from, which is how the protocol's table is checked
against what the store sends. Rendering follows DynamoDB's precedence (NOT, AND, OR) and parenthesises a child only
where that precedence needs it (DynamoDB refuses redundant parentheses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ExpressionConflict(ValueError):
    """One placeholder would stand for two different names or values in one request."""


# --- names and values ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A map key chosen at use (a step's name inside ``steps``): rendered as ``#<label>``, standing for ``name``."""

    label: str
    name: str


Part = str | Key


@dataclass(frozen=True)
class Path:
    """An attribute path: ``Path(("steps", Key("step", "detect"), "state"))`` renders ``#steps.#step.#state``."""

    parts: tuple[Part, ...]

    def __truediv__(self, part: Part) -> Path:
        return Path((*self.parts, part))

    # conditions on this path
    def eq(self, other: Any) -> Cond:
        return Compare("=", self, operand(other))

    def ne(self, other: Any) -> Cond:
        return Compare("<>", self, operand(other))

    def lt(self, other: Any) -> Cond:
        return Compare("<", self, operand(other))

    def ge(self, other: Any) -> Cond:
        return Compare(">=", self, operand(other))

    def exists(self) -> Cond:
        return Exists(self, True)

    def missing(self) -> Cond:
        return Exists(self, False)

    def is_in(self, *values: Any) -> Cond:
        return In(self, tuple(operand(value) for value in values))

    # update operands on this path
    def plus(self, other: Any) -> Plus:
        return Plus(self, operand(other))

    def or_default(self, default: Any) -> IfNotExists:
        """``if_not_exists(path, default)``."""
        return IfNotExists(self, operand(default))


ROOT = Path(())


@dataclass(frozen=True)
class Value:
    """A value under a named placeholder (``:name``)."""

    name: str
    value: Any


def operand(value: Any) -> Operand:
    """A path or value as an expression operand; enum members and ints name themselves, other values must be named."""
    if isinstance(value, Path | Value | Plus | IfNotExists):
        return value
    if isinstance(value, StrEnum):
        return Value(value.value.replace("-", "_"), value.value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Value(f"n{value}" if value >= 0 else f"minus{-value}", value)
    raise TypeError(f"name this value (Value(name, {value!r})): only enum members and ints name themselves")


@dataclass(frozen=True)
class Plus:
    left: Operand
    right: Operand


@dataclass(frozen=True)
class IfNotExists:
    path: Path
    default: Operand

    def plus(self, other: Any) -> Plus:
        return Plus(self, operand(other))


Operand = Path | Value | Plus | IfNotExists


# --- rendering ---------------------------------------------------------------------------------------------------


@dataclass
class Renderer:
    """Collects the placeholders of one request; refuses a placeholder that would stand for two things."""

    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def name(self, placeholder: str, name: str) -> str:
        if self.names.setdefault(placeholder, name) != name:
            raise ExpressionConflict(f"{placeholder} stands for both {self.names[placeholder]!r} and {name!r}")
        return placeholder

    def value(self, item: Value) -> str:
        placeholder = f":{item.name}"
        if placeholder in self.values and not _same(self.values[placeholder], item.value):
            raise ExpressionConflict(f"{placeholder} stands for both {self.values[placeholder]!r} and {item.value!r}")
        self.values[placeholder] = item.value
        return placeholder

    def path(self, path: Path) -> str:
        return ".".join(
            self.name(f"#{part}", part) if isinstance(part, str) else self.name(f"#{part.label}", part.name) for part in path.parts
        )

    def operand(self, item: Operand) -> str:
        if isinstance(item, Path):
            return self.path(item)
        if isinstance(item, Value):
            return self.value(item)
        if isinstance(item, Plus):
            return f"{self.operand(item.left)} + {self.operand(item.right)}"
        return f"if_not_exists({self.path(item.path)}, {self.operand(item.default)})"


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


# --- conditions --------------------------------------------------------------------------------------------------

_OR, _AND, _NOT, _ATOM = 0, 1, 2, 3  # precedence: a child binding looser than its parent is parenthesised


class Cond:
    """A condition expression; ``&``, ``|`` and ``~`` compose them."""

    precedence = _ATOM

    def __and__(self, other: Cond) -> Cond:
        return And((*_flat(self, And), *_flat(other, And)))

    def __or__(self, other: Cond) -> Cond:
        return Or((*_flat(self, Or), *_flat(other, Or)))

    def __invert__(self) -> Cond:
        return Not(self)

    def render(self, out: Renderer) -> str:
        raise NotImplementedError

    @property
    def guards(self) -> frozenset[str]:
        """The named guards this condition was built from."""
        return frozenset()

    def child(self, inner: Cond, out: Renderer) -> str:
        text = inner.render(out)
        return f"({text})" if inner.effective_precedence < self.precedence else text

    @property
    def effective_precedence(self) -> int:
        return self.precedence


def _flat(cond: Cond, kind: type[And] | type[Or]) -> tuple[Cond, ...]:
    return cond.items if isinstance(cond, kind) else (cond,)


@dataclass(frozen=True)
class Compare(Cond):
    op: str
    left: Operand
    right: Operand

    def render(self, out: Renderer) -> str:
        return f"{out.operand(self.left)} {self.op} {out.operand(self.right)}"


@dataclass(frozen=True)
class Exists(Cond):
    path: Path
    present: bool

    def render(self, out: Renderer) -> str:
        return f"{'attribute_exists' if self.present else 'attribute_not_exists'}({out.path(self.path)})"


@dataclass(frozen=True)
class In(Cond):
    path: Path
    choices: tuple[Operand, ...]

    def render(self, out: Renderer) -> str:
        return f"{out.path(self.path)} IN ({', '.join(out.operand(choice) for choice in self.choices)})"


@dataclass(frozen=True)
class And(Cond):
    items: tuple[Cond, ...]
    precedence = _AND

    def render(self, out: Renderer) -> str:
        return " AND ".join(self.child(item, out) for item in self.items)

    @property
    def guards(self) -> frozenset[str]:
        return frozenset().union(*(item.guards for item in self.items))


@dataclass(frozen=True)
class Or(Cond):
    items: tuple[Cond, ...]
    precedence = _OR

    def render(self, out: Renderer) -> str:
        return " OR ".join(self.child(item, out) for item in self.items)

    @property
    def guards(self) -> frozenset[str]:
        return frozenset().union(*(item.guards for item in self.items))


@dataclass(frozen=True)
class Not(Cond):
    item: Cond
    precedence = _NOT

    def render(self, out: Renderer) -> str:
        return "NOT " + self.child(self.item, out)

    @property
    def guards(self) -> frozenset[str]:
        return self.item.guards


@dataclass(frozen=True)
class Guard(Cond):
    """A named condition: the protocol's table cites it by ``name``."""

    name: str
    cond: Cond

    def render(self, out: Renderer) -> str:
        return self.cond.render(out)

    @property
    def effective_precedence(self) -> int:
        return self.cond.effective_precedence

    @property
    def guards(self) -> frozenset[str]:
        return frozenset({self.name}) | self.cond.guards


def all_of(conds: Iterable[Cond]) -> Cond:
    items = tuple(conds)
    if not items:
        raise ValueError("all_of needs at least one condition")
    result = items[0]
    for item in items[1:]:
        result = result & item
    return result


# --- updates -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """An update expression's clauses; ``a + b`` joins two updates (a compound update written once, reused)."""

    sets: tuple[tuple[Path, Operand], ...] = ()
    adds: tuple[tuple[Path, Value], ...] = ()
    removes: tuple[Path, ...] = ()

    def set(self, path: Path, value: Any) -> Update:
        return Update((*self.sets, (path, operand(value))), self.adds, self.removes)

    def set_all(self, pairs: Mapping[Path, Any]) -> Update:
        update = self
        for path, value in pairs.items():
            update = update.set(path, value)
        return update

    def add(self, path: Path, value: Any) -> Update:
        value = operand(value)
        if not isinstance(value, Value):
            raise TypeError("ADD takes a value")
        return Update(self.sets, (*self.adds, (path, value)), self.removes)

    def remove(self, *paths: Path) -> Update:
        return Update(self.sets, self.adds, (*self.removes, *paths))

    def __add__(self, other: Update) -> Update:
        return Update((*self.sets, *other.sets), (*self.adds, *other.adds), (*self.removes, *other.removes))

    def render(self, out: Renderer) -> str:
        clauses = []
        if self.sets:
            clauses.append("SET " + ", ".join(f"{out.path(path)} = {out.operand(value)}" for path, value in self.sets))
        if self.adds:
            clauses.append("ADD " + ", ".join(f"{out.path(path)} {out.value(value)}" for path, value in self.adds))
        if self.removes:
            clauses.append("REMOVE " + ", ".join(out.path(path) for path in self.removes))
        return " ".join(clauses)


def render(update: Update | None = None, condition: Cond | None = None) -> dict[str, Any]:
    """The expression fields of one request (Python values: the table layer encodes them for DynamoDB)."""
    out = Renderer()
    request: dict[str, Any] = {}
    if update is not None:
        request["UpdateExpression"] = update.render(out)
    if condition is not None:
        request["ConditionExpression"] = condition.render(out)
    if out.names:
        request["ExpressionAttributeNames"] = dict(out.names)
    if out.values:
        request["ExpressionAttributeValues"] = dict(out.values)
    return request
