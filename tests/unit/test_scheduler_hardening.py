"""Hostile and buggy input against the scheduler state machine, through the same handlers
the server uses (no sockets): every operation of every type, generated; nothing raises
except a named InvalidMessage/ProtocolError, and the records stay consistent."""

from __future__ import annotations

from typing import Any

import pytest
from hostile_ops import TEMPLATES, operations
from hypothesis import given, settings
from hypothesis import strategies as st
from memkube.errors import ProtocolError, RetireError
from memkube.protocol import InvalidMessage, validate
from memkube.scheduler.handlers import apply_client_op, apply_worker_op, error_for
from memkube.scheduler.retire import cancel_retirement, plan_retirement, progress_retirements
from memkube.scheduler.server import CLIENT_OPS, WAITING_OPS, WORKER_OPS
from memkube.scheduler.state import SchedulerState


def check_consistent(s: SchedulerState) -> None:
    """The cross-links between records agree with each other."""
    for key, ts in s.tasks.items():
        assert ts.key == key
        for dep in ts.dependencies:
            assert ts in dep.dependents
        for ws in ts.who_has:
            assert ts in ws.has_what and ws.address in s.workers
        if ts.processing_on is not None:
            assert ts.state == "processing" and ts in ts.processing_on.processing
        for cid in ts.who_wants:
            assert ts in s.clients[cid].wants
    for ws in s.workers.values():
        for ts in ws.processing:
            assert ts.processing_on is ws
        for ts in ws.has_what:
            assert ws in ts.who_has
    assert s.held_bytes == sum(ts.nbytes * len(ts.who_has) for ts in s.tasks.values())


def fresh() -> SchedulerState:
    s = SchedulerState()
    s.add_worker("tcp://a:1", "a", 1)
    s.add_worker("tcp://b:1", "b", 2)
    s.update_graph("good", [{"key": "x", "run_spec": b"f", "deps": [], "priority": [0]},
                            {"key": "y", "run_spec": b"f", "deps": ["x"], "priority": [1]}],
                   ["y"])
    s.drain()
    return s


def test_every_op_has_a_template() -> None:
    assert set(TEMPLATES) >= (CLIENT_OPS | WORKER_OPS)
    for op in CLIENT_OPS | WORKER_OPS:
        validate({"op": op, **TEMPLATES[op]})


def apply(s: SchedulerState, msg: Any, sender: str) -> None:
    """What the server does with one operation from ``sender`` ("client" or "worker")."""
    allowed = CLIENT_OPS if sender == "client" else WORKER_OPS
    try:
        checked = validate(msg, allowed)
        if sender == "client" and checked["op"] not in WAITING_OPS:
            apply_client_op(s, "hostile", checked, dict)
        elif sender == "worker":
            apply_worker_op(s, "tcp://a:1", checked)
    except InvalidMessage as exc:  # answered with an error that names the op
        reply = error_for(msg, exc)
        assert reply["op"] == "error" and reply["message"]
        validate(reply)
    except ProtocolError as exc:  # a graph refused whole (a cycle): named, state unchanged
        assert "cycle" in str(exc)


@given(st.lists(st.tuples(st.sampled_from(["client", "worker"]), st.data()), max_size=6))
@settings(max_examples=400, deadline=None)
def test_generated_operations_never_break_the_state(steps: list[tuple[str, Any]]) -> None:
    s = fresh()
    for sender, data in steps:
        ops = CLIENT_OPS if sender == "client" else WORKER_OPS
        apply(s, data.draw(operations(ops)), sender)
        check_consistent(s)
        s.drain()
    # The well-behaved client is still served: y runs once x is done.
    x = s.tasks.get("x")
    if x is not None and x.state == "processing":
        s.task_finished(x.processing_on.address, "x", 8, "int")
    check_consistent(s)


@pytest.mark.parametrize("bad_tasks", [
    [{"key": 5, "run_spec": b"f", "deps": [], "priority": [0]}],  # an integer key
    [{"key": "k", "run_spec": b"f", "deps": [], "priority": ["high"]}],  # TypeError in the heap
    [5],
    [{"key": ["unhashable"], "run_spec": b"f", "deps": [], "priority": [0]}],
    [{"key": "k", "run_spec": b"f", "deps": [7], "priority": [0]}],
    [{"key": "k", "run_spec": None, "deps": [], "priority": [0]}],
    [{"key": "k", "run_spec": b"f", "deps": [], "priority": [2**70]}],
])
def test_bad_tasks_are_refused_naming_the_field(bad_tasks: list[Any]) -> None:
    with pytest.raises(InvalidMessage, match="update-graph: field 'tasks'"):
        validate({"op": "update-graph", "tasks": bad_tasks, "wants": []})


