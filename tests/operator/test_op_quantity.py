"""Quantities parse exactly and format back to the shortest exact form."""

from __future__ import annotations

from fractions import Fraction

import pytest
from memkube.quantity import (
    QuantityError,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4Gi", 4 * 2**30),
        ("4096Mi", 4 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("4G", 4 * 10**9),
        ("512", 512),
        (1024, 1024),
        ("1k", 1000),
    ],
)
def test_sizes_parse_exactly(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_cpu_millicores_are_fractions() -> None:
    assert parse_quantity("500m") == Fraction(1, 2)
    assert format_cpu(Fraction(1, 2)) == "500m"
    assert format_cpu(Fraction(2)) == "2"
    assert format_cpu(Fraction(3, 2)) == "1500m"


@pytest.mark.parametrize("bad", ["", "4 Gi", "-1", "4gb", "1e3", True])
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [(2**30, "1Gi"), (9 * 2**30, "9Gi"), (4608 * 2**20, "4608Mi"), (1000, "1000")],
)
def test_format_bytes_is_exact_and_short(nbytes: int, text: str) -> None:
    assert format_bytes(nbytes) == text
    assert parse_bytes(text) == nbytes
