"""``client.get`` on a local pool against ``dask.get``: generated graphs give the same value
or the same exception type; a deep chain computes."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import dask
import memkube
import pytest
from dask_graphs import graphs, inc, outcome
from hypothesis import given, settings


@pytest.fixture(scope="module")
def client() -> Iterator[memkube.Client]:
    with memkube.Client(n_workers=2, threads_per_worker=1, memory_limit="512MiB") as c:
        yield c


@given(case=graphs())
@settings(max_examples=80, deadline=None)
def test_client_get_matches_dask_get(client: memkube.Client, case: tuple[dict, Any]) -> None:
    graph, keys = case
    # Examples reuse key names; hypothesis keeps the previous example's exception (and the
    # futures its frames hold) in a reference cycle: collect it so those keys are released.
    gc.collect()
    expected = outcome(lambda: dask.get(graph, keys))
    assert outcome(lambda: client.get(graph, keys)) == expected, graph


def test_list_holding_a_task_is_computed(client: memkube.Client) -> None:
    assert client.get({"c": [1, (inc, 1)]}, "c") == [1, 2]


def test_a_cycle_raises_like_dask(client: memkube.Client) -> None:
    with pytest.raises(RuntimeError, match="Cycle"):
        client.get({"a": (inc, "b"), "b": (inc, "a")}, "a")
    assert client.get({"a": (inc, 1)}, "a") == 2


def test_deep_chain_through_client_get(client: memkube.Client) -> None:
    # 5x the depth that broke the scheduler; a chain runs one task per worker round trip
    # (~4 ms here), so the 100,000-deep chain is run against the state machine instead
    # (tests/unit/test_scheduler_deep.py).
    n = 5_000
    graph: dict[Any, Any] = {"c0": 0, **{f"c{i}": (inc, f"c{i - 1}") for i in range(1, n)}}
    start = time.perf_counter()
    assert client.get(graph, f"c{n - 1}") == n - 1
    print(f"\n{n}-task chain through client.get: {time.perf_counter() - start:.1f} s")
    info = client.scheduler_info()
    assert info["tasks"]["processing"] == 0
