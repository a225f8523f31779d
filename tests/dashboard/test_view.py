"""The view model: rates from counters, states, totals and the "why" sentences."""

from __future__ import annotations

from typing import Any

import pytest
from dashboard_fakes import GiB, MiB, figures, snapshot, worker
from memkube.dashboard.explain import display_state, explain_worker
from memkube.dashboard.rates import CounterRates, MemoryHistory
from memkube.dashboard.view import DashboardFeed


def test_rates_follow_counters_over_the_window() -> None:
    rates = CounterRates(window=10.0)
    for t in range(31):
        # 1 MiB/s for the first 20 s, then 4 MiB/s.
        spilled = t * MiB if t <= 20 else 20 * MiB + (t - 20) * 4 * MiB
        rates.observe(float(t), [("a", {"spill_bytes": spilled, "spill_count": t})])
        if t == 20:
            assert rates.rates("a")["spill_bytes"] == pytest.approx(MiB)
    assert rates.rates("a")["spill_bytes"] == pytest.approx(4 * MiB)
    assert rates.rates("a")["spill_count"] == pytest.approx(1.0)
    assert rates.rates("a")["unspill_bytes"] == 0


def test_a_restarted_worker_counts_as_a_reset_not_a_negative_rate() -> None:
    rates = CounterRates(window=100.0)
    rates.observe(0.0, [("a", {"spill_bytes": 1000})])
    rates.observe(10.0, [("a", {"spill_bytes": 2000})])
    rates.observe(20.0, [("a", {"spill_bytes": 500})])  # process restarted, counting from 0
    assert rates.rates("a")["spill_bytes"] == pytest.approx((1000 + 500) / 20)


def test_rates_need_two_observations_and_forget_gone_workers() -> None:
    rates = CounterRates(forget_after=60.0)
    rates.observe(0.0, [("a", {"spill_bytes": 5}), ("b", {"spill_bytes": 5})])
    assert rates.rates("a")["spill_bytes"] == 0
    rates.observe(0.0, [("a", {"spill_bytes": 50})])  # same instant: ignored
    rates.observe(100.0, [("a", {"spill_bytes": 105})])
    assert rates.rates("a")["spill_bytes"] == pytest.approx(1.0)
    assert rates.rates("b") == {"spill_bytes": 0, "spill_count": 0, "unspill_bytes": 0,
                                "unspill_count": 0}


def test_memory_history_thins_and_expires_points() -> None:
    history = MemoryHistory(keep=10.0, resolution=1.0)
    for i in range(40):
        history.observe(i * 0.5, managed=i, unmanaged=0, spilled=0)
    points = history.points()
    assert [p[0] for p in points] == [9.0 + k for k in range(11)]


@pytest.mark.parametrize(("status", "state", "expected"), [
    ("running", "normal", "normal"),
    ("running", "spilling", "spilling"),
    ("running", "paused", "paused"),
    ("paused", "normal", "paused"),
    ("retiring", "paused", "retiring"),
])
def test_display_state_priority(status: str, state: str, expected: str) -> None:
    assert display_state(worker("w", figures(state=state), status=status)) == expected


def test_why_a_worker_paused_names_the_threshold_in_bytes() -> None:
    w = worker("w", figures(limit=4 * GiB, managed=int(1.5 * GiB), unmanaged=int(1.9 * GiB),
                            state="paused"))
    lines = explain_worker(w, [])
    assert lines[0].startswith("Paused: process memory 3.4 GiB")
    assert "80% of 4.0 GiB = 3.2 GiB" in lines[0]


def test_why_paused_by_a_full_disk_does_not_blame_memory() -> None:
    w = worker("w", figures(limit=4 * GiB, managed=GiB, state="paused", spill_full=True))
    lines = explain_worker(w, [])
    assert any("spill disk" in line for line in lines)
    assert not any(line.startswith("Paused: process memory") for line in lines)


