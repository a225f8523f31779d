"""Parsing of memory sizes, memory limits and threshold fractions.

Covers the user-facing spellings of ``--memory-limit`` and ``--max-spill``:

- byte sizes with SI or IEC units, case-insensitive: ``4GB``, ``4GiB``, ``1.5 gb``, ``4000000``;
- Kubernetes quantities: ``4Gi``, ``4096Mi``, ``4G``, ``500M``, ``64k`` (``m`` is milli in
  Kubernetes and nonsense for memory, so it is refused rather than read as mega);
- a fraction of this machine: ``0.5`` (a number with a decimal point, 0 < x <= 1);
- ``auto``: the limit of this process's own cgroup, else the host's RAM, shared among the
  workers of the host;
- ``0`` / ``none``: no limit.

Anything else (``4XB``, ``-1``, ``1e99``, ``nan``) raises :class:`memkube.errors.ConfigError`
with a message that names the value. Not covered: reading the cgroup files (``cgroup.py``).
"""

from __future__ import annotations

import logging
import math
import re

import psutil

from ..errors import ConfigError
from ..quantity import (
    MAX_BYTES,  # noqa: F401 - re-exported: the parser's limit
    QuantityError,
    parse_size,
)
from .cgroup import own_memory_cgroup

logger = logging.getLogger(__name__)

# A worker limited to less than this could not even import numpy.
MIN_LIMIT = 16 << 20

_FRACTION = re.compile(r"\s*(\d+\.\d*|\.\d+)\s*")
_NONE_WORDS = frozenset({"none", "null", "false", "off", "no"})


def parse_bytes(value: str | float, *, what: str = "size") -> int:
    """A byte size from ``4GB``, ``4GiB``, ``4Gi``, ``4096Mi``, ``123`` or an int
    (:func:`memkube.quantity.parse_size`, the project's one parser).

    Raises ConfigError for negative, fractional-byte, infinite or absurd values.
    """
    try:
        return parse_size(value, what=what)
    except QuantityError as exc:
        raise ConfigError(str(exc)) from exc


def is_disabled(value: object) -> bool:
    """Whether an option value means "off" (``none``, ``false``, ``False``)."""
    if value is False:
        return True
    return isinstance(value, str) and value.strip().lower() in _NONE_WORDS


def host_memory_limit() -> int:
    """The memory this process can use at most: host RAM, or its own cgroup's limit if lower."""
    total = int(psutil.virtual_memory().total)
    cgroup = own_memory_cgroup()
    if cgroup is not None:
        limit = cgroup.limit()
        if limit is not None and limit < total:
            return limit
    return total


def parse_memory_limit(
    value: str | float | None,
    *,
    nworkers_on_host: int = 1,
    machine_limit: int | None = None,
) -> int | None:
    """The memory limit in bytes, or None for no limit.

    ``machine_limit`` overrides what ``auto`` and fractions are taken of (tests; the local
    pool passes nothing). An explicit size larger than the machine is capped, with a warning,
    because the kernel would kill the worker before it reached it.
    """
    if nworkers_on_host < 1:
        raise ConfigError(f"nworkers_on_host must be at least 1, not {nworkers_on_host}")
    if value is None or is_disabled(value):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"memory limit must be a size, a fraction or 'auto', not {value!r}")
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "auto":
        machine = machine_limit if machine_limit is not None else host_memory_limit()
        return _floor_check(machine // nworkers_on_host, value)
    fraction = _as_fraction(value)
    if fraction is not None:
        machine = machine_limit if machine_limit is not None else host_memory_limit()
        return _floor_check(int(machine * fraction), value)
    try:
        limit = parse_bytes(value, what="memory limit")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (or a fraction like 0.5, 'auto' or 'none')") from None
    if limit == 0:
        return None
    _floor_check(limit, value)
    machine = machine_limit if machine_limit is not None else host_memory_limit()
    if limit > machine:
        logger.warning(
            "memory limit %s is more than this machine or cgroup allows (%d bytes); using %d",
            value,
            machine,
            machine,
        )
        return machine
    return limit


def _as_fraction(value: str | float) -> float | None:
    """A fraction of the machine: a float, or a string with a decimal point and no unit."""
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and _FRACTION.fullmatch(value):
        number = float(value)
    else:
        return None
    if not math.isfinite(number):
        raise ConfigError(f"memory limit {value!r} is not a number")
    if number == 0:
        return None  # "0.0" falls through to parse_bytes and means no limit
    if 0 < number <= 1:
        return number
    if number != int(number):
        raise ConfigError(
            f"memory limit {value!r}: a fraction of the machine must be in (0, 1]; "
            "a size needs a unit like 'GiB'"
        )
    return None


def _floor_check(limit: int, original: object) -> int:
    if limit < MIN_LIMIT:
        raise ConfigError(
            f"memory limit {original!r} gives {limit} bytes, below the {MIN_LIMIT >> 20} MiB "
            "minimum; for a fraction of the machine write e.g. 0.5 or 1.0"
        )
    return limit


def parse_threshold(value: object, *, name: str) -> float | None:
    """A threshold fraction in (0, 1], or None when disabled (``none``, ``false``)."""
    if value is None or is_disabled(value):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"memory {name} threshold must be a fraction like 0.7, not {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"memory {name} threshold {value!r} is not a fraction like 0.7 or 'none'"
        ) from exc
    if not math.isfinite(number) or not 0 < number <= 1:
        raise ConfigError(f"memory {name} threshold {value!r} must be in (0, 1] or 'none'")
    return number