def test_a_cycle_is_refused_and_changes_nothing() -> None:
    s = fresh()
    before = set(s.tasks)
    cyclic = [{"key": "p", "run_spec": b"f", "deps": ["q"], "priority": [0]},
              {"key": "q", "run_spec": b"f", "deps": ["p"], "priority": [0]}]
    with pytest.raises(ProtocolError, match="cycle"):
        s.update_graph("hostile", cyclic, ["p"])
    assert set(s.tasks) == before and "hostile" not in s.clients
    check_consistent(s)


def test_existing_key_keeps_its_dependencies() -> None:
    s = fresh()
    s.update_graph("other", [{"key": "x", "run_spec": b"g", "deps": ["y"], "priority": [0]}],
                   ["x"])  # would make x depend on its own dependent
    assert not s.tasks["x"].dependencies
    check_consistent(s)


def test_error_for_a_failing_request_names_the_cause_and_the_request() -> None:
    reply = error_for({"op": "who-has", "keys": ["x"], "id": 9}, KeyError("boom"))
    assert reply == {"op": "error", "id": 9, "request": "who-has",
                     "message": "who-has failed in the scheduler: KeyError: 'boom'"}
    graph = error_for({"op": "update-graph", "tasks": [], "wants": ["a", 5]}, ValueError("v"))
    assert graph["keys"] == ["a"]


def retiring_pool() -> SchedulerState:
    s = SchedulerState()
    for name in "abc":
        s.add_worker(f"tcp://{name}:1", name, 1)
    s.update_graph("c", [{"key": "x", "run_spec": b"f", "deps": [], "priority": [0]}], ["x"])
    ts = s.tasks["x"]
    s.task_finished(ts.processing_on.address, "x", 8, "int")
    s.drain()
    return s


def test_cancelled_retirement_never_closes_its_workers_later() -> None:
    s = retiring_pool()
    holder = next(iter(s.tasks["x"].who_has))
    retirement = plan_retirement(s, names=[holder.name])
    assert holder.status == "retiring"
    assert cancel_retirement(s, retirement) == []
    assert holder.status == "running" and not s.retirements
    # The copy it asked for lands later; nothing closes the worker.
    (target,) = s.tasks["x"].replicating_to
    s.add_keys(target.address, {"x": 8})
    progress_retirements(s)
    workers, _ = s.drain()
    assert not any(m["op"] == "close-worker" for msgs in workers.values() for m in msgs)
    # And it takes work again.
    s.update_graph("c", [{"key": f"r{i}", "run_spec": b"f", "deps": [], "priority": [0]}
                         for i in range(6)], [f"r{i}" for i in range(6)])
    assert holder.processing


def test_retire_n_above_the_pool_is_refused_and_n_equal_retires_all() -> None:
    s = SchedulerState()
    for name in "ab":
        s.add_worker(f"tcp://{name}:1", name, 1)
    with pytest.raises(RetireError, match="only 2 are active"):
        plan_retirement(s, n=3)
    assert all(w.status == "running" for w in s.workers.values())
    retirement = plan_retirement(s, n=2)  # exactly the pool, nothing to move: explicit
    assert {w.name for w in retirement.workers} == {"a", "b"}


def test_queued_root_tasks_are_served_in_turns_between_clients() -> None:
    s = SchedulerState()
    s.add_worker("tcp://a:1", "a", 1)
    big = [{"key": f"a{i}", "run_spec": b"f", "deps": [], "priority": [0, 1, i]}
           for i in range(50_000)]
    s.update_graph("A", big, [t["key"] for t in big])
    # B's counter is lower than A's here: priorities of different clients are not compared
    # either way.
    s.update_graph("B", [{"key": "b", "run_spec": b"f", "deps": [], "priority": [0, 9]}], ["b"])
    s.update_graph("C", [{"key": "c", "run_spec": b"f", "deps": [], "priority": [0, 0]}], ["c"])
    dispatched = [m["key"] for msgs in s.drain()[0].values() for m in msgs
                  if m["op"] == "compute-task"]
    for _ in range(6):
        (ws,) = s.workers.values()
        ts = min(ws.processing, key=lambda t: t.key)
        s.task_finished(ws.address, ts.key, 8, "int")
        dispatched += [m["key"] for msgs in s.drain()[0].values() for m in msgs
                       if m["op"] == "compute-task"]
    # A had both slots first; as slots free up the three clients take turns.
    assert dispatched[:5] == ["a0", "a1", "a2", "b", "c"]
    assert dispatched[5:] == ["a3", "a4", "a5"]
