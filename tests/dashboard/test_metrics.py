"""Prometheus text from a snapshot, held to the format by prometheus_client's parser."""

from __future__ import annotations

from typing import Any

import pytest
from dashboard_fakes import GiB, MiB, figures, snapshot, worker
from memkube.dashboard.metrics import render_scheduler_metrics, render_worker_metrics
from memkube.dashboard.promtext import Family
from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def pool() -> dict[str, Any]:
    a = worker("pod-a", figures(
        limit=4 * GiB, managed=1 * GiB, unmanaged=512 * MiB, spilled=3 * GiB, state="spilling",
        spill_bytes=5 * GiB, spill_count=120, spill_seconds=12.5, unspill_bytes=2 * GiB,
        unspill_count=40, unspill_seconds=3.25, cgroup_usage=1700 * MiB),
        memory_restarts=2, keys=17, tasks={"executing": 2, "ready": 5})
    b = worker("pod-b", figures(limit=None, managed=10 * MiB, unmanaged=90 * MiB, state="paused",
                                thresholds={"target": 0.6, "spill": None, "pause": 0.8,
                                            "terminate": None}),
               status="retiring")
    return snapshot([a, b], tasks={"waiting": 7, "processing": 2, "memory": 30, "erred": 1,
                                   "queued": 0, "released": 4, "forgotten": 9},
                    factor=2, shortfall=3)


def test_scheduler_scrape_shows_every_worker_labelled(pool: dict[str, Any]) -> None:
    samples = parse(render_scheduler_metrics(pool))

    assert value(samples, "memkube_worker_memory_bytes", worker="pod-a", type="managed") == GiB
    assert value(samples, "memkube_worker_memory_bytes", worker="pod-a", type="unmanaged") == 512 * MiB
    assert value(samples, "memkube_worker_memory_bytes", worker="pod-a", type="spilled") == 3 * GiB
    assert value(samples, "memkube_worker_memory_bytes", worker="pod-b", type="managed") == 10 * MiB
    assert value(samples, "memkube_worker_memory_limit_bytes", worker="pod-a") == 4 * GiB
    assert value(samples, "memkube_worker_cgroup_memory_bytes", worker="pod-a") == 1700 * MiB
    assert value(samples, "memkube_worker_memory_threshold_bytes",
                 worker="pod-a", threshold="pause") == int(4 * GiB * 0.8)
    assert value(samples, "memkube_worker_spill_bytes_total", worker="pod-a") == 5 * GiB
    assert value(samples, "memkube_worker_spill_total", worker="pod-a") == 120
    assert value(samples, "memkube_worker_spill_seconds_total", worker="pod-a") == 12.5
    assert value(samples, "memkube_worker_unspill_bytes_total", worker="pod-a") == 2 * GiB
    assert value(samples, "memkube_worker_unspill_total", worker="pod-a") == 40
    assert value(samples, "memkube_worker_unspill_seconds_total", worker="pod-a") == 3.25
    assert value(samples, "memkube_worker_memory_restarts_total", worker="pod-a") == 2
    assert value(samples, "memkube_worker_paused", worker="pod-a") == 0
    assert value(samples, "memkube_worker_paused", worker="pod-b") == 1
    assert value(samples, "memkube_worker_memory_state", worker="pod-a", state="spilling") == 1
    assert value(samples, "memkube_worker_memory_state", worker="pod-a", state="normal") == 0
    assert value(samples, "memkube_worker_status", worker="pod-b", status="retiring") == 1
    assert value(samples, "memkube_worker_tasks", worker="pod-a", state="ready") == 5
    assert value(samples, "memkube_worker_keys", worker="pod-a") == 17

    assert value(samples, "memkube_tasks", state="memory") == 30
    assert value(samples, "memkube_tasks", state="forgotten") == 9  # states beyond the known ones
    assert value(samples, "memkube_workers", status="retiring") == 1
    assert value(samples, "memkube_workers", status="running") == 1
    assert value(samples, "memkube_replication_factor") == 2
    assert value(samples, "memkube_replication_shortfall_keys") == 3
    assert value(samples, "memkube_pool_memory_bytes", type="spilled") == 3 * GiB
    assert value(samples, "memkube_scheduler_start_time_seconds") == 1000.0


def test_unlimited_worker_and_disabled_thresholds_are_absent(pool: dict[str, Any]) -> None:
    samples = parse(render_scheduler_metrics(pool))
    names = {(name, dict(labels).get("worker"), dict(labels).get("threshold"))
             for name, labels in samples}

    assert ("memkube_worker_memory_limit_bytes", "pod-b", None) not in names
    assert not any(n == "memkube_worker_memory_threshold_bytes" and w == "pod-b"
                   for n, w, _ in names)
    assert ("memkube_worker_cgroup_memory_bytes", "pod-b", None) not in names


def test_families_follow_prometheus_naming(pool: dict[str, Any]) -> None:
    families = list(text_string_to_metric_families(render_scheduler_metrics(pool)))
    assert families
    for family in families:
        assert family.name.startswith("memkube_")
        assert family.documentation, family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith("_total")
            else:
                assert not sample.name.endswith("_total")
            # Base units only: bytes and seconds, never KiB or milliseconds.
            assert not any(unit in sample.name for unit in ("_kb", "_mb", "_ms", "_kib"))


def test_worker_scrape_matches_its_own_figures() -> None:
    mem = figures(limit=2 * GiB, managed=300 * MiB, unmanaged=200 * MiB, spilled=50 * MiB,
                  spill_bytes=70 * MiB, spill_count=3, spill_seconds=0.4, spill_full=True)
    text = render_worker_metrics("w-1", mem, {"nthreads": 4, "keys": 9, "memory_restarts": 1,
                                              "tasks": {"executing": 1, "ready": 0}})
    samples = parse(text)

    assert value(samples, "memkube_worker_memory_bytes", worker="w-1", type="spilled") == 50 * MiB
    assert value(samples, "memkube_worker_process_memory_bytes", worker="w-1") == 500 * MiB
    assert value(samples, "memkube_worker_spill_full", worker="w-1") == 1
    assert value(samples, "memkube_worker_threads", worker="w-1") == 4
    assert value(samples, "memkube_worker_memory_restarts_total", worker="w-1") == 1
    assert {dict(labels)["worker"] for _, labels in samples} == {"w-1"}
    assert not any(name.startswith(("memkube_tasks", "memkube_workers")) for name, _ in samples)


def test_hostile_worker_names_are_escaped() -> None:
    name = 'evil"} memkube_fake 1\n\\x'
    samples = parse(render_worker_metrics(name, figures(managed=5), {}))
    assert value(samples, "memkube_worker_memory_bytes", worker=name, type="managed") == 5
    assert not any(n == "memkube_fake" for n, _ in samples)


def test_missing_figures_read_as_zero_rather_than_failing() -> None:
    samples = parse(render_scheduler_metrics({"workers": [{"name": "bare", "memory": {}}]}))
    assert value(samples, "memkube_worker_memory_bytes", worker="bare", type="managed") == 0
    assert value(samples, "memkube_replication_factor") == 1


def test_family_refuses_names_that_break_conventions() -> None:
    with pytest.raises(ValueError):
        Family("memkube_spills", "counter", "a counter without _total")
    with pytest.raises(ValueError):
        Family("memkube_bytes_total", "gauge", "a gauge with _total")
    with pytest.raises(ValueError):
        Family("memkube_x", "gauge", "bad label").add(1, **{"bad-label": "v"})
