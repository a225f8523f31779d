"""The scheduler state machine driven by events, asserting on the messages it emits."""

from __future__ import annotations

import cloudpickle
import pytest
from memkube.errors import DataLostError, KilledWorkerError, RetireError
from memkube.scheduler.retire import plan_retirement
from memkube.scheduler.state import SchedulerState


def spec(key: str, deps: tuple[str, ...] = (), priority: tuple[int, ...] = (0,)) -> dict:
    return {"key": key, "run_spec": b"spec-" + key.encode(), "deps": list(deps),
            "priority": list(priority)}


def ops(messages: list[dict], op: str) -> list[dict]:
    return [m for m in messages if m["op"] == op]


def memory(limit: int = 1000, managed: int = 0, target: float = 0.6) -> dict:
    return {"limit": limit, "managed": managed, "unmanaged": 0, "spilled": 0,
            "thresholds": {"target": target, "spill": 0.7, "pause": 0.8, "terminate": 0.95}}


@pytest.fixture
def s() -> SchedulerState:
    state = SchedulerState()
    state.add_worker("tcp://a:1", "a", 1)
    state.add_worker("tcp://b:1", "b", 1)
    state.drain()
    return state


def finish(s: SchedulerState, key: str, nbytes: int = 10) -> None:
    ts = s.tasks[key]
    assert ts.processing_on is not None, f"{key} is {ts.state}"
    s.task_finished(ts.processing_on.address, key, nbytes, "int")


