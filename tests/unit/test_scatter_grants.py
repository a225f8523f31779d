"""The scheduler's direct-scatter grants (``scheduler/scatter.py``) against its state machine."""

from __future__ import annotations

import pytest
from memkube.protocol import InvalidMessage
from memkube.scheduler.handlers import apply_worker_op
from memkube.scheduler.scatter import place
from memkube.scheduler.state import SchedulerState


def memory(limit: int = 1000, managed: int = 0) -> dict:
    return {"limit": limit, "managed": managed, "unmanaged": 0, "spilled": 0,
            "thresholds": {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}}


@pytest.fixture
def s() -> SchedulerState:
    state = SchedulerState(replication_factor=2, clock=lambda: 0.0)
    state.add_worker("tcp://a:1", "a", 1, memory=memory())
    state.add_worker("tcp://b:1", "b", 1, memory=memory(managed=500))
    state.add_worker("tcp://c:1", "c", 1, memory=memory())
    state.add_client("c1")
    state.drain()
    return state


def test_a_plan_places_keys_and_tells_only_their_workers(s: SchedulerState) -> None:
    plan = s.grants.plan(s, "c1", {"x": 300, "y": 300, "z": 10}, now=0.0)
    placement = plan["placement"]
    assert set(placement) == {"x", "y", "z"}
    # the two large keys go to the two emptiest workers, not to the half-full one
    assert {placement["x"], placement["y"]} == {"tcp://a:1", "tcp://c:1"}
    workers, _ = s.drain()
    for address, msgs in workers.items():
        (expect,) = [m for m in msgs if m["op"] == "expect-data"]
        assert expect["grant"] == plan["grant"] and expect["client"] == "c1"
        assert set(expect["keys"]) == {k for k, a in placement.items() if a == address}


def test_received_keys_become_scattered_data_and_are_replicated(s: SchedulerState) -> None:
    plan = s.grants.plan(s, "c1", {"x": 100}, now=0.0)
    holder = plan["placement"]["x"]
    s.drain()
    apply_worker_op(s, holder, {"op": "scattered-data", "grant": plan["grant"],
                                "keys": {"x": 100}, "types": {"x": "ndarray"}})
    ts = s.tasks["x"]
    assert ts.state == "memory" and ts.scattered and ts.type == "ndarray"
    assert [w.address for w in ts.who_has] == [holder]
    workers, clients = s.drain()
    assert {"op": "key-in-memory", "key": "x", "type": "ndarray"} in clients["c1"]
    acquire = [a for a, msgs in workers.items()
               for m in msgs if m["op"] == "acquire-replicas"]
    assert len(acquire) == 1 and acquire[0] != holder  # replication factor 2
    assert not s.grants.grants  # used up


def test_keys_outside_the_grant_are_refused_and_freed(s: SchedulerState) -> None:
    plan = s.grants.plan(s, "c1", {"x": 100}, now=0.0)
    wrong = next(a for a in s.workers if a != plan["placement"]["x"])
    s.drain()
    apply_worker_op(s, wrong, {"op": "scattered-data", "grant": plan["grant"],
                               "keys": {"x": 100, "stray": 5}})
    apply_worker_op(s, wrong, {"op": "scattered-data", "grant": "never-given",
                               "keys": {"other": 5}})
    assert "x" not in s.tasks and "stray" not in s.tasks and "other" not in s.tasks
    workers, _ = s.drain()
    freed = {k for m in workers[wrong] if m["op"] == "free-keys" for k in m["keys"]}
    assert freed == {"x", "stray", "other"}


def test_a_key_is_received_once_and_grants_expire(s: SchedulerState) -> None:
    plan = s.grants.plan(s, "c1", {"x": 100, "y": 100}, now=0.0)
    holder = plan["placement"]["x"]
    msg = {"op": "scattered-data", "grant": plan["grant"], "keys": {"x": 100}}
    assert s.grants.received(s, holder, msg, now=1.0) == []
    assert s.grants.received(s, holder, msg, now=1.0) == ["x"]
    late = {"op": "scattered-data", "grant": plan["grant"], "keys": {"y": 100}}
    assert s.grants.received(s, plan["placement"]["y"], late, now=10_000.0) == ["y"]
    s.grants.expire(10_000.0)
    assert not s.grants.grants


def test_sizes_beyond_every_worker_and_no_workers(s: SchedulerState) -> None:
    with pytest.raises(InvalidMessage, match="memory limit"):
        s.grants.plan(s, "c1", {"x": 10**9}, now=0.0)
    empty = SchedulerState()
    assert empty.grants.plan(empty, "c1", {"x": 1}, now=0.0) == {"grant": "",
                                                                "placement": {}}


def test_place_balances_without_limits() -> None:
    state = SchedulerState()
    state.add_worker("tcp://a:1", "a", 1)
    state.add_worker("tcp://b:1", "b", 1)
    placement = place(list(state.workers.values()), {f"k{i}": 10 for i in range(10)})
    counts = sorted(list(placement.values()).count(a) for a in state.workers)
    assert counts == [5, 5]


def test_a_plan_may_not_name_a_task(s: SchedulerState) -> None:
    # a task's result would be overwritten on its worker by the client's bytes
    s.update_graph("c1", [{"key": "t", "run_spec": b"f", "deps": [], "priority": [0]}],
                   ["t"])
    s.drain()
    with pytest.raises(InvalidMessage, match="names a task"):
        s.grants.plan(s, "c1", {"t": 10}, now=0.0)
    # scattered data may be scattered again (equal values, equal keys)
    plan = s.grants.plan(s, "c1", {"d": 10}, now=0.0)
    s.grants.received(s, plan["placement"]["d"], {"op": "scattered-data",
                                                  "grant": plan["grant"],
                                                  "keys": {"d": 10}}, now=0.0)
    assert s.grants.plan(s, "c1", {"d": 10}, now=0.0)["placement"]
