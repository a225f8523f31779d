"""Task graphs on a live pool: Dask-style graphs, Dask collections and memory-aware order."""

from __future__ import annotations

import operator

import pytest
from inprocess_pool import Pool
from memkube.client.graphs import submit_graph
from trees import tree_reduction


def chunk(i: int) -> bytes:
    return bytes(100_000)  # 100 kB


def combine(a: bytes, b: bytes) -> bytes:
    return bytes(len(a))  # the same size: a reduction that keeps chunk-sized results


def tree_graph(n: int) -> tuple[dict, str]:
    leaves, sums, root = tree_reduction(n)
    graph: dict = {leaf: (chunk, i) for i, leaf in enumerate(leaves)}
    graph.update({key: (combine, parts[0], parts[-1]) for key, parts in sums.items()})
    return graph, root


async def peak_for(pool: Pool, how: str) -> int:
    state = pool.scheduler.state
    state.peak_held_bytes = state.held_bytes
    graph, root = tree_graph(1000)
    futures = submit_graph(pool.client, graph, [root], how=how)
    assert len(await futures[root].result()) == 100_000
    peak = state.peak_held_bytes
    del futures
    return peak


async def test_queued_roots_keep_peak_memory_low_in_either_order(pool: Pool) -> None:
    ordered = await peak_for(pool, "depth")
    breadth = await peak_for(pool, "breadth")
    print(f"\npeak held, 1,000-chunk tree reduction, root tasks queued: "
          f"ordered {ordered / 1e6:.1f} MB, breadth-first {breadth / 1e6:.1f} MB")
    assert ordered <= breadth
    assert ordered < 50 * 100_000  # a few dozen chunks at most, not hundreds


@pytest.mark.parametrize("pool", [{"worker_saturation": float("inf")}], indirect=True)
async def test_depth_first_order_keeps_peak_memory_low_when_workers_are_flooded(
        pool: Pool) -> None:
    # Without root-task queuing every leaf is sent at once; the workers' priority order
    # decides alone whether intermediates are combined (and freed) early.
    ordered = await peak_for(pool, "depth")
    breadth = await peak_for(pool, "breadth")
    print(f"\npeak held, 1,000-chunk tree reduction, no queuing: "
          f"ordered {ordered / 1e6:.1f} MB, breadth-first {breadth / 1e6:.1f} MB "
          f"({breadth / ordered:.0f}x)")
    assert ordered * 5 < breadth
    assert breadth > 500 * 100_000  # most leaves held at once


async def test_low_level_graph_get(pool: Pool) -> None:
    graph = {"a": 1, "b": (operator.add, "a", 10), "c": (sum, ["a", "b"]),
             ("x", 0): (operator.mul, "c", 2)}
    futures = submit_graph(pool.client, graph, [("x", 0), "b"])
    assert await futures[("x", 0)].result() == 24
    assert await futures["b"].result() == 11


def test_dask_collections_run_on_a_local_pool() -> None:
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    db = pytest.importorskip("dask.bag")
    import memkube

    with memkube.Client(n_workers=2, memory_limit="512MiB") as client:
        x = da.ones((2000, 2000), chunks=(250, 250))
        (total,) = dask.compute((x + 1).sum(), scheduler=client.get)
        assert total == 2 * 2000 * 2000
        bag = db.from_sequence(range(100), npartitions=7).map(lambda v: v * v)
        assert bag.sum().compute(scheduler=client.get) == sum(v * v for v in range(100))
