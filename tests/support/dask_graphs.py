"""Hypothesis strategies for legacy Dask graphs, and a comparison against ``dask.get``.

Graphs mix string, tuple and integer keys; values are literals, aliases (a value naming
another key), calls ``(func, *args)`` nested at any depth inside lists, tuples, sets and
named tuples, and dicts (which Dask treats as data). Keys only refer to earlier keys, so
graphs are acyclic; chains and wide fan-in are drawn on purpose. Functions are module-level
so workers unpickle them by reference (``tests/support`` is on every worker's path).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from hypothesis import strategies as st

Pair = namedtuple("Pair", "left right")


def pack(*args: Any) -> tuple[Any, ...]:
    return args


def inc(x: Any) -> int:
    """Always an integer, so that only :func:`boom` raises (one error type per graph)."""
    return x + 1 if type(x) is int else -1


def total(items: Any) -> int:
    return sum(x for x in items if type(x) is int)


def boom(*args: Any) -> Any:
    raise ZeroDivisionError("boom")


FUNCS = (pack, inc, total, boom)
SCALARS = st.one_of(st.integers(-3, 3), st.text("abxy", max_size=2), st.none())


def normalize(value: Any) -> Any:
    """Functions compare by name (values travel through pickles); containers recursively."""
    if callable(value) and hasattr(value, "__name__"):
        return ("<function>", value.__name__)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(normalize(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(normalize(v) for v in value)
    return value


def outcome(run: Any) -> tuple[str, Any]:
    """``("ok", value)`` or ``("error", exception type)`` of ``run()``."""
    try:
        return "ok", normalize(run())
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return "error", type(exc)


@st.composite
def values(draw: st.DrawFn, earlier: list[Any], scalar_keys: list[Any], depth: int = 0) -> Any:
    """A graph value that may refer to keys of ``earlier``."""
    choices = ["scalar", "scalar", "call", "list", "tuple", "dict", "set", "named"]
    if earlier:
        choices += ["ref", "ref", "ref"]
    kind = draw(st.sampled_from(choices if depth < 3 else ["scalar", "ref"] if earlier
                                else ["scalar"]))
    sub = values(earlier, scalar_keys, depth + 1)
    if kind == "scalar":
        return draw(SCALARS)
    if kind == "ref":
        return draw(st.sampled_from(earlier))
    if kind == "call":
        func = draw(st.sampled_from(FUNCS))
        if func is pack:
            return (pack, *draw(st.lists(sub, max_size=3)))
        if func is boom:
            return (boom,)
        if func is inc:
            return (inc, draw(st.integers(0, 5) | st.sampled_from(earlier or [0])))
        return (total, draw(st.lists(st.integers(0, 3) | st.sampled_from(scalar_keys or [1]),
                                     max_size=3)))
    if kind == "list":
        return draw(st.lists(sub, max_size=3))
    if kind == "tuple":  # a tuple that is no call: its head is data
        return (draw(SCALARS), *draw(st.lists(sub, max_size=2)))
    if kind == "named":
        return Pair(draw(sub), draw(sub))
    if kind == "set":
        members = st.integers(0, 3) | st.sampled_from(scalar_keys or [0])
        return draw(st.frozensets(members, max_size=3) | st.sets(members, max_size=3))
    # A dict is data to Dask: references and calls inside it stay as they are.
    return draw(st.dictionaries(st.text("kv", max_size=2),
                                SCALARS | st.sampled_from(earlier or [0]) | st.just((inc, 1)),
                                max_size=2))


@st.composite
def graphs(draw: st.DrawFn, max_keys: int = 8) -> tuple[dict[Any, Any], Any]:
    """``(graph, keys)``: a graph and what to ask of it (one key or nested lists of keys)."""
    n = draw(st.integers(1, max_keys))
    graph: dict[Any, Any] = {}
    scalar_keys: list[Any] = []
    shape = draw(st.sampled_from(["mixed", "mixed", "chain", "fan-in"]))
    for i in range(n):
        key = draw(st.sampled_from([f"k{i}", ("x", i), ("y", i, "z")]))
        if key in graph:
            key = f"k{i}"
        earlier = list(graph)
        if shape == "chain" and earlier:
            value: Any = (inc, earlier[-1]) if earlier[-1] in scalar_keys else (pack, earlier[-1])
        elif shape == "fan-in" and i == n - 1 and earlier:
            value = (pack, *earlier)
        else:
            value = draw(values(earlier, scalar_keys))
        if (isinstance(value, int) and not isinstance(value, bool)) or (
                value in scalar_keys if isinstance(value, (str, tuple)) else False) or (
                type(value) is tuple and value and value[0] is inc):
            scalar_keys.append(key)
        graph[key] = value
    if draw(st.booleans()) and len(graph) > 1:
        # An integer key: every literal 2 (or 2.0) in the graph now names it.
        graph[2] = draw(st.sampled_from([0, 1, 3]))
    keys = list(graph)
    wanted = draw(st.one_of(st.sampled_from(keys),
                            st.lists(st.sampled_from(keys), min_size=1, max_size=3),
                            st.lists(st.lists(st.sampled_from(keys), max_size=2), min_size=1,
                                     max_size=2)))
    return graph, wanted
