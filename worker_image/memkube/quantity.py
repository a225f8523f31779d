"""Sizes and quantities, parsed once for the whole project (runtime and operator alike).

Dependency-free (the standard library only; an import-linter contract keeps it so), so the
operator may use it without importing the runtime's memory package.

- :func:`parse_quantity`: a Kubernetes resource quantity, exactly (``Fraction``): ``4Gi``,
  ``4096Mi``, ``4G``, ``1.5Gi``, ``500m`` (milli), plain numbers. Case-sensitive, as in
  Kubernetes. :func:`parse_bytes` rounds one up to whole bytes (as the kubelet does).
- :func:`parse_size`: a byte size as users type it on a command line: SI or IEC units,
  case-insensitive (``4GB``, ``4GiB``, ``4gib``, ``4Gi``, ``4096Mi``, ``123``); ``m``
  (milli in Kubernetes, nonsense for memory) is refused rather than read as mega.
- :func:`format_bytes`, :func:`format_cpu`, :func:`floor_mebibytes`: back to the shortest
  exact Kubernetes spelling.

Errors: :class:`QuantityError` (a ``ValueError``) with a message naming the value; the
runtime turns it into :class:`memkube.errors.ConfigError`, the operator into a spec error.
Not covered: the exponent forms (``1e3``) and negative quantities, which no field accepts.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

# Sizes beyond an exbibyte are typos, not machines.
MAX_BYTES = 1 << 60

# Case-insensitive unit names for command-line sizes.
SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "e": 10**18,
    "eb": 10**18,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "ti": 1 << 40,
    "tib": 1 << 40,
    "pi": 1 << 50,
    "pib": 1 << 50,
    "ei": 1 << 60,
    "eib": 1 << 60,
}

_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")


class QuantityError(ValueError):
    """A string is not a quantity (or size) this field accepts."""


def parse_size(value: str | float, *, what: str = "size") -> int:
    """A byte size from ``4GB``, ``4GiB``, ``4Gi``, ``4096Mi``, ``123`` or an int.

    Raises QuantityError for negative, fractional-byte, infinite or absurd values.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{what} must be a size like '4GiB', not {value!r}")
    if isinstance(value, int):
        return _check_range(value, value, what)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise QuantityError(f"{what} {value!r} is not a whole number of bytes")
        return _check_range(int(value), value, what)
    if not isinstance(value, str):
        raise QuantityError(f"{what} must be a string or number, not {type(value).__name__}")
    match = _SIZE.match(value)
    if match is None:
        raise QuantityError(
            f"{what} {value!r} is not a size; use e.g. '4GiB', '4GB', '4Gi', '4096Mi' or bytes"
        )
    unit = match["unit"]
    if unit == "m":
        raise QuantityError(
            f"{what} {value!r}: 'm' means milli in Kubernetes quantities; use 'M' or 'Mi'"
        )
    factor = SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise QuantityError(
            f"{what} {value!r} has an unknown unit {unit!r}; use B, kB, MB, GB, TB, "
            "KiB, MiB, GiB, TiB or Ki, Mi, Gi, Ti"
        )
    number = Decimal(match["number"]) * factor  # exact: floats lose bytes above 2**53
    if number != int(number):
        raise QuantityError(f"{what} {value!r} is not a whole number of bytes")
    return _check_range(int(number), value, what)


def _check_range(n: int, original: object, what: str) -> int:
    if n < 0:
        raise QuantityError(f"{what} {original!r} is negative")
    if n > MAX_BYTES:
        raise QuantityError(f"{what} {original!r} is larger than 1 EiB; is it a typo?")
    return n


# Kubernetes quantity suffixes (case-sensitive).
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
