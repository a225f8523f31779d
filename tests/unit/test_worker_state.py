"""The worker's state machine: stimuli in, instructions out, no sockets, threads or sleeps."""

from __future__ import annotations

from typing import Any

from memkube.worker.admission import Room, prefix_of
from memkube.worker.state import Execute, Fetch, Free, Restart, Send, SpillFirst, WorkerState

MB = 2**20


def make(nthreads: int = 1, room: Room | None = None) -> tuple[WorkerState, set[str], list[Room]]:
    held: set[str] = set()
    rooms = [room or Room(None, 0, 0, 0)]
    ws = WorkerState(nthreads, holds=held.__contains__, room=lambda: rooms[0],
                     address="tcp://w:1")
    return ws, held, rooms


def compute(key: str, deps: dict[str, list[str]] | None = None, peak: int | None = None,
            priority: int = 0) -> dict[str, Any]:
    msg: dict[str, Any] = {"op": "compute-task", "key": key, "run_spec": b"x",
                           "who_has": deps or {}, "priority": [priority]}
    if peak is not None:
        msg["peak"] = peak
    return msg


def finished(key: str) -> dict[str, Any]:
    return {"op": "task-finished", "key": key, "nbytes": 8, "type": "int"}


def test_a_task_without_dependencies_executes_and_reports() -> None:
    ws, _, _ = make()
    assert ws.handle(compute("f-1")) == [Execute("f-1")]
    assert ws.task_done("f-1", finished("f-1"), peak=5) == [
        Send({**finished("f-1"), "peak": 5})]
    assert ws.admission.peaks == {"f": 5}


def test_missing_inputs_are_fetched_once_for_all_tasks_waiting_on_them() -> None:
    ws, held, _ = make(nthreads=2)
    assert ws.handle(compute("g-1", {"x-1": ["tcp://a:1"]})) == [Fetch({"x-1": ["tcp://a:1"]}, {"x-1": 0})]
    assert ws.handle(compute("g-2", {"x-1": ["tcp://a:1"]})) == []  # already in flight
    held.add("x-1")
    out = ws.fetch_done({"x-1": 100})
    assert out[0] == Send({"op": "add-keys", "keys": {"x-1": 100}})
    assert sorted(i.key for i in out[1:] if isinstance(i, Execute)) == ["g-1", "g-2"]


def test_a_failed_fetch_fails_every_task_waiting_on_it() -> None:
    ws, _, _ = make(nthreads=2)
    ws.handle(compute("g-1", {"x-1": ["tcp://a:1"]}))
    ws.handle(compute("g-2", {"x-1": ["tcp://a:1"]}))
    out = ws.fetch_done({}, ["x-1"], error="OSError: disk")
    assert sorted(m.msg["key"] for m in out if isinstance(m, Send)) == ["g-1", "g-2"]
    assert all(m.msg["op"] == "missing-data" and m.msg["error"] == "OSError: disk"
               for m in out if isinstance(m, Send))
    assert ws.tasks == {}  # nothing is left waiting


def test_paused_worker_defers_fetches_and_starts_until_resumed() -> None:
    ws, _, _ = make()
    ws.pause()
    assert ws.handle(compute("g-1", {"x-1": ["tcp://a:1"]})) == []
    assert ws.handle(compute("h-1")) == []
    out = ws.resume()
    assert out == [Fetch({"x-1": ["tcp://a:1"]}, {"x-1": 0}), Execute("h-1")]


def test_free_keys_cancels_and_frees() -> None:
    ws, _, _ = make()
    ws.handle(compute("f-1"))
    assert ws.handle({"op": "free-keys", "keys": ["f-1"]}) == [Free(["f-1"])]
    assert ws.task_done("f-1", finished("f-1")) == [Free(["f-1"])]  # result not wanted


def test_a_memory_restart_reports_running_tasks_then_restarts() -> None:
    ws, _, _ = make(nthreads=2)
    ws.handle(compute("a-1"))
    ws.handle(compute("b-1"))
    out = ws.memory_restart("memory at 97%", peak=390 * MB)
    assert out == [Send({"op": "memory-restart", "reason": "memory at 97%",
                         "keys": ["a-1", "b-1"], "peak": 390 * MB}), Restart("memory at 97%")]
    assert ws.memory_restart("again") == []  # once
    assert ws.task_done("a-1", finished("a-1")) == [Send(finished("a-1"))]  # nothing new