def test_why_restarted_quotes_the_last_reason_and_oom_kills() -> None:
    w = worker("w", figures(limit=GiB, managed=10 * MiB, unmanaged=700 * MiB), memory_restarts=2)
    events = [
        {"time": 1.0, "kind": "memory-restart", "worker": "w", "message": "old reason"},
        {"time": 2.0, "kind": "memory-restart", "worker": "w", "message": "process 980 MiB > 95%"},
        {"time": 3.0, "kind": "oom-kill", "worker": "w", "message": "exit 137"},
    ]
    lines = explain_worker(w, events)
    assert any("Restarted 2 times" in line and "process 980 MiB > 95%" in line for line in lines)
    assert any("OOM killer 1 time " in line for line in lines)
    assert any("Most memory is unmanaged" in line for line in lines)


def test_a_normal_worker_says_so() -> None:
    lines = explain_worker(worker("w", figures(limit=GiB, managed=100 * MiB)), [])
    assert lines == [("Normal: process memory 100 MiB, below the spill threshold "
                      "(70% of 1.0 GiB = 717 MiB).")]
    assert explain_worker(worker("w", figures(limit=None)), []) == [
        "No memory limit is set: no threshold applies."]


def test_feed_builds_totals_rates_and_per_worker_events() -> None:
    now = [1000.0]
    spilled = [0]

    def snap() -> dict[str, Any]:
        a = worker("b-worker", figures(limit=GiB, managed=100 * MiB, unmanaged=50 * MiB,
                                       spilled=spilled[0], spill_bytes=spilled[0]))
        z = worker("a-worker", figures(limit=GiB, managed=10 * MiB, state="spilling"),
                   memory_restarts=1, status="retiring")
        events = [{"time": 999.0, "kind": "retire", "worker": "a-worker", "message": "scale down"},
                  {"time": 998.0, "kind": "pause", "worker": "b-worker", "message": ""}]
        return snapshot([a, z], events=events, tasks={"memory": 3, "custom": 1}, shortfall=2)

    feed = DashboardFeed(snap, clock=lambda: now[0])
    feed.view()
    now[0] += 2.0
    spilled[0] = 20 * MiB
    view = feed.view()

    assert [w["name"] for w in view["workers"]] == ["a-worker", "b-worker"]
    b = view["workers"][1]
    assert b["spill_rate"] == pytest.approx(10 * MiB)
    assert b["thresholds"] == {"target": int(GiB * 0.6), "spill": int(GiB * 0.7),
                               "pause": int(GiB * 0.8), "terminate": int(GiB * 0.95)}
    assert [e["kind"] for e in b["events"]] == ["pause"]
    assert view["workers"][0]["state"] == "retiring"
    assert view["totals"]["by_state"] == {"normal": 1, "spilling": 0, "paused": 0, "retiring": 1}
    assert view["totals"]["managed"] == 110 * MiB
    assert view["totals"]["spilled"] == 20 * MiB
    assert view["totals"]["spill_rate"] == pytest.approx(10 * MiB)
    assert view["totals"]["memory_restarts"] == 1
    assert [e["time"] for e in view["events"]] == [999.0, 998.0]  # newest first
    assert {t["state"]: t["count"] for t in view["tasks"]}["custom"] == 1
    assert view["tasks"][0] == {"state": "memory", "count": 3}
    assert view["replication"] == {"factor": 2, "shortfall": 2}
    assert [p[0] for p in view["history"]] == [1000.0, 1002.0]


def test_paused_by_the_scheduler_before_the_figures_catch_up_quotes_the_pause() -> None:
    # The pause event arrived; the last heartbeat's figures are already below the threshold.
    w = worker("w", figures(limit=GiB, managed=100 * MiB, unmanaged=100 * MiB), status="paused")
    events = [{"time": 1.0, "kind": "pause", "worker": "w", "message": "memory at 86% of the limit"}]
    lines = explain_worker(w, events)
    assert lines[0].startswith("Paused (memory at 86% of the limit); its latest figures show "
                               "process memory 200 MiB, below the pause threshold")


def test_normal_above_the_spill_threshold_says_spilling_comes_next() -> None:
    lines = explain_worker(worker("w", figures(limit=GiB, managed=800 * MiB)), [])
    assert lines == [("Normal by its last measurement, but process memory 800 MiB is above the "
                      "spill threshold (70% of 1.0 GiB = 717 MiB): it starts spilling at its "
                      "next one.")]
