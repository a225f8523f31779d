"""How a task travels: a function call (or a Dask graph node) with references to other keys.

The client replaces every future found in a call's arguments with a :class:`KeyRef`, pickles
``(kind, payload)`` with cloudpickle into the task's ``run_spec``, and lists the referenced
keys as the task's dependencies. The worker unpickles the spec, swaps each ``KeyRef`` for
the dependency's value, and runs it. Three kinds:

- ``"call"``: ``(func, args, kwargs)``, from ``submit``; ``"callb"`` is the same with the
  function pickled once to bytes, from ``map``;
- ``"dask"``: a Dask ``GraphNode`` (dask >= 2024.12 task spec), called with its dependencies'
  values;
- ``"graph"``: a value of a legacy Dask graph, converted by the client into
  :class:`Call`, :class:`Seq` and :class:`KeyRef` nodes (see
  :func:`memkube.client.graphs.to_tasks` for Dask's rules); anything else in it is literal
  data and is returned untouched, so no tuple is ever called by accident.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle


class KeyRef:
    """Stands for the value of ``key`` inside a task's arguments."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def __reduce__(self) -> tuple[type[KeyRef], tuple[str]]:
        return (KeyRef, (self.key,))

    def __repr__(self) -> str:
        return f"KeyRef({self.key!r})"


class Call:
    """``func(*args)`` where each argument is a node or literal data."""

    __slots__ = ("args", "func")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[type[Call], tuple[Any, ...]]:
        return (Call, (self.func, self.args))


class Seq:
    """A list, tuple, set or frozenset (or a named tuple) of nodes, rebuilt as ``kind``."""

    __slots__ = ("items", "kind", "named")

    def __init__(self, kind: type, items: tuple[Any, ...], named: bool = False) -> None:
        self.kind, self.items, self.named = kind, items, named

    def __reduce__(self) -> tuple[type[Seq], tuple[Any, ...]]:
        return (Seq, (self.kind, self.items, self.named))


def replace_refs(obj: Any, is_ref: Callable[[Any], str | None], found: set[str]) -> Any:
    """Copy ``obj`` with every reference (``is_ref(x)`` returns its key) made a KeyRef."""
    key = is_ref(obj)
    if key is not None:
        found.add(key)
        return KeyRef(key)
    if type(obj) in (list, tuple, set, frozenset):
        items = [replace_refs(x, is_ref, found) for x in obj]
        return type(obj)(items)
    if type(obj) is dict:
        return {k: replace_refs(v, is_ref, found) for k, v in obj.items()}
    return obj


def fill_refs(obj: Any, values: Mapping[str, Any]) -> Any:
    """Copy ``obj`` with every KeyRef replaced by its value."""
    if type(obj) is KeyRef:
        return values[obj.key]
    if type(obj) in (list, tuple, set, frozenset):
        return type(obj)(fill_refs(x, values) for x in obj)
    if type(obj) is dict:
        return {k: fill_refs(v, values) for k, v in obj.items()}
    return obj


def call_spec(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              func_bytes: bytes | None = None) -> bytes:
    """A call's run_spec; ``func_bytes`` (the function pickled once) makes ``map`` cheap."""
    spec: bytes
    if func_bytes is not None:
        spec = cloudpickle.dumps(("callb", func_bytes, args, kwargs))
    else:
        spec = cloudpickle.dumps(("call", func, args, kwargs))
    return spec


_FUNC_CACHE: dict[bytes, Any] = {}


def _load_func(func_bytes: bytes) -> Any:
    """Unpickle a function once per worker (a map sends the same bytes thousands of times)."""
    func = _FUNC_CACHE.get(func_bytes)
    if func is None:
        if len(_FUNC_CACHE) > 256:
            _FUNC_CACHE.clear()
        func = _FUNC_CACHE[func_bytes] = cloudpickle.loads(func_bytes)
    return func


def key_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    return "lambda" if name == "<lambda>" else str(name)


def task_key(func: Callable[..., Any], run_spec: bytes, pure: bool) -> str:
    """Deterministic for pure calls (same function and arguments, same key), like Dask's."""
    token = hashlib.blake2b(run_spec, digest_size=16).hexdigest() if pure else uuid.uuid4().hex
    return f"{key_name(func)}-{token}"


def execute(run_spec: bytes, values: Mapping[str, Any]) -> Any:
    """Run a task given its dependencies' values (called in a worker thread)."""
    spec = cloudpickle.loads(run_spec)
    kind = spec[0]
    if kind == "call":
        _, func, args, kwargs = spec
        return func(*fill_refs(args, values), **fill_refs(kwargs, values))
    if kind == "callb":
        _, func_bytes, args, kwargs = spec
        return _load_func(func_bytes)(*fill_refs(args, values), **fill_refs(kwargs, values))
    if kind == "dask":
        node, keymap = spec[1], spec[2]
        return node({keymap[k]: v for k, v in values.items() if k in keymap})
    if kind == "graph":
        return evaluate(spec[1], values)
    raise ValueError(f"unknown task kind {kind!r}")


def evaluate(node: Any, values: Mapping[str, Any]) -> Any:
    """The value of a converted graph value: calls made, references filled, data as is."""
    kind = type(node)
    if kind is KeyRef:
        return values[node.key]
    if kind is Call:
        return node.func(*(evaluate(a, values) for a in node.args))
    if kind is Seq:
        items = [evaluate(a, values) for a in node.items]
        return node.kind(*items) if node.named else node.kind(items)
    return node
