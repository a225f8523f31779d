"""Human-readable sizes and rates, shared by the dashboard's explanations and the reports.

Binary units (KiB, MiB, GiB), because memory limits are set that way (``4Gi``, ``4GiB``).
"""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: float | None) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``None`` -> ``'-'`` (unknown or unlimited)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"


def format_percent(fraction: float | None) -> str:
    """``0.8`` -> ``'80%'``; ``None`` (a disabled threshold) -> ``'off'``."""
    if fraction is None:
        return "off"
    return f"{fraction * 100:.0f}%"
