"""Quantity parsing, the way the API server reads resource amounts."""

from __future__ import annotations

from fractions import Fraction

import pytest
from apidouble import quantity


@pytest.mark.parametrize(("text", "value"), [
    ("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1.5G", 1_500_000_000), ("500m", Fraction(1, 2)),
    ("2", 2), ("1e3", 1000), ("1E-3", Fraction(1, 1000)), ("100k", 100_000), (3, 3),
    (0.25, Fraction(1, 4))])
def test_parse(text: str | float, value: Fraction | int) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["4GB", "1 Gi", "Gi", "1.2.3", "1Gib", ""])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        quantity.parse(text)
