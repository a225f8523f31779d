"""Memory settings of one worker, resolved from flags, environment, config file, defaults.

:meth:`MemoryConfig.from_options` takes the worker CLI's flags (``None`` = not given) and
resolves each setting in the order flag > environment > config file > default:

============== ============================== =====================================
flag           environment                    config file (``memory:`` section)
============== ============================== =====================================
limit          MEMKUBE_MEMORY_LIMIT           limit
target         MEMKUBE_MEMORY_TARGET          target
spill          MEMKUBE_MEMORY_SPILL           spill
pause          MEMKUBE_MEMORY_PAUSE           pause
terminate      MEMKUBE_MEMORY_TERMINATE       terminate
max_spill      MEMKUBE_MAX_SPILL              max-spill
spill_dir      MEMKUBE_SPILL_DIR              spill-dir
compression    MEMKUBE_SPILL_COMPRESSION      compression
============== ============================== =====================================

The config file is YAML, found at ``MEMKUBE_CONFIG``; its ``memory:`` section may also set
``monitor-interval`` (seconds) and ``unmanaged: {gc-after, trim-after, terminate-after}``.
Two settings of the spill pipeline have no flag (environment > config file > default):
``MEMKUBE_SPILL_WRITE`` / ``spill-write`` (direct | range | cached, ``writeback.py``) and
``MEMKUBE_SPILL_WRITERS`` / ``spill-writers`` (writes in flight, 1-16).
Thresholds given as ``none``/``false`` are disabled. Every value is checked here, so a bad
one is a :class:`ConfigError` at start-up. Not covered: what the values do (``policy.py``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from . import codec
from .limits import is_disabled, parse_bytes, parse_memory_limit, parse_threshold
from .policy import Escalation, Thresholds

ENV = {
    "limit": "MEMKUBE_MEMORY_LIMIT",
    "target": "MEMKUBE_MEMORY_TARGET",
    "spill": "MEMKUBE_MEMORY_SPILL",
    "pause": "MEMKUBE_MEMORY_PAUSE",
    "terminate": "MEMKUBE_MEMORY_TERMINATE",
    "max_spill": "MEMKUBE_MAX_SPILL",
    "spill_dir": "MEMKUBE_SPILL_DIR",
    "compression": "MEMKUBE_SPILL_COMPRESSION",
}
CONFIG_ENV = "MEMKUBE_CONFIG"
_FILE_KEYS = {
    "limit",
    "target",
    "spill",
    "pause",
    "terminate",
    "max-spill",
    "spill-dir",
    "compression",
    "monitor-interval",
    "unmanaged",
    "spill-write",
    "spill-writers",
}
DEFAULTS: dict[str, Any] = {
    "limit": "auto",
    "target": 0.6,
    "spill": 0.7,
    "pause": 0.8,
    "terminate": 0.95,
    "max_spill": None,
    "spill_dir": None,
    "compression": "auto",
}


@dataclass(frozen=True)
class MemoryConfig:
    """Resolved memory settings; build with :meth:`from_options`."""

    limit: int | None
    """Bytes the worker process may use; None: unmanaged (no spilling by process memory)."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_spill: int | None = None
    """Bytes the spill store may hold on disk; None: as much as the disk takes."""
    spill_dir: str | None = None
    """Parent directory of the worker's spill directory; None: the system temp dir."""
    compression: str = "auto"
    """auto | lz4 | zstd | none: per-value codec of spilled frames."""
    write_mode: str = "direct"
    """direct | range | cached: how spill files are written through (``writeback.py``);
    direct measured fastest here (bench/README.md), range where O_DIRECT is refused is the
    automatic fallback; cached leaves dirty pages to the kernel (they count against the
    cgroup: for comparison only)."""
    writers: int = 2
    """Spill writes in flight at once: two keep the disk busy while one value is encoded."""
    monitor_interval: float = 0.1
    """Seconds between readings when no kernel event comes first."""
    escalation: Escalation = field(default_factory=Escalation)

    @property
    def acting_limit(self) -> int | None:
        """The limit the worker acts on (admission, bounded transfers): None without a
        limit or with every threshold off (the memory manager switched off)."""
        return None if self.thresholds.all_disabled else self.limit

    @property
    def run_bytes(self) -> int | None:
        """What memory may reach while tasks run (the terminate line, else pause), in
        bytes: None when the worker does not act on a limit (:attr:`acting_limit`)."""
        limit = self.acting_limit
        return None if limit is None else int(self.thresholds.run_line * limit)

    @property
    def target_bytes(self) -> int | None:
        t = self.thresholds.target
        return None if self.limit is None or t is None else int(self.limit * t)

    @classmethod
    def from_options(
        cls,
        *,
        limit: str | float | None = None,
        target: float | str | bool | None = None,
        spill: float | str | bool | None = None,
        pause: float | str | bool | None = None,
        terminate: float | str | bool | None = None,
        max_spill: str | int | None = None,
        spill_dir: str | None = None,
        compression: str | None = None,
        nworkers_on_host: int = 1,
        env: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
    ) -> MemoryConfig:
        """Resolve each setting: flag (not None) > environment > config file > default."""
        env = os.environ if env is None else env
        path = config_file if config_file is not None else env.get(CONFIG_ENV)
        section = load_config_file(path) if path else {}
        flags = {
            "limit": limit,
            "target": target,
            "spill": spill,
            "pause": pause,
            "terminate": terminate,
            "max_spill": max_spill,
            "spill_dir": spill_dir,
            "compression": compression,
        }

        def pick(name: str) -> Any:
            if flags[name] is not None:
                return flags[name]
            if ENV[name] in env and env[ENV[name]].strip() != "":
                return env[ENV[name]]
            file_key = name.replace("_", "-")
            if file_key in section:
                return section[file_key]
            return DEFAULTS[name]

        thresholds = Thresholds(
            target=parse_threshold(pick("target"), name="target"),
            spill=parse_threshold(pick("spill"), name="spill"),
            pause=parse_threshold(pick("pause"), name="pause"),
            terminate=parse_threshold(pick("terminate"), name="terminate"),
        )
        check_order(thresholds)
        raw_max = pick("max_spill")
        max_bytes = (
            None
            if raw_max is None or is_disabled(raw_max)
            else parse_bytes(raw_max, what="max-spill")
        )
        raw_dir = pick("spill_dir")
        mode = str(pick("compression")).strip().lower()
        return cls(
            limit=parse_memory_limit(pick("limit"), nworkers_on_host=nworkers_on_host),
            thresholds=thresholds,
            max_spill=max_bytes or None,
            spill_dir=str(raw_dir) if raw_dir else None,
            compression=codec.check_mode(mode),
            write_mode=_write_mode(env.get("MEMKUBE_SPILL_WRITE") or section.get("spill-write")),
            writers=_writers(env.get("MEMKUBE_SPILL_WRITERS") or section.get("spill-writers")),
            monitor_interval=_positive(section.get("monitor-interval", 0.1), "monitor-interval"),
            escalation=_escalation(section.get("unmanaged", {})),
        )


