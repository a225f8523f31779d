"""Memory-aware placement at the scheduler: prefix peaks, memory kills, TaskMemoryError.

The scheduler state is driven with injected worker reports; no sockets, no sleeps.
"""

from __future__ import annotations

import cloudpickle
import pytest
from memkube.errors import MemkubeError, TaskMemoryError
from memkube.scheduler.state import SchedulerState

MB = 10**6


def figures(limit: int) -> dict:
    return {"limit": limit, "thresholds": {"target": 0.6, "spill": 0.7, "pause": 0.8,
                                           "terminate": 0.95}}


def spec(key: str) -> dict:
    return {"key": key, "run_spec": b"spec", "deps": [], "priority": [0]}


def computes(s: SchedulerState) -> list[tuple[str, dict]]:
    workers, _ = s.drain()
    return [(a, m) for a, msgs in workers.items() for m in msgs if m["op"] == "compute-task"]


def erred(s: SchedulerState, client: str = "c") -> list[dict]:
    _, clients = s.drain()
    return [m for m in clients.get(client, []) if m["op"] == "task-erred-client"]


@pytest.fixture
def s() -> SchedulerState:
    state = SchedulerState()
    state.add_worker("tcp://a:1", "a", 1, memory=figures(400 * MB))
    state.drain()
    return state


def kill(s: SchedulerState, key: str, *, peak: int, task_peak: int, gain: int,
         others: tuple[str, ...] = ()) -> None:
    """Worker a is stopped by its guard while ``key`` (and ``others``) run; it comes back."""
    s.remove_worker("tcp://a:1")
    s.add_worker("tcp://a:2", "a", 1, memory=figures(400 * MB), memory_kill={
        "keys": [key, *others], "peak": peak, "task_peak": task_peak, "limit": 400 * MB,
        "reason": "still above the terminate line after spilling everything",
        "retry_gain": gain})


def test_finished_peaks_are_learned_per_prefix_and_sent_with_the_next_task(
        s: SchedulerState) -> None:
    s.update_graph("c", [spec("temp-aaaaaaaa01")], ["temp-aaaaaaaa01"])
    ((addr, first),) = computes(s)
    assert "peak" not in first  # unknown prefix: this run is the measurement
    s.task_finished(addr, "temp-aaaaaaaa01", 8, "ndarray", peak=150 * MB)
    s.update_graph("c", [spec("temp-aaaaaaaa02")], ["temp-aaaaaaaa02"])
    ((_, second),) = computes(s)
    assert second["peak"] == 150 * MB


def test_a_task_killed_alone_on_a_lean_worker_fails_at_once_with_the_figures(
        s: SchedulerState) -> None:
    s.update_graph("c", [spec("hog-0123456789")], ["hog-0123456789"])
    computes(s)
    kill(s, "hog-0123456789", peak=385 * MB, task_peak=320 * MB, gain=0)
    (msg,) = erred(s)
    error = cloudpickle.loads(msg["exception"])
    assert isinstance(error, TaskMemoryError) and isinstance(error, MemkubeError)
    assert error.key == "hog-0123456789" and error.peak == 385 * MB and error.limit == 400 * MB
    assert "hog-0123456789" in str(error) and "385 MB" in str(error) and "400 MB" in str(error)
    assert s.tasks["hog-0123456789"].state == "erred"
    assert s.restarts_by_name["a"] == 1


def test_a_task_killed_next_to_others_gets_a_second_try_then_fails(s: SchedulerState) -> None:
    s.workers["tcp://a:1"].nthreads = 2
    s.update_graph("c", [spec("hog-0123456789"), spec("small-0123456789")],
                   ["hog-0123456789", "small-0123456789"])
    computes(s)
    kill(s, "hog-0123456789", peak=390 * MB, task_peak=300 * MB, gain=0,
         others=("small-0123456789",))
    assert erred(s) == []  # who was guilty is not known yet: both are tried again
    assert s.tasks["hog-0123456789"].state == "processing"
    kill(s, "hog-0123456789", peak=386 * MB, task_peak=310 * MB, gain=100 * MB)
    (msg,) = erred(s)
    assert msg["key"] == "hog-0123456789" and "stopped 2 times" in msg["text"]
    assert s.tasks["small-0123456789"].state != "erred"  # the innocent one goes on


def test_a_worker_that_cannot_fit_a_task_gives_it_to_a_larger_one(s: SchedulerState) -> None:
    s.add_worker("tcp://big:1", "big", 1, memory=figures(2000 * MB))
    s.drain()
    s.update_graph("c", [spec("huge-0123456789")], ["huge-0123456789"])
    ((addr, _),) = computes(s)
    ts = s.tasks["huge-0123456789"]
    if addr == "tcp://a:1":
        s.cannot_fit("tcp://a:1", "huge-0123456789", 900 * MB, 400 * MB, "too big")
        ((addr, msg),) = computes(s)
        assert msg["peak"] == 900 * MB
    assert addr == "tcp://big:1" and ts.state == "processing"


def test_placement_prefers_a_worker_whose_limit_fits_the_known_peak(s: SchedulerState) -> None:
    s.add_worker("tcp://big:1", "big", 1, memory=figures(2000 * MB))
    s.drain()
    s.memory_fit.learn("huge-0000000000", 900 * MB)
    for i in range(3):
        key = f"huge-{i:010d}"
        s.update_graph("c", [spec(key)], [key])
        ((addr, _),) = computes(s)
        assert addr == "tcp://big:1"
        s.task_finished(addr, key, 8, "ndarray", peak=900 * MB)


def test_a_task_too_large_for_every_worker_fails_when_refused(s: SchedulerState) -> None:
    s.update_graph("c", [spec("huge-0123456789")], ["huge-0123456789"])
    computes(s)
    s.cannot_fit("tcp://a:1", "huge-0123456789", 900 * MB, 400 * MB, "expected peak too big")
    (msg,) = erred(s)
    assert "TaskMemoryError" in msg["text"] and "900 MB" in msg["text"]


def test_the_guards_own_report_fails_the_task_before_the_worker_is_back(
        s: SchedulerState) -> None:
    s.update_graph("c", [spec("hog-0123456789")], ["hog-0123456789"])
    computes(s)
    s.memory_killed("a", {"keys": ["hog-0123456789"], "peak": 390 * MB, "task_peak": 330 * MB,
                          "limit": 400 * MB, "reason": "unanswered climb", "retry_gain": 0})
    (msg,) = erred(s)
    assert msg["key"] == "hog-0123456789" and "390 MB" in msg["text"]
    assert s.restarts_by_name["a"] == 1
    s.remove_worker("tcp://a:1")  # the connection drops afterwards: nothing is retried
    assert s.tasks["hog-0123456789"].state == "erred"
    s.add_worker("tcp://a:2", "a", 1, memory=figures(400 * MB))
    assert s.workers["tcp://a:2"].memory_restarts == 1
