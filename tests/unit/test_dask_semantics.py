"""Legacy Dask graphs are converted with Dask's own rules: the converted tasks, run in
dependency order with the worker's ``execute``, give what ``dask.get`` gives (the same value
or the same exception type). The live-pool check of ``client.get`` is in
``tests/cluster/test_dask_get.py``."""

from __future__ import annotations

from typing import Any

import dask
import pytest
from dask_graphs import graphs, inc, outcome, pack
from hypothesis import given, settings
from memkube.client.graphs import _flatten, _nest, key_str, levels, to_tasks
from memkube.taskspec import execute


def local_get(graph: dict[Any, Any], keys: Any) -> Any:
    """``client.get`` without a pool: only what the wanted keys need, in dependency order."""
    tasks = to_tasks(graph)
    flat = _flatten(keys)
    missing = [k for k in flat if key_str(k) not in tasks]
    if missing:
        raise KeyError(missing)
    deps = {k: d for k, (_, d) in tasks.items()}
    level = levels(deps)
    needed: set[str] = set()
    todo = [key_str(k) for k in flat]
    while todo:
        k = todo.pop()
        if k not in needed:
            needed.add(k)
            todo.extend(deps[k])
    results: dict[str, Any] = {}
    for k in sorted(needed, key=level.__getitem__):
        results[k] = execute(tasks[k][0], {d: results[d] for d in deps[k]})
    return _nest(keys, {k: results[key_str(k)] for k in flat})


@given(graphs())
@settings(max_examples=600, deadline=None)
def test_converted_graphs_compute_what_dask_get_computes(case: tuple[dict, Any]) -> None:
    graph, keys = case
    expected = outcome(lambda: dask.get(graph, keys))
    assert outcome(lambda: local_get(graph, keys)) == expected, graph


@pytest.mark.parametrize(("graph", "keys", "expected"), [
    ({"c": [1, (inc, 1)]}, "c", [1, 2]),  # a list holding a task is computed
    ({"a": 1, "c": ("a", (inc, "a"))}, "c", (1, 2)),  # so is a tuple that is no call
    ({"a": 1, "c": {"x": "a", "y": (inc, 1)}}, "c", {"x": "a", "y": (inc, 1)}),  # dicts: data
    ({"a": 1, "b": "a", "c": "b"}, "c", 1),  # aliases of aliases
    ({("x", 0): 1, ("x", 1): (inc, ("x", 0))}, [("x", 1), ("x", 0)], (2, 1)),  # tuple keys
    ({"a": 1, "b": (pack, {"a", 5}, frozenset(["a"]))}, "b", ({1, 5}, frozenset([1]))),
    ({"a": "hello", "b": (pack, "a", "hello-not-a-key")}, "b", ("hello", "hello-not-a-key")),
])
def test_dask_rules_by_example(graph: dict, keys: Any, expected: Any) -> None:
    assert dask.get(graph, keys) == expected
    assert local_get(graph, keys) == expected


def test_cycles_raise_runtime_error_like_dask() -> None:
    graph = {"a": (inc, "b"), "b": (inc, "a"), "c": 1}
    with pytest.raises(RuntimeError):
        dask.get(graph, "a")
    with pytest.raises(RuntimeError, match="Cycle"):
        levels({k: d for k, (_, d) in to_tasks(graph).items()})


def test_keys_whose_names_collide_are_refused() -> None:
    with pytest.raises(ValueError, match="both map to"):
        to_tasks({("x", 0): 1, "('x', 0)": 2})


def test_deep_chains_convert_and_order_without_recursion() -> None:
    n = 50_000
    graph: dict[Any, Any] = {"k0": 0, **{f"k{i}": (inc, f"k{i - 1}") for i in range(1, n)}}
    deps = {k: d for k, (_, d) in to_tasks(graph).items()}
    assert levels(deps)[f"k{n - 1}"] == n - 1