def test_chain_runs_in_dependency_order_and_notifies_the_client(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",))], ["y"])
    workers, _ = s.drain()
    computes = [m for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert [m["key"] for m in computes] == ["x"]
    finish(s, "x")
    workers, _ = s.drain()
    (compute_y,) = [m for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert compute_y["who_has"] == {"x": [s.tasks["x"].who_has.copy().pop().address]}
    finish(s, "y")
    workers, clients = s.drain()
    assert clients["c1"] == [{"op": "key-in-memory", "key": "y", "type": "int"}]
    # x is no longer needed by anyone: freed on the worker that held it
    assert any(ops(msgs, "free-keys") == [{"op": "free-keys", "keys": ["x"]}]
               for msgs in workers.values())
    assert "x" not in s.tasks or s.tasks["x"].state == "released"


def test_root_tasks_are_queued_not_flooded(s: SchedulerState) -> None:
    s.update_graph("c1", [spec(f"t{i}", priority=(0, i)) for i in range(100)],
                   [f"t{i}" for i in range(100)])
    workers, _ = s.drain()
    sent = sum(len(ops(msgs, "compute-task")) for msgs in workers.values())
    # 2 workers x 1 thread x saturation 1.1 -> 2 slots each
    assert sent == 4
    assert s.task_counts()["queued"] == 96
    first = [m["key"] for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert sorted(first) == ["t0", "t1", "t2", "t3"]  # best priority first
    finish(s, "t0")
    workers, _ = s.drain()
    assert [m["key"] for msgs in workers.values() for m in ops(msgs, "compute-task")] == ["t4"]


def test_release_frees_memory_everywhere_and_forgets(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x")], ["x"])
    finish(s, "x")
    s.drain()
    s.release_keys("c1", ["x"])
    workers, _ = s.drain()
    assert sum(len(ops(m, "free-keys")) for m in workers.values()) == 1
    assert "x" not in s.tasks
    assert all(not w.has_what for w in s.workers.values())


def test_two_clients_share_a_key_until_both_release(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x")], ["x"])
    s.update_graph("c2", [spec("x")], ["x"])
    finish(s, "x")
    s.release_keys("c1", ["x"])
    assert s.tasks["x"].state == "memory"
    s.release_keys("c2", ["x"])
    assert "x" not in s.tasks


def test_erred_task_fails_dependents_and_frees_inputs(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",)), spec("z", ("y",))], ["z"])
    finish(s, "x")
    ts = s.tasks["y"]
    s.task_erred(ts.processing_on.address, "y", cloudpickle.dumps(ValueError("bad")), "tb",
                 "ValueError: bad")
    _, clients = s.drain()
    (erred,) = ops(clients["c1"], "task-erred-client")
    assert erred["key"] == "z" and erred["text"] == "ValueError: bad"
    assert s.tasks["z"].state == "erred"
    assert "x" not in s.tasks or not s.tasks["x"].who_has  # input released


def test_lost_worker_reschedules_its_running_task(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x")], ["x"])
    victim = s.tasks["x"].processing_on
    s.drain()
    s.remove_worker(victim.address)
    workers, _ = s.drain()
    (other,) = [a for a in s.workers]
    assert ops(workers[other], "compute-task")[0]["key"] == "x"
    assert s.tasks["x"].suspicious == 1


def test_task_that_kills_workers_fails_after_bounded_tries() -> None:
    s = SchedulerState(allowed_failures=2)
    s.update_graph("c1", [spec("bomb")], ["bomb"])
    for i in range(3):
        s.add_worker(f"tcp://w{i}:1", f"w{i}", 1)
        s.remove_worker(s.tasks["bomb"].processing_on.address)
    _, clients = s.drain()
    (erred,) = ops(clients["c1"], "task-erred-client")
    assert "KilledWorkerError" in erred["text"]
    assert isinstance(cloudpickle.loads(erred["exception"]), KilledWorkerError)


def test_lost_key_is_recomputed_from_lineage(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",))], ["y"])
    finish(s, "x")
    finish(s, "y")
    s.drain()
    holder = next(iter(s.tasks["y"].who_has))
    s.remove_worker(holder.address)
    workers, _ = s.drain()
    computes = [m["key"] for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert computes == ["x"]  # y's input first, from lineage
    finish(s, "x")
    finish(s, "y")
    assert s.tasks["y"].runs == 2


def test_lost_scattered_data_fails_with_data_lost(s: SchedulerState) -> None:
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "int", "workers": ["tcp://a:1"]}})
    s.drain()
    s.remove_worker("tcp://a:1")
    _, clients = s.drain()
    (erred,) = ops(clients["c1"], "task-erred-client")
    assert isinstance(cloudpickle.loads(erred["exception"]), DataLostError)


def test_replication_factor_places_copies_on_distinct_nodes() -> None:
    s = SchedulerState(replication_factor=2)
    s.add_worker("tcp://a:1", "a", 1, node="n1")
    s.add_worker("tcp://b:1", "b", 1, node="n1")
    s.add_worker("tcp://c:1", "c", 1, node="n2")
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "int", "workers": ["tcp://a:1"]}})
    workers, _ = s.drain()
    (acquire,) = ops(workers["tcp://c:1"], "acquire-replicas")  # n2, not b on n1
    assert acquire["who_has"] == {"d": ["tcp://a:1"]}
    s.add_keys("tcp://c:1", {"d": 5})
    assert {w.name for w in s.tasks["d"].who_has} == {"a", "c"}


def test_replicas_go_only_to_workers_below_target() -> None:
    s = SchedulerState(replication_factor=2)
    s.add_worker("tcp://a:1", "a", 1, memory=memory())
    s.add_worker("tcp://b:1", "b", 1, memory=memory(managed=900))
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "int", "workers": ["tcp://a:1"]}})
    workers, _ = s.drain()
    assert not ops(workers.get("tcp://b:1", []), "acquire-replicas")
    assert s.tasks["d"] in s.underreplicated
    s.worker_heartbeat("tcp://b:1", memory(managed=100), 0, 0)
    workers, _ = s.drain()
    assert ops(workers["tcp://b:1"], "acquire-replicas")


def test_pressure_drops_surplus_replicas_but_never_the_last_copy() -> None:
    s = SchedulerState(replication_factor=1)
    s.add_worker("tcp://a:1", "a", 1, memory=memory())
    s.add_worker("tcp://b:1", "b", 1, memory=memory())
    s.add_scattered("c1", {"d": {"nbytes": 400, "type": "x", "workers": ["tcp://a:1"]},
                           "e": {"nbytes": 400, "type": "x", "workers": ["tcp://a:1"]}})
    s.add_keys("tcp://b:1", {"d": 400})  # a surplus copy of d on b
    s.drain()
    s.worker_heartbeat("tcp://a:1", memory(managed=800), 0, 0)
    workers, _ = s.drain()
    (free,) = ops(workers["tcp://a:1"], "free-keys")
    assert free["keys"] == ["d"]  # e is the last copy: kept
    assert {w.name for w in s.tasks["d"].who_has} == {"b"}


def test_retirement_moves_unique_data_then_closes() -> None:
    s = SchedulerState()
    s.add_worker("tcp://a:1", "a", 1)
    s.add_worker("tcp://b:1", "b", 1)
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "x", "workers": ["tcp://a:1"]}})
    s.drain()
    retirement = plan_retirement(s, names=["a"])
    workers, _ = s.drain()
    assert ops(workers["tcp://b:1"], "acquire-replicas")
    assert not ops(workers.get("tcp://a:1", []), "close-worker")  # data not moved yet
    s.add_keys("tcp://b:1", {"d": 5})
    workers, _ = s.drain()
    assert ops(workers["tcp://a:1"], "close-worker")
    s.remove_worker("tcp://a:1")
    assert retirement.finished
    assert s.tasks["d"].state == "memory" and s.tasks["d"].runs == 0


