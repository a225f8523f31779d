"""Deep and wide graphs through the scheduler state machine: every walk is iterative.

A linear chain far deeper than Python's recursion limit is computed, released and, when
its client expires, forgotten entirely; a failure at the bottom of a deep chain reaches the
top. Driven with events, no sockets.
"""

from __future__ import annotations

import sys

import pytest
from memkube.scheduler.state import SchedulerState

DEPTH = 20_000  # far above sys.getrecursionlimit()


def chain(n: int, prefix: str = "t") -> list[dict]:
    return [{"key": f"{prefix}{i}", "run_spec": b"x", "deps": [f"{prefix}{i - 1}"] if i else [],
             "priority": [0, i]} for i in range(n)]


def run_one(s: SchedulerState) -> str:
    """Finish the one task being processed; returns its key."""
    (ws,) = [w for w in s.workers.values() if w.processing]
    (ts,) = ws.processing
    s.task_finished(ws.address, ts.key, 8, "int")
    return ts.key


@pytest.fixture
def s() -> SchedulerState:
    state = SchedulerState()
    state.add_worker("tcp://a:1", "a", 1)
    state.drain()
    return state


def test_chain_of_100_000_tasks_is_computed_in_order(s: SchedulerState) -> None:
    n = 100_000
    assert n > 10 * sys.getrecursionlimit()
    s.update_graph("c", chain(n), [f"t{n - 1}"])
    assert s.task_counts()["waiting"] == n - 1
    done = [run_one(s) for _ in range(n)]
    assert done == [f"t{i}" for i in range(n)]
    _, clients = s.drain()
    assert {"op": "key-in-memory", "key": f"t{n - 1}", "type": "int"} in clients["c"]
    # Intermediates were freed as the chain went (kept as lineage only).
    assert s.task_counts()["memory"] == 1 and s.task_counts()["released"] == n - 1
    assert [ts.key for ts in s.workers["tcp://a:1"].has_what] == [f"t{n - 1}"]


def test_expiring_client_with_a_deep_waiting_graph_forgets_every_task(s: SchedulerState) -> None:
    s.update_graph("c", chain(DEPTH), [f"t{DEPTH - 1}"])
    run_one(s)  # t0 in memory, the rest waiting
    s.remove_client("c")
    assert s.tasks == {}
    assert not s.workers["tcp://a:1"].processing and not s.workers["tcp://a:1"].has_what
    workers, _ = s.drain()
    assert any(m["op"] == "free-keys" and "t0" in m["keys"] for m in workers["tcp://a:1"])


def test_release_of_a_deep_lineage_forgets_it(s: SchedulerState) -> None:
    s.update_graph("c", chain(DEPTH), [f"t{DEPTH - 1}"])
    s.release_keys("c", [f"t{DEPTH - 1}"])
    assert s.tasks == {}
    assert s.held_bytes == 0


def test_failure_at_the_bottom_of_a_deep_chain_fails_the_top(s: SchedulerState) -> None:
    s.update_graph("c", chain(DEPTH), [f"t{DEPTH - 1}"])
    s.task_erred("tcp://a:1", "t0", b"exc", "tb", "ValueError: bottom")
    _, clients = s.drain()
    erred = [m for m in clients["c"] if m["op"] == "task-erred-client"]
    assert [m["key"] for m in erred] == [f"t{DEPTH - 1}"]
    assert erred[0]["text"] == "ValueError: bottom"
    assert s.tasks[f"t{DEPTH - 1}"].state == "erred"
    s.release_keys("c", [f"t{DEPTH - 1}"])
    assert s.tasks == {}


def test_lost_key_recomputes_a_deep_lineage(s: SchedulerState) -> None:
    graph = chain(DEPTH)
    s.update_graph("c", graph, [f"t{DEPTH - 1}", "t0"])  # the client also holds the bottom
    for _ in range(DEPTH):
        run_one(s)
    # The worker dies: everything but the lineage is lost; the top is recomputed from t0.
    s.add_worker("tcp://b:1", "b", 1)
    s.remove_worker("tcp://a:1")
    assert s.tasks["t0"].state == "processing"
    done = [run_one(s) for _ in range(DEPTH)]
    assert done[0] == "t0" and done[-1] == f"t{DEPTH - 1}"