def _write_mode(raw: Any) -> str:
    mode = "direct" if raw is None or str(raw).strip() == "" else str(raw).strip().lower()
    if mode not in ("direct", "range", "cached"):
        raise ConfigError(f"spill-write {raw!r} is not one of direct, range, cached")
    return mode


def _writers(raw: Any) -> int:
    if raw is None or str(raw).strip() == "":
        return 2
    try:
        n = int(str(raw))
    except ValueError:
        raise ConfigError(f"spill-writers {raw!r} is not a whole number") from None
    if not 1 <= n <= 16:
        raise ConfigError(f"spill-writers {n} is not between 1 and 16")
    return n


def check_order(t: Thresholds) -> None:
    """Enabled thresholds must not decrease: target <= spill <= pause <= terminate."""
    named = [(n, v) for n, v in vars(t).items() if v is not None]
    for (a, va), (b, vb) in itertools.pairwise(named):
        if va > vb:
            raise ConfigError(
                f"memory {a} threshold {va} is above {b} threshold {vb}; they must not decrease "
                "in the order target, spill, pause, terminate"
            )


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``memory:`` section of a YAML config file (empty if the file has none)."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must be a mapping with a 'memory:' section")
    section = document.get("memory") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: 'memory' must be a mapping")
    unknown = set(section) - _FILE_KEYS
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown memory settings {sorted(unknown)}; "
            f"known: {sorted(_FILE_KEYS)}"
        )
    return section


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"memory {name} {value!r} is not a number of seconds") from exc
    if not number > 0:
        raise ConfigError(f"memory {name} must be positive, not {value!r}")
    return number


def _escalation(section: Any) -> Escalation:
    if not isinstance(section, dict):
        raise ConfigError("memory 'unmanaged' must be a mapping")
    unknown = set(section) - {"gc-after", "trim-after", "terminate-after", "warn-every"}
    if unknown:
        raise ConfigError(f"memory 'unmanaged': unknown settings {sorted(unknown)}")
    default = Escalation()
    terminate = section.get("terminate-after", default.terminate_after)
    return Escalation(
        gc_after=_positive(section.get("gc-after", default.gc_after), "gc-after"),
        trim_after=_positive(section.get("trim-after", default.trim_after), "trim-after"),
        terminate_after=None
        if terminate is None or is_disabled(terminate)
        else _positive(terminate, "terminate-after"),
        warn_every=_positive(section.get("warn-every", default.warn_every), "warn-every"),
    )