def test_retirement_by_count_picks_least_unique_data() -> None:
    s = SchedulerState()
    for name in "abc":
        s.add_worker(f"tcp://{name}:1", name, 1)
    s.add_scattered("c1", {"d": {"nbytes": 50, "type": "x", "workers": ["tcp://a:1"]},
                           "e": {"nbytes": 10, "type": "x", "workers": ["tcp://b:1"]}})
    retirement = plan_retirement(s, n=2)
    assert {w.name for w in retirement.workers} == {"c", "b"}


def test_retirement_refused_when_nothing_can_take_the_data() -> None:
    s = SchedulerState()
    s.add_worker("tcp://a:1", "a", 1)
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "x", "workers": ["tcp://a:1"]}})
    with pytest.raises(RetireError, match="no worker would remain"):
        plan_retirement(s, n=1)
    assert s.workers["tcp://a:1"].status == "running"


def test_retirement_refused_when_receivers_lack_room() -> None:
    s = SchedulerState()
    s.add_worker("tcp://a:1", "a", 1, memory=memory())
    full = {**memory(managed=800), "max_spill": 100, "spilled": 90}
    s.add_worker("tcp://b:1", "b", 1, memory=full)
    s.add_scattered("c1", {"d": {"nbytes": 500, "type": "x", "workers": ["tcp://a:1"]}})
    with pytest.raises(RetireError, match="can take"):
        plan_retirement(s, names=["a"])


