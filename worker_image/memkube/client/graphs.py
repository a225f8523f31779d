"""Task graphs: low-level Dask-style graphs, ordering for memory, ``get`` and ``persist``.

A graph is ``{key: task}`` where a task is a Dask ``GraphNode`` (dask >= 2024.12), a legacy
tuple ``(func, *args)`` whose arguments may name other keys, or a literal value. It is
turned into memkube tasks whose priorities come from :func:`graph_order`: a depth-first
post-order from the outputs, so each branch finishes (and its intermediates are freed)
before the next starts — the aim of ``dask.order``. ``order="breadth"`` gives the level by
level order, kept for comparison (it holds far more intermediates at once).

So ``dask.compute(x, scheduler=client.get)`` runs Dask collections on memkube; dask stays
an optional dependency.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..taskspec import Call, KeyRef, Seq

if TYPE_CHECKING:
    from .client import Client
    from .futures import Future

_graph_counter = itertools.count()


def key_str(key: Any) -> str:
    """memkube keys are strings; Dask keys may also be tuples, ints or bytes."""
    return key if isinstance(key, str) else repr(key)


def _graph_node_type() -> type | None:
    try:
        from dask._task_spec import GraphNode
    except ImportError:
        return None
    node_type: type = GraphNode
    return node_type


class _Converter:
    """Turns legacy graph values into :mod:`memkube.taskspec` nodes by Dask's rules (those of
    ``dask._task_spec.convert_legacy_task``, which ``dask.get`` applies):

    - a tuple whose first item is callable is a call; a ``dict`` argument of a call is data;
    - an ``int``, ``float``, ``str`` or ``tuple`` equal to a key of the graph is that key;
    - lists, tuples, sets and frozensets (named tuples too) are walked at any depth and
      rebuilt with their type when they hold calls or keys;
    - anything else, dicts included, is literal data.
    """

    def __init__(self, graph: Mapping[Any, Any]) -> None:
        self.names: dict[Any, str] = {k: key_str(k) for k in graph}
        if len(set(self.names.values())) != len(self.names):
            seen: dict[str, Any] = {}
            for k, name in self.names.items():
                if name in seen:
                    raise ValueError(f"keys {seen[name]!r} and {k!r} both map to {name!r}")
                seen[name] = k
        self.deps: set[str] = set()

    def key(self, obj: Any) -> str | None:
        if isinstance(obj, (int, float, str, tuple)):
            try:
                return self.names.get(obj)
            except TypeError:  # a tuple holding something unhashable
                return None
        return None

    def convert(self, obj: Any) -> Any:
        if type(obj) is tuple and obj and callable(obj[0]):
            return Call(obj[0], tuple(a if isinstance(a, dict) else self.convert(a)
                                      for a in obj[1:]))
        name = self.key(obj)
        if name is not None:
            self.deps.add(name)
            return KeyRef(name)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = tuple(self.convert(x) for x in obj)
            named = isinstance(obj, tuple) and hasattr(obj, "_fields")
            if any(type(x) in (Call, KeyRef, Seq) for x in items):
                return Seq(type(obj), items, named)
            return type(obj)(*items) if named else type(obj)(items)
        return obj


def to_tasks(graph: Mapping[Any, Any]) -> dict[str, tuple[bytes, set[str]]]:
    """``{key: (run_spec, dependency keys)}`` for every task of ``graph``."""
    if hasattr(graph, "__dask_graph__"):
        graph = graph.__dask_graph__()
    node_type = _graph_node_type()
    if node_type is not None and any(isinstance(t, node_type) for t in graph.values()):
        from dask._task_spec import convert_legacy_graph

        graph = convert_legacy_graph(dict(graph))
    converter = _Converter(graph)
    out: dict[str, tuple[bytes, set[str]]] = {}
    for key, task in graph.items():
        name = converter.names[key]
        if node_type is not None and isinstance(task, node_type):
            node: Any = task
            keymap = {key_str(d): d for d in node.dependencies}
            out[name] = (cloudpickle.dumps(("dask", task, keymap)), set(keymap))
            continue
        converter.deps = set()
        value = converter.convert(task)
        if type(value) is KeyRef and value.key == name:
            continue  # a key that names itself is no task (Dask drops it too)
        out[name] = (cloudpickle.dumps(("graph", value)), converter.deps)
    return out


def levels(deps: Mapping[str, set[str]]) -> dict[str, int]:
    """Each key's depth (0: no dependency inside ``deps``), computed without recursion.

    Raises RuntimeError (as ``dask.get`` does) when the graph has a cycle.
    """
    level: dict[str, int] = {}
    on_path: set[str] = set()
    for start in deps:
        if start in level:
            continue
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            key, expanded = stack.pop()
            if expanded:
                on_path.discard(key)
                level[key] = 1 + max((level[d] for d in deps[key] if d in deps), default=-1)
                continue
            if key in level:
                continue
            if key in on_path:
                raise RuntimeError(f"Cycle detected in the graph through key {key!r}")
            on_path.add(key)
            stack.append((key, True))
            for d in deps[key]:
                if d in deps and d not in level:
                    if d in on_path:
                        raise RuntimeError(f"Cycle detected in the graph through key {d!r}")
                    stack.append((d, False))
    return level


def graph_order(deps: Mapping[str, set[str]], outputs: list[str] | None = None,
                how: str = "depth") -> dict[str, int]:
    """A priority per key (lower runs first); see the module docstring."""
    dependents: dict[str, set[str]] = {k: set() for k in deps}
    for k, ds in deps.items():
        for d in ds:
            if d in dependents:
                dependents[d].add(k)
    roots = outputs or sorted(k for k, ds in dependents.items() if not ds)
    if how == "breadth":
        level = levels(deps)
        return {k: i for i, k in enumerate(sorted(deps, key=lambda k: (level[k], k)))}
    if how != "depth":
        raise ValueError("how must be 'depth' or 'breadth'")
    order: dict[str, int] = {}
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            key, expanded = stack.pop()
            if key in order or key not in deps:
                continue
            if expanded:
                order[key] = len(order)
                continue
            stack.append((key, True))
            # Visit the cheapest dependencies last so they are computed first (LIFO).
            children = sorted((d for d in deps[key] if d not in order and d in deps),
                              key=lambda d: (-len(deps[d]), d))
            stack.extend((d, False) for d in children)
    for key in deps:  # anything unreachable from the outputs
        order.setdefault(key, len(order))
    return order


def _cull(tasks: dict[str, tuple[bytes, set[str]]],
          wanted: list[str]) -> dict[str, tuple[bytes, set[str]]]:
    """Only the tasks that ``wanted`` needs (``dask.get`` runs no others)."""
    needed: set[str] = set()
    todo = [k for k in wanted if k in tasks]
    while todo:
        key = todo.pop()
        if key not in needed:
            needed.add(key)
            todo.extend(d for d in tasks[key][1] if d in tasks)
    return {k: v for k, v in tasks.items() if k in needed}


def submit_graph(client: Client, graph: Mapping[Any, Any], keys: list[Any],
                 how: str = "depth") -> dict[Any, Future]:
    """Send a graph; returns futures for ``keys`` (original key objects)."""
    tasks = to_tasks(graph)
    wanted = [key_str(k) for k in keys]
    tasks = _cull(tasks, wanted)
    missing = [k for k in wanted if k not in tasks]
    if missing:
        raise KeyError(f"keys not in the graph: {missing[:5]}")
    deps = {k: d for k, (_, d) in tasks.items()}
    levels(deps)  # a cycle is the caller's error, raised here as dask.get raises it
    order = graph_order(deps, wanted, how)
    batch = next(_graph_counter)
    specs = [{"key": k, "run_spec": spec, "deps": sorted(d), "priority": [0, batch, order[k]]}
             for k, (spec, d) in tasks.items()]
    # Graph keys are names, not content hashes: a key released a moment ago (futures of an
    # earlier get) must be forgotten first, or its old result would be reused.
    client._on_loop_wait(client._flush_releases)
    futures = {k: client._new_future(key_str(k)) for k in keys}
    client._send_graph(specs, wanted)
    return futures


def _flatten(keys: Any) -> list[Any]:
    if isinstance(keys, list):
        return [k for sub in keys for k in _flatten(sub)]
    return [keys]


def _nest(keys: Any, values: Mapping[Any, Any]) -> Any:
    if isinstance(keys, list):
        return tuple(_nest(k, values) for k in keys)
    return values[keys]


def get(client: Client, graph: Mapping[Any, Any], keys: Any, **kwargs: Any) -> Any:
    """Compute ``keys`` of ``graph`` (a key or nested lists of keys), like ``dask.get``."""
    flat = _flatten(keys)
    futures = submit_graph(client, graph, flat, how=kwargs.get("order", "depth"))
    values = client.gather([futures[k] for k in flat])
    by_key = dict(zip(flat, values, strict=True))
    return _nest(keys, by_key)


def persist(client: Client, collection: Any, keys: Any = None) -> Any:
    """See :meth:`memkube.Client.persist`."""
    from .futures import Future

    if isinstance(collection, Future):
        client._pin([collection])
        return collection
    if isinstance(collection, (list, tuple)) and all(isinstance(f, Future) for f in collection):
        client._pin(collection)
        return collection
    if isinstance(collection, dict) and all(isinstance(f, Future) for f in collection.values()):
        client._pin(collection.values())
        return collection
    if hasattr(collection, "__dask_graph__"):
        graph = collection.__dask_graph__()
        wanted = _flatten(collection.__dask_keys__()) if keys is None else list(keys)
    elif isinstance(collection, Mapping):
        graph = collection
        if keys is None:
            tasks = to_tasks(graph)
            used = {d for _, deps in tasks.values() for d in deps}
            wanted = [k for k in graph if key_str(k) not in used]
        else:
            wanted = list(keys)
    else:
        raise TypeError("persist takes futures, a {key: task} graph or a Dask collection")
    futures = submit_graph(client, graph, wanted)
    client._pin(futures.values())
    return futures
