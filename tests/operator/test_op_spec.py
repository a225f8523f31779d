"""Specs the schema lets through but the operator cannot build are refused by field."""

from __future__ import annotations

from typing import Any

import pytest
from memkube_operator.spec import SpecError, parse_pool
from opcases import pool_body


def test_example_parses(example: dict[str, Any]) -> None:
    pool = parse_pool(example)
    assert pool.replicas == 4
    assert pool.worker.memory_limit == 8 * 2**30
    assert pool.worker.memory_overhead == 2**30
    assert pool.worker.spill.size == 40 * 2**30
    assert pool.replication_factor == 2
    assert pool.force_after_seconds is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (pool_body(name="Bad_Name"), "metadata.name"),
        (pool_body(name="9lives"), "metadata.name"),
        (pool_body(name="x" * 48), "metadata.name"),
        (pool_body(worker={"memoryLimit": "1Mi"}), "spec.worker.memoryLimit"),
        (pool_body(worker={"memoryLimit": "lots"}), "spec.worker.memoryLimit"),
        (
            pool_body(worker={"thresholds": {"target": 0.9, "spill": 0.7}}),
            "spec.worker.thresholds.spill",
        ),
        (
            pool_body(worker={"thresholds": {"spill": None, "target": 0.85}}),
            "spec.worker.thresholds.pause",
        ),
        (pool_body(worker={"thresholds": {"pause": 0}}), "spec.worker.thresholds.pause"),
        (pool_body(worker={"spill": {"size": "1Ki"}}), "spec.worker.spill.size"),
        (pool_body(worker={"cpu": "1m"}), "spec.worker.cpu"),
        (pool_body(replicas=1, replication={"factor": 2}), "spec.replication.factor"),
        (
            pool_body(worker={"env": [{"name": "MEMKUBE_TOKEN", "value": "x"}]}),
            "spec.worker.env[0].name",
        ),
        (pool_body(replicas="3"), "spec.replicas"),
    ],
)
def test_invalid_specs_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_pool(body)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_disabled_thresholds_are_skipped_in_the_ordering() -> None:
    pool = parse_pool(pool_body(worker={"thresholds": {"spill": None, "pause": 0.65}}))
    assert pool.worker.thresholds.spill is None
    assert pool.worker.thresholds.pause == 0.65


def test_scale_to_zero_is_allowed_with_replication() -> None:
    assert parse_pool(pool_body(replicas=0, replication={"factor": 2})).replicas == 0


def test_medium_none_needs_no_size() -> None:
    pool = parse_pool(pool_body(worker={"spill": {"medium": "None", "size": "0"}}))
    assert pool.worker.spill.size == 0
