"""Kubernetes resource quantities: the accepted syntax and their values.

``1Gi``, ``512Mi``, ``2``, ``500m``, ``1e3``, ``1.5G``; not ``4GB`` or ``1 Gi`` (a real server
refuses those while decoding the object). Values are exact (Fractions), so comparisons such
as requests <= limits are exact too.
"""

from __future__ import annotations

import re
from fractions import Fraction

PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_SUFFIXES = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}


def parse(text: str | float) -> Fraction:
    """The value of a quantity; ValueError for what a real server would refuse."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Fraction(str(text))
    m = re.fullmatch(PATTERN, str(text))
    if not m:
        raise ValueError(f"quantities must match the regular expression '{PATTERN}'")
    number, suffix = m.groups()
    try:
        value = Fraction(number)
    except ValueError as exc:
        raise ValueError(f"quantities must match the regular expression '{PATTERN}'") from exc
    if suffix in _SUFFIXES:
        return value * _SUFFIXES[suffix]
    exponent = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if exponent is None:
        raise ValueError("unable to parse quantity's suffix")
    return value * Fraction(10) ** int(exponent.group(1))
