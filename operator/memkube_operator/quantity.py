"""Kubernetes resource quantities: parse to exact numbers, format back.

Covers what the WorkerPool spec uses: memory and storage sizes (``4Gi``, ``4096Mi``, ``4G``,
``1.5Gi``, plain bytes) and CPU (``2``, ``500m``, ``1.5``). Parsing is exact (``Fraction``),
so ``memoryLimit + overhead`` never picks up float rounding in a pod's limits.

Not covered: the exponent forms (``1e3``) and negative quantities, which no field here accepts.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
# Largest first, so 1Gi prints as 1Gi and not 1024Mi.
_BINARY = [("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)]


class QuantityError(ValueError):
    """A string is not a quantity this field accepts."""


def parse_quantity(value: str | float) -> Fraction:
    """The exact value of a quantity (``"1.5Gi"`` -> 1610612736, ``"500m"`` -> 1/2)."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise QuantityError(f"negative quantity: {value}")
        return Fraction(value)
    if isinstance(value, float):
        if value < 0 or not math.isfinite(value):
            raise QuantityError(f"not a non-negative finite quantity: {value}")
        return Fraction(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = match.group(1), match.group(2) or ""
    if suffix == "m":
        return Fraction(number) / 1000
    return Fraction(number) * _SUFFIXES[suffix]


def parse_bytes(value: str | float) -> int:
    """A memory or storage quantity as whole bytes (rounded up, as the kubelet does)."""
    return math.ceil(parse_quantity(value))


def format_bytes(nbytes: int) -> str:
    """The shortest exact binary quantity for ``nbytes`` (``"4608Mi"``, ``"1Gi"``, ``"1000"``)."""
    if nbytes < 0:
        raise QuantityError(f"negative size: {nbytes}")
    for suffix, factor in _BINARY:
        if nbytes and nbytes % factor == 0:
            return f"{nbytes // factor}{suffix}"
    return str(nbytes)


def floor_mebibytes(nbytes: int) -> int:
    """``nbytes`` rounded down to a whole MiB, so flags and limits print without byte noise."""
    return (nbytes // 2**20) * 2**20


def format_cpu(cores: Fraction) -> str:
    """CPU as Kubernetes prints it: whole cores plainly, anything else in millicores."""
    if cores.denominator == 1:
        return str(cores.numerator)
    return f"{math.ceil(cores * 1000)}m"
