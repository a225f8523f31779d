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
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..taskspec import KeyRef, call_spec

if TYPE_CHECKING:
    from .client import Client
    from .futures import Future

_graph_counter = itertools.count()


def key_str(key: Any) -> str:
    """memkube keys are strings; Dask keys may also be tuples, ints or bytes."""
    return key if isinstance(key, str) else repr(key)


def _identity(x: Any) -> Any:
    return x


def _graph_node_type() -> type | None:
    try:
        from dask._task_spec import GraphNode
    except ImportError:
        return None
    node_type: type = GraphNode
    return node_type


def _is_key(obj: Any, graph: Mapping[Any, Any]) -> bool:
    try:
        return isinstance(obj, Hashable) and obj in graph
    except TypeError:
        return False


def _legacy_refs(task: Any, graph: Mapping[Any, Any], deps: set[str]) -> Any:
    """Copy a legacy task with every key reference made a KeyRef."""
    if type(task) is tuple and task and callable(task[0]):
        return (task[0], *(_legacy_refs(a, graph, deps) for a in task[1:]))
    if type(task) is list:
        return [_legacy_refs(a, graph, deps) for a in task]
    if _is_key(task, graph):
        deps.add(key_str(task))
        return KeyRef(key_str(task))
    return task


def to_tasks(graph: Mapping[Any, Any]) -> dict[str, tuple[bytes, set[str]]]:
    """``{key: (run_spec, dependency keys)}`` for every task of ``graph``."""
    if hasattr(graph, "__dask_graph__"):
        graph = graph.__dask_graph__()
    node_type = _graph_node_type()
    if node_type is not None and any(isinstance(t, node_type) for t in graph.values()):
        from dask._task_spec import convert_legacy_graph

        graph = convert_legacy_graph(dict(graph))
    out: dict[str, tuple[bytes, set[str]]] = {}
    for key, task in graph.items():
        deps: set[str] = set()
        if node_type is not None and isinstance(task, node_type):
            node: Any = task
            keymap = {key_str(d): d for d in node.dependencies}
            deps = set(keymap)
            spec = cloudpickle.dumps(("dask", task, keymap))
        elif type(task) is tuple and task and callable(task[0]):
            spec = cloudpickle.dumps(("tuple", _legacy_refs(task, graph, deps)))
        else:
            value = _legacy_refs(task, graph, deps)
            spec = call_spec(_identity, (value,), {})
        out[key_str(key)] = (spec, deps)
    return out


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
        level: dict[str, int] = {}

        def depth(k: str) -> int:
            if k not in level:
                level[k] = 0  # cycles are impossible in a valid graph; this guards recursion
                level[k] = 1 + max((depth(d) for d in deps[k] if d in deps), default=-1)
            return level[k]

        for k in deps:
            depth(k)
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


def submit_graph(client: Client, graph: Mapping[Any, Any], keys: list[Any],
                 how: str = "depth") -> dict[Any, Future]:
    """Send a graph; returns futures for ``keys`` (original key objects)."""
    tasks = to_tasks(graph)
    wanted = [key_str(k) for k in keys]
    missing = [k for k in wanted if k not in tasks]
    if missing:
        raise KeyError(f"keys not in the graph: {missing[:5]}")
    order = graph_order({k: d for k, (_, d) in tasks.items()}, wanted, how)
    batch = next(_graph_counter)
    specs = [{"key": k, "run_spec": spec, "deps": sorted(d), "priority": [0, batch, order[k]]}
             for k, (spec, d) in tasks.items()]
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