def test_disconnected_client_releases_everything(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x")], ["x"])
    finish(s, "x")
    s.remove_client("c1")
    assert "x" not in s.tasks


def test_cancel_notifies_every_holder(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x")], ["x"])
    s.update_graph("c2", [spec("x")], ["x"])
    s.drain()
    s.cancel_keys("c1", ["x"])
    workers, clients = s.drain()
    assert ops(clients["c2"], "key-cancelled")[0]["key"] == "x"
    assert any(ops(m, "cancel-compute") for m in workers.values())
    assert "x" not in s.tasks


def test_missing_dependency_retries_then_recomputes(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("z"), spec("y", ("x", "z"))], ["y"])
    x_on, z_on = s.tasks["x"].processing_on, s.tasks["z"].processing_on
    assert x_on is not z_on
    s.task_finished(x_on.address, "x", 10, "int")
    s.task_finished(z_on.address, "z", 1000, "int")
    assert s.tasks["y"].processing_on is z_on  # placed with its big input; fetches x
    for attempt in range(3):
        s.missing_data(z_on.address, "y", "x", [x_on.address])
        if attempt < 2:  # a live peer's miss may be transient: y retries, x is kept
            assert s.tasks["x"].state == "memory"
            assert s.tasks["y"].processing_on is z_on
    assert s.tasks["x"].state in ("processing", "queued")  # given up after 3 misses
    finish(s, "x")
    assert s.tasks["x"].runs == 2
    finish(s, "y")
    assert s.tasks["y"].state == "memory"


def test_worker_missing_its_own_input_is_believed_at_once(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",))], ["y"])
    finish(s, "x")
    runner = s.tasks["y"].processing_on
    assert runner in s.tasks["x"].who_has  # y was placed with its input
    s.missing_data(runner.address, "y", "x", [runner.address])
    assert s.tasks["x"].state in ("processing", "queued")


def test_tasks_ready_while_every_worker_is_paused_run_after_resume(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",))], ["y"])
    for address in list(s.workers):
        s.worker_status(address, "paused", "memory at 85%")
    finish(s, "x")  # y is ready now, but every worker is paused
    assert s.tasks["y"].state == "no-worker"
    s.drain()
    s.worker_status(next(iter(s.workers)), "running", "memory at 60%")
    workers, _ = s.drain()
    assert [m["key"] for msgs in workers.values() for m in ops(msgs, "compute-task")] == ["y"]


def outstanding(s: SchedulerState) -> dict[str, int]:
    return {w.name: len(w.processing) for w in s.workers.values()}


def finish_timed(s: SchedulerState, key: str, duration: float, nbytes: int) -> None:
    ts = s.tasks[key]
    assert ts.processing_on is not None
    s.task_finished(ts.processing_on.address, key, nbytes, "int", duration)


@pytest.mark.parametrize(("duration", "nbytes", "depth"), [
    (0.0001, 10, 8),  # no-ops: 8 per thread keep each worker busy between round trips
    (0.00045, 10, 4),  # 2 ms of work queued per thread: 4.4 tasks, floored
    (0.002, 10, 2),  # a millisecond or more: saturation alone (another client never waits)
    (0.0001, 1 << 20, 2),  # tiny but large results: no memory piled up ahead of reductions
])
def test_tiny_tasks_are_queued_deeper_on_the_workers(
        s: SchedulerState, duration: float, nbytes: int, depth: int) -> None:
    s.update_graph("c1", [spec(f"t{i}", priority=(0, i)) for i in range(200)],
                   [f"t{i}" for i in range(200)])
    assert outstanding(s) == {"a": 2, "b": 2}
    for _ in range(60):  # the moving averages settle on what the tasks do
        running = next(ts for ts in s.tasks.values() if ts.processing_on is not None)
        finish_timed(s, running.key, duration, nbytes)
    s.drain()
    assert outstanding(s) == {"a": depth, "b": depth}


def test_a_small_result_a_client_waits_for_comes_inline(s: SchedulerState) -> None:
    s.update_graph("c1", [spec("x"), spec("y", ("x",))], ["y"])
    workers, _ = s.drain()
    (compute_x,) = [m for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert "inline" not in compute_x  # nobody waits for x itself: its result stays put
    finish(s, "x")
    workers, _ = s.drain()
    (compute_y,) = [m for msgs in workers.values() for m in ops(msgs, "compute-task")]
    assert compute_y["inline"] is True
    ts = s.tasks["y"]
    assert ts.processing_on is not None
    s.task_finished(ts.processing_on.address, "y", 10, "int", value=b"packed frames")
    _, clients = s.drain()
    assert clients["c1"] == [{"op": "key-in-memory", "key": "y", "type": "int",
                              "value": b"packed frames"}]
    assert s.inlined_bytes == len(b"packed frames")
