"""The memory report table and the progress bar, with made-up snapshots and futures."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from dashboard_fakes import FakeFuture, GiB, MiB, figures, snapshot, worker
from memkube.diagnostics import format_memory_report, progress
from memkube.errors import ConfigError, TimeoutError


def test_memory_report_has_a_row_per_worker_and_totals() -> None:
    snap = snapshot([
        worker("pod-b", figures(limit=4 * GiB, managed=GiB, unmanaged=512 * MiB,
                                spilled=2 * GiB, state="spilling"), memory_restarts=3),
        worker("pod-a", figures(limit=4 * GiB, managed=256 * MiB, unmanaged=256 * MiB,
                                spill_full=True, state="paused")),
    ], shortfall=4)
    report = format_memory_report(snap)
    lines = report.splitlines()

    assert lines[0].split() == ["worker", "state", "limit", "managed", "unmanaged", "spilled",
                                "process", "restarts"]
    assert lines[2].split() == ["pod-a", "paused,", "disk", "full", "4.0", "GiB", "256", "MiB",
                                "256", "MiB", "0", "B", "512", "MiB", "0"]
    assert lines[3].split() == ["pod-b", "spilling", "4.0", "GiB", "1.0", "GiB", "512", "MiB",
                                "2.0", "GiB", "1.5", "GiB", "3"]
    assert lines[5].split() == ["total", "(2)", "8.0", "GiB", "1.2", "GiB", "768", "MiB",
                                "2.0", "GiB", "2.0", "GiB", "3"]
    assert "thresholds: target 60%, spill 70%, pause 80%, terminate 95%" in report
    assert "replication: 4 keys below 2 copies" in report
    # Columns line up: the last column is right-aligned, so every table line is equally wide.
    assert len({len(line) for line in lines[:6]}) == 1


def test_memory_report_without_limits_or_workers() -> None:
    assert format_memory_report(snapshot([])) == "memkube pool: no workers\n"
    report = format_memory_report(snapshot([worker("w", figures(limit=None, managed=5))]))
    assert report.splitlines()[2].split()[:3] == ["w", "normal", "none"]


def test_progress_blocks_until_every_future_is_done() -> None:
    futures = [FakeFuture(f"k{i}") for i in range(10)]
    futures[0].finish()  # already done before the bar starts
    out = io.StringIO()
    all_started = threading.Event()

    def finish_rest() -> None:
        all_started.wait()
        for i, f in enumerate(futures[1:]):
            f.finish("error" if i == 3 else "finished")

    thread = threading.Thread(target=finish_rest)
    thread.start()
    all_started.set()
    bar = progress(futures + [futures[5]], file=out, description="compute")
    thread.join()

    assert all(f.done() for f in futures)
    assert bar.statuses == {"finished": 9, "error": 1}
    assert bar.bar.n == 10 and bar.bar.total == 10  # the duplicate future counts once
    text = out.getvalue()
    assert "compute" in text and "10/10" in text and "error=1" in text


def test_progress_times_out_with_the_pending_count() -> None:
    futures = [FakeFuture("a"), FakeFuture("b")]
    futures[0].finish()
    with pytest.raises(TimeoutError, match="1 of 2 futures still pending"):
        progress(futures, file=io.StringIO(), timeout=0.05)


def test_progress_without_waiting_advances_from_callbacks() -> None:
    futures = [FakeFuture("a"), FakeFuture("b")]
    bar = progress(futures, wait=False, file=io.StringIO())
    assert bar.bar.n == 0
    futures[1].finish("cancelled")
    assert bar.bar.n == 1
    futures[0].finish()
    assert bar.statuses == {"cancelled": 1, "finished": 1}


def test_progress_of_a_single_future_and_of_none() -> None:
    single = FakeFuture("only")
    single.finish()
    assert progress(single, file=io.StringIO()).statuses == {"finished": 1}
    assert progress([], file=io.StringIO()).bar.total == 0


async def test_progress_refuses_to_block_a_running_event_loop() -> None:
    future = FakeFuture("x")
    with pytest.raises(ConfigError, match="wait=False"):
        progress([future], file=io.StringIO())
    bar = progress([future], wait=False, file=io.StringIO())
    await asyncio.to_thread(future.finish)
    assert bar.statuses == {"finished": 1}


def test_progress_finishes_even_when_a_done_callback_never_comes() -> None:
    futures = [FakeFuture("a"), FakeFuture("b")]
    bar = progress(futures, wait=False, file=io.StringIO())  # callbacks registered
    futures[0].finish()
    futures[1].finish_silently("error")
    assert bar.wait(timeout=10) == {"finished": 1, "error": 1}


def test_memory_report_accepts_workers_keyed_by_address() -> None:
    listed = snapshot([worker("a", figures(managed=MiB)), worker("b", figures(managed=2 * MiB))])
    keyed = {**listed, "workers": {w["address"]: w for w in listed["workers"]}}
    assert format_memory_report(keyed) == format_memory_report(listed)
