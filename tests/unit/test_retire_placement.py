"""Retirement placement by room: keys spread over receivers by what each can still take,
counting what is already on its way, and never more than a receiver's room."""

from __future__ import annotations

import math

from memkube.scheduler.replication import drop_surplus_replicas
from memkube.scheduler.retire import capacity, place_by_room, plan_retirement
from memkube.scheduler.state import SchedulerState

MB = 2**20


def test_keys_spread_over_receivers_by_room() -> None:
    sizes = {f"k{i}": 8 for i in range(12)}
    placed = place_by_room(sizes, {"a": 64.0, "b": 32.0, "c": 0.0})
    given = {r: sum(sizes[k] for k, w in placed.items() if w == r) for r in "abc"}
    assert set(placed) == set(sizes)  # 96 bytes, 96 bytes of room: all placed
    assert given == {"a": 64, "b": 32, "c": 0}


def test_no_receiver_is_given_more_than_its_room() -> None:
    sizes = {f"k{i}": 10 for i in range(20)}  # 200 bytes
    placed = place_by_room(sizes, {"a": 45.0, "b": 25.0})
    given = {r: sum(sizes[k] for k, w in placed.items() if w == r) for r in "ab"}
    assert given["a"] <= 45 and given["b"] <= 25
    assert len(placed) == 6  # 4 fit in a, 2 in b; the other 14 wait for a later round


def test_bytes_already_on_their_way_count_against_the_room() -> None:
    placed = place_by_room({"x": 10, "y": 10}, {"a": 30.0, "b": 30.0}, {"a": 25})
    assert placed == {"x": "b", "y": "b"}  # a has 5 bytes left: too few for either


def test_unlimited_room_is_spread_by_bytes_given() -> None:
    sizes = {f"k{i}": 5 for i in range(9)}
    placed = place_by_room(sizes, dict.fromkeys("abc", math.inf))
    assert sorted(list(placed.values()).count(r) for r in "abc") == [3, 3, 3]


def test_largest_first_and_a_key_too_large_for_all_is_left() -> None:
    placed = place_by_room({"big": 100, "mid": 40, "small": 10}, {"a": 50.0, "b": 20.0})
    assert placed == {"mid": "a", "small": "b"}


def memory(managed: int, spilled: int, max_spill: int, limit: int = 100 * MB) -> dict:
    return {"limit": limit, "managed": managed, "unmanaged": 0, "spilled": spilled,
            "max_spill": max_spill,
            "thresholds": {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}}


def three_full_receivers() -> SchedulerState:
    s = SchedulerState()
    s.add_worker("tcp://r:1", "r", 1, memory=memory(50 * MB, 0, 1000 * MB))
    for name in "abc":
        s.add_worker(f"tcp://{name}:1", name, 1, memory=memory(50 * MB, 0, 100 * MB))
    s.add_scattered("c1", {f"k{i}": {"nbytes": 8 * MB, "type": "bytes",
                                     "workers": ["tcp://r:1"]} for i in range(40)})
    s.drain()
    return s


def acquired(workers: dict[str, list[dict]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for address, msgs in workers.items():
        for m in msgs:
            if m["op"] == "acquire-replicas":
                out[address] = out.get(address, 0) + sum(m["nbytes"].values())
    return out


def test_retiring_a_worker_spreads_its_keys_over_the_receivers() -> None:
    s = three_full_receivers()  # 320 MB to move; each receiver: 30 MB memory + 100 MB disk
    rooms = {w.address: capacity(w) for w in s.workers.values() if w.name != "r"}
    plan_retirement(s, names=["r"])
    workers, _ = s.drain()
    sent = acquired(workers)
    assert set(sent) == {"tcp://a:1", "tcp://b:1", "tcp://c:1"}  # not all to one
    assert all(sent[a] <= rooms[a] for a in sent)  # never more than a receiver can take
    assert max(sent.values()) - min(sent.values()) <= 8 * MB  # even rooms, even shares
    keys = [k for msgs in workers.values() for m in msgs if m["op"] == "acquire-replicas"
            for k in m["who_has"]]
    assert sorted(keys) == sorted(f"k{i}" for i in range(40))  # each key once


def test_what_does_not_fit_now_follows_when_copies_confirm() -> None:
    s = SchedulerState()
    s.add_worker("tcp://r:1", "r", 1, memory=memory(50 * MB, 0, 1000 * MB))
    for name in "abc":  # 12 MB of room each: one 8 MB key each, though 36 MB in all
        s.add_worker(f"tcp://{name}:1", name, 1, memory=memory(68 * MB, 0, 0))
    s.add_scattered("c1", {f"k{i}": {"nbytes": 8 * MB, "type": "bytes",
                                     "workers": ["tcp://r:1"]} for i in range(4)})
    s.drain()
    retirement = plan_retirement(s, names=["r"])  # 32 MB fit in 36 MB: accepted
    workers, _ = s.drain()
    sent = acquired(workers)
    assert sorted(sent.values()) == [8 * MB] * 3  # one each; the fourth waits
    first = {a: [k for m in workers[a] if m["op"] == "acquire-replicas" for k in m["who_has"]]
             for a in sent}
    (address, keys), *_ = first.items()
    s.add_keys(address, dict.fromkeys(keys, 8 * MB))
    s.worker_heartbeat(address, memory(40 * MB, 0, 0), 0, 0)  # it spilled: room again
    workers, _ = s.drain()
    (later,) = [k for m in workers[address] if m["op"] == "acquire-replicas"
                for k in m["who_has"]]
    assert later not in {k for ks in first.values() for k in ks}
    assert not retirement.finished


def test_a_copy_that_failed_is_asked_for_again_on_a_heartbeat() -> None:
    s = SchedulerState()
    s.add_worker("tcp://r:1", "r", 1)
    s.add_worker("tcp://a:1", "a", 1)
    s.add_scattered("c1", {"d": {"nbytes": 5, "type": "x", "workers": ["tcp://r:1"]}})
    s.drain()
    plan_retirement(s, names=["r"])
    workers, _ = s.drain()
    assert [m["op"] for m in workers["tcp://a:1"]] == ["acquire-replicas"]
    s.lost_keys("tcp://a:1", ["d"])  # the fetch from r failed (e.g. a dropped connection)
    s.drain()
    s.worker_heartbeat("tcp://a:1", {}, 0, 0)
    workers, _ = s.drain()
    (again,) = [m for m in workers["tcp://a:1"] if m["op"] == "acquire-replicas"]
    assert again["who_has"] == {"d": ["tcp://r:1"]}  # from the retiring holder, again
    assert "tcp://r:1" not in workers or not any(
        m["op"] == "close-worker" for m in workers["tcp://r:1"])


def test_a_copy_moved_by_a_retirement_is_not_dropped_as_surplus() -> None:
    s = SchedulerState()
    full = memory(90 * MB, 0, 1000 * MB)  # above target: surplus copies would go
    s.add_worker("tcp://r:1", "r", 1, memory=full)
    s.add_worker("tcp://a:1", "a", 1, memory=full)
    s.add_scattered("c1", {"d": {"nbytes": 50 * MB, "type": "x", "workers": ["tcp://r:1"]}})
    plan_retirement(s, names=["r"])
    s.add_keys("tcp://a:1", {"d": 50 * MB})  # d is on r (retiring) and a
    assert drop_surplus_replicas(s, s.workers["tcp://a:1"]) == []
    assert drop_surplus_replicas(s, s.workers["tcp://r:1"]) == []  # r serves until it goes
    assert {w.name for w in s.tasks["d"].who_has} == {"r", "a"}