def test_first_run_of_an_unknown_prefix_is_measured_alone() -> None:
    room = Room(400 * MB, 380 * MB, 100 * MB, 0)
    ws, _, _ = make(nthreads=2, room=room)
    assert ws.handle(compute("temp-1")) == [Execute("temp-1")]
    assert ws.handle(compute("temp-2")) == []  # same unknown prefix: waits
    assert ws.task_done("temp-1", finished("temp-1"), peak=50 * MB) == [
        Send({**finished("temp-1"), "peak": 50 * MB}), Execute("temp-2")]


def test_tasks_that_fit_only_alone_run_one_at_a_time() -> None:
    room = Room(400 * MB, 380 * MB, 100 * MB, 0)
    ws, _, _ = make(nthreads=2, room=room)
    ws.admission.learn("temp", 150 * MB)
    assert ws.handle(compute("temp-1")) == [Execute("temp-1")]
    # one more would need 150 MB of the 280 - 150 = 130 MB left once temp-1 runs
    ws.room = lambda: Room(400 * MB, 380 * MB, 250 * MB, 0)
    assert ws.handle(compute("temp-2")) == []
    ws.room = lambda: Room(400 * MB, 380 * MB, 110 * MB, 0)
    out = ws.task_done("temp-1", finished("temp-1"), peak=150 * MB)
    assert out[-1] == Execute("temp-2")


def test_a_task_that_fits_after_spilling_spills_first() -> None:
    room = Room(400 * MB, 380 * MB, 300 * MB, 240 * MB)  # 80 MB free, 240 spillable
    ws, _, rooms = make(room=room)
    out = ws.handle(compute("big-1", peak=250 * MB))
    assert len(out) == 1 and isinstance(out[0], SpillFirst)
    assert 170 * MB <= out[0].nbytes <= 240 * MB
    assert ws.handle(compute("small-1", priority=1)) == []  # nothing starts while spilling
    rooms[0] = Room(400 * MB, 380 * MB, 110 * MB, 50 * MB)
    assert ws.spilled() == [Execute("big-1")]


def test_a_task_larger_than_the_worker_is_given_back() -> None:
    ws, _, _ = make(room=Room(400 * MB, 380 * MB, 100 * MB, 0))
    out = ws.handle(compute("huge-1", peak=900 * MB))
    assert len(out) == 1 and isinstance(out[0], Send)
    assert out[0].msg["op"] == "cannot-fit" and out[0].msg["peak"] == 900 * MB
    assert out[0].msg["limit"] == 400 * MB
    assert ws.tasks == {}


def test_a_replica_fetch_that_fails_is_reported_lost() -> None:
    ws, held, _ = make()
    held.add("have-1")
    out = ws.handle({"op": "acquire-replicas",
                     "who_has": {"have-1": ["tcp://a:1"], "x-1": ["tcp://a:1"]}})
    assert out == [Send({"op": "add-keys", "keys": {"have-1": 0}}), Fetch({"x-1": ["tcp://a:1"]}, {"x-1": 0})]
    assert ws.fetch_done({}, ["x-1"]) == [Send({"op": "lost-keys", "keys": ["x-1"]})]


def test_prefixes_group_tasks_by_function_name() -> None:
    assert prefix_of("make_temp-3f2a9c0d11aa22bb") == "make_temp"
    assert prefix_of("sum-ab12cd34ef56-7") == "sum"
    assert prefix_of("('chunk-ab12cd34ef', 3)") == "chunk"
    assert prefix_of("load-data") == "load-data"


def test_a_retry_after_a_memory_kill_runs_alone_after_spilling_everything() -> None:
    room = Room(400 * MB, 380 * MB, 300 * MB, 240 * MB)
    ws, _, rooms = make(nthreads=2, room=room)
    assert ws.handle(compute("other-1")) == [Execute("other-1")]
    msg = {**compute("temp-1", peak=220 * MB), "alone": True}
    assert ws.handle(msg) == []  # waits for the running task
    out = ws.task_done("other-1", finished("other-1"), peak=1 * MB)
    assert out[-1] == SpillFirst(240 * MB)  # everything, not just the (lower-bound) need
    rooms[0] = Room(400 * MB, 380 * MB, 60 * MB, 0)
    assert ws.spilled() == [Execute("temp-1")]
