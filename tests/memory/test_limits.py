"""Parsing of sizes, memory limits and thresholds, including garbage."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memkube.errors import ConfigError
from memkube.memory.limits import (
    MAX_BYTES,
    host_memory_limit,
    parse_bytes,
    parse_memory_limit,
    parse_threshold,
)

GiB = 1 << 30
MACHINE = 16 * GiB


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("4gb", 4 * 10**9),
        ("4 GB", 4 * 10**9),
        ("4GiB", 4 * GiB),
        ("4Gi", 4 * GiB),
        ("4096Mi", 4 * GiB),
        ("4G", 4 * 10**9),
        ("500M", 500 * 10**6),
        ("64k", 64_000),
        ("64Ki", 65_536),
        ("1.5GiB", 3 * GiB // 2),
        ("123", 123),
        ("0", 0),
        (2**20, 2**20),
        (1024.0, 1024),
    ],
)
def test_parse_bytes_spellings(text: str | float, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("4XB", "unknown unit"),
        ("-1", "not a size"),
        (-1, "negative"),
        ("1e99", "not a size"),
        (1e99, "larger than 1 EiB"),
        ("500m", "milli"),
        ("", "not a size"),
        ("GB", "not a size"),
        ("1.5", "whole number"),
        (float("nan"), "whole number"),
        (True, "not True"),
        ("99999999EiB", "larger than 1 EiB"),
    ],
)
def test_parse_bytes_rejects_nonsense(text: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_bytes(text)  # type: ignore[arg-type]


def test_limit_sizes_and_no_limit() -> None:
    assert parse_memory_limit("4GiB", machine_limit=MACHINE) == 4 * GiB
    assert parse_memory_limit("4096Mi", machine_limit=MACHINE) == 4 * GiB
    for off in ("0", 0, "none", "None", None, False, "0.0"):
        assert parse_memory_limit(off, machine_limit=MACHINE) is None


def test_limit_fraction_and_auto_share_the_machine() -> None:
    assert parse_memory_limit("0.5", machine_limit=MACHINE) == 8 * GiB
    assert parse_memory_limit(0.25, machine_limit=MACHINE) == 4 * GiB
    assert parse_memory_limit("1.0", machine_limit=MACHINE) == MACHINE
    assert parse_memory_limit("auto", machine_limit=MACHINE) == MACHINE
    assert parse_memory_limit("auto", nworkers_on_host=4, machine_limit=MACHINE) == 4 * GiB


def test_limit_bigger_than_machine_is_capped() -> None:
    assert parse_memory_limit("64GiB", machine_limit=MACHINE) == MACHINE


def test_auto_without_override_uses_this_machine() -> None:
    machine = host_memory_limit()
    assert parse_memory_limit("auto") == machine
    assert parse_memory_limit("auto", nworkers_on_host=2) == machine // 2


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("4XB", "unknown unit"),
        ("-1", "not a size"),
        (-1, "negative"),
        ("1e99", "not a size"),
        (1e99, "larger than 1 EiB"),
        ("2.5", r"fraction of the machine must be in \(0, 1\]"),
        ("1", "below the 16 MiB minimum"),
        ("1.5e3", "not a size"),
        ("autoo", r"not a size.*'auto'"),
        (True, "not True"),
        (float("inf"), "not a number"),
    ],
)
def test_limit_rejects_nonsense_with_a_clear_message(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_memory_limit(value, machine_limit=MACHINE)  # type: ignore[arg-type]


def test_nworkers_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="nworkers_on_host"):
        parse_memory_limit("auto", nworkers_on_host=0, machine_limit=MACHINE)


@given(st.text(max_size=30))
def test_garbage_text_is_a_limit_or_a_config_error(text: str) -> None:
    try:
        limit = parse_memory_limit(text, machine_limit=MACHINE)
    except ConfigError as exc:
        assert str(exc)  # a message, never an empty error
        return
    assert limit is None or 16 << 20 <= limit <= MACHINE


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_a_limit_or_a_config_error(number: float) -> None:
    try:
        limit = parse_memory_limit(number, machine_limit=MACHINE)
    except ConfigError:
        return
    assert limit is None or 16 << 20 <= limit <= MACHINE
    if limit is not None and 0 < number <= 1:
        assert limit == int(MACHINE * number)


@given(st.integers(min_value=0, max_value=MAX_BYTES), st.sampled_from(["", "Ki", "Mi", "KiB"]))
def test_integer_sizes_round_trip(n: int, unit: str) -> None:
    factor = {"": 1, "Ki": 1024, "Mi": 1024**2, "KiB": 1024}[unit]
    if n * factor > MAX_BYTES:
        with pytest.raises(ConfigError):
            parse_bytes(f"{n}{unit}")
    else:
        assert parse_bytes(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.6, 0.6), ("0.7", 0.7), (1, 1.0), ("none", None), ("false", None), (False, None)],
)
def test_thresholds(value: object, expected: float | None) -> None:
    assert parse_threshold(value, name="spill") == expected


@pytest.mark.parametrize("value", [0, -0.1, 1.5, "abc", math.nan, True, "0"])
def test_bad_thresholds(value: object) -> None:
    with pytest.raises(ConfigError, match="spill threshold"):
        parse_threshold(value, name="spill")
