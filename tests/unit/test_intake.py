"""Bounded intake: the batches a worker fetches and where received values go (pure), and
the state machine carrying sizes and pausing a transfer."""

from __future__ import annotations

from memkube.worker.admission import Room
from memkube.worker.intake import (
    BATCH_SHARE,
    Intake,
    expected,
    next_batch,
    shortfall,
    to_disk,
    unlimited,
)
from memkube.worker.state import Fetch, Send, WorkerState

MB = 2**20
LIMIT = 256 * MB


def reading(used: int, managed: int = 0) -> Intake:
    return Intake(LIMIT, pause=int(0.8 * LIMIT), used=used, target=int(0.6 * LIMIT),
                  managed=managed)


def test_a_batch_fits_the_share_of_the_limit() -> None:
    wanted = [(f"k{i}", 8 * MB) for i in range(50)]  # 400 MB, as in the kind scenario
    batch = next_batch(wanted, reading(used=60 * MB))
    assert batch == [f"k{i}" for i in range(4)]  # 32 MB = 1/8 of 256 MB
    assert sum(8 * MB for _ in batch) <= LIMIT * BATCH_SHARE


def test_a_batch_fits_the_room_below_the_pause_line() -> None:
    wanted = [(f"k{i}", 8 * MB) for i in range(50)]
    intake = reading(used=180 * MB)  # pause line at 204.8 MB: 24.8 MB of room
    assert next_batch(wanted, intake) == ["k0", "k1", "k2"]


def test_no_batch_while_the_next_key_would_reach_the_pause_line() -> None:
    wanted = [("k0", 8 * MB)]
    assert next_batch(wanted, reading(used=200 * MB)) == []
    assert next_batch(wanted, reading(used=210 * MB)) == []  # above it: paused anyway
    assert shortfall(8 * MB, reading(used=200 * MB)) > 3 * MB  # what to spill first
    assert shortfall(8 * MB, reading(used=60 * MB)) == 0


def test_concurrent_fetches_share_the_room() -> None:
    wanted = [(f"k{i}", 8 * MB) for i in range(50)]
    busy = Intake(LIMIT, pause=int(0.8 * LIMIT), used=150 * MB, target=int(0.6 * LIMIT),
                  managed=0, incoming=32 * MB)  # another fetch's batch is on its way
    assert next_batch(wanted, busy) == ["k0", "k1"]  # 54.8 MB of room less 32 MB
    fuller = Intake(LIMIT, pause=int(0.8 * LIMIT), used=150 * MB, target=int(0.6 * LIMIT),
                    managed=0, incoming=50 * MB)
    assert next_batch(wanted, fuller) == []  # waits for the other batch to land
    assert expected([8 * MB, 0], busy) == 8 * MB + busy.share  # unknown: a whole share


def test_a_key_larger_than_the_share_comes_alone() -> None:
    wanted = [("big", 60 * MB), ("small", MB)]
    assert next_batch(wanted, reading(used=60 * MB)) == ["big"]
    assert next_batch(wanted[1:], reading(used=60 * MB)) == ["small"]


def test_a_key_of_unknown_size_comes_alone() -> None:
    wanted = [("a", 0), ("b", MB)]
    assert next_batch(wanted, reading(used=60 * MB)) == ["a"]
    assert next_batch([("b", MB), ("a", 0)], reading(used=60 * MB)) == ["b"]


def test_without_a_limit_everything_comes_in_one_batch_into_memory() -> None:
    wanted = [(f"k{i}", 8 * MB) for i in range(50)]
    assert len(next_batch(wanted, unlimited())) == 50
    assert not to_disk(10**12, unlimited())


def test_received_values_go_to_disk_once_memory_is_at_its_target() -> None:
    assert not to_disk(8 * MB, reading(used=80 * MB, managed=40 * MB))
    assert to_disk(8 * MB, reading(used=160 * MB, managed=150 * MB))  # past the target
    assert to_disk(8 * MB, reading(used=200 * MB, managed=20 * MB))  # near the pause line


def make() -> tuple[WorkerState, set[str]]:
    held: set[str] = set()
    ws = WorkerState(1, holds=held.__contains__, room=lambda: Room(None, 0, 0, 0),
                     address="tcp://w:1")
    return ws, held


def acquire(keys: dict[str, int]) -> dict:
    return {"op": "acquire-replicas", "who_has": {k: ["tcp://r:1"] for k in keys},
            "nbytes": keys}


def test_the_fetch_carries_the_sizes_the_scheduler_sent() -> None:
    ws, _ = make()
    out = ws.handle(acquire({"a": 8 * MB, "b": 4 * MB}))
    assert out == [Fetch({"a": ["tcp://r:1"], "b": ["tcp://r:1"]}, {"a": 8 * MB, "b": 4 * MB})]


def test_batches_are_reported_as_they_are_stored() -> None:
    ws, _ = make()
    ws.handle(acquire({"a": 8 * MB, "b": 4 * MB}))
    assert ws.fetch_done({"a": 8 * MB}) == [Send({"op": "add-keys", "keys": {"a": 8 * MB}})]
    assert ws.fetch_done({"b": 4 * MB}) == [Send({"op": "add-keys", "keys": {"b": 4 * MB}})]


def test_keys_deferred_by_a_pause_are_fetched_on_resume_with_their_sizes() -> None:
    ws, _ = make()
    ws.handle(acquire({"a": 8 * MB, "b": 4 * MB}))
    ws.fetch_done({"a": 8 * MB})
    ws.pause()
    assert ws.fetch_done({}, [], "", {"b": ["tcp://r:1"]}) == []  # nothing while paused
    assert ws.resume() == [Fetch({"b": ["tcp://r:1"]}, {"b": 4 * MB})]


def test_deferred_keys_are_fetched_again_if_the_pause_is_already_over() -> None:
    ws, _ = make()
    ws.handle(acquire({"b": 4 * MB}))
    assert ws.fetch_done({}, [], "", {"b": ["tcp://r:1"]}) == [
        Fetch({"b": ["tcp://r:1"]}, {"b": 4 * MB})]
